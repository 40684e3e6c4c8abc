/*
 * test_cpu_ops.c - every op of the CPU backend (cpu_model.c: oneDNN primitives and plain C
 * loops), forward and backward, against the plain C references of refs.h on fresh random
 * inputs, and every backward against central finite differences of the double reference
 * forward. Each op runs inside a model of one layer (two for flatten + dense) described by hand
 * and driven through cpu_ops.h, so it runs the very steps a training step runs: the fused ReLU
 * post-op and its mask, oneDNN's blocked activation formats and weight reorders, batch norm's
 * workspace, the residual join, running statistics, dropout masks, the loss and the optimizers.
 * Error bounds: refs.h (fp32 against double references), finite differences against the
 * backend's own gradients within the op's bound.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "common/cwt.h"
#include "engine/cpu_ops.h"
#include "harness.h"
#include "refs.h"

#define TOL_CPU_CE 1e-5 /* glibc's expf / logf are within an ulp: tighter than llvmpipe's */

/* ------------------------------------------------------------------ one-layer models */

static struct eng_model *om_new(struct th *t, uint32_t classes)
{
    struct eng_model *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    m->d = t->d;
    m->spec.classes = classes;
    m->spec.seed = t->seed;
    m->opt = (struct eng_optim_spec){ENG_SGD, 0.9f, 0, 0.0f, 0.9f, 0.999f, 1e-8f};
    m->logits = -1;
    return m;
}

static int om_act(struct eng_model *m, uint32_t c, uint32_t h, uint32_t w, int relu)
{
    assert_true(m->nacts < ENG_MAX_ACTS);
    struct act *a = &m->acts[m->nacts];
    memset(a, 0, sizeof(*a));
    a->c = c;
    a->h = h;
    a->w = w;
    a->relu = relu;
    a->needs_grad = 1; /* the input too: its gradient is what the data-gradient ops compute */
    return (int)m->nacts++;
}

static int om_tensor(struct eng_model *m, enum eng_region r, uint64_t numel)
{
    assert_true(m->nt < ENG_MAX_TENSORS);
    struct mtensor *t = &m->t[m->nt];
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "t%u", m->nt);
    t->kind = r == REG_BUF ? ENG_T_BUFFER : ENG_T_PARAM;
    t->region = r;
    t->ndim = 1;
    t->shape[0] = (uint32_t)numel;
    t->numel = numel;
    t->lr_scale = 1.0f; /* trained at the schedule's rate, as graph.c makes every tensor */
    return (int)m->nt++;
}

/* Appends a layer reading activation in, its output (out) still to be set. */
static struct layer *om_layer(struct eng_model *m, enum ltype type, int in)
{
    assert_true(m->nl < ENG_MAX_LAYERS);
    struct layer *l = &m->layers[m->nl];
    memset(l, 0, sizeof(*l));
    l->t = type;
    l->in = in;
    l->out = l->res = -1;
    l->w = l->b = l->gamma = l->beta = l->rm = l->rv = -1;
    l->salt = m->nl++;
    return l;
}

/* Allocates the backend's state for up to n images; activation 0 is the input, the last
 * layer's output the "logits" whose gradient the test writes. */
static void om_create(struct eng_model *m, uint32_t n)
{
    char err[CWT_ERRLEN];
    m->max_batch = n;
    m->input = 0;
    if (m->nl)
        m->logits = m->layers[m->nl - 1].out;
    int rc = eng_backend_cpu.model_init(m, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "model_init: %s\n", err);
    assert_int_equal(rc, 0);
}

static void om_free(struct eng_model *m)
{
    eng_backend_cpu.model_free(m);
    free(m);
}

/* The activation an op under test reads: the input itself, or (blocked) the output of a 1x1
 * convolution with identity weights, which carries the input unchanged into the format oneDNN
 * chooses for convolution outputs (blocked, e.g. nChw16c with padded channels) as in a real
 * model, and passes the gradient back unchanged. Call om_identity after om_create. */
static int om_input(struct eng_model *m, uint32_t c, uint32_t h, uint32_t w, int blocked)
{
    int x = om_act(m, c, h, w, 0);
    if (!blocked)
        return x;
    struct layer *l = om_layer(m, L_CONV, x);
    l->k = l->stride = 1;
    l->w = om_tensor(m, REG_PARAM, (uint64_t)c * c);
    l->out = om_act(m, c, h, w, 0);
    return l->out;
}

