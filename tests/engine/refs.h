/*
 * refs.h - the plain C references the engine's op tests share (test_ops.c for the Vulkan
 * backend, test_cpu_ops.c for the CPU backend): double-precision forward and backward passes of
 * every op, central finite differences, error checks. Layouts are the Vulkan backend's (CNHW
 * activations, [K][N] logits); the CPU test transposes at its edges. Include after cmocka.h and
 * harness.h.
 */
#ifndef CWT_TESTS_ENGINE_REFS_H
#define CWT_TESTS_ENGINE_REFS_H

/* Error bounds, relative to the output's largest magnitude (fp32 ops against double
 * references): elementwise, pooling, permutes 1e-6; GEMMs and convolutions 2e-5 (sums of up to
 * a few hundred products); batch norm 1e-4 (normalisation by a variance of fp32 sums);
 * cross-entropy 5e-5 (llvmpipe's exp/log approximations); optimizers 1e-5 after three steps;
 * finite differences (double, h = 1e-4) 1e-5 of the largest gradient. */
#define TOL_EXACT 1e-6
#define TOL_GEMM  2e-5
#define TOL_BN    1e-4
#define TOL_CE    5e-5 /* llvmpipe exp/log: up to ~3e-5 relative on some seeds */
#define TOL_OPT   1e-5
#define TOL_FD    1e-5

#define CHECK(t, what, got, ref, n, tol)                                                           \
    do {                                                                                           \
        double e_ = th_relerr((got), (ref), (n), 1e-6);                                            \
        if (!(e_ <= (tol))) {                                                                      \
            fprintf(stderr, "%s: relative error %.3g > %.1g (seed 0x%llx)\n", (what), e_,          \
                    (double)(tol), (unsigned long long)(t)->seed);                                 \
            fail();                                                                                \
        }                                                                                          \
    } while (0)

static inline double *dalloc(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof(double));
    assert_non_null(p);
    return p;
}

static inline float *falloc(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    assert_non_null(p);
    return p;
}

/* Finite-difference check: grad[i] (analytic, from the reference backward with upstream
 * gradient r) against (L(x + h e_i) - L(x - h e_i)) / 2h where L(x) = sum f(x) * r. */
typedef void (*fwd_fn)(const double *x, double *y, void *ctx);

/* Step h = hrel * max(1, |x|). Piecewise-linear ops (max pool) take a tiny step so that it
 * does not cross a tie between inputs; smooth ops with high curvature at small variance (batch
 * norm) a smaller one than the default, since the double references leave rounding error far
 * below the truncation error. */
static inline void fd_check_tol(struct th *t, const char *what, fwd_fn f, void *ctx, double *x,
                                size_t nx, size_t ny, const double *r, const double *grad,
                                double hrel, double tol)
{
    double *y = dalloc(ny);
    double gmax = 1e-6, emax = 0;
    for (size_t i = 0; i < nx; i++)
        gmax = fmax(gmax, fabs(grad[i]));
    size_t probes = nx < 24 ? nx : 24;
    for (size_t p = 0; p < probes; p++) {
        size_t i = nx <= 24 ? p : (size_t)(eng_rng_next(&t->rng) % nx);
        double h = hrel * fmax(1.0, fabs(x[i])), keep = x[i], lp = 0, lm = 0;
        x[i] = keep + h;
        f(x, y, ctx);
        for (size_t j = 0; j < ny; j++)
            lp += y[j] * r[j];
        x[i] = keep - h;
        f(x, y, ctx);
        for (size_t j = 0; j < ny; j++)
            lm += y[j] * r[j];
        x[i] = keep;
        emax = fmax(emax, fabs((lp - lm) / (2 * h) - grad[i]));
    }
    free(y);
    if (!(emax / gmax <= tol)) {
        fprintf(stderr, "%s: finite differences disagree, relative %.3g (seed 0x%llx)\n", what,
                emax / gmax, (unsigned long long)t->seed);
        fail();
    }
}

static inline void fd_check_h(struct th *t, const char *what, fwd_fn f, void *ctx, double *x,
                              size_t nx, size_t ny, const double *r, const double *grad,
                              double hrel)
{
    fd_check_tol(t, what, f, ctx, x, nx, ny, r, grad, hrel, TOL_FD);
}

static inline void fd_check(struct th *t, const char *what, fwd_fn f, void *ctx, double *x,
                            size_t nx, size_t ny, const double *r, const double *grad)
{
    fd_check_h(t, what, f, ctx, x, nx, ny, r, grad, 1e-4);
}

