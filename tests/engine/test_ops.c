/*
 * test_ops.c - every Vulkan engine op, forward and backward, against a plain C reference on
 * fresh random inputs, and every reference backward against central finite differences of the
 * reference forward (references and error bounds: refs.h). Runs on the Vulkan device
 * eng_device_open("vulkan") picks (lavapipe without a GPU); the CPU backend's ops are checked
 * against the same references in test_cpu_ops.c. GEMM-based ops run with every kernel shape the
 * device supports.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "harness.h"
#include "refs.h"

static const struct eng_tref NOBUF = {VK_NULL_HANDLE, 0, 0};

#define RUN(t, stmt)                                                                               \
    do {                                                                                           \
        struct eng_rec r_;                                                                         \
        char e_[CWT_ERRLEN];                                                                       \
        assert_int_equal(eng_rec_init((t)->d, &r_, e_, sizeof(e_)), 0);                            \
        assert_int_equal(eng_rec_begin(&r_, e_, sizeof(e_)), 0);                                   \
        struct eng_rec *r = &r_;                                                                   \
        stmt;                                                                                      \
        int rc_ = eng_rec_run(&r_, e_, sizeof(e_));                                                \
        if (rc_ != 0)                                                                              \
            fprintf(stderr, "run failed: %s\n", e_);                                               \
        assert_int_equal(rc_, 0);                                                                  \
        eng_rec_free(&r_);                                                                         \
    } while (0)

/* ------------------------------------------------------------------ GEMM */

static void test_gemm(void **state)
{
    struct th *t = *state;
    const enum eng_gemm_shape shape0 = t->d->gemm_shape;
    const int cpu0 = t->d->cpu_kernels;
    /* M N K, extra row stride of A (sam = K + pad when A is not transposed): shapes that are
     * and are not multiples of the vec4 / 8x64 tiles of gemm_cpu (NN, NT, TN, scalar, k tails) */
    static const uint32_t shapes[][4] = {
        {1, 1, 1, 0},
        {7, 13, 5, 0},
        {65, 70, 33, 0},
        {130, 3, 200, 0},
        {8, 64, 64, 0},
        {10, 72, 12, 0},
        {17, 130, 20, 0},
        {9, 68, 13, 3},
        {3, 200, 6, 2},
        {12, 40, 7, 0},
        /* more k than an invocation may loop over on llvmpipe (ENG_CPU_LOOP_MAX): in parts */
        {3, 9, 70001, 0}};
    /* shapes 0-2: gemm.comp kernels; 3: the CPU-device kernel gemm_cpu.comp */
    for (int shape = 0; shape < 4; shape++) {
        if (shape == ENG_GEMM_SG && t->d->info.subgroup_size != 8)
            continue;
        t->d->cpu_kernels = shape == 3;
        if (shape < 3)
            t->d->gemm_shape = (enum eng_gemm_shape)shape;
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++) {
                    uint32_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                    uint32_t lda = ta ? M : K + shapes[s][3];
                    /* epilogue flags: every combination of bias, ReLU and mask, and on the CPU
                     * kernel (the only one with flag 8) about a third accumulating into C
                     * instead of masking (the two share the epilogue's texel binding) */
                    uint32_t flags = (uint32_t)((s + ta + tb) % 8);
                    if (shape == 3 && (s + ta) % 3 == 0)
                        flags = (flags & ~(uint32_t)ENG_EPI_MASK) | ENG_EPI_ACC;
                    /* K in parts: on CPU devices (the mask, used with short K only, and the
                     * parts' sums share the epilogue's binding); the GPU kernels loop over all
                     * of K, past llvmpipe's bound */
                    if (K > ENG_CPU_LOOP_MAX) {
                        if (shape < 3)
                            continue;
                        flags &= ~(uint32_t)ENG_EPI_MASK;
                    }
                    float *a = falloc((size_t)(ta ? K : M) * lda), *b = falloc((size_t)K * N);
                    float *bias = falloc(M), *mask = falloc((size_t)M * N);
                    th_fill(t, a, (size_t)(ta ? K : M) * lda, 1);
                    th_fill(t, b, (size_t)K * N, 1);
                    th_fill(t, bias, M, 1);
                    th_fill(t, mask, (size_t)M * N, 1);
                    struct eng_gemm g = {M,          N, K, ta ? 1 : lda, ta ? lda : 1, tb ? 1 : N,
                                         tb ? K : 1, N, 1, flags};
                    struct eng_tref A = th_buf(t, a, (size_t)(ta ? K : M) * lda),
                                    B = th_buf(t, b, (size_t)K * N);
                    float *cinit = falloc((size_t)M * N);
                    if (flags & ENG_EPI_ACC)
                        th_fill(t, cinit, (size_t)M * N, 1);
                    struct eng_tref C = th_buf(t, cinit, (size_t)M * N), BI = th_buf(t, bias, M);
                    struct eng_tref MK = th_buf(t, mask, (size_t)M * N);
                    RUN(t, op_gemm(r, &g, A, B, C, BI, MK));
                    double *ref = dalloc((size_t)M * N);
                    /* error scale: the largest sum of |terms| of an output (a float sum's
                     * error is bounded by that, not by the sum itself, which can cancel: a
                     * 1x1x1 product plus bias near 0 failed 2e-5 against |ref|) */
                    double scale = 1e-6;
                    for (uint32_t m = 0; m < M; m++)
                        for (uint32_t n = 0; n < N; n++) {
                            double acc = 0, absacc = 0;
                            for (uint32_t k = 0; k < K; k++) {
                                double term =
                                    (double)a[m * g.sam + k * g.sak] * b[k * g.sbk + n * g.sbn];
                                acc += term;
                                absacc += fabs(term);
                            }
                            /* accumulation into C first, then bias, ReLU, mask */
                            if (flags & ENG_EPI_ACC) {
                                acc += cinit[m * N + n];
                                absacc += fabs(cinit[m * N + n]);
                            }
                            if (flags & ENG_EPI_BIAS) {
                                acc += bias[m];
                                absacc += fabs(bias[m]);
                            }
                            if (absacc > scale)
                                scale = absacc;
                            if (flags & ENG_EPI_RELU)
                                acc = acc > 0 ? acc : 0;
                            if ((flags & ENG_EPI_MASK) && !(mask[m * N + n] > 0))
                                acc = 0;
                            ref[m * N + n] = acc;
                        }
                    char what[96];
                    snprintf(what, sizeof(what), "gemm shape%d %ux%ux%u ta%d tb%d flags%u", shape,
                             M, N, K, ta, tb, flags);
                    double e = th_relerr(th_map(t, C), ref, (size_t)M * N, scale);
                    if (!(e <= TOL_GEMM)) {
                        fprintf(stderr, "%s: error %.3g of the terms' scale > %.1g (seed 0x%llx)\n",
                                what, e, TOL_GEMM, (unsigned long long)t->seed);
                        fail();
                    }
                    free(a);
                    free(b);
                    free(bias);
                    free(mask);
                    free(cinit);
                    free(ref);
                    th_free_bufs(t);
                }
    }
    t->d->gemm_shape = shape0; /* the device's own choice, for the tests that follow */
    t->d->cpu_kernels = cpu0;
}