static void om_identity(struct eng_model *m)
{
    if (m->nl == 0 || m->layers[0].t != L_CONV)
        return;
    uint32_t c = m->acts[0].c;
    float *w = cpu_ops_tensor(m, (uint32_t)m->layers[0].w, REG_PARAM);
    memset(w, 0, (size_t)c * c * sizeof(float));
    for (uint32_t i = 0; i < c; i++)
        w[(size_t)i * c + i] = 1.0f;
}

static void put(struct eng_model *m, int t, enum eng_region r, const float *v, size_t n)
{
    memcpy(cpu_ops_tensor(m, (uint32_t)t, r), v, n * sizeof(float));
}

/* Activation a of the (n, predict) plan to / from NCHW. */
static void act_io(struct eng_model *m, uint32_t n, int predict, int a, int grad, float *v,
                   int write)
{
    assert_int_equal(cpu_ops_act(m, n, predict, a, grad, v, write), 0);
}

/* NCHW floats to CNHW doubles (the references' layout) and back to compare. */
static void to_cnhw(const float *x, double *y, uint32_t n, uint32_t c, size_t hw)
{
    for (uint32_t b = 0; b < n; b++)
        for (uint32_t ch = 0; ch < c; ch++)
            for (size_t j = 0; j < hw; j++)
                y[((size_t)ch * n + b) * hw + j] = x[((size_t)b * c + ch) * hw + j];
}

/* CHECK for an NCHW result against a CNHW reference. */
static void check_nchw(struct th *t, const char *what, const float *got, const double *ref,
                       uint32_t n, uint32_t c, size_t hw, double tol)
{
    size_t len = (size_t)n * c * hw;
    double *g = dalloc(len);
    float *gf = falloc(len);
    to_cnhw(got, g, n, c, hw);
    for (size_t i = 0; i < len; i++)
        gf[i] = (float)g[i];
    CHECK(t, what, gf, ref, len, tol);
    free(g);
    free(gf);
}

/* ------------------------------------------------------------------ convolution, dense */

/* A convolution layer, or (dense) an inner product on a c x k x k input (through a flatten
 * layer when k > 1), which is the convolution with a k x k kernel: forward (training and
 * inference), data, filter and bias gradients, with the fused ReLU and its mask when relu. */
