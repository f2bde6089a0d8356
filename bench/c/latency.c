/* OSU-style 2-rank latency in C (half round trip, microseconds), the reference for bench/osu/ (CMake target;
 * `mnp bench` builds bench/c/osu_ref.c, which also does bw and bibw). Method of osu_latency: two page-aligned
 * buffers (send 'a', receive 'b': ONE shared buffer made 64 KiB - 1 MiB messages 1.5-1.8x slower over MPICH's
 * shared memory), warm-up, then timed ping-pong per size; sizes double from 1 B to MAX (argv[1], default 4 MiB);
 * 10000/100 iterations up to 8 KiB, 1000/10 above. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int rank, size;
    long max = argc > 1 ? atol(argv[1]) : (4L << 20);
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 2) {
        if (rank == 0) fprintf(stderr, "latency: needs exactly 2 ranks\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    char *s_buf = NULL, *r_buf = NULL;
    long page = sysconf(_SC_PAGESIZE);
    if (posix_memalign((void **)&s_buf, page, max > 0 ? max : 1) ||
        posix_memalign((void **)&r_buf, page, max > 0 ? max : 1)) MPI_Abort(MPI_COMM_WORLD, 1);
    if (rank == 0) printf("\n# OSU MPI Latency Test v7.4\n# Datatype: MPI_CHAR.\n%-10s%18s\n", "# Size", "Avg Latency(us)");
    for (long n = 1; n <= max; n *= 2) {
        int iters = n <= 8192 ? 10000 : 1000, warm = n <= 8192 ? 100 : 10;
        double t0 = 0;
        memset(s_buf, 'a', n);
        memset(r_buf, 'b', n);
        MPI_Barrier(MPI_COMM_WORLD);
        for (int i = 0; i < iters + warm; i++) {
            if (i == warm) t0 = MPI_Wtime();
            if (rank == 0) {
                MPI_Send(s_buf, (int)n, MPI_CHAR, 1, 1, MPI_COMM_WORLD);
                MPI_Recv(r_buf, (int)n, MPI_CHAR, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            } else {
                MPI_Recv(r_buf, (int)n, MPI_CHAR, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                MPI_Send(s_buf, (int)n, MPI_CHAR, 0, 1, MPI_COMM_WORLD);
            }
        }
        if (rank == 0) printf("%-10ld%18.2f\n", n, (MPI_Wtime() - t0) * 1e6 / (2.0 * iters));
    }
    free(s_buf);
    free(r_buf);
    MPI_Finalize();
    return 0;
}
