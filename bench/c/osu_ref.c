/* The C reference for bench.osu's call paths: osu_latency, osu_bw and osu_bibw done the way OMB 7.4 does them
 * (two page-aligned buffers per rank, filled 'a'/'b' before each size, a barrier, warm-up then timed loop; bw:
 * a window of Isend/Irecv, Waitall, 1-byte ack), printing OMB's table. Written for mnp from OMB's documented
 * methodology; built on demand by `mnp bench` with the MPI's own mpicc.
 *   osu_ref latency|bw|bibw [-m [MIN:]MAX] [-i ITER] [-x WARMUP] [-W WINDOW] [-p]
 * -p: a progress line on stderr after each size ("osu latency: sizes 3/22 (4 B)"). After the table, `# mnp:`
 * comment lines name the MPI library and FI_PROVIDER. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { LAT, BW, BIBW };

static int count_sizes(long lo, long hi) {
    int n = 0;
    for (long s = lo; s <= hi; s = s ? s * 2 : 1) n += s > 0;
    return n;
}

int main(int argc, char **argv) {
    int rank, nranks, kind, progress = 0, iters_opt = 0, warm_opt = -1, window = 64;
    long lo = 0, hi = 4L << 20;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    if (argc < 2 || (strcmp(argv[1], "latency") && strcmp(argv[1], "bw") && strcmp(argv[1], "bibw"))) {
        if (rank == 0) fprintf(stderr, "osu_ref: usage: osu_ref latency|bw|bibw [-m [MIN:]MAX] [-i N] [-x N] [-W N] [-p]\n");
        MPI_Finalize();
        return 2;
    }
    kind = !strcmp(argv[1], "latency") ? LAT : !strcmp(argv[1], "bw") ? BW : BIBW;
    if (kind != LAT) lo = 1;
    for (int a = 2; a < argc; a++) {
        if (!strcmp(argv[a], "-p")) progress = 1;
        else if (a + 1 < argc && !strcmp(argv[a], "-i")) iters_opt = atoi(argv[++a]);
        else if (a + 1 < argc && !strcmp(argv[a], "-x")) warm_opt = atoi(argv[++a]);
        else if (a + 1 < argc && !strcmp(argv[a], "-W")) window = atoi(argv[++a]);
        else if (a + 1 < argc && !strcmp(argv[a], "-m")) {
            char *v = argv[++a], *colon = strchr(v, ':');
            if (!colon) hi = atol(v);
            else {
                if (colon != v) lo = atol(v);
                if (colon[1]) hi = atol(colon + 1);
            }
        }
    }
    if (nranks != 2) {
        if (rank == 0) fprintf(stderr, "osu_ref: %s needs exactly 2 ranks, this job has %d\n", argv[1], nranks);
        MPI_Finalize();
        return 2;
    }
    long page = sysconf(_SC_PAGESIZE), n = hi > 0 ? hi : 1;
    char *s_buf = NULL, *r_buf = NULL;
    if (posix_memalign((void **)&s_buf, page, n) || posix_memalign((void **)&r_buf, page, n)) MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Request *reqs = malloc(sizeof(MPI_Request) * 2 * window);
    int peer = 1 - rank, total = count_sizes(lo, hi), done = 0;
    static const char *title[] = {"Latency Test", "Bandwidth Test", "Bi-Directional Bandwidth Test"};
    if (rank == 0)
        printf("\n# OSU MPI %s v7.4\n# Datatype: MPI_CHAR.\n%-10s%18s\n", title[kind], "# Size",
               kind == LAT ? "Avg Latency(us)" : "Bandwidth (MB/s)");
    for (long size = lo; size <= hi; size = size ? size * 2 : 1) {
        if (size == 0) continue; /* OMB 7.4 skips sizes of zero elements */
        int large = size > 8192;
        int iters = iters_opt ? iters_opt : kind == LAT ? (large ? 1000 : 10000) : (large ? 20 : 100);
        int warm = warm_opt >= 0 ? warm_opt : kind == LAT ? (large ? 10 : 100) : (large ? 2 : 10);
        memset(s_buf, 'a', size);
        memset(r_buf, 'b', size);
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = 0;
        for (int i = 0; i < iters + warm; i++) {
            if (i == warm) t0 = MPI_Wtime();
            if (kind == LAT) {
                if (rank == 0) {
                    MPI_Send(s_buf, (int)size, MPI_CHAR, peer, 1, MPI_COMM_WORLD);
                    MPI_Recv(r_buf, (int)size, MPI_CHAR, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                } else {
                    MPI_Recv(r_buf, (int)size, MPI_CHAR, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                    MPI_Send(s_buf, (int)size, MPI_CHAR, peer, 1, MPI_COMM_WORLD);
                }
            } else if (kind == BW) {
                for (int j = 0; j < window; j++) {
                    if (rank == 0) MPI_Isend(s_buf, (int)size, MPI_CHAR, peer, 100, MPI_COMM_WORLD, &reqs[j]);
                    else MPI_Irecv(r_buf, (int)size, MPI_CHAR, peer, 100, MPI_COMM_WORLD, &reqs[j]);
                }
                MPI_Waitall(window, reqs, MPI_STATUSES_IGNORE);
                if (rank == 0) MPI_Recv(r_buf, 1, MPI_CHAR, peer, 101, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                else MPI_Send(r_buf, 1, MPI_CHAR, peer, 101, MPI_COMM_WORLD);
            } else {
                int stag = rank < peer ? 100 : 10, rtag = rank < peer ? 10 : 100;
                for (int j = 0; j < window; j++)
                    MPI_Irecv(r_buf, (int)size, MPI_CHAR, peer, rtag, MPI_COMM_WORLD, &reqs[j]);
                for (int j = 0; j < window; j++)
                    MPI_Isend(s_buf, (int)size, MPI_CHAR, peer, stag, MPI_COMM_WORLD, &reqs[window + j]);
                MPI_Waitall(2 * window, reqs, MPI_STATUSES_IGNORE);
            }
        }
        double t = MPI_Wtime() - t0;
        if (kind != BW || rank == 1)
            for (long k = 0; k < size; k++)
                if (r_buf[k] != 'a') {
                    fprintf(stderr, "osu_ref: %s: %ld B message did not arrive intact\n", argv[1], size);
                    MPI_Abort(MPI_COMM_WORLD, 1);
                }
        if (rank == 0) {
            double value = kind == LAT ? t * 1e6 / (2.0 * iters)
                                       : size / 1e6 * iters * window * (kind == BIBW ? 2 : 1) / t;
            printf("%-10ld%18.2f\n", size, value);
            fflush(stdout);
            if (progress) fprintf(stderr, "osu %s: sizes %d/%d (%ld B)\n", argv[1], ++done, total, size);
        }
    }
    if (rank == 0) {
        char lib[MPI_MAX_LIBRARY_VERSION_STRING];
        int len;
        MPI_Get_library_version(lib, &len);
        lib[strcspn(lib, "\n")] = 0;
        const char *prov = getenv("FI_PROVIDER");
        printf("# mnp: call path c; %s\n# mnp: FI_PROVIDER=%s\n", lib, prov ? prov : "");
    }
    free(reqs);
    free(s_buf);
    free(r_buf);
    MPI_Finalize();
    return 0;
}