static void conv_case(struct th *t, const uint32_t *g, int dense)
{
    struct eng_conv cv = {g[0], g[1], g[2], g[3], g[4], 0, 0, g[5], g[5], g[6], g[7]};
    int bias = dense || g[8], relu = (int)g[9];
    cv.oh = eng_out_dim(cv.ih, cv.kh, cv.stride, cv.pad);
    cv.ow = eng_out_dim(cv.iw, cv.kw, cv.stride, cv.pad);
    const uint32_t n = cv.n;
    size_t hwi = (size_t)cv.ih * cv.iw, hwo = (size_t)cv.oh * cv.ow;
    size_t nx = cv.cin * n * hwi, ny = cv.cout * n * hwo;
    size_t nw = (size_t)cv.cout * cv.cin * cv.kh * cv.kw;

    struct eng_model *m = om_new(t, 2);
    int x = om_act(m, cv.cin, cv.ih, cv.iw, 0), in = x;
    if (dense && cv.ih > 1) {
        struct layer *f = om_layer(m, L_FLATTEN, x);
        in = f->out = om_act(m, cv.cin * cv.ih * cv.iw, 1, 1, 0);
    }
    struct layer *l = om_layer(m, dense ? L_DENSE : L_CONV, in);
    l->k = cv.kh;
    l->stride = cv.stride;
    l->pad = cv.pad;
    l->relu = relu;
    l->w = om_tensor(m, REG_PARAM, nw);
    l->b = bias ? om_tensor(m, REG_PARAM, cv.cout) : -1;
    l->out = om_act(m, cv.cout, cv.oh, cv.ow, relu);
    om_create(m, n);

    float *xf = falloc(nx), *wf = falloc(nw), *bf = falloc(cv.cout), *dyf = falloc(ny);
    float *y = falloc(ny), *dx = falloc(nx);
    th_fill(t, xf, nx, 1);
    th_fill(t, wf, nw, 1);
    th_fill(t, bf, cv.cout, 1);
    th_fill(t, dyf, ny, 1);
    put(m, l->w, REG_PARAM, wf, nw);
    if (bias)
        put(m, l->b, REG_PARAM, bf, cv.cout);
    act_io(m, n, 0, x, 0, xf, 1);
    assert_int_equal(cpu_ops_forward(m, n, 0), 0);
    act_io(m, n, 0, l->out, 0, y, 0);

    double *xd = dalloc(nx), *wd = dalloc(nw), *dyd = dalloc(ny), *yr = dalloc(ny);
    double *dxr = dalloc(nx), *dwr = dalloc(nw), *dbr = dalloc(cv.cout), *dxc = dalloc(nx);
    to_cnhw(xf, xd, n, cv.cin, hwi);
    to_double(wf, wd, nw);
    to_cnhw(dyf, dyd, n, cv.cout, hwo);
    ref_conv(&cv, xd, wd, yr);
    for (size_t i = 0; i < ny; i++) {
        uint32_t co = (uint32_t)(i / (n * hwo));
        yr[i] += bias ? bf[co] : 0.0;
        if (relu && yr[i] <= 0) {
            yr[i] = 0;
            dyd[i] = 0; /* the ReLU's mask */
        }
        dbr[co] += dyd[i];
    }
    ref_conv_bwd(&cv, xd, wd, dyd, dxr, dwr);
    char what[96];
    snprintf(what, sizeof(what), "cpu %s fwd n%u cin%u %ux%u cout%u k%u s%u p%u",
             dense ? "dense" : "conv", n, cv.cin, cv.ih, cv.iw, cv.cout, cv.kh, cv.stride, cv.pad);
    check_nchw(t, what, y, yr, n, cv.cout, hwo, TOL_GEMM);

    act_io(m, n, 0, l->out, 1, dyf, 1);
    assert_int_equal(cpu_ops_backward(m, n), 0);
    act_io(m, n, 0, x, 1, dx, 0);
    snprintf(what, sizeof(what), "cpu %s data gradient n%u cin%u cout%u k%u s%u",
             dense ? "dense" : "conv", n, cv.cin, cv.cout, cv.kh, cv.stride);
    check_nchw(t, what, dx, dxr, n, cv.cin, hwi, TOL_GEMM);
    snprintf(what, sizeof(what), "cpu %s weight gradient cin%u cout%u k%u s%u",
             dense ? "dense" : "conv", cv.cin, cv.cout, cv.kh, cv.stride);
    CHECK(t, what, cpu_ops_tensor(m, (uint32_t)l->w, REG_GRAD), dwr, nw, TOL_GEMM);
    if (bias)
        CHECK(t, "cpu bias gradient", cpu_ops_tensor(m, (uint32_t)l->b, REG_GRAD), dbr, cv.cout,
              TOL_GEMM);
    /* the backend's gradients against finite differences of the reference (linear without the
     * ReLU; with it, the mask makes the reference comparison above the check) */
    if (!relu) {
        struct conv_ctx cc = {cv, wd, xd, 0};
        to_cnhw(dx, dxc, n, cv.cin, hwi);
        fd_check_tol(t, "cpu conv dx vs finite differences", conv_f, &cc, xd, nx, ny, dyd, dxc,
                     1e-4, TOL_GEMM);
        double *dwc = dalloc(nw);
        to_double(cpu_ops_tensor(m, (uint32_t)l->w, REG_GRAD), dwc, nw);
        cc.wrt_w = 1;
        fd_check_tol(t, "cpu conv dw vs finite differences", conv_f, &cc, wd, nw, ny, dyd, dwc,
                     1e-4, TOL_GEMM);
        free(dwc);
    }
    /* inference: its own plan (forward_inference primitives) */
    act_io(m, n, 1, x, 0, xf, 1);
    assert_int_equal(cpu_ops_forward(m, n, 1), 0);
    memset(y, 0, ny * sizeof(float));
    act_io(m, n, 1, l->out, 0, y, 0);
    check_nchw(t, "cpu conv / dense inference", y, yr, n, cv.cout, hwo, TOL_GEMM);

    om_free(m);
    free(xf);
    free(wf);
    free(bf);
    free(dyf);
    free(y);
    free(dx);
    free(xd);
    free(wd);
    free(dyd);
    free(yr);
    free(dxr);
    free(dwr);
    free(dbr);
    free(dxc);
}

