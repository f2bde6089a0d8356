/* OSU-style 2-rank latency in C (half round trip, microseconds), the reference for bench/osu/.
 * Method of osu_latency: warm-up, then timed ping-pong per size; sizes double from 0 B to MAX (argv[1], default
 * 4 MiB); 10000/100 iterations up to 8 KiB, 1000/10 above. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    char *buf = malloc(max > 0 ? max : 1);
    memset(buf, 1, max > 0 ? max : 1);
    if (rank == 0) printf("# OSU-style MPI Latency Test (C)\n# %-10s%20s\n", "Size", "Avg Latency(us)");
    for (long n = 0; n <= max; n = n ? n * 2 : 1) {
        int iters = n <= 8192 ? 10000 : 1000, warm = n <= 8192 ? 100 : 10;
        double t0 = 0;
        MPI_Barrier(MPI_COMM_WORLD);
        for (int i = 0; i < iters + warm; i++) {
            if (i == warm) t0 = MPI_Wtime();
            if (rank == 0) {
                MPI_Send(buf, (int)n, MPI_CHAR, 1, 1, MPI_COMM_WORLD);
                MPI_Recv(buf, (int)n, MPI_CHAR, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            } else {
                MPI_Recv(buf, (int)n, MPI_CHAR, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                MPI_Send(buf, (int)n, MPI_CHAR, 0, 1, MPI_COMM_WORLD);
            }
        }
        if (rank == 0) printf("%-10ld%20.2f\n", n, (MPI_Wtime() - t0) * 1e6 / (2.0 * iters));
    }
    free(buf);
    MPI_Finalize();
    return 0;
}
