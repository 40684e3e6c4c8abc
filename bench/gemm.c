/*
 * bench/gemm.c - GFLOP/s of the engine's GEMM shader (every kernel shape the device can run)
 * against OpenBLAS sgemm on the same machine, at n = 1024 and 2048 (or the sizes given).
 *
 * Usage: bench_gemm [n...]    Prints one line per (n, kernel) and a markdown table row.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cwt.h"
#include "engine/ops.h"
#ifdef CWT_HAVE_OPENBLAS
#include <cblas.h>
#endif

static double run_gpu(struct eng_device *d, int shape, uint32_t n, struct eng_buf *a,
                      struct eng_buf *b, struct eng_buf *c, int reps)
{
    char err[CWT_ERRLEN];
    /* shape 3 = the CPU-device kernel (gemm_cpu.comp) */
    d->cpu_kernels = shape == 3;
    if (shape < 3)
        d->gemm_shape = (enum eng_gemm_shape)shape;
    struct eng_rec r;
    if (eng_rec_init(d, &r, err, sizeof(err)) != 0 || eng_rec_begin(&r, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_gemm: %s\n", err);
        return -1;
    }
    struct eng_gemm g = {n, n, n, n, 1, n, 1, n, 1, 0};
    struct eng_tref ta = {a->buf, 0, a->size}, tb = {b->buf, 0, b->size}, tc = {c->buf, 0, c->size},
                    none = {0};
    for (int i = 0; i < reps; i++)
        op_gemm(&r, &g, ta, tb, tc, none, none);
    /* Warm-up (pipeline compile) then timed runs. */
    if (eng_rec_run(&r, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_gemm: %s\n", err);
        eng_rec_free(&r);
        return -1;
    }
    VkFence f;
    if (eng_fence_create(d, &f) != 0) {
        eng_rec_free(&r);
        return -1;
    }
    double t0 = cwt_monotonic();
    int rc = eng_submit(d, r.cb, f);
    if (rc == 0)
        rc = eng_wait(d, f);
    double t = cwt_monotonic() - t0;
    vkDestroyFence(d->dev, f, NULL);
    eng_rec_free(&r);
    if (rc != 0)
        return -1;
    return 2.0 * n * n * (double)n * reps / t / 1e9;
}

int main(int argc, char **argv)
{
    uint32_t sizes[8] = {1024, 2048};
    int nsizes = 2;
    if (argc > 1) {
        nsizes = 0;
        for (int i = 1; i < argc && nsizes < 8; i++)
            sizes[nsizes++] = (uint32_t)strtoul(argv[i], NULL, 10);
    }
    char err[CWT_ERRLEN];
    struct eng_device *d;
    if (eng_device_open("vulkan", 0, &d, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_gemm: %s\n", err);
        return 1;
    }
    struct eng_device_info info;
    eng_device_get_info(d, &info);
    printf("device: %s (%s, %s), subgroup %u\n", info.name, info.type, info.driver,
           info.subgroup_size);
    const char *names[4] = {"reg", "sg", "tile", "cpu"};
    for (int s = 0; s < nsizes; s++) {
        uint32_t n = sizes[s];
        size_t bytes = (size_t)n * n * 4;
        struct eng_buf a, b, c;
        if (eng_buf_create(d, bytes, ENG_MEM_DEVICE, &a, err, sizeof(err)) ||
            eng_buf_create(d, bytes, ENG_MEM_DEVICE, &b, err, sizeof(err)) ||
            eng_buf_create(d, bytes, ENG_MEM_DEVICE, &c, err, sizeof(err)) || !a.map) {
            fprintf(stderr, "bench_gemm: %s\n", err);
            return 1;
        }
        float *ha = a.map, *hb = b.map;
        for (size_t i = 0; i < (size_t)n * n; i++) {
            ha[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
            hb[i] = (float)((i * 40503u) % 1000) / 1000.0f - 0.5f;
        }
        int reps = n <= 1024 ? 3 : 1;
        double best_gpu = 0;
        for (int sh = 0; sh < 4; sh++) {
            if (sh == ENG_GEMM_SG && info.subgroup_size != 8)
                continue;
            if (getenv("CWT_BENCH_GEMM_CPU_ONLY") && sh != 3)
                continue;
            double gf = run_gpu(d, sh, n, &a, &b, &c, reps);
            /* spot check one element against a double-precision dot product */
            double ref = 0;
            for (uint32_t k = 0; k < n; k++)
                ref += (double)ha[7 * n + k] * hb[(size_t)k * n + 5];
            double got = ((float *)c.map)[7 * n + 5];
            printf("n=%u kernel=%s: %.2f GFLOP/s (check %.6g vs %.6g)\n", n, names[sh], gf, got,
                   ref);
            if (gf > best_gpu)
                best_gpu = gf;
        }
        double blas = 0;
#ifdef CWT_HAVE_OPENBLAS
        float *hc = malloc(bytes);
        if (hc) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0f, ha,
                        (int)n, hb, (int)n, 0.0f, hc, (int)n);
            double t0 = cwt_monotonic();
            for (int i = 0; i < reps; i++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0f,
                            ha, (int)n, hb, (int)n, 0.0f, hc, (int)n);
            blas = 2.0 * n * n * (double)n * reps / (cwt_monotonic() - t0) / 1e9;
            free(hc);
        }
        printf("n=%u openblas sgemm: %.2f GFLOP/s\n", n, blas);
#endif
        printf("| %u | %.2f | %.2f | %.3f |\n", n, best_gpu, blas, blas > 0 ? best_gpu / blas : 0);
        eng_buf_free(d, &a);
        eng_buf_free(d, &b);
        eng_buf_free(d, &c);
    }
    eng_device_close(d);
    return 0;
}