static void test_conv(void **state)
{
    /* n cin ih iw cout k stride pad bias relu: the shapes of cnn-small and the ResNets (3x3
     * stride 1 and 2, 1x1 stride 2 shortcuts, the 7x7 stride 2 stem), channel counts that are
     * and are not multiples of oneDNN's 8 and 16 blocks */
    static const uint32_t geo[][10] = {
        {1, 1, 1, 1, 1, 1, 1, 0, 0, 0},    {2, 3, 7, 5, 4, 3, 1, 1, 1, 1},
        {3, 2, 9, 9, 5, 3, 2, 1, 0, 0},    {2, 1, 8, 8, 32, 3, 1, 1, 1, 1},
        {2, 32, 6, 6, 64, 3, 1, 1, 1, 1},  {3, 16, 8, 8, 32, 3, 2, 1, 0, 0},
        {3, 16, 8, 8, 32, 1, 2, 0, 0, 0},  {2, 8, 8, 8, 8, 3, 1, 1, 0, 0},
        {2, 3, 11, 11, 8, 7, 2, 3, 0, 0},  {2, 24, 5, 5, 20, 3, 1, 1, 0, 1},
        {4, 8, 16, 16, 16, 3, 1, 1, 0, 0},
    };
    for (size_t i = 0; i < sizeof(geo) / sizeof(geo[0]); i++)
        conv_case(*state, geo[i], 0);
}

static void test_dense(void **state)
{
    /* as test_conv's rows, with a k x k input and kernel (k > 1: after a flatten), stride 1,
     * no padding, bias: cnn-small's fc1 (with ReLU) and fc2, the ResNets' fc after global
     * pooling */
    static const uint32_t geo[][10] = {
        {1, 1, 1, 1, 1, 1, 1, 0, 1, 0},    {8, 64, 4, 4, 128, 4, 1, 0, 1, 1},
        {7, 128, 1, 1, 10, 1, 1, 0, 1, 0}, {5, 32, 1, 1, 3, 1, 1, 0, 1, 1},
        {3, 5, 3, 3, 17, 3, 1, 0, 1, 0},
    };
    for (size_t i = 0; i < sizeof(geo) / sizeof(geo[0]); i++)
        conv_case(*state, geo[i], 1);
}

/* ------------------------------------------------------------------ batch norm */

/* Batch norm over n images of C x H x W; mode 0 plain, 1 fused ReLU (oneDNN's workspace), 2
 * residual join with the input itself (gradients of two paths summed), 3 join and ReLU. */
