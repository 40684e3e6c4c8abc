/*
 * store_read.c - random read rate of images from a site store, as the data loader reads
 * them: one read snapshot, ids of the train split, each image looked up by id and copied
 * into a batch buffer.
 *
 * usage: bench_store_read STORE_DIR [READS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cwt.h"
#include "storage/store.h"

#define BATCH 256

int main(int argc, char **argv)
{
    struct store *st;
    struct store_image_hdr hdr;
    const uint8_t *px;
    uint64_t *ids, reads = 10000000, rng = 0x9e3779b97f4a7c15ull, check = 0;
    uint8_t *batch;
    size_t n, bytes = 0;
    char err[CWT_ERRLEN];
    double t0, dt;
    int64_t v;

    if (argc < 2 || argc > 3 || (argc == 3 && cwt_parse_i64(argv[2], 1, INT64_MAX, &v) != 0)) {
        fprintf(stderr, "usage: bench_store_read STORE_DIR [READS]\n");
        return 2;
    }
    if (argc == 3)
        reads = (uint64_t)v;
    if (store_open(argv[1], STORE_RDONLY, 0, &st, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_store_read: %s\n", err);
        return 1;
    }
    if (store_read_begin(st) != 0 || store_list(st, STORE_TRAIN, &ids, &n) != 0 || n == 0) {
        fprintf(stderr, "bench_store_read: no train images in %s\n", argv[1]);
        store_close(st);
        return 1;
    }
    if (store_get_image(st, ids[0], &hdr, &px) != 0)
        return 1;
    bytes = (size_t)hdr.h * hdr.w * hdr.c;
    batch = malloc(bytes * BATCH);
    if (batch == NULL)
        return 1;

    /* One pass in order first, so that both runs read from the page cache. */
    for (size_t i = 0; i < n; i++)
        if (store_get_image(st, ids[i], &hdr, &px) == 0)
            check += px[0];
    t0 = cwt_monotonic();
    for (uint64_t r = 0; r < reads; r++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        if (store_get_image(st, ids[rng % n], &hdr, &px) != 0) {
            fprintf(stderr, "bench_store_read: read failed\n");
            return 1;
        }
        memcpy(batch + (r % BATCH) * bytes, px, bytes);
        check += batch[(r % BATCH) * bytes + bytes / 2];
    }
    dt = cwt_monotonic() - t0;
    printf("random reads: %llu images of %ux%ux%u from %zu in %.3f s: %.0f images/s "
           "(%.1f MB/s) [check %llu]\n",
           (unsigned long long)reads, hdr.h, hdr.w, hdr.c, n, dt, (double)reads / dt,
           (double)reads * (double)bytes / dt / 1e6, (unsigned long long)check);
    free(batch);
    free(ids);
    store_read_end(st);
    store_close(st);
    return 0;
}