/* ------------------------------------------------------------------ convolution */

static void test_conv(void **state)
{
    struct th *t = *state;
    const enum eng_gemm_shape shape0 = t->d->gemm_shape;
    const int cpu0 = t->d->cpu_kernels, gather0 = t->d->cpu_conv_gather;
    const int shift0 = t->d->cpu_dw_shift, lanes0 = t->d->cpu_dw_lanes;
    /* n cin ih iw cout k stride pad */
    static const uint32_t geo[][8] = {
        {1, 1, 1, 1, 1, 1, 1, 0},
        {2, 3, 7, 5, 4, 3, 1, 1},
        {3, 2, 9, 9, 5, 3, 2, 1},
        {1, 5, 6, 6, 3, 1, 2, 0},
        {4, 1, 12, 12, 9, 3, 1, 1},
        {2, 4, 8, 8, 70, 3, 1, 1},
        {1, 3, 11, 11, 2, 7, 2, 3},
        {4, 4, 8, 8, 16, 3, 1, 1},
        {4, 8, 8, 8, 12, 3, 2, 1},
        {4, 8, 8, 8, 16, 1, 2, 0},
        {3, 2, 7, 7, 8, 3, 1, 1},
        {2, 3, 8, 12, 6, 5, 1, 2},
        {2, 6, 4, 4, 5, 1, 1, 0},
        {2, 2, 6, 10, 3, 3, 1, 0},
        {2, 3, 6, 6, 5, 3, 1, 1},
        {1, 2, 7, 6, 3, 3, 1, 1},
        {2, 2, 10, 10, 4, 5, 1, 2},
        /* filter gradients computed transposed (dw^T; cnn-small's conv1 and conv2 shapes) */
        {3, 1, 6, 6, 32, 3, 1, 1},
        {2, 32, 5, 5, 64, 3, 1, 1},
        {2, 1, 8, 8, 32, 3, 1, 1},
        /* and one with vec4 stores of dw (cin*kh*kw a multiple of 8) */
        {2, 8, 6, 6, 8, 3, 1, 1},
        /* stride-2 data gradients by stride phase (3x3 pad 1, odd height; 1x1) */
        {2, 8, 8, 8, 16, 3, 2, 1},
        {3, 8, 9, 8, 8, 3, 2, 1},
        {3, 16, 7, 12, 4, 1, 2, 0},
        /* stride-2 im2col of vec4s (im2col4s2) at every shift: rows of 17, no padding */
        {2, 3, 9, 17, 4, 3, 2, 0},
        /* a 7-wide kernel at stride 1 (seven shifted copies of the frames) */
        {2, 2, 9, 12, 3, 7, 1, 3},
        /* 3x3 stride-1 convolutions read as texel windows (CONV_WIN): rows of 16 (tiles
         * across rows and images), rows of 24 (a right edge inside a tile), odd heights */
        {3, 8, 16, 16, 12, 3, 1, 1},
        {2, 4, 5, 24, 20, 3, 1, 1},
        /* rows of other lengths over the flattened pixels (CONV_FLAT): a lane's 8 pixels span
         * rows and images */
        {4, 4, 7, 6, 8, 3, 1, 1},
        {2, 8, 14, 14, 12, 3, 1, 1},
        /* and a flattened filter gradient in two chunks (planes of 66024 pixels) */
        {2, 1, 262, 252, 2, 3, 1, 1},
        /* stride 2 as texel windows (3x3 and 1x1 forward), their data gradients' 2- and
         * 1-wide stride phases too; rows of 24 outputs from 48 inputs, an odd phase height */
        {2, 8, 16, 16, 8, 3, 2, 1},
        {3, 8, 19, 48, 8, 3, 2, 1},
        {2, 8, 16, 16, 8, 1, 2, 0},
        /* images so large that a filter-gradient invocation could not loop over four of them
         * within llvmpipe's loop bound (ENG_CPU_LOOP_MAX): chunks of images */
        {4, 1, 256, 256, 2, 3, 1, 1},
        /* and a stride-2 filter gradient with the lanes along the pixels in two chunks */
        {2, 1, 512, 512, 2, 3, 2, 1},
    };
    for (size_t gi = 0; gi < sizeof(geo) / sizeof(geo[0]); gi++) {
        const uint32_t *g = geo[gi];
        struct eng_conv cv = {g[0], g[1], g[2], g[3], g[4], 0, 0, g[5], g[5], g[6], g[7]};
        cv.oh = eng_out_dim(cv.ih, cv.kh, cv.stride, cv.pad);
        cv.ow = eng_out_dim(cv.iw, cv.kw, cv.stride, cv.pad);
        size_t nx = (size_t)cv.cin * cv.n * cv.ih * cv.iw,
               ny = (size_t)cv.cout * cv.n * cv.oh * cv.ow;
        size_t nw = (size_t)cv.cout * cv.cin * cv.kh * cv.kw;
        float *x = falloc(nx), *w = falloc(nw), *bias = falloc(cv.cout), *dy = falloc(ny);
        th_fill(t, x, nx, 1);
        th_fill(t, w, nw, 1);
        th_fill(t, bias, cv.cout, 1);
        th_fill(t, dy, ny, 1);
        double *xd = dalloc(nx), *wd = dalloc(nw), *dyd = dalloc(ny), *y = dalloc(ny);
        double *dx = dalloc(nx), *dw = dalloc(nw);
        to_double(x, xd, nx);
        to_double(w, wd, nw);
        to_double(dy, dyd, ny);
        ref_conv(&cv, xd, wd, y);
        ref_conv_bwd(&cv, xd, wd, dyd, dx, dw);
        /* the reference backward against finite differences of the reference forward */
        struct conv_ctx cc = {cv, wd, xd, 0};
        fd_check(t, "conv ref dx", conv_f, &cc, xd, nx, ny, dyd, dx);
        cc.wrt_w = 1;
        fd_check(t, "conv ref dw", conv_f, &cc, wd, nw, ny, dyd, dw);
        /* shapes 0-2: implicit-GEMM kernels; 3: CPU path (im2col + gemm_cpu) with scratch for
         * the whole batch; 4: CPU path with scratch for one image (chunked); 5: CPU path where
         * convolutions read their input as texel windows (CONV_WIN) or gather it in the GEMM
         * (GEMM_IMPL), 3x3 filter gradients run with the lanes along the pixels (GEMM_DWL) and
         * other stride-1 ones from shifted frames (GEMM_DW), each where the shape allows it,
         * im2col for the rest; 6: as 5 with scratch for one image, per-column gathers and
         * frames; 7: scratch for the batch, texel windows, filter gradients read x directly
         * (DW_X) where the shape allows it, else from frames */
        for (int shape = 0; shape < 8; shape++) {
            if (shape == ENG_GEMM_SG && t->d->info.subgroup_size != 8)
                continue;
            /* the GPU kernels' filter gradient loops over whole images in one invocation: past
             * llvmpipe's loop bound (ENG_CPU_LOOP_MAX) they are for GPUs only */
            if (shape < 3 && cv.oh * cv.ow >= ENG_CPU_LOOP_MAX / 2)
                continue;
            t->d->cpu_kernels = shape >= 3;
            /* 6: per-column gathers only; 5, 7: texel windows where the shape allows */
            t->d->cpu_conv_gather = shape == 6 ? 2 : shape >= 5;
            /* 2: frames wherever the stride allows; 3: x read directly, else frames */
            t->d->cpu_dw_shift = shape == 7 ? 3 : shape >= 5 ? 2 : 0;
            /* 5: 3x3 filter gradients with the lanes along the pixels where the shape allows
             * it; 6: from frames; 7: from x */
            t->d->cpu_dw_lanes = shape == 5;
            if (shape < 3)
                t->d->gemm_shape = (enum eng_gemm_shape)shape;
            struct eng_conv one = cv;
            one.n = 1;
            uint64_t colb = eng_conv_col_bytes(t->d, shape == 4 || shape == 6 ? &one : &cv);
            struct eng_tref COL = th_buf(t, NULL, colb / 4);
            struct eng_tref X = th_buf(t, x, nx), W = th_buf(t, w, nw),
                            B = th_buf(t, bias, cv.cout);
            struct eng_tref Y = th_buf(t, NULL, ny), DY = th_buf(t, dy, ny);
            struct eng_tref WT = th_buf(t, NULL, nw), DX = th_buf(t, NULL, nx);
            struct eng_tref DXM = th_buf(t, NULL, nx), DW = th_buf(t, NULL, nw);
            uint64_t sc = eng_conv_filt_scratch(t->d, &cv);
            struct eng_tref S = th_buf(t, NULL, sc);
            if (sc == 0)
                S.bytes = 0;
            RUN(t, {
                if (shape >= 3)
                    r->col = COL;
                op_conv_fwd(r, &cv, X, W, B, Y, ENG_EPI_BIAS | ENG_EPI_RELU);
                op_conv_wt(r, &cv, W, WT);
                op_conv_bwd_data(r, &cv, DY, WT, DX, NOBUF, 0);
                op_conv_bwd_data(r, &cv, DY, WT, DXM, X, ENG_EPI_MASK);
                op_conv_bwd_filter(r, &cv, DY, X, DW, S);
            });
            double *yr = dalloc(ny), *dxm = dalloc(nx);
            for (size_t i = 0; i < ny; i++) {
                double v = y[i] + bias[i / ((size_t)cv.n * cv.oh * cv.ow)];
                yr[i] = v > 0 ? v : 0;
            }
            for (size_t i = 0; i < nx; i++)
                dxm[i] = x[i] > 0 ? dx[i] : 0;
            char what[96];
            snprintf(what, sizeof(what), "conv fwd geo%zu shape%d", gi, shape);
            CHECK(t, what, th_map(t, Y), yr, ny, TOL_GEMM);
            snprintf(what, sizeof(what), "conv bwd data geo%zu shape%d", gi, shape);
            CHECK(t, what, th_map(t, DX), dx, nx, TOL_GEMM);
            snprintf(what, sizeof(what), "conv bwd data masked geo%zu shape%d", gi, shape);
            CHECK(t, what, th_map(t, DXM), dxm, nx, TOL_GEMM);
            snprintf(what, sizeof(what), "conv bwd filter geo%zu shape%d", gi, shape);
            CHECK(t, what, th_map(t, DW), dw, nw, TOL_GEMM);
            free(yr);
            free(dxm);
            th_free_bufs(t);
        }
        free(x);
        free(w);
        free(bias);
        free(dy);
        free(xd);
        free(wd);
        free(dyd);
        free(y);
        free(dx);
        free(dw);
    }
    t->d->gemm_shape = shape0; /* the device's own choice, for the tests that follow */
    t->d->cpu_kernels = cpu0;
    t->d->cpu_conv_gather = gather0;
    t->d->cpu_dw_shift = shift0;
    t->d->cpu_dw_lanes = lanes0;
}