static void bn_case(struct th *t, uint32_t n, uint32_t C, uint32_t H, uint32_t W, int mode,
                    int blocked)
{
    int relu = mode == 1 || mode == 3, res = mode >= 2;
    size_t hw = (size_t)H * W, len = (size_t)n * C * hw;
    uint32_t L = (uint32_t)(n * hw);
    struct eng_model *m = om_new(t, 2);
    int bi = om_input(m, C, H, W, blocked), x = 0;
    struct layer *l = om_layer(m, L_BN, bi);
    l->relu = relu;
    l->res = res ? bi : -1;
    l->gamma = om_tensor(m, REG_PARAM, C);
    l->beta = om_tensor(m, REG_PARAM, C);
    l->rm = om_tensor(m, REG_BUF, C);
    l->rv = om_tensor(m, REG_BUF, C);
    l->out = om_act(m, C, H, W, relu);
    om_create(m, n);
    om_identity(m);

    float *xf = falloc(len), *dyf = falloc(len), *gf = falloc(C), *bf = falloc(C);
    float *rm = falloc(C), *rv = falloc(C), *y = falloc(len), *dx = falloc(len);
    th_fill(t, xf, len, 2);
    for (size_t i = 0; i < len; i++)
        xf[i] += 0.5f; /* non-zero mean */
    th_fill(t, dyf, len, 1);
    th_fill(t, gf, C, 1);
    th_fill(t, bf, C, 1);
    for (uint32_t c = 0; c < C; c++) {
        rm[c] = 0.1f * (float)c;
        rv[c] = 1.0f + 0.5f * (float)c;
    }
    put(m, l->gamma, REG_PARAM, gf, C);
    put(m, l->beta, REG_PARAM, bf, C);
    put(m, l->rm, REG_BUF, rm, C);
    put(m, l->rv, REG_BUF, rv, C);
    act_io(m, n, 0, x, 0, xf, 1);
    assert_int_equal(cpu_ops_forward(m, n, 0), 0);
    act_io(m, n, 0, l->out, 0, y, 0);

    double *xd = dalloc(len), *dyd = dalloc(len), *gd = dalloc(C), *bd = dalloc(C);
    double *yr = dalloc(len), *mean = dalloc(C), *inv = dalloc(C), *var = dalloc(C);
    double *rmr = dalloc(C), *rvr = dalloc(C), *yev = dalloc(len);
    double *dxr = dalloc(len), *dgr = dalloc(C), *dbr = dalloc(C);
    to_cnhw(xf, xd, n, C, hw);
    to_cnhw(dyf, dyd, n, C, hw);
    to_double(gf, gd, C);
    to_double(bf, bd, C);
    struct bn_ctx c = {C, L, gd, bd};
    ref_bn(&c, xd, yr, mean, inv, var);
    for (uint32_t ch = 0; ch < C; ch++) {
        rmr[ch] = 0.9 * rm[ch] + 0.1 * mean[ch];
        rvr[ch] = 0.9 * rv[ch] + 0.1 * var[ch] * L / (L - 1);
        for (uint32_t j = 0; j < L; j++) {
            size_t i = (size_t)ch * L + j;
            double e = (xd[i] - rmr[ch]) / sqrt(rvr[ch] + 1e-5) * gd[ch] + bd[ch];
            yev[i] = res ? e + xd[i] : e;
            yr[i] += res ? xd[i] : 0;
            if (relu && yr[i] <= 0) {
                yr[i] = 0;
                dyd[i] = 0; /* the ReLU's mask */
            }
            if (relu && yev[i] < 0)
                yev[i] = 0;
        }
    }
    char what[96];
    snprintf(what, sizeof(what), "cpu bn mode %d%s fwd n%u C%u %ux%u", mode,
             blocked ? " blocked" : "", n, C, H, W);
    check_nchw(t, what, y, yr, n, C, hw, TOL_BN);
    CHECK(t, "cpu bn running mean", cpu_ops_tensor(m, (uint32_t)l->rm, REG_BUF), rmr, C, TOL_BN);
    CHECK(t, "cpu bn running var", cpu_ops_tensor(m, (uint32_t)l->rv, REG_BUF), rvr, C, TOL_BN);

    act_io(m, n, 0, l->out, 1, dyf, 1);
    assert_int_equal(cpu_ops_backward(m, n), 0);
    act_io(m, n, 0, x, 1, dx, 0);
    ref_bn_bwd(&c, xd, dyd, mean, inv, dxr, dgr, dbr);
    for (size_t i = 0; i < len && res; i++)
        dxr[i] += dyd[i]; /* the residual path */
    snprintf(what, sizeof(what), "cpu bn mode %d%s dx n%u C%u %ux%u", mode,
             blocked ? " blocked" : "", n, C, H, W);
    check_nchw(t, what, dx, dxr, n, C, hw, TOL_BN);
    CHECK(t, "cpu bn dgamma", cpu_ops_tensor(m, (uint32_t)l->gamma, REG_GRAD), dgr, C, TOL_BN);
    CHECK(t, "cpu bn dbeta", cpu_ops_tensor(m, (uint32_t)l->beta, REG_GRAD), dbr, C, TOL_BN);
    if (mode == 0) {
        double *dxc = dalloc(len);
        to_cnhw(dx, dxc, n, C, hw);
        fd_check_tol(t, "cpu bn dx vs finite differences", bn_f, &c, xd, len, len, dyd, dxc, 1e-4,
                     TOL_BN);
        free(dxc);
    }
    /* inference with the running statistics the training forward left */
    act_io(m, n, 1, x, 0, xf, 1);
    assert_int_equal(cpu_ops_forward(m, n, 1), 0);
    act_io(m, n, 1, l->out, 0, y, 0);
    snprintf(what, sizeof(what), "cpu bn mode %d inference", mode);
    check_nchw(t, what, y, yev, n, C, hw, TOL_BN);

    om_free(m);
    free(xf);
    free(dyf);
    free(gf);
    free(bf);
    free(rm);
    free(rv);
    free(y);
    free(dx);
    free(xd);
    free(dyd);
    free(gd);
    free(bd);
    free(yr);
    free(mean);
    free(inv);
    free(var);
    free(rmr);
    free(rvr);
    free(yev);
    free(dxr);
    free(dgr);
    free(dbr);
}

static void test_bn(void **state)
{
    /* n C H W: channel counts off and on oneDNN's blocks, the 4x4 stage of a 16x16 ResNet */
    static const uint32_t shapes[][4] = {{2, 3, 3, 3}, {4, 16, 4, 4}, {3, 20, 5, 7}, {8, 8, 8, 8}};
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
        for (int mode = 0; mode < 8; mode++)
            bn_case(*state, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], mode % 4,
                    mode / 4);
}

