/* MPI hello in C: the reference program built against each MPI (CMakeLists.txt, tests/test_mpirun.py). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int rank, size, len, total = 0, one = 1;
    char host[MPI_MAX_PROCESSOR_NAME], version[MPI_MAX_LIBRARY_VERSION_STRING];
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_processor_name(host, &len);
    MPI_Get_library_version(version, &len);
    MPI_Allreduce(&one, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    const char *node = getenv("MNP_NODE_INDEX");
    printf("C-HELLO rank=%d size=%d sum=%d host=%s node=%s lib=%.20s\n", rank, size, total, host,
           node ? node : "-", version);
    MPI_Finalize();
    return 0;
}