static inline void to_double(const float *f, double *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] = f[i];
}

struct conv_ctx {
    struct eng_conv cv;
    const double *w, *x; /* the operand held fixed */
    int wrt_w;
};

static inline size_t xi(const struct eng_conv *c, uint32_t ci, uint32_t b, uint32_t y, uint32_t x)
{
    return (((size_t)ci * c->n + b) * c->ih + y) * c->iw + x;
}

/* Calls tap(ctx, yi, xi, wi) for every (output, input, weight) index triple of convolution c
 * whose input position is inside the image (padding skipped): outputs in [cout][n][oh][ow]
 * order, and per output the taps in (ci, ky, kx) order. */
static inline void ref_conv_taps(const struct eng_conv *c,
                                 void (*tap)(void *ctx, size_t yi, size_t xi, size_t wi), void *ctx)
{
    for (uint32_t co = 0; co < c->cout; co++)
        for (uint32_t b = 0; b < c->n; b++)
            for (uint32_t oy = 0; oy < c->oh; oy++)
                for (uint32_t ox = 0; ox < c->ow; ox++) {
                    size_t yi = (((size_t)co * c->n + b) * c->oh + oy) * c->ow + ox;
                    for (uint32_t ci = 0; ci < c->cin; ci++)
                        for (uint32_t ky = 0; ky < c->kh; ky++)
                            for (uint32_t kx = 0; kx < c->kw; kx++) {
                                int iy = (int)(oy * c->stride + ky) - (int)c->pad;
                                int ix = (int)(ox * c->stride + kx) - (int)c->pad;
                                if (iy < 0 || ix < 0 || iy >= (int)c->ih || ix >= (int)c->iw)
                                    continue;
                                tap(ctx, yi, xi(c, ci, b, (uint32_t)iy, (uint32_t)ix),
                                    ((co * c->cin + ci) * c->kh + ky) * c->kw + kx);
                            }
                }
}

struct conv_io {
    const double *x, *w, *dy;
    double *y, *dx, *dw;
};

static inline void conv_fwd_tap(void *ctx, size_t yi, size_t xj, size_t wi)
{
    struct conv_io *io = ctx;
    io->y[yi] += io->x[xj] * io->w[wi];
}

static inline void conv_bwd_tap(void *ctx, size_t yi, size_t xj, size_t wi)
{
    struct conv_io *io = ctx;
    io->dx[xj] += io->dy[yi] * io->w[wi];
    io->dw[wi] += io->dy[yi] * io->x[xj];
}

static inline void ref_conv(const struct eng_conv *c, const double *x, const double *w, double *y)
{
    struct conv_io io = {.x = x, .w = w, .y = y};
    memset(y, 0, (size_t)c->cout * c->n * c->oh * c->ow * sizeof(double));
    ref_conv_taps(c, conv_fwd_tap, &io);
}

/* Adjoint of ref_conv: dx and dw from dy. */
static inline void ref_conv_bwd(const struct eng_conv *c, const double *x, const double *w,
                                const double *dy, double *dx, double *dw)
{
    struct conv_io io = {.x = x, .w = w, .dy = dy, .dx = dx, .dw = dw};
    memset(dx, 0, (size_t)c->cin * c->n * c->ih * c->iw * sizeof(double));
    memset(dw, 0, (size_t)c->cout * c->cin * c->kh * c->kw * sizeof(double));
    ref_conv_taps(c, conv_bwd_tap, &io);
}

static inline void conv_f(const double *v, double *y, void *ctx)
{
    struct conv_ctx *c = ctx;
    if (c->wrt_w)
        ref_conv(&c->cv, c->x, v, y);
    else
        ref_conv(&c->cv, v, c->w, y);
}

struct dense_ctx {
    uint32_t O, I, N;
    const double *w, *x;
    int wrt_w;
};

static inline void ref_dense(const struct dense_ctx *c, const double *x, const double *w, double *y)
{
    for (uint32_t o = 0; o < c->O; o++)
        for (uint32_t n = 0; n < c->N; n++) {
            double acc = 0;
            for (uint32_t i = 0; i < c->I; i++)
                acc += w[o * c->I + i] * x[i * c->N + n];
            y[o * c->N + n] = acc;
        }
}

static inline void dense_f(const double *v, double *y, void *ctx)
{
    struct dense_ctx *c = ctx;
    ref_dense(c, c->wrt_w ? c->x : v, c->wrt_w ? v : c->w, y);
}