/* ------------------------------------------------------------------ pooling */

static void test_pool(void **state)
{
    struct th *t = *state;
    /* n C ih iw k stride pad; k == 0: global average. cnn-small's 2x2/2, the ImageNet stem's
     * 3x3/2 pad 1, odd sizes, the ResNet head */
    static const uint32_t geo[][7] = {{1, 1, 1, 1, 1, 1, 0}, {2, 32, 8, 8, 2, 2, 0},
                                      {3, 5, 9, 7, 3, 2, 1}, {2, 16, 7, 7, 3, 2, 1},
                                      {2, 3, 5, 5, 2, 2, 0}, {4, 20, 4, 4, 0, 1, 0},
                                      {3, 7, 5, 3, 0, 1, 0}};
    const size_t ngeo = sizeof(geo) / sizeof(geo[0]);
    for (size_t run = 0; run < 2 * ngeo; run++) {
        size_t gi = run % ngeo;
        int blocked = run >= ngeo; /* input in a convolution's output format (om_input) */
        const uint32_t *g = geo[gi];
        uint32_t n = g[0], C = g[1];
        int max = g[4] != 0;
        struct pool_ctx c;
        if (max)
            c.p = (struct eng_pool){n * C,
                                    g[2],
                                    g[3],
                                    eng_out_dim(g[2], g[4], g[5], g[6]),
                                    eng_out_dim(g[3], g[4], g[5], g[6]),
                                    g[4],
                                    g[4],
                                    g[5],
                                    g[6]};
        else
            c.p = (struct eng_pool){n * C, g[2], g[3], 1, 1, g[2], g[3], 1, 0};
        c.max = max;
        struct eng_model *m = om_new(t, 2);
        int x = 0, pin = om_input(m, C, g[2], g[3], blocked);
        struct layer *l = om_layer(m, max ? L_MAXPOOL : L_GAP, pin);
        l->k = g[4];
        l->stride = g[5];
        l->pad = g[6];
        l->out = om_act(m, C, c.p.oh, c.p.ow, 0);
        om_create(m, n);
        om_identity(m);
        /* NCHW planes are the references' planes (n * C of them, in another order) */
        size_t nx = (size_t)c.p.planes * c.p.ih * c.p.iw, ny = (size_t)c.p.planes * c.p.oh * c.p.ow;
        float *xf = falloc(nx), *dyf = falloc(ny), *y = falloc(ny), *dx = falloc(nx);
        double *xd = dalloc(nx), *dyd = dalloc(ny), *yr = dalloc(ny), *dxr = dalloc(nx);
        double *dxc = dalloc(nx);
        uint32_t *arg = calloc(ny, sizeof(uint32_t));
        assert_non_null(arg);
        th_fill(t, xf, nx, 1);
        th_fill(t, dyf, ny, 1);
        to_double(xf, xd, nx);
        to_double(dyf, dyd, ny);
        ref_pool(&c, xd, yr, arg);
        ref_pool_bwd(&c, dyd, arg, dxr);
        act_io(m, n, 0, x, 0, xf, 1);
        assert_int_equal(cpu_ops_forward(m, n, 0), 0);
        act_io(m, n, 0, l->out, 0, y, 0);
        char what[64];
        snprintf(what, sizeof(what), "cpu %s fwd geo%zu%s", max ? "maxpool" : "gap", gi,
                 blocked ? " blocked" : "");
        CHECK(t, what, y, yr, ny, TOL_EXACT);
        act_io(m, n, 0, l->out, 1, dyf, 1);
        assert_int_equal(cpu_ops_backward(m, n), 0);
        act_io(m, n, 0, x, 1, dx, 0);
        snprintf(what, sizeof(what), "cpu %s bwd geo%zu%s", max ? "maxpool" : "gap", gi,
                 blocked ? " blocked" : "");
        CHECK(t, what, dx, dxr, nx, TOL_EXACT);
        /* a tiny step for max pooling, which must not cross a tie between inputs */
        to_double(dx, dxc, nx);
        fd_check_tol(t, max ? "cpu maxpool vs finite differences" : "cpu gap vs finite differences",
                     pool_f, &c, xd, nx, ny, dyd, dxc, max ? 1e-8 : 1e-4, TOL_FD);
        act_io(m, n, 1, x, 0, xf, 1);
        assert_int_equal(cpu_ops_forward(m, n, 1), 0);
        act_io(m, n, 1, l->out, 0, y, 0);
        CHECK(t, "cpu pool inference", y, yr, ny, TOL_EXACT);
        om_free(m);
        free(xf);
        free(dyf);
        free(y);
        free(dx);
        free(xd);
        free(dyd);
        free(yr);
        free(dxr);
        free(dxc);
        free(arg);
    }
}