/* ------------------------------------------------------------------ dense (as GEMMs) */

/* The dense layer's three GEMMs exactly as model.c records them. */
static void test_dense(void **state)
{
    struct th *t = *state;
    static const uint32_t shapes[][3] = {{1, 1, 1}, {10, 128, 64}, {3, 37, 5}};
    for (size_t s = 0; s < 3; s++) {
        uint32_t O = shapes[s][0], I = shapes[s][1], N = shapes[s][2];
        float *x = falloc((size_t)I * N), *w = falloc((size_t)O * I), *dy = falloc((size_t)O * N);
        th_fill(t, x, (size_t)I * N, 1);
        th_fill(t, w, (size_t)O * I, 1);
        th_fill(t, dy, (size_t)O * N, 1);
        double *xd = dalloc((size_t)I * N), *wd = dalloc((size_t)O * I),
               *dyd = dalloc((size_t)O * N);
        to_double(x, xd, (size_t)I * N);
        to_double(w, wd, (size_t)O * I);
        to_double(dy, dyd, (size_t)O * N);
        double *y = dalloc((size_t)O * N), *dx = dalloc((size_t)I * N), *dw = dalloc((size_t)O * I);
        double *db = dalloc(O);
        struct dense_ctx c = {O, I, N, wd, xd, 0};
        ref_dense(&c, xd, wd, y);
        for (uint32_t o = 0; o < O; o++)
            for (uint32_t n = 0; n < N; n++) {
                db[o] += dyd[o * N + n];
                for (uint32_t i = 0; i < I; i++) {
                    dx[i * N + n] += wd[o * I + i] * dyd[o * N + n];
                    dw[o * I + i] += dyd[o * N + n] * xd[i * N + n];
                }
            }
        fd_check(t, "dense ref dx", dense_f, &c, xd, (size_t)I * N, (size_t)O * N, dyd, dx);
        c.wrt_w = 1;
        fd_check(t, "dense ref dw", dense_f, &c, wd, (size_t)O * I, (size_t)O * N, dyd, dw);
        struct eng_tref X = th_buf(t, x, (size_t)I * N), W = th_buf(t, w, (size_t)O * I);
        struct eng_tref DY = th_buf(t, dy, (size_t)O * N), Y = th_buf(t, NULL, (size_t)O * N);
        struct eng_tref DX = th_buf(t, NULL, (size_t)I * N), DW = th_buf(t, NULL, (size_t)O * I);
        struct eng_tref DB = th_buf(t, NULL, O);
        struct eng_gemm gf = {O, N, I, I, 1, N, 1, N, 1, 0};
        struct eng_gemm gw = {O, I, N, N, 1, 1, N, I, 1, 0};
        struct eng_gemm gx = {I, N, O, 1, I, N, 1, N, 1, 0};
        RUN(t, {
            op_gemm(r, &gf, W, X, Y, NOBUF, NOBUF);
            op_gemm(r, &gw, DY, X, DW, NOBUF, NOBUF);
            op_gemm(r, &gx, W, DY, DX, NOBUF, NOBUF);
            op_rowsum(r, DY, DB, O, N, N, 1, 1, 0);
        });
        CHECK(t, "dense fwd", th_map(t, Y), y, (size_t)O * N, TOL_GEMM);
        CHECK(t, "dense dw", th_map(t, DW), dw, (size_t)O * I, TOL_GEMM);
        CHECK(t, "dense dx", th_map(t, DX), dx, (size_t)I * N, TOL_GEMM);
        CHECK(t, "dense db", th_map(t, DB), db, O, TOL_GEMM);
        th_free_bufs(t);
        free(x);
        free(w);
        free(dy);
        free(xd);
        free(wd);
        free(dyd);
        free(y);
        free(dx);
        free(dw);
        free(db);
    }
}