struct pool_ctx {
    struct eng_pool p;
    int max;
};

static inline void ref_pool(const struct pool_ctx *c, const double *x, double *y, uint32_t *arg)
{
    const struct eng_pool *p = &c->p;
    for (uint32_t pl = 0; pl < p->planes; pl++)
        for (uint32_t oy = 0; oy < p->oh; oy++)
            for (uint32_t ox = 0; ox < p->ow; ox++) {
                double best = -INFINITY, s = 0;
                uint32_t bi = 0;
                for (uint32_t ky = 0; ky < p->kh; ky++)
                    for (uint32_t kx = 0; kx < p->kw; kx++) {
                        int iy = (int)(oy * p->stride + ky) - (int)p->pad;
                        int ix = (int)(ox * p->stride + kx) - (int)p->pad;
                        if (iy < 0 || ix < 0 || iy >= (int)p->ih || ix >= (int)p->iw)
                            continue;
                        uint32_t pos = (uint32_t)iy * p->iw + (uint32_t)ix;
                        double v = x[(size_t)pl * p->ih * p->iw + pos];
                        s += v;
                        if (v > best) {
                            best = v;
                            bi = pos;
                        }
                    }
                size_t o = ((size_t)pl * p->oh + oy) * p->ow + ox;
                y[o] = c->max ? best : s / (p->kh * p->kw);
                if (arg)
                    arg[o] = bi;
            }
}

static inline void pool_f(const double *x, double *y, void *ctx)
{
    ref_pool(ctx, x, y, NULL);
}

struct bn_ctx {
    uint32_t C, L;
    const double *gamma, *beta;
};

static inline void ref_bn(const struct bn_ctx *c, const double *x, double *y, double *mean,
                          double *inv, double *var)
{
    for (uint32_t ch = 0; ch < c->C; ch++) {
        const double *xc = x + (size_t)ch * c->L;
        double m = 0, v = 0;
        for (uint32_t j = 0; j < c->L; j++)
            m += xc[j];
        m /= c->L;
        for (uint32_t j = 0; j < c->L; j++)
            v += (xc[j] - m) * (xc[j] - m);
        v /= c->L;
        double is = 1.0 / sqrt(v + 1e-5);
        for (uint32_t j = 0; j < c->L; j++)
            y[(size_t)ch * c->L + j] = (xc[j] - m) * is * c->gamma[ch] + c->beta[ch];
        if (mean)
            mean[ch] = m;
        if (inv)
            inv[ch] = is;
        if (var)
            var[ch] = v;
    }
}

static inline void bn_f(const double *x, double *y, void *ctx)
{
    ref_bn(ctx, x, y, NULL, NULL, NULL);
}

struct ce_ctx {
    uint32_t N, K;
    const uint32_t *y;
    const double *cw;
};

/* mean weighted cross-entropy of z[K][N]; single output */
static inline void ce_f(const double *z, double *out, void *ctx)
{
    const struct ce_ctx *c = ctx;
    double l = 0, ws = 0;
    for (uint32_t n = 0; n < c->N; n++) {
        double mx = -INFINITY, s = 0;
        for (uint32_t k = 0; k < c->K; k++)
            mx = fmax(mx, z[k * c->N + n]);
        for (uint32_t k = 0; k < c->K; k++)
            s += exp(z[k * c->N + n] - mx);
        double w = c->cw[c->y[n]];
        l += w * (log(s) + mx - z[c->y[n] * c->N + n]);
        ws += w;
    }
    out[0] = l / ws;
}

/* Adjoint of ref_pool: dx from dy (max: to the argmax ref_pool returned; average: spread over
 * the window, padding counted as ref_pool counts it). dx is zeroed first. */
static inline void ref_pool_bwd(const struct pool_ctx *c, const double *dy, const uint32_t *arg,
                                double *dx)
{
    const struct eng_pool *p = &c->p;
    memset(dx, 0, (size_t)p->planes * p->ih * p->iw * sizeof(double));
    size_t ny = (size_t)p->planes * p->oh * p->ow;
    for (size_t o = 0; o < ny; o++) {
        size_t pl = o / ((size_t)p->oh * p->ow);
        if (c->max) {
            dx[pl * p->ih * p->iw + arg[o]] += dy[o];
            continue;
        }
        size_t r0 = o % ((size_t)p->oh * p->ow);
        uint32_t oy = (uint32_t)(r0 / p->ow), ox = (uint32_t)(r0 % p->ow);
        for (uint32_t ky = 0; ky < p->kh; ky++)
            for (uint32_t kx = 0; kx < p->kw; kx++) {
                int iy = (int)(oy * p->stride + ky) - (int)p->pad;
                int ix = (int)(ox * p->stride + kx) - (int)p->pad;
                if (iy >= 0 && ix >= 0 && iy < (int)p->ih && ix < (int)p->iw)
                    dx[pl * p->ih * p->iw + (size_t)iy * p->iw + (size_t)ix] +=
                        dy[o] / (p->kh * p->kw);
            }
    }
}