/* ------------------------------------------------------------------ dropout */

/* Dropout on [n][F]: the kept elements are those of the Vulkan backend's mask function at
 * index f * n + i (so both backends drop the same units), scaled by 1 / (1 - p); the gradient
 * takes the same mask; inference is the identity. */
static void test_dropout(void **state)
{
    struct th *t = *state;
    const uint32_t n = 16, F = 100, step = 3;
    const float ps[3] = {0.0f, 0.3f, 0.5f};
    for (int pi = 0; pi < 3; pi++) {
        float p = ps[pi], scale = 1.0f / (1.0f - p);
        struct eng_model *m = om_new(t, 2);
        int x = om_act(m, F, 1, 1, 0);
        struct layer *l = om_layer(m, L_DROPOUT, x);
        l->p = p;
        l->out = om_act(m, F, 1, 1, 0);
        om_create(m, n);
        m->step = step;
        size_t len = (size_t)n * F;
        float *xf = falloc(len), *dyf = falloc(len), *y = falloc(len), *dx = falloc(len);
        th_fill(t, xf, len, 1);
        th_fill(t, dyf, len, 1);
        act_io(m, n, 0, x, 0, xf, 1);
        assert_int_equal(cpu_ops_forward(m, n, 0), 0);
        act_io(m, n, 0, l->out, 0, y, 0);
        act_io(m, n, 0, l->out, 1, dyf, 1);
        assert_int_equal(cpu_ops_backward(m, n), 0);
        act_io(m, n, 0, x, 1, dx, 0);
        size_t kept = 0;
        uint32_t lo = (uint32_t)t->seed, hi = (uint32_t)(t->seed >> 32);
        for (uint32_t i = 0; i < n; i++)
            for (uint32_t f = 0; f < F; f++) {
                size_t j = (size_t)i * F + f;
                int keep = eng_dropout_keep(lo, hi, step, l->salt, f * n + i, p);
                kept += (size_t)keep;
                if (y[j] != (keep ? xf[j] * scale : 0.0f) ||
                    dx[j] != (keep ? dyf[j] * scale : 0.0f)) {
                    fprintf(stderr, "cpu dropout p %.1f [%u][%u]: y %g dx %g (seed 0x%llx)\n",
                            (double)p, i, f, (double)y[j], (double)dx[j],
                            (unsigned long long)t->seed);
                    fail();
                }
            }
        /* 1600 draws: the kept fraction is within 0.06 of 1 - p far beyond 4 sigma */
        assert_true(fabs((double)kept / (double)len - (1.0 - p)) < 0.06);
        act_io(m, n, 1, x, 0, xf, 1);
        assert_int_equal(cpu_ops_forward(m, n, 1), 0);
        act_io(m, n, 1, l->out, 0, y, 0);
        assert_memory_equal(y, xf, len * sizeof(float));
        om_free(m);
        free(xf);
        free(dyf);
        free(y);
        free(dx);
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
            size_t len = (size_t)K * N;
            struct eng_model *m = om_new(t, K);
            om_act(m, K, 1, 1, 0);
            om_create(m, N);
            float *z = falloc(len), *cw = falloc(K), *dz = falloc(len);
            uint32_t *y = calloc(N, sizeof(uint32_t));
            assert_non_null(y);
            th_fill(t, z, len, 3);
            for (uint32_t k = 0; k < K; k++)
                cw[k] = weighted ? 0.25f + (float)eng_rng_uniform(&t->rng) * 2 : 1.0f;
            for (uint32_t i = 0; i < N; i++)
                y[i] = (uint32_t)(eng_rng_next(&t->rng) % K);
            float loss;
            uint32_t correct;
            cpu_ops_loss(m, N, y, weighted ? cw : NULL, z, dz, &loss, &correct);
            /* the references take logits [K][N]; the backend's are [N][K] */
            double *zd = dalloc(len), *cwd = dalloc(K), *dzr = dalloc(len), *probs = dalloc(len);
            double *dzc = dalloc(len), lref = 0, one = 1;
            to_cnhw(z, zd, N, K, 1);
            to_cnhw(dz, dzc, N, K, 1);
            to_double(cw, cwd, K);
            struct ce_ctx c = {N, K, y, cwd};
            ce_f(zd, &lref, &c);
            uint32_t cref = ref_ce_grad(&c, zd, dzr, probs);
            if (!(fabs(loss - lref) <= TOL_CPU_CE * fmax(fabs(lref), 1.0))) {
                fprintf(stderr, "cpu ce loss: %.9g vs %.9g (seed 0x%llx)\n", (double)loss, lref,
                        (unsigned long long)t->seed);
                fail();
            }
            assert_int_equal(correct, cref);
            check_nchw(t, "cpu ce gradient", dz, dzr, N, K, 1, TOL_CPU_CE);
            fd_check_tol(t, "cpu ce vs finite differences", ce_f, &c, zd, len, 1, &one, dzc, 1e-4,
                         TOL_CPU_CE);
            om_free(m);
            free(z);
            free(cw);
            free(dz);
            free(y);
            free(zd);
            free(cwd);
            free(dzr);
            free(probs);
            free(dzc);
        }
}