/* ------------------------------------------------------------------ pooling */

static void test_pool(void **state)
{
    struct th *t = *state;
    const int cpu0 = t->d->cpu_kernels;
    /* planes ih iw k stride pad; k == 0: global */
    /* 2x2 at stride 2: iw % 4 == 0 runs the two-window kernels on CPU devices (28, 8), other
     * even sizes the one-window ones (14) */
    static const uint32_t geo[][6] = {{1, 1, 1, 1, 1, 0},
                                      {6, 28, 28, 2, 2, 0},
                                      {3, 7, 9, 3, 2, 1},
                                      {5, 5, 5, 2, 2, 0},
                                      {4, 6, 5, 0, 1, 0},
                                      {2, 9, 9, 3, 1, 1},
                                      {3, 4, 8, 2, 2, 0},
                                      {2, 14, 14, 2, 2, 0},
                                      /* global, planes of whole vec4s (avgpool_bwd_global4) */
                                      {5, 8, 6, 0, 1, 0}};
    for (size_t gi = 0; gi < sizeof(geo) / sizeof(geo[0]); gi++)
        for (int max = 0; max < 2; max++) {
            const uint32_t *g = geo[gi];
            struct pool_ctx c;
            if (g[3] == 0)
                c.p = (struct eng_pool){g[0], g[1], g[2], 1, 1, g[1], g[2], 1, 0};
            else
                c.p = (struct eng_pool){g[0],
                                        g[1],
                                        g[2],
                                        eng_out_dim(g[1], g[3], g[4], g[5]),
                                        eng_out_dim(g[2], g[3], g[4], g[5]),
                                        g[3],
                                        g[3],
                                        g[4],
                                        g[5]};
            c.max = max;
            size_t nx = (size_t)c.p.planes * c.p.ih * c.p.iw,
                   ny = (size_t)c.p.planes * c.p.oh * c.p.ow;
            float *x = falloc(nx), *dy = falloc(ny);
            th_fill(t, x, nx, 1);
            th_fill(t, dy, ny, 1);
            double *xd = dalloc(nx), *dyd = dalloc(ny), *y = dalloc(ny), *dx = dalloc(nx);
            double *dxm = dalloc(nx);
            uint32_t *arg = calloc(ny, sizeof(uint32_t));
            assert_non_null(arg);
            to_double(x, xd, nx);
            to_double(dy, dyd, ny);
            ref_pool(&c, xd, y, arg);
            ref_pool_bwd(&c, dyd, arg, dx);
            for (size_t i = 0; i < nx; i++)
                dxm[i] = x[i] > 0 ? dx[i] : 0;
            fd_check_h(t, max ? "maxpool ref" : "avgpool ref", pool_f, &c, xd, nx, ny, dyd, dx,
                       max ? 1e-8 : 1e-4);
            struct eng_tref X = th_buf(t, x, nx), Y = th_buf(t, NULL, ny), A = th_buf(t, NULL, ny);
            struct eng_tref DY = th_buf(t, dy, ny), DX = th_buf(t, NULL, nx);
            struct eng_tref DXM = th_buf(t, NULL, nx);
            /* cpu 0: storage-buffer kernels; cpu 1: the CPU devices' texel kernels (max) */
            for (int cpu = 0; cpu < 2; cpu++) {
                t->d->cpu_kernels = cpu;
                th_clear(t, (struct eng_tref[]){Y, A, DX, DXM}, 4);
                RUN(t, {
                    if (max) {
                        op_maxpool_fwd(r, &c.p, X, Y, A);
                        op_maxpool_bwd(r, &c.p, DY, A, X, DX, 0);
                        op_maxpool_bwd(r, &c.p, DY, A, X, DXM, 1);
                    } else {
                        op_avgpool_fwd(r, &c.p, X, Y);
                        op_avgpool_bwd(r, &c.p, DY, DX);
                    }
                });
                char what[64];
                snprintf(what, sizeof(what), "%spool fwd geo%zu cpu%d", max ? "max" : "avg", gi,
                         cpu);
                CHECK(t, what, th_map(t, Y), y, ny, TOL_EXACT);
                snprintf(what, sizeof(what), "%spool bwd geo%zu cpu%d", max ? "max" : "avg", gi,
                         cpu);
                CHECK(t, what, th_map(t, DX), dx, nx, TOL_EXACT);
                if (max)
                    CHECK(t, "maxpool bwd relu mask", th_map(t, DXM), dxm, nx, TOL_EXACT);
            }
            t->d->cpu_kernels = cpu0;
            th_free_bufs(t);
            free(x);
            free(dy);
            free(xd);
            free(dyd);
            free(y);
            free(dx);
            free(dxm);
            free(arg);
        }
}