/* Batch norm backward (training mode, batch statistics mean / inv of ref_bn): dx, dgamma,
 * dbeta from dy over [C][L]. */
static inline void ref_bn_bwd(const struct bn_ctx *c, const double *x, const double *dy,
                              const double *mean, const double *inv, double *dx, double *dg,
                              double *db)
{
    uint32_t L = c->L;
    for (uint32_t ch = 0; ch < c->C; ch++) {
        double sg = 0, sb = 0;
        for (uint32_t j = 0; j < L; j++) {
            size_t i = (size_t)ch * L + j;
            sb += dy[i];
            sg += dy[i] * (x[i] - mean[ch]) * inv[ch];
        }
        dg[ch] = sg;
        db[ch] = sb;
        for (uint32_t j = 0; j < L; j++) {
            size_t i = (size_t)ch * L + j;
            double xh = (x[i] - mean[ch]) * inv[ch];
            dx[i] = c->gamma[ch] * inv[ch] / L * (L * dy[i] - sb - xh * sg);
        }
    }
}

/* Gradient of ce_f's mean weighted loss, dz[K][N], with the softmax probs[N][K] and the number
 * of samples whose largest logit (first on ties) is the label. */
static inline uint32_t ref_ce_grad(const struct ce_ctx *c, const double *z, double *dz,
                                   double *probs)
{
    uint32_t N = c->N, K = c->K, correct = 0;
    double ws = 0;
    for (uint32_t n = 0; n < N; n++)
        ws += c->cw[c->y[n]];
    for (uint32_t n = 0; n < N; n++) {
        double mx = -INFINITY, sum = 0;
        uint32_t am = 0;
        for (uint32_t k = 0; k < K; k++)
            if (z[k * N + n] > mx) {
                mx = z[k * N + n];
                am = k;
            }
        correct += am == c->y[n];
        for (uint32_t k = 0; k < K; k++)
            sum += exp(z[k * N + n] - mx);
        for (uint32_t k = 0; k < K; k++) {
            double p = exp(z[k * N + n] - mx) / sum;
            probs[n * K + k] = p;
            dz[k * N + n] = c->cw[c->y[n]] * (p - (k == c->y[n])) / ws;
        }
    }
    return correct;
}

/* The optimizers of optim.comp in double: kind 0 SGD, 1 SGD with momentum and weight decay, 2
 * Nesterov, 3 Adam (decay as L2), 4 AdamW; with the hyperparameters ref_optim_hyper gives. One
 * step (number step, from 1) over n weights w with gradients g and state m1, m2. */
struct ref_optim {
    float mom, wd, b1, b2, eps;
};

static inline struct ref_optim ref_optim_hyper(int kind)
{
    struct ref_optim o = {kind == 0 ? 0.0f : 0.9f, kind == 0 ? 0.0f : 0.01f, 0.9f, 0.999f, 1e-8f};
    return o;
}

static inline void ref_optim_step(int kind, const struct ref_optim *o, uint32_t step, double lr,
                                  size_t n, double *w, const float *g, double *m1, double *m2)
{
    for (size_t i = 0; i < n; i++) {
        double gr = g[i];
        if (kind < 3) {
            gr += o->wd * w[i];
            if (o->mom != 0) {
                m1[i] = o->mom * m1[i] + gr;
                gr = kind == 2 ? gr + o->mom * m1[i] : m1[i];
            }
            w[i] -= lr * gr;
        } else {
            if (kind == 4)
                w[i] *= 1.0 - lr * o->wd;
            else
                gr += o->wd * w[i];
            m1[i] = o->b1 * m1[i] + (1 - o->b1) * gr;
            m2[i] = o->b2 * m2[i] + (1 - o->b2) * gr * gr;
            double mh = m1[i] / (1 - pow(o->b1, step)), vh = m2[i] / (1 - pow(o->b2, step));
            w[i] -= lr * mh / (sqrt(vh) + o->eps);
        }
    }
}

#endif