/* ------------------------------------------------------------------ optimizers */

/* Three steps of each optimizer over two parameters (the second starts past the first's
 * padding, as every parameter after the first does) against refs.h's double reference. */
static void test_optim(void **state)
{
    struct th *t = *state;
    static const uint32_t sizes[2] = {1000, 37};
    for (int kind = 0; kind < 5; kind++) {
        const struct ref_optim o = ref_optim_hyper(kind);
        struct eng_model *m = om_new(t, 2);
        m->opt = (struct eng_optim_spec){kind < 3 ? ENG_SGD : kind == 3 ? ENG_ADAM : ENG_ADAMW,
                                         o.mom,
                                         kind == 2,
                                         o.wd,
                                         o.b1,
                                         o.b2,
                                         o.eps};
        om_act(m, 1, 1, 1, 0);
        float *w[2], *grads[2];
        double *wr[2], *m1[2], *m2[2];
        for (int p = 0; p < 2; p++) {
            om_tensor(m, REG_PARAM, sizes[p]);
            w[p] = falloc(sizes[p]);
            grads[p] = falloc(3 * (size_t)sizes[p]);
            wr[p] = dalloc(sizes[p]);
            m1[p] = dalloc(sizes[p]);
            m2[p] = dalloc(sizes[p]);
            th_fill(t, w[p], sizes[p], 1);
            th_fill(t, grads[p], 3 * (size_t)sizes[p], 1);
            to_double(w[p], wr[p], sizes[p]);
        }
        om_create(m, 1);
        for (int p = 0; p < 2; p++)
            put(m, p, REG_PARAM, w[p], sizes[p]);
        for (uint32_t step = 1; step <= 3; step++) {
            float lr = 0.05f / (float)step, bc1 = 1.0f, bc2 = 1.0f;
            if (kind >= 3) {
                bc1 = (float)(1.0 / (1.0 - pow(o.b1, step)));
                bc2 = (float)(1.0 / (1.0 - pow(o.b2, step)));
            }
            for (int p = 0; p < 2; p++) {
                const float *gs = grads[p] + (size_t)(step - 1) * sizes[p];
                put(m, p, REG_GRAD, gs, sizes[p]);
                ref_optim_step(kind, &o, step, lr, sizes[p], wr[p], gs, m1[p], m2[p]);
            }
            cpu_ops_optimize(m, lr, bc1, bc2);
        }
        for (int p = 0; p < 2; p++) {
            char what[48];
            snprintf(what, sizeof(what), "cpu optimizer %d parameter %d", kind, p);
            CHECK(t, what, cpu_ops_tensor(m, (uint32_t)p, REG_PARAM), wr[p], sizes[p], TOL_OPT);
            free(w[p]);
            free(grads[p]);
            free(wr[p]);
            free(m1[p]);
            free(m2[p]);
        }
        om_free(m);
    }
}

static int setup(void **state)
{
    static struct th t;
    if (th_open(&t, "cpu", "test_cpu_ops") != 0)
        return -1;
    *state = &t;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv),  cmocka_unit_test(test_dense),   cmocka_unit_test(test_bn),
        cmocka_unit_test(test_pool),  cmocka_unit_test(test_dropout), cmocka_unit_test(test_ce),
        cmocka_unit_test(test_optim),
    };
    return cmocka_run_group_tests(tests, setup, th_close);
}