/* ------------------------------------------------------------------ batch norm */

static void test_bn(void **state)
{
    struct th *t = *state;
    const int cpu0 = t->d->cpu_kernels;
    /* L % 4 == 0: the vec4 variants of apply and backward on CPU devices */
    static const uint32_t shapes[][2] = {{1, 2}, {3, 5}, {8, 130}, {2, 1000}, {3, 4100}};
    for (size_t s = 0; s < 5; s++) {
        uint32_t C = shapes[s][0], L = shapes[s][1];
        size_t n = (size_t)C * L;
        float *x = falloc(n), *dy = falloc(n), *res = falloc(n), *g = falloc(C), *b = falloc(C);
        float *rm = falloc(C), *rv = falloc(C);
        th_fill(t, x, n, 2);
        for (size_t i = 0; i < n; i++)
            x[i] += 0.5f; /* non-zero mean */
        /* With two samples per channel the output divides their difference by
         * sqrt(var + eps): two nearly equal samples (var below eps) make fp32's rounding of
         * x - mean, at the scale of |x|, a visible part of a small output. Such a channel gets
         * samples 0.5 apart, so the comparison measures the kernels, not the draw. */
        if (L == 2)
            for (uint32_t ch = 0; ch < C; ch++)
                if (fabsf(x[2 * ch] - x[2 * ch + 1]) < 0.5f)
                    x[2 * ch + 1] = x[2 * ch] + (x[2 * ch] < 0.5f ? 0.5f : -0.5f);
        th_fill(t, dy, n, 1);
        th_fill(t, res, n, 1);
        th_fill(t, g, C, 1);
        th_fill(t, b, C, 1);
        for (uint32_t c = 0; c < C; c++) {
            rm[c] = 0.1f * (float)c;
            rv[c] = 1.0f + 0.5f * (float)c;
        }
        double *xd = dalloc(n), *dyd = dalloc(n), *gd = dalloc(C), *bd = dalloc(C);
        double *y = dalloc(n), *mean = dalloc(C), *inv = dalloc(C), *var = dalloc(C);
        to_double(x, xd, n);
        to_double(dy, dyd, n);
        to_double(g, gd, C);
        to_double(b, bd, C);
        struct bn_ctx c = {C, L, gd, bd};
        ref_bn(&c, xd, y, mean, inv, var);
        /* backward reference */
        double *dx = dalloc(n), *dg = dalloc(C), *db = dalloc(C);
        ref_bn_bwd(&c, xd, dyd, mean, inv, dx, dg, db);
        /* With two samples per channel the normalised output is +-1 whatever x (gradient
         * O(eps)), so finite differences would measure only rounding; the device-vs-reference
         * comparison below still covers L = 2. */
        if (L > 2)
            fd_check_h(t, "bn ref dx", bn_f, &c, xd, n, n, dyd, dx, 1e-4);
        /* train: y with residual and relu; running stats updated; eval with running stats */
        double *ytr = dalloc(n), *yev = dalloc(n), *rmr = dalloc(C), *rvr = dalloc(C);
        for (uint32_t ch = 0; ch < C; ch++) {
            rmr[ch] = 0.9 * rm[ch] + 0.1 * mean[ch];
            rvr[ch] = 0.9 * rv[ch] + 0.1 * (L > 1 ? var[ch] * L / (L - 1) : var[ch]);
            for (uint32_t j = 0; j < L; j++) {
                size_t i = (size_t)ch * L + j;
                double v = y[i] + res[i];
                ytr[i] = v > 0 ? v : 0;
                yev[i] = (xd[i] - rmr[ch]) / sqrt(rvr[ch] + 1e-5) * gd[ch] + bd[ch];
            }
        }
        struct eng_tref X = th_buf(t, x, n), DY = th_buf(t, dy, n), R = th_buf(t, res, n);
        struct eng_tref G = th_buf(t, g, C), B = th_buf(t, b, C), RM = th_buf(t, rm, C);
        struct eng_tref RV = th_buf(t, rv, C), SV = th_buf(t, NULL, 2 * C);
        struct eng_tref Y = th_buf(t, NULL, n), YE = th_buf(t, NULL, n), DX = th_buf(t, NULL, n);
        struct eng_tref DG = th_buf(t, NULL, C), DB = th_buf(t, NULL, C);
        /* cpu 0: GPU kernels (channel sums by workgroups of 512 where the device allows);
         * cpu 1: the CPU devices' (64). Running statistics start from the same values. */
        for (int cpu = 0; cpu < 2; cpu++) {
            t->d->cpu_kernels = cpu;
            th_clear(t, (struct eng_tref[]){SV, Y, YE, DX, DG, DB}, 6);
            memcpy(th_map(t, RM), rm, C * sizeof(float));
            memcpy(th_map(t, RV), rv, C * sizeof(float));
            RUN(t, {
                op_bn_stats(r, C, L, 1e-5f, 0.1f, X, SV, RM, RV, 1);
                op_bn_apply(r, C, L, 1e-5f, ENG_BN_RELU | ENG_BN_RESIDUAL, X, SV, RM, RV, G, B, Y,
                            R);
                op_bn_apply(r, C, L, 1e-5f, ENG_BN_EVAL, X, SV, RM, RV, G, B, YE, NOBUF);
                op_bn_bwd(r, C, L, DY, X, SV, G, DG, DB, DX);
            });
            CHECK(t, "bn train fwd", th_map(t, Y), ytr, n, TOL_BN);
            CHECK(t, "bn running mean", th_map(t, RM), rmr, C, TOL_BN);
            CHECK(t, "bn running var", th_map(t, RV), rvr, C, TOL_BN);
            CHECK(t, "bn eval fwd", th_map(t, YE), yev, n, TOL_BN);
            /* dgamma is a sum of terms that can cancel (e.g. L = 2): its error is measured against
             * the largest sum of |terms| of a channel, the scale of the fp32 rounding */
            double gscale = 1e-6;
            for (uint32_t ch = 0; ch < C; ch++) {
                double a = 0;
                for (uint32_t j = 0; j < L; j++) {
                    size_t i = (size_t)ch * L + j;
                    a += fabs(dyd[i] * (xd[i] - mean[ch]) * inv[ch]);
                }
                gscale = fmax(gscale, a);
            }
            const float *dgg = th_map(t, DG);
            for (uint32_t ch = 0; ch < C; ch++)
                if (!(fabs(dgg[ch] - dg[ch]) <= TOL_BN * gscale)) {
                    fprintf(stderr, "bn dgamma[%u]: %.9g vs %.9g (seed 0x%llx)\n", ch,
                            (double)dgg[ch], dg[ch], (unsigned long long)t->seed);
                    fail();
                }
            CHECK(t, "bn dbeta", th_map(t, DB), db, C, TOL_BN);
            /* dx is a difference of terms of size |gamma| * invstd * |dy|; with tiny L it nearly
             * cancels (L = 2 gives dx ~ 0), so the error is measured against the terms' scale. */
            double scale = 1e-6;
            for (uint32_t ch = 0; ch < C; ch++)
                for (uint32_t j = 0; j < L; j++)
                    scale = fmax(scale, fabs(gd[ch]) * inv[ch] * fabs(dyd[(size_t)ch * L + j]));
            double e = th_relerr(th_map(t, DX), dx, n, scale);
            if (!(e <= TOL_BN)) {
                fprintf(stderr, "bn dx C=%u L=%u: relative error %.3g (seed 0x%llx)\n", C, L, e,
                        (unsigned long long)t->seed);
                fail();
            }
        }
        t->d->cpu_kernels = cpu0;
        th_free_bufs(t);
        free(x);
        free(dy);
        free(res);
        free(g);
        free(b);
        free(rm);
        free(rv);
        free(xd);
        free(dyd);
        free(gd);
        free(bd);
        free(y);
        free(mean);
        free(inv);
        free(var);
        free(dx);
        free(dg);
        free(db);
        free(ytr);
        free(yev);
        free(rmr);
        free(rvr);
    }
    /* a channel longer than one invocation may loop over on llvmpipe (ENG_CPU_LOOP_MAX): the
     * recording fails with CWT_ETOOBIG instead of summing part of it */
    if (t->d->is_cpu) {
        const uint32_t L = 2100001; /* odd: the scalar variant, 2 * L / 64 loop iterations */
        struct eng_tref X = th_buf(t, NULL, L), S = th_buf(t, NULL, 2);
        struct eng_tref RM = th_buf(t, NULL, 1), RV = th_buf(t, NULL, 1);
        struct eng_rec r;
        char e[CWT_ERRLEN];
        assert_int_equal(eng_rec_init(t->d, &r, e, sizeof(e)), 0);
        assert_int_equal(eng_rec_begin(&r, e, sizeof(e)), 0);
        op_bn_stats(&r, 1, L, 1e-5f, 0.1f, X, S, RM, RV, 0);
        assert_int_equal(eng_rec_run(&r, e, sizeof(e)), CWT_ETOOBIG);
        assert_non_null(strstr(e, "batch norm"));
        eng_rec_free(&r);
        th_free_bufs(t);
    }
}

/* ------------------------------------------------------------------ loss */

static void test_ce(void **state)
{
    struct th *t = *state;
    static const uint32_t shapes[][2] = {{1, 2}, {7, 3}, {64, 10}, {65, 17}};
    for (size_t s = 0; s < 4; s++)
        for (int weighted = 0; weighted < 2; weighted++) {
            uint32_t N = shapes[s][0], K = shapes[s][1];
            float *z = falloc((size_t)K * N), *cw = falloc(K);
            uint32_t *y = calloc(N, sizeof(uint32_t));
            assert_non_null(y);
            th_fill(t, z, (size_t)K * N, 3);
            for (uint32_t k = 0; k < K; k++)
                cw[k] = weighted ? 0.25f + (float)eng_rng_uniform(&t->rng) * 2 : 1.0f;
            for (uint32_t n = 0; n < N; n++)
                y[n] = (uint32_t)(eng_rng_next(&t->rng) % K);
            double *zd = dalloc((size_t)K * N), *cwd = dalloc(K), loss = 0, one = 1;
            to_double(z, zd, (size_t)K * N);
            to_double(cw, cwd, K);
            struct ce_ctx c = {N, K, y, cwd};
            ce_f(zd, &loss, &c);
            /* analytic gradient and correct count */
            double *dz = dalloc((size_t)K * N), *probs = dalloc((size_t)K * N);
            uint32_t correct = ref_ce_grad(&c, zd, dz, probs);
            fd_check(t, "ce ref", ce_f, &c, zd, (size_t)K * N, 1, &one, dz);
            struct eng_tref Z = th_buf(t, z, (size_t)K * N), Y = th_buf(t, y, N);
            struct eng_tref CW = th_buf(t, cw, K), PS = th_buf(t, NULL, (size_t)N * 3);
            struct eng_tref RES = th_buf(t, NULL, 4), DZ = th_buf(t, NULL, (size_t)K * N);
            struct eng_tref PR = th_buf(t, NULL, (size_t)K * N);
            RUN(t, {
                op_ce(r, N, K, Z, Y, CW, PS, RES, DZ);
                op_softmax(r, N, K, Z, PR);
            });
            const float *res = th_map(t, RES);
            /* the mean loss can be tiny (confident, correct logits): its error is measured
             * relative to max(|loss|, 1), as fp32 exp/log carry an absolute error of ~1e-7 */
            if (!(fabs(res[0] - loss) <= TOL_CE * fmax(fabs(loss), 1.0))) {
                fprintf(stderr, "ce loss: %.9g vs %.9g (seed 0x%llx)\n", (double)res[0], loss,
                        (unsigned long long)t->seed);
                fail();
            }
            assert_int_equal((uint32_t)res[2], correct);
            CHECK(t, "ce grad", th_map(t, DZ), dz, (size_t)K * N, TOL_CE);
            CHECK(t, "softmax", th_map(t, PR), probs, (size_t)K * N, TOL_CE);
            th_free_bufs(t);
            free(z);
            free(cw);
            free(y);
            free(zd);
            free(cwd);
            free(dz);
            free(probs);
        }
}

/* ------------------------------------------------------------------ elementwise, layout */

static void test_elementwise(void **state)
{
    struct th *t = *state;
    /* multiples of 4 run the vec4 variants on CPU devices */
    static const uint32_t counts[] = {1, 63, 1000, 70001, 70004};
    for (size_t s = 0; s < 5; s++) {
        uint32_t n = counts[s];
        float *a = falloc(n), *b = falloc(n);
        th_fill(t, a, n, 1);
        th_fill(t, b, n, 1);
        double *add = dalloc(n), *rb = dalloc(n), *dro = dalloc(n);
        float p = 0.3f;
        struct eng_step_params prm = {0.1f, 7, 1, 1, 0x1234u, 0x9u, n, 0};
        for (uint32_t i = 0; i < n; i++) {
            double v = (double)a[i] + b[i];
            add[i] = v > 0 ? v : 0;
            rb[i] = b[i] > 0 ? a[i] : 0;
            dro[i] = eng_dropout_keep(prm.seed_lo, prm.seed_hi, prm.step, 5, i, p)
                         ? (double)a[i] * (1.0f / (1.0f - p))
                         : 0;
        }
        struct eng_tref A = th_buf(t, a, n), B = th_buf(t, b, n), Y = th_buf(t, NULL, n);
        struct eng_tref RB = th_buf(t, NULL, n), D = th_buf(t, NULL, n);
        struct eng_tref P = th_buf(t, &prm, sizeof(prm) / 4);
        /* cpu 0: storage-buffer kernels; cpu 1: the CPU devices' (vec4 texel variants for
         * whole vec4s) */
        const int cpu0 = t->d->cpu_kernels;
        for (int cpu = 0; cpu < 2; cpu++) {
            t->d->cpu_kernels = cpu;
            th_clear(t, (struct eng_tref[]){Y, RB, D}, 3);
            RUN(t, {
                op_add(r, A, B, Y, n, 1);
                op_relu_bwd(r, A, B, RB, n);
                op_dropout(r, A, D, P, n, p, 5);
            });
            CHECK(t, "add relu", th_map(t, Y), add, n, TOL_EXACT);
            CHECK(t, "relu bwd", th_map(t, RB), rb, n, TOL_EXACT);
            CHECK(t, "dropout", th_map(t, D), dro, n, TOL_EXACT);
        }
        t->d->cpu_kernels = cpu0;
        if (n >= 1000) {
            uint32_t kept = 0;
            for (uint32_t i = 0; i < n; i++)
                kept += dro[i] != 0 || a[i] == 0;
            assert_true(fabs((double)kept / n - (1 - p)) < 0.05);
        }
        th_free_bufs(t);
        free(a);
        free(b);
        free(add);
        free(rb);
        free(dro);
    }
    /* permute: [c][n][hw] -> [c][hw][n] and back; rowsum with accumulate */
    uint32_t C = 3, N = 5, HW = 7, tot = C * N * HW;
    float *x = falloc(tot);
    th_fill(t, x, tot, 1);
    double *fl = dalloc(tot), *back = dalloc(tot), *rs = dalloc(C * N);
    for (uint32_t c = 0; c < C; c++)
        for (uint32_t n = 0; n < N; n++)
            for (uint32_t p = 0; p < HW; p++)
                fl[(c * HW + p) * N + n] = x[(c * N + n) * HW + p];
    to_double(x, back, tot);
    for (uint32_t i = 0; i < C * N; i++) {
        rs[i] = 1.0; /* accumulate onto ones */
        for (uint32_t p = 0; p < HW; p++)
            rs[i] += x[i * HW + p];
    }
    float ones[15];
    for (int i = 0; i < 15; i++)
        ones[i] = 1;
    struct eng_tref X = th_buf(t, x, tot), F = th_buf(t, NULL, tot), Bk = th_buf(t, NULL, tot);
    struct eng_tref RS = th_buf(t, ones, C * N);
    const uint32_t d1[4] = {1, C, HW, N}, s1[4] = {0, N * HW, 1, HW};
    const uint32_t d2[4] = {1, C, N, HW}, s2[4] = {0, HW * N, 1, N};
    /* long rows (bias gradients): 4 rows of 3001, column-strided (sj = 4, si = 1) */
    const uint32_t LR = 4, LL = 70001;
    float *lx = falloc(LR * LL);
    th_fill(t, lx, LR * LL, 1);
    double *lrs = dalloc(LR);
    for (uint32_t i = 0; i < LR; i++)
        for (uint32_t j = 0; j < LL; j++)
            lrs[i] += lx[j * LR + i];
    struct eng_tref LX = th_buf(t, lx, LR * LL), LRS = th_buf(t, NULL, LR);
    /* cpu 0: storage-buffer kernels; cpu 1: the CPU devices' texel kernels */
    const int cpu0 = t->d->cpu_kernels;
    for (int cpu = 0; cpu < 2; cpu++) {
        t->d->cpu_kernels = cpu;
        th_clear(t, (struct eng_tref[]){F, Bk, LRS}, 3);
        memcpy(th_map(t, RS), ones, sizeof(ones));
        RUN(t, {
            op_permute(r, X, F, d1, s1);
            op_permute(r, F, Bk, d2, s2);
            op_rowsum(r, X, RS, C * N, HW, HW, 1, 1, 1);
            op_rowsum(r, LX, LRS, LR, LL, 1, LR, 1, 0);
        });
        CHECK(t, cpu ? "flatten cpu1" : "flatten cpu0", th_map(t, F), fl, tot, TOL_EXACT);
        CHECK(t, cpu ? "unflatten cpu1" : "unflatten cpu0", th_map(t, Bk), back, tot, TOL_EXACT);
        CHECK(t, cpu ? "rowsum cpu1" : "rowsum cpu0", th_map(t, RS), rs, C * N, TOL_EXACT);
        CHECK(t, cpu ? "long rowsum cpu1" : "long rowsum cpu0", th_map(t, LRS), lrs, LR, TOL_GEMM);
    }
    t->d->cpu_kernels = cpu0;
    th_free_bufs(t);
    free(x);
    free(fl);
    free(back);
    free(rs);
    free(lx);
    free(lrs);
}

/* ------------------------------------------------------------------ optimizers */

static void test_optim(void **state)
{
    struct th *t = *state;
    const int cpu0 = t->d->cpu_kernels;
    /* n % 4 == 0 runs the vec4 texel variants on CPU devices (cpu 1); cpu 0 runs the storage-
     * buffer kernels. Both must match the reference and give the same bits. */
    static const uint32_t sizes[] = {1000, 1001};
    for (size_t si = 0; si < 2; si++)
        for (int kind = 0; kind < 5; kind++) {
            const uint32_t n = sizes[si];
            /* 0 SGD, 1 SGD momentum+wd, 2 SGD nesterov, 3 Adam (wd as L2), 4 AdamW */
            const struct ref_optim o = ref_optim_hyper(kind);
            float mom = o.mom, wd = o.wd, b1 = o.b1, b2 = o.b2, eps = o.eps;
            float *w = falloc(n), *w_cpu0 = falloc(n), *grads = falloc(3 * (size_t)n);
            th_fill(t, w, n, 1);
            th_fill(t, grads, 3 * (size_t)n, 1);
            double *wr = dalloc(n), *m1 = dalloc(n), *m2 = dalloc(n);
            to_double(w, wr, n);
            for (uint32_t step = 1; step <= 3; step++)
                ref_optim_step(kind, &o, step, 0.05f / (float)step, n, wr,
                               grads + (size_t)(step - 1) * n, m1, m2);
            for (int cpu = 0; cpu < 2; cpu++) {
                t->d->cpu_kernels = cpu;
                struct eng_tref W = th_buf(t, w, n), G = th_buf(t, NULL, n);
                struct eng_tref S1 = th_buf(t, NULL, n), S2 = th_buf(t, NULL, n);
                struct eng_tref P = th_buf(t, NULL, 8);
                th_clear(t, (struct eng_tref[]){S1, S2}, 2);
                for (uint32_t step = 1; step <= 3; step++) {
                    memcpy(th_map(t, G), grads + (size_t)(step - 1) * n, n * sizeof(float));
                    float lr = 0.05f / (float)step;
                    struct eng_step_params prm = {lr, step, 1, 1, 0, 0, 0, 0};
                    if (kind >= 3) {
                        prm.bc1 = (float)(1.0 / (1.0 - pow(b1, step)));
                        prm.bc2 = (float)(1.0 / (1.0 - pow(b2, step)));
                    }
                    memcpy(th_map(t, P), &prm, sizeof(prm));
                    RUN(t, {
                        if (kind < 3)
                            op_sgd(r, n, mom, wd, kind == 2, W, G, mom != 0 ? S1 : NOBUF, P);
                        else
                            op_adam(r, n, b1, b2, eps, wd, kind == 4, W, G, S1, S2, P);
                    });
                }
                char what[48];
                snprintf(what, sizeof(what), "optimizer %d (n %u, cpu %d)", kind, n, cpu);
                CHECK(t, what, th_map(t, W), wr, n, TOL_OPT);
                if (cpu == 0)
                    memcpy(w_cpu0, th_map(t, W), n * sizeof(float));
                else
                    assert_memory_equal(w_cpu0, th_map(t, W), n * sizeof(float));
                th_free_bufs(t);
            }
            free(w);
            free(w_cpu0);
            free(grads);
            free(wr);
            free(m1);
            free(m2);
        }
    t->d->cpu_kernels = cpu0;
}

static int setup(void **state)
{
    static struct th t;
    if (th_open(&t, "vulkan", "test_ops") != 0)
        return -1;
    *state = &t;
    return 0;
}

/* The generated variant lookups (shaders/cwt_spv.h) return the variant built from those
 * dimension values, named <family>_<keys>, and CWT_SPV_COUNT for a form the family skips or an
 * index out of range. */
static void test_variant_lookup(void **state)
{
    (void)state;
    enum cwt_spv_id id = cwt_spv_gemm(CWT_GEMM_OPERANDS_CONV_FWD, CWT_GEMM_SHAPE_TILE);
    assert_int_not_equal(id, CWT_SPV_COUNT);
    assert_string_equal(cwt_spv_table[id].name, "gemm_conv_fwd_tile");
    id = cwt_spv_gemm_cpu(CWT_GEMM_CPU_KIND_NN, CWT_GEMM_CPU_EPI_RD, CWT_GEMM_CPU_STORE_V);
    assert_int_not_equal(id, CWT_SPV_COUNT);
    assert_string_equal(cwt_spv_table[id].name, "gemm_cpu_nn_rd_v");
    assert_int_equal(
        cwt_spv_gemm_cpu(CWT_GEMM_CPU_KIND_TN, CWT_GEMM_CPU_EPI_WO, CWT_GEMM_CPU_STORE_V),
        CWT_SPV_COUNT);
    assert_int_equal(cwt_spv_gemm_cpu_cw(CWT_GEMM_CPU_CW_WIN_S2K3, CWT_GEMM_CPU_CW_EPI_RD),
                     CWT_SPV_COUNT);
    assert_int_equal(cwt_spv_gemm(-1, CWT_GEMM_SHAPE_REG), CWT_SPV_COUNT);
    assert_int_equal(cwt_spv_optim(CWT_OPTIM_OP_N, CWT_OPTIM_WIDTH_X1), CWT_SPV_COUNT);
    /* every id is reached by exactly one combination of its family */
    int seen[CWT_SPV_COUNT] = {0};
    for (int a = 0; a < CWT_BN_OP_N; a++)
        for (int b = 0; b < CWT_BN_MODE_N; b++) {
            id = cwt_spv_bn(a, b);
            if (id != CWT_SPV_COUNT)
                seen[id]++;
        }
    int n = 0;
    for (int i = 0; i < CWT_SPV_COUNT; i++) {
        assert_true(seen[i] <= 1);
        n += seen[i];
    }
    assert_int_equal(n, 10); /* bn: 4 ops x 3 modes, no wg form of apply and bwd */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_conv),
        cmocka_unit_test(test_dense),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_bn),
        cmocka_unit_test(test_ce),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_optim),
        cmocka_unit_test(test_variant_lookup),
    };
    return cmocka_run_group_tests(tests, setup, th_close);
}
