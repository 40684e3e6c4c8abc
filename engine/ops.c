/*
 * ops.c - recording of single ops: push-constant packing, grid sizes and kernel choice.
 */
#include <math.h>
#include <string.h>

#include "engine/ops.h"

/* Must match the push constant block of shaders/gemm.comp. */
struct gemm_pc {
    uint32_t M, N, K;
    uint32_t sam, sak, sbk, sbn, scm, scn;
    uint32_t kchunk, scz, flags;
    uint32_t L0, L1, L2;
    uint32_t cin, ih, iw, oh, ow, kh, kw, stride, pad, nimg;
};

static const struct eng_tref NOBUF = {VK_NULL_HANDLE, 0, 0};

static uint32_t ceil_div(uint64_t a, uint64_t b)
{
    return (uint32_t)((a + b - 1) / b);
}

/* 1-D element grids larger than 65535 workgroups fold into y (shaders index x + y*gx*64). */
static void grid1d(uint64_t count, uint32_t *gx, uint32_t *gy)
{
    uint32_t groups = ceil_div(count, 64);
    *gx = groups < 65535 ? groups : 65535;
    *gy = groups == 0 ? 0 : ceil_div(groups, *gx);
}

/* Records a gemm.comp kernel: operands is a CWT_GEMM_OPERANDS_* value, the kernel shape the
 * device's (eng_device.gemm_shape). */
static void gemm_dispatch(struct eng_rec *r, int operands, struct gemm_pc *pc, struct eng_tref a,
                          struct eng_tref b, struct eng_tref c, struct eng_tref bias,
                          struct eng_tref mask, uint32_t splits)
{
    struct eng_tref bufs[5] = {a, b, c, bias, mask};
    eng_rec_dispatch(r, cwt_spv_gemm(operands, r->d->gemm_shape), bufs, 5, pc, sizeof(*pc),
                     ceil_div(pc->N, 64), ceil_div(pc->M, 64), splits);
}

/* Must match the push constant block of shaders/gemm_cpu.comp. */
struct gemm_cpu_pc {
    uint32_t M, N, K;
    uint32_t sam, sak, sbk, sbn, scm, scn;
    uint32_t flags, kchunk, scz, ctiles;
    uint32_t a_off, b_off, c_off;
    uint32_t ih, iw, oh, ow, kh, kw, stride, pad, nimg; /* GEMM_IMPL and GEMM_DW only */
    uint32_t bcopy;                                     /* GEMM_DW only */
};

/* Geometry of a GEMM_DW filter gradient (conv_bwd_filter_shift). frames: n images, x frames
 * of ih rows of iw floats, dy as oh rows of ow floats, kh x kw taps (stride, pad unused). */
struct dw_geo {
    struct eng_conv frames;
    uint32_t bcopy; /* floats between the shifted copies of the x frames; with x_direct, the
                       channel stride of x */
    int transposed; /* C = dw^T: A from the copies, B the dy rows (DW_T) */
    int x_direct;   /* B read from x itself, one tap column per workgroup z (DW_X) */
};

/* Loop iterations of one image in a GEMM_DW invocation (gemm_cpu.comp), against llvmpipe's
 * bound (ENG_CPU_LOOP_MAX): per output row its ry vec4 steps, each loop's exit and the row
 * loop itself (DW_X: a second loop over the steps past the row's end), and the image loop. */
static uint64_t dw_image_loops(uint32_t oh, uint32_t ry, int x_direct)
{
    return (uint64_t)oh * (ry + (x_direct ? 3 : 2)) + 1;
}

/* The variant of the gathering convolution cv (A = its weights, k-contiguous rows of K) that
 * reads its input as texel windows (gemm_cpu.comp CONV_WIN), or CWT_SPV_COUNT where none
 * applies: stride 1 or 2 with iw = stride * ow, output rows of a multiple of 8 pixels (each
 * lane's 8 columns in one row, every row start a whole texel), a kernel width and padding it
 * was compiled for (3 with padding 1; at stride 1 also 2 and 1 with padding 0, the stride
 * phases of strided data gradients; at stride 2 also 1x1), the same padding on y, K in whole
 * steps (12 k for 3 taps, else 4), vec4 stores of C; 3x3 stride-1 convolutions with rows of
 * another length over the flattened pixels (CONV_FLAT). Measured on lavapipe: the general
 * path's per-column gathers (a vpgatherdd each) were 12% of a resnet-8 step. Only the 3x3
 * stride-1 windows have a form that reads C or a mask (epi CWT_GEMM_CPU_CW_EPI_RD). */
static enum cwt_spv_id conv_window_variant(const struct eng_device *d, const struct eng_conv *cv,
                                           const struct eng_gemm *g, uint32_t b_off, int epi,
                                           int vstore)
{
    if (d->cpu_conv_gather != 1 || !vstore || cv->iw != cv->stride * cv->ow || g->N % 8 != 0 ||
        b_off % 4 != 0 || g->K % (cv->kw == 3 ? 12 : 4) != 0 || (uint64_t)cv->kh * cv->kw > 32)
        return CWT_SPV_COUNT;
    /* rows of another length: 3x3 stride 1 over the flattened pixels (each channel's plane a
     * whole number of texels) */
    int win = -1;
    if (cv->ow % 8 != 0)
        win = cv->stride == 1 && cv->kh == 3 && cv->kw == 3 && cv->pad == 1 &&
                      ((uint64_t)cv->n * cv->ih * cv->iw) % 4 == 0
                  ? CWT_GEMM_CPU_CW_WIN_FLAT
                  : -1;
    else if (cv->stride == 1 && cv->kw == 3 && cv->pad == 1)
        win = CWT_GEMM_CPU_CW_WIN_S1K3;
    else if (cv->stride == 2 && cv->kw == 3 && cv->pad == 1)
        win = CWT_GEMM_CPU_CW_WIN_S2K3;
    else if (cv->stride == 2 && cv->kw == 1 && cv->pad == 0)
        win = CWT_GEMM_CPU_CW_WIN_S2K1;
    else if (cv->stride == 1 && cv->kw == 2 && cv->pad == 0)
        win = CWT_GEMM_CPU_CW_WIN_S1K2;
    else if (cv->stride == 1 && cv->kw == 1 && cv->pad == 0)
        win = CWT_GEMM_CPU_CW_WIN_S1K1;
    return cwt_spv_gemm_cpu_cw(win, epi); /* CWT_SPV_COUNT for none (win -1 or no such epi) */
}

/* The convolution geometry fields of pc (GEMM_IMPL, GEMM_DW, GEMM_DWL) from cv. */
static void gemm_cpu_pc_geometry(struct gemm_cpu_pc *pc, const struct eng_conv *cv)
{
    pc->ih = cv->ih;
    pc->iw = cv->iw;
    pc->oh = cv->oh;
    pc->ow = cv->ow;
    pc->kh = cv->kh;
    pc->kw = cv->kw;
    pc->stride = cv->stride;
    pc->pad = cv->pad;
    pc->nimg = cv->n;
}

/* Records gemm_cpu over K split into `splits` slices (slice z at C + z*scz). Picks the vec4
 * variant the strides allow (see shaders/gemm_cpu.comp). The column tiles (64 wide) are grouped
 * so that there are about 256 workgroups: enough to balance the CPU threads, few enough that
 * the per-workgroup cost stays small. cv: B gathered from that convolution's input (GEMM_IMPL);
 * dw: B from shifted input frames (GEMM_DW; g's strides of B unused). */
static void gemm_cpu_dispatch(struct eng_rec *r, const struct eng_gemm *g, uint32_t a_off,
                              uint32_t b_off, uint32_t c_off, uint32_t splits, uint32_t scz,
                              struct eng_tref a, struct eng_tref b, struct eng_tref c,
                              struct eng_tref bias, struct eng_tref mask, const struct eng_conv *cv,
                              const struct dw_geo *dw)
{
    const uint32_t kmax = (ENG_CPU_LOOP_MAX - 8) & ~3u;
    if (!cv && !dw && splits <= 1 && g->K > kmax && !(g->flags & ENG_EPI_MASK)) {
        /* more k than an invocation may loop over (ENG_CPU_LOOP_MAX): in parts, each added to
         * the last, bias and ReLU with the last */
        for (uint32_t k0 = 0; k0 < g->K; k0 += kmax) {
            struct eng_gemm part = *g;
            part.K = g->K - k0 < kmax ? g->K - k0 : kmax;
            part.flags = (g->flags & ENG_EPI_ACC) | (k0 ? ENG_EPI_ACC : 0u) |
                         (k0 + part.K == g->K ? g->flags & (ENG_EPI_BIAS | ENG_EPI_RELU) : 0u);
            gemm_cpu_dispatch(r, &part, a_off + k0 * g->sak, b_off + k0 * g->sbk, c_off, 1, 0, a, b,
                              c, bias, mask, NULL, NULL);
        }
        return;
    }
    int aligned = a_off % 4 == 0 && b_off % 4 == 0 && g->sam % 4 == 0 && g->sak == 1;
    /* the _rd variants when the epilogue reads C (accumulate) or a mask: a texel fetch per
     * element that the others leave out (on llvmpipe it ran even when the flags were off) */
    int rd = (g->flags & (ENG_EPI_MASK | ENG_EPI_ACC)) != 0;
    int epi = rd ? CWT_GEMM_CPU_EPI_RD : CWT_GEMM_CPU_EPI_WO;
    int kind = CWT_GEMM_CPU_KIND_ANY;
    int vec4 = 1;
    if (aligned && g->sbn == 1 && g->sbk % 4 == 0)
        kind = CWT_GEMM_CPU_KIND_NN;
    else if (aligned && g->sbk == 1 && g->sbn % 4 == 0)
        kind = CWT_GEMM_CPU_KIND_NT;
    else if (g->sam == 1 && g->sak % 4 == 0 && a_off % 4 == 0 && b_off % 4 == 0 && g->sbn == 1 &&
             g->sbk % 4 == 0)
        kind = CWT_GEMM_CPU_KIND_TN;
    else
        vec4 = 0;
    /* B gathered from the convolution input; A as in NN (conv_gather_ok), or as scalars where
     * its rows are not whole vec4s */
    int sa = cv && (g->sam % 4 != 0 || a_off % 4 != 0);
    if (cv)
        kind = sa ? CWT_GEMM_CPU_KIND_CONV_SA : CWT_GEMM_CPU_KIND_CONV;
    if (dw) { /* A and B as in NT */
        kind = dw->x_direct     ? CWT_GEMM_CPU_KIND_DWX
               : dw->transposed ? CWT_GEMM_CPU_KIND_DWT
                                : CWT_GEMM_CPU_KIND_DW;
        vec4 = 1;
    }
    enum cwt_spv_id id = cwt_spv_gemm_cpu(kind, epi, CWT_GEMM_CPU_STORE_S);
    /* vec4 stores of C where its rows are whole, aligned vec4s and blocks of 8 columns never
     * straddle N (not for TN, whose C is small) */
    int vstore = g->scn == 1 && g->scm % 4 == 0 && c_off % 4 == 0 && g->N % 8 == 0 &&
                 (splits <= 1 || scz % 4 == 0) && kind != CWT_GEMM_CPU_KIND_TN;
    enum cwt_spv_id wid =
        cv && !sa
            ? conv_window_variant(r->d, cv, g, b_off,
                                  rd ? CWT_GEMM_CPU_CW_EPI_RD : CWT_GEMM_CPU_CW_EPI_WO, vstore)
            : CWT_SPV_COUNT;
    int win = wid != CWT_SPV_COUNT;
    enum cwt_spv_id vid = cwt_spv_gemm_cpu(kind, epi, CWT_GEMM_CPU_STORE_V);
    /* the kinds without a vec4-store variant keep their scalar one, and with it r32f views */
    if (vstore && !win && vid == CWT_SPV_COUNT)
        vstore = 0;
    if (vstore)
        id = win ? wid : vid;
    /* tiles of C per workgroup: 8 rows x 64 columns, 16 x 64 for the gathering convolution */
    uint32_t tiles = ceil_div(g->N, 64), gx = ceil_div(g->M, cv ? 16 : 8);
    uint32_t kchunk = splits > 1 ? ceil_div(g->K, splits) : g->K;
    if (vec4 && aligned) /* NN and NT read k in fours */
        kchunk = (kchunk + 3) / 4 * 4;
    splits = kchunk == 0 ? 1 : ceil_div(g->K, kchunk);
    if (dw && dw->x_direct) /* workgroup z: the tap column */
        splits = dw->frames.kw;
    uint64_t others = (uint64_t)gx * splits;
    uint32_t ctiles = others >= 256 ? 1 : ceil_div(tiles, ceil_div(256, others));
    if (ctiles == 0)
        ctiles = 1;
    if (ceil_div(tiles, ctiles) > 65535)
        ctiles = ceil_div(tiles, 65535);
    /* loop iterations per column tile of an invocation (each loop entry one more), against
     * llvmpipe's bound: at most cap tiles per invocation */
    uint64_t tile;
    if (win)
        tile = g->K / (cv->kw == 3 ? 12 : 4) + 2;
    else if (cv)
        tile = 8 * ((uint64_t)cv->kh * (cv->kw + 2) + 2) + (sa ? g->K : g->K / 4) + 2;
    else if (dw)
        tile = dw->frames.n * dw_image_loops(dw->frames.oh, dw->frames.ow / 4, dw->x_direct) + 1;
    else
        tile = (vec4 && aligned ? kchunk / 4 : kchunk) + 2;
    uint64_t cap = tile + 2 > ENG_CPU_LOOP_MAX ? 0 : (ENG_CPU_LOOP_MAX - 1) / (tile + 1);
    if (ctiles > cap)
        ctiles = (uint32_t)cap;
    if (ctiles == 0 || ceil_div(tiles, ctiles) > 65535) {
        if (!r->failed)
            r->failed = cwt_seterr(r->err, sizeof(r->err), CWT_ETOOBIG,
                                   "a %ux%ux%u product is too long for one CPU-device dispatch",
                                   g->M, g->N, g->K);
        return;
    }
    struct gemm_cpu_pc pc = {g->M,   g->N,     g->K,   g->sam, g->sak, g->sbk, g->sbn, g->scm,
                             g->scn, g->flags, kchunk, scz,    ctiles, a_off,  b_off,  c_off};
    const struct eng_conv *geo = dw ? &dw->frames : cv;
    if (geo)
        gemm_cpu_pc_geometry(&pc, geo);
    if (dw)
        pc.bcopy = dw->bcopy;
    /* every texel binding the shader declares gets a view (unused ones: a small valid range) */
    struct eng_tref epi_in = (g->flags & ENG_EPI_ACC) ? c : (g->flags & ENG_EPI_MASK) ? mask : a;
    struct eng_tref bufs[3] = {NOBUF, NOBUF, c};
    struct eng_tref tex[4] = {a, b, (g->flags & ENG_EPI_BIAS) ? bias : a, epi_in};
    /* rgba32f views: A and B for NN/NT/TN and the windowed convolution, A only for the other
     * gathering convolutions; the mask or C for the vec4 stores */
    uint32_t vec4_views = vstore && rd ? 8u : 0u;
    if (cv)
        vec4_views |= sa ? 0u : win ? 3u : 1u;
    else if (vec4)
        vec4_views |= 3u;
    eng_rec_dispatch_tex(r, id, bufs, 3, tex, 4, vec4_views, &pc, sizeof(pc), gx,
                         ceil_div(tiles, ctiles), splits);
}

void op_gemm(struct eng_rec *r, const struct eng_gemm *g, struct eng_tref a, struct eng_tref b,
             struct eng_tref c, struct eng_tref bias, struct eng_tref mask)
{
    if (r->d->cpu_kernels) {
        gemm_cpu_dispatch(r, g, 0, 0, 0, 1, 0, a, b, c, bias, mask, NULL, NULL);
        return;
    }
    struct gemm_pc pc = {
        .M = g->M,
        .N = g->N,
        .K = g->K,
        .sam = g->sam,
        .sak = g->sak,
        .sbk = g->sbk,
        .sbn = g->sbn,
        .scm = g->scm,
        .scn = g->scn,
        .kchunk = g->K,
        .flags = g->flags,
        .L0 = g->K,
        .L1 = 1,
        .L2 = 1,
        .stride = 1,
    };
    gemm_dispatch(r, CWT_GEMM_OPERANDS_PLAIN, &pc, a, b, c, bias, mask, 1);
}

static void conv_pc(const struct eng_conv *cv, struct gemm_pc *pc)
{
    memset(pc, 0, sizeof(*pc));
    pc->cin = cv->cin;
    pc->ih = cv->ih;
    pc->iw = cv->iw;
    pc->oh = cv->oh;
    pc->ow = cv->ow;
    pc->kh = cv->kh;
    pc->kw = cv->kw;
    pc->stride = cv->stride;
    pc->pad = cv->pad;
    pc->nimg = cv->n;
}

/* ---------------------------------------------------- CPU path: explicit im2col + gemm_cpu */

static uint32_t round4(uint32_t x)
{
    return (x + 3u) & ~3u;
}

/* Rounded up to 64 floats: scratch regions that start 256-byte aligned (texel and storage views).
 */
static uint64_t round64(uint64_t x)
{
    return (x + 63) / 64 * 64;
}

/* The next, smaller image count to try for a chunk that did not fit (geometric, ends at 0). */
static uint32_t shrink_chunk(uint32_t nc)
{
    return nc * 3 / 4 < nc - 1 ? nc * 3 / 4 : nc - 1;
}

/* Images per chunk such that rows x round4(images*hw) floats fit the im2col scratch and a texel
 * view; 0 when the CPU path is off or not even one image fits. */
static uint32_t col_chunk(const struct eng_rec *r, uint32_t n, uint32_t rows, uint32_t hw)
{
    if (!r->d->cpu_kernels || r->col.bytes == 0 || rows == 0 || hw == 0)
        return 0;
    uint64_t floats = r->col.bytes / 4;
    if (floats > r->d->max_texel_elements)
        floats = r->d->max_texel_elements;
    uint64_t imgs = floats / rows / hw;
    if (imgs > n)
        imgs = n;
    while (imgs > 0 && (uint64_t)rows * round4((uint32_t)(imgs * hw)) > floats)
        imgs--;
    return (uint32_t)imgs;
}

/* Implicit-kernel path: stride-1 data gradients are forward convolutions of dy with the
 * flipped, transposed kernel and padding k-1-pad (about 2.5x faster than the general gather). */

static int bwd_as_fwd(const struct eng_conv *cv)
{
    return cv->stride == 1 && cv->pad < cv->kh && cv->pad < cv->kw && cv->kh == cv->kw;
}

/* The data-gradient geometry of the stride-1 path. */
static struct eng_conv flipped(const struct eng_conv *cv)
{
    return (struct eng_conv){cv->n,
                             cv->cout,
                             cv->oh,
                             cv->ow,
                             cv->cin,
                             cv->ih,
                             cv->iw,
                             cv->kh,
                             cv->kw,
                             1,
                             cv->kh - 1 - cv->pad};
}

/* Whether the data gradient of cv runs on the CPU path (op_conv_wt must agree). Stride 1 runs
 * as the flipped forward convolution there too: measured faster than dcol = w^T dy + col2im
 * (which strided convolutions use). */
static int cpu_bwd_data(const struct eng_rec *r, const struct eng_conv *cv)
{
    if (bwd_as_fwd(cv)) {
        struct eng_conv f = flipped(cv);
        return col_chunk(r, f.n, f.cin * f.kh * f.kw, f.oh * f.ow) > 0;
    }
    return col_chunk(r, cv->n, cv->cin * cv->kh * cv->kw, cv->oh * cv->ow) > 0;
}

/* Whether the filter gradient of cv is better computed as dw^T = col dy^T than as dw = dy col^T:
 * when that needs fewer 8x64 tiles of C (a first layer's few kk columns filled 9 of 64:
 * cnn-small's conv1 5.4 -> 4.0 ms). */
static int filter_grad_transposed(const struct eng_conv *cv)
{
    uint32_t K = cv->cin * cv->kh * cv->kw;
    return (uint64_t)ceil_div(K, 8) * ceil_div(cv->cout, 64) <
           (uint64_t)ceil_div(cv->cout, 8) * ceil_div(K, 64);
}

/* Whether conv_bwd_filter_shift reads dy as it is (rows of whole vec4s, in one texel view)
 * rather than widened to the frames' rows. */
static int dw_shift_dy_direct(const struct eng_device *d, const struct eng_conv *cv)
{
    return cv->ow % 4 == 0 && (uint64_t)cv->cout * cv->n * cv->oh * cv->ow <= d->max_texel_elements;
}

/* Row length of the zero-padded input frames of conv_bwd_filter_shift (whole vec4s). */
static uint32_t dw_frame_width(const struct eng_conv *cv)
{
    return round4(cv->iw + 2 * cv->pad);
}

/* Frames of conv_bwd_filter_shift for nc images: x zero-padded to fh = ih + 2*pad rows of
 * fw = dw_frame_width floats, in kw copies of *copy floats each (round64: every view starts
 * 256-byte aligned), then, unless dy is read directly, dy widened to rows of fw. Returns the
 * floats of scratch they need. */
static uint64_t dw_shift_floats(const struct eng_device *d, const struct eng_conv *cv, uint32_t nc,
                                uint64_t *copy)
{
    uint64_t fh = cv->ih + 2ull * cv->pad, fw = dw_frame_width(cv);
    *copy = round64((uint64_t)cv->cin * nc * fh * fw);
    return cv->kw * *copy + (dw_shift_dy_direct(d, cv) ? 0 : (uint64_t)cv->cout * nc * cv->oh * fw);
}

/* Whether the filter gradient of cv runs from shifted frames (conv_bwd_filter_shift): stride 1,
 * and cheaper by an estimate from rates measured on lavapipe, per image: the GEMM on im2col at
 * about 24 GFLOP/s, GEMM_DW 1.15x slower per multiply-add and over all its k (with dy widened to
 * frames, their padded columns too: fw / ow times), the scratch written at about 2.5 ns per
 * float (im2col rows or frames). Without the 1.15 the estimate took the frames for cnn-small's
 * conv2, 8% slower there (a whole step about 3% slower). Measured per filter
 * gradient, shift against im2col at batch 64: with dy read directly, 1.5-1.6x at 64x64 (16 ->
 * 16), 1.4-1.5x at 32x32 (32 -> 32), 1.04x at 16x16 (64 -> 64), 1.25-1.3x for a 3-channel
 * first layer at 64x64, about 1.1x for cnn-small's conv1; with dy widened to frames (ow % 4 !=
 * 0), 0.92x at 14x14 (cnn-small's conv2), where the estimate keeps im2col.
 */
static int dw_shift_ok(const struct eng_device *d, const struct eng_conv *cv)
{
    if (!d->cpu_kernels || !d->cpu_dw_shift || cv->stride != 1 || cv->kh * cv->kw < 2)
        return 0;
    if (d->cpu_dw_shift >= 2)
        return 1;
    uint64_t copy, kk = (uint64_t)cv->cin * cv->kh * cv->kw, hw = (uint64_t)cv->oh * cv->ow;
    double macs = (double)cv->cout * kk * hw, fw = dw_frame_width(cv);
    double im2col = macs / 12.0 + 2.5 * (double)(kk * hw);
    double waste = dw_shift_dy_direct(d, cv) ? 1.0 : fw / cv->ow;
    double shift = 1.15 * macs * waste / 12.0 + 2.5 * (double)dw_shift_floats(d, cv, 1, &copy);
    return shift < im2col;
}

/* One axis of a stride-2 data gradient split by stride phase (conv_bwd_data_phase): input
 * positions i = 2a + p take the taps k0, k0 + 2, ... (taps of them, 0 for none), tap t (in
 * descending kernel order, k = k0 + 2*(taps-1-t)) from dy position a - pad + t. */
struct phase_axis {
    uint32_t k0, taps, n; /* n: positions of the phase, ceil((in - p) / 2) */
    int32_t pad;
};

static struct phase_axis phase_axis_of(uint32_t k, uint32_t pad, uint32_t in, uint32_t p)
{
    struct phase_axis a;
    a.k0 = (p + pad) % 2;
    a.taps = a.k0 < k ? (k - 1 - a.k0) / 2 + 1 : 0;
    a.n = (in - p + 1) / 2;
    a.pad = (int32_t)a.taps - 1 - (int32_t)((p + pad - a.k0) / 2);
    return a;
}

/* The two axes of stride phase ph = 2*py + px of cv; whether the phase has taps. */
static int phase_axes(const struct eng_conv *cv, uint32_t ph, struct phase_axis *y,
                      struct phase_axis *x)
{
    *y = phase_axis_of(cv->kh, cv->pad, cv->ih, ph / 2);
    *x = phase_axis_of(cv->kw, cv->pad, cv->iw, ph % 2);
    return y->taps > 0 && x->taps > 0;
}

/* Floats of the phase results for nc images; off[ph] (phase ph = 2*py + px, each start a
 * multiple of 64 floats) is UINT32_MAX for a phase without taps. */
static uint64_t phase_floats(const struct eng_conv *cv, uint32_t nc, uint32_t off[4])
{
    uint64_t at = 0;
    for (uint32_t ph = 0; ph < 4; ph++) {
        struct phase_axis y, x;
        off[ph] = UINT32_MAX;
        if (!phase_axes(cv, ph, &y, &x))
            continue;
        off[ph] = (uint32_t)at;
        at += round64((uint64_t)cv->cin * nc * y.n * x.n);
    }
    return at;
}

/* Whether the data gradient of cv may run by stride phase on a device (see
 * conv_bwd_data_phase): stride 2, square kernel, every phase with taps needs the same padding
 * >= 0 on both axes (3x3 pad 1 and 1x1 pad 0 do), at most 96 input channels (as
 * conv_gather_ok), phase weight blocks 256-byte aligned (cin*cout a multiple of 64), whole
 * vec4 rows of dx, and dy in one texel view. */
static int phase_geometry_ok(const struct eng_device *d, const struct eng_conv *cv)
{
    if (!d->cpu_kernels || !d->cpu_conv_gather || cv->stride != 2 || cv->kh != cv->kw ||
        cv->kh * cv->kw > 32 || cv->cin > 96 || cv->cout % 4 != 0 ||
        (cv->cin * cv->cout) % 64 != 0 || cv->iw % 4 != 0 ||
        (uint64_t)cv->cout * cv->n * cv->oh * cv->ow > d->max_texel_elements)
        return 0;
    int32_t pad = -1;
    for (uint32_t p = 0; p < 2; p++) {
        struct phase_axis a = phase_axis_of(cv->kh, cv->pad, cv->ih, p);
        if (a.taps == 0)
            continue;
        if (a.pad < 0 || (pad >= 0 && a.pad != pad))
            return 0;
        pad = a.pad;
    }
    return pad >= 0;
}

uint64_t eng_conv_col_bytes(const struct eng_device *d, const struct eng_conv *cv)
{
    if (!d->cpu_kernels)
        return 0;
    uint64_t fwd = (uint64_t)cv->cin * cv->kh * cv->kw * round4(cv->n * cv->oh * cv->ow);
    uint64_t bwd = 0, copy;
    if (bwd_as_fwd(cv))
        bwd = (uint64_t)cv->cout * cv->kh * cv->kw * round4(cv->n * cv->ih * cv->iw);
    if (dw_shift_ok(d, cv)) {
        uint64_t sh = dw_shift_floats(d, cv, cv->n, &copy);
        bwd = sh > bwd ? sh : bwd;
    }
    if (phase_geometry_ok(d, cv)) {
        uint32_t off[4];
        uint64_t ph = phase_floats(cv, cv->n, off);
        bwd = ph > bwd ? ph : bwd;
    }
    return (fwd > bwd ? fwd : bwd) * 4;
}

struct im2col_pc {
    uint32_t c, ih, iw, oh, ow, kh, kw, stride, pad, nimg, img0, ncols, ld, flags;
};

/* Records im2col.comp op (CWT_IM2COL_OP_IM2COL, picking its vec4 form where the rows allow, or
 * CWT_IM2COL_OP_COL2IM) for images img0.. of cv. */
static void im2col_dispatch(struct eng_rec *r, int op, const struct eng_conv *cv,
                            struct eng_tref act, struct eng_tref mask, uint32_t img0,
                            uint32_t ncols, uint32_t ld, uint32_t flags)
{
    struct im2col_pc pc = {cv->cin,    cv->ih,  cv->iw, cv->oh, cv->ow, cv->kh, cv->kw,
                           cv->stride, cv->pad, cv->n,  img0,   ncols,  ld,     flags};
    enum cwt_spv_id id = cwt_spv_im2col(op);
    if (op == CWT_IM2COL_OP_IM2COL) {
        /* output rows (or, at stride 1, pairs of them) of whole vec4s: the vec4 variants */
        uint32_t rows = ncols / cv->ow;
        int v4 = cv->stride <= 2 && cv->ow % 4 == 0 && ld % 4 == 0;
        int v4r = cv->stride == 1 && cv->ow % 4 == 2 && rows % 2 == 0 && ld % 4 == 0;
        if (v4)
            id = cwt_spv_im2col(cv->stride == 1 ? CWT_IM2COL_OP_IM2COL4 : CWT_IM2COL_OP_IM2COL4S2);
        else if (v4r)
            id = cwt_spv_im2col(CWT_IM2COL_OP_IM2COL4R);
        struct eng_tref bufs[2] = {NOBUF, r->col};
        eng_rec_dispatch_tex(r, id, bufs, 2, &act, 1, v4 || v4r ? 1u : 0u, &pc, sizeof(pc),
                             ceil_div(v4r ? rows / 2 : rows, 64), cv->cin * cv->kh * cv->kw, 1);
    } else {
        uint32_t cols = ncols / (cv->oh * cv->ow) * cv->ih * cv->iw;
        struct eng_tref bufs[3] = {NOBUF, act, mask};
        eng_rec_dispatch_tex(r, id, bufs, 3, &r->col, 1, 0, &pc, sizeof(pc), ceil_div(cols, 64),
                             cv->cin, 1);
    }
}

static int tex_fits(const struct eng_rec *r, struct eng_tref t);

/* Whether conv_fwd_cpu may gather B from x in the GEMM (GEMM_IMPL) rather than materialise
 * im2col (rows of w as vec4s where K is a multiple of 4, else as scalars, IMPL_SA: a 3-channel
 * 64x64 first layer 27-30 -> 14 ms, cnn-small's conv1 3.4-4.3 -> 3.2-3.8): the taps' validity
 * bits in one uint (kh*kw <= 32), column indices that udiv() divides exactly (< 2^24), both in
 * texel views.
 * And at most 96 output channels: gathering costs the GEMM about 1.2x, while the im2col pass
 * it saves does not grow with cout; measured on lavapipe, gathering won up to 64 channels
 * (about 2x at 16-32, 1.3-1.8x at 64) and lost up to 20% against im2col's best runs at
 * 128-256 (bench/RESULTS.md). */
static int conv_gather_ok(const struct eng_rec *r, const struct eng_conv *cv, struct eng_tref x,
                          struct eng_tref w)
{
    return r->d->cpu_kernels && r->d->cpu_conv_gather && cv->cout <= 96 && cv->kh * cv->kw <= 32 &&
           (uint64_t)cv->n * cv->oh * cv->ow < (1u << 24) && tex_fits(r, x) && tex_fits(r, w);
}

/* y = conv(x, w) (+ epilogue): as one gathering GEMM where conv_gather_ok, else through im2col
 * chunks; 0 when the CPU path does not apply. */
static int conv_fwd_cpu(struct eng_rec *r, const struct eng_conv *cv, struct eng_tref x,
                        struct eng_tref w, struct eng_tref bias, struct eng_tref y,
                        struct eng_tref mask, uint32_t flags)
{
    uint32_t K = cv->cin * cv->kh * cv->kw, hw = cv->oh * cv->ow;
    if (conv_gather_ok(r, cv, x, w)) {
        struct eng_gemm g = {cv->cout, cv->n * hw, K, K, 1, 0, 0, cv->n * hw, 1, flags};
        gemm_cpu_dispatch(r, &g, 0, 0, 0, 1, 0, w, x, y, bias, mask, cv, NULL);
        return 1;
    }
    uint32_t chunk = col_chunk(r, cv->n, K, hw);
    if (chunk == 0)
        return 0;
    for (uint32_t img0 = 0; img0 < cv->n; img0 += chunk) {
        uint32_t nc = cv->n - img0 < chunk ? cv->n - img0 : chunk;
        uint32_t ncols = nc * hw, ld = round4(ncols);
        im2col_dispatch(r, CWT_IM2COL_OP_IM2COL, cv, x, NOBUF, img0, ncols, ld, 0);
        struct eng_gemm g = {cv->cout, ncols, K, K, 1, ld, 1, cv->n * hw, 1, flags};
        gemm_cpu_dispatch(r, &g, 0, 0, img0 * hw, 1, 0, w, r->col, y, bias, mask, NULL, NULL);
    }
    return 1;
}

/* Images per chunk of conv_bwd_data_phase (0: the path does not apply). */
static uint32_t phase_chunk(const struct eng_rec *r, const struct eng_conv *cv)
{
    if (!phase_geometry_ok(r->d, cv))
        return 0;
    uint64_t floats = r->col.bytes / 4;
    if (floats > r->d->max_texel_elements)
        floats = r->d->max_texel_elements;
    uint32_t nc = cv->n, off[4];
    while (nc > 0 &&
           (phase_floats(cv, nc, off) > floats || (uint64_t)nc * cv->ih * cv->iw >= (1u << 24)))
        nc = shrink_chunk(nc);
    return nc;
}

/* Phase weights (op_conv_wt for conv_bwd_data_phase): for each phase with taps, in phase order,
 * a block wt[ci][co][ty][tx] = w[co][ci][ky0 + 2*(Ty-1-ty)][kx0 + 2*(Tx-1-tx)]. The blocks add
 * up to the taps of w, so wt is w's size. */
static void conv_wt_phase(struct eng_rec *r, const struct eng_conv *cv, struct eng_tref w,
                          struct eng_tref wt)
{
    uint64_t at = 0;
    uint32_t kk = cv->kh * cv->kw;
    for (uint32_t ph = 0; ph < 4; ph++) {
        struct phase_axis y, x;
        if (!phase_axes(cv, ph, &y, &x))
            continue;
        uint64_t n = (uint64_t)cv->cin * cv->cout * y.taps * x.taps;
        struct eng_tref blk = {wt.buf, wt.off + at * 4, n * 4};
        const uint32_t d[4] = {cv->cin, cv->cout, y.taps, x.taps};
        const uint32_t s[4] = {kk, cv->cin * kk, (uint32_t)(-2 * (int32_t)cv->kw), (uint32_t)-2};
        op_permute_at(r, w, blk, d, s,
                      (y.k0 + 2 * (y.taps - 1)) * cv->kw + x.k0 + 2 * (x.taps - 1));
        at += n;
    }
}

struct phase2im_pc {
    uint32_t c, ih, iw, nimg, img0, nc;
    uint32_t off[4];
    uint32_t flags;
};

/* Data gradient of a stride-2 convolution by stride phase: the dx positions (2a + py, 2b + px)
 * of phase (py, px) see only the taps ky = ky0 + 2j, kx = kx0 + 2l, each a fixed dy position
 * relative to (a, b), so each phase is a stride-1 convolution of dy with those taps (at most
 * 2x2 for a 3x3 kernel), run as a gathering GEMM (GEMM_IMPL) into the scratch; OP_PHASE2IM then
 * interleaves the phases into dx (fusing the ReLU mask). No dcol matrix (cin*kh*kw rows) and no
 * col2im, whose gathers cost resnet-8 about 12% of a step on lavapipe. */
static int conv_bwd_data_phase(struct eng_rec *r, const struct eng_conv *cv, struct eng_tref dy,
                               struct eng_tref wt, struct eng_tref dx, struct eng_tref mask,
                               uint32_t flags)
{
    uint32_t chunk = phase_chunk(r, cv);
    if (chunk == 0)
        return 0;
    for (uint32_t img0 = 0; img0 < cv->n; img0 += chunk) {
        uint32_t nc = cv->n - img0 < chunk ? cv->n - img0 : chunk, off[4], woff = 0;
        struct phase2im_pc pp = {cv->cin, cv->ih, cv->iw, cv->n, img0, nc, {0}, 0};
        uint64_t total = phase_floats(cv, nc, off);
        struct eng_tref scratch = {r->col.buf, r->col.off, total * 4};
        for (uint32_t ph = 0; ph < 4; ph++) {
            struct phase_axis y, x;
            if (!phase_axes(cv, ph, &y, &x))
                continue;
            /* the phase as a convolution of dy: cout -> cin channels, stride 1; n stays the
             * whole batch (the channel stride of dy), the chunk is b_off and N */
            struct eng_conv pcv = {cv->n, cv->cout, cv->oh, cv->ow, cv->cin,        y.n,
                                   x.n,   y.taps,   x.taps, 1,      (uint32_t)y.pad};
            uint32_t K = cv->cout * y.taps * x.taps, N = nc * y.n * x.n;
            struct eng_gemm g = {cv->cin, N, K, K, 1, 0, 0, N, 1, 0};
            gemm_cpu_dispatch(r, &g, woff, img0 * cv->oh * cv->ow, off[ph], 1, 0, wt, dy, scratch,
                              NOBUF, NOBUF, &pcv, NULL);
            woff += cv->cin * K;
            pp.off[ph] = off[ph];
            pp.flags |= ENG_COL_PHASE0 << ph;
        }
        pp.flags |= (flags & ENG_EPI_MASK) ? ENG_COL_MASK : 0u;
        struct eng_tref bufs[2] = {NOBUF, dx};
        struct eng_tref tex[2] = {scratch, (flags & ENG_EPI_MASK) ? mask : scratch};
        eng_rec_dispatch_tex(r, cwt_spv_im2col(CWT_IM2COL_OP_PHASE2IM), bufs, 2, tex, 2, 2u, &pp,
                             sizeof(pp), ceil_div(cv->ih, 64), cv->cin, nc);
    }
    return 1;
}

/* Strided data gradient: dcol = w^T dy per chunk (wt = w^T, [cin*kh*kw][cout]), then col2im. */
static void conv_bwd_data_cpu(struct eng_rec *r, const struct eng_conv *cv, struct eng_tref dy,
                              struct eng_tref wt, struct eng_tref dx, struct eng_tref mask,
                              uint32_t flags)
{
    uint32_t K = cv->cin * cv->kh * cv->kw, hw = cv->oh * cv->ow;
    uint32_t chunk = col_chunk(r, cv->n, K, hw);
    for (uint32_t img0 = 0; chunk > 0 && img0 < cv->n; img0 += chunk) {
        uint32_t nc = cv->n - img0 < chunk ? cv->n - img0 : chunk;
        uint32_t ncols = nc * hw, ld = round4(ncols);
        struct eng_gemm g = {K, ncols, cv->cout, cv->cout, 1, cv->n * hw, 1, ld, 1, 0};
        gemm_cpu_dispatch(r, &g, 0, img0 * hw, 0, 1, 0, wt, dy, r->col, NOBUF, NOBUF, NULL, NULL);
        im2col_dispatch(r, CWT_IM2COL_OP_COL2IM, cv, dx, mask, img0, ncols, ld,
                        (flags & ENG_EPI_MASK) ? ENG_COL_MASK : 0u);
    }
}

/* Images per chunk when n images run in chunks of at most most (>= 1): as few chunks as that
 * allows, of equal size but the last. */
static uint32_t equal_chunk(uint32_t n, uint32_t most)
{
    return ceil_div(n, ceil_div(n, most));
}

/* Images a GEMM_DW invocation may loop over within ENG_CPU_LOOP_MAX (dw_image_loops; dy's rows,
 * or the frames' when dy is widened to them). */
static uint32_t dw_loop_images(const struct eng_device *d, const struct eng_conv *cv, int x_direct)
{
    uint32_t ry = (dw_shift_dy_direct(d, cv) ? cv->ow : dw_frame_width(cv)) / 4;
    return (uint32_t)((ENG_CPU_LOOP_MAX - 4) / dw_image_loops(cv->oh, ry, x_direct));
}

/* Images per chunk of conv_bwd_filter_shift: its frames fit the scratch and one texel view. */
static uint32_t dw_shift_chunk(const struct eng_rec *r, const struct eng_conv *cv)
{
    uint64_t floats = r->col.bytes / 4, copy;
    uint32_t nc = cv->n;
    while (nc > 0 && (dw_shift_floats(r->d, cv, nc, &copy) > floats ||
                      cv->kw * copy > r->d->max_texel_elements || nc > dw_loop_images(r->d, cv, 0)))
        nc = shrink_chunk(nc);
    return nc;
}

struct shiftpad_pc {
    uint32_t c, ih, iw, nimg, img0, nc, rows, wp, cstride;
    int32_t row0, col0;
};

/* Filter gradient of a stride-1 convolution without an im2col matrix. With x zero-padded into
 * frames xp of fw columns,
 *   dw[co][ci][ky][kx] = sum over (img, oy, ox) of dy[co][img][oy][ox] *
 *                        xp[ci][img][oy + ky][ox + kx]
 * so each tap (ky, kx) is a fixed offset into the frames. GEMM_DW reads those rows as vec4s,
 * which needs them 4-aligned, so the frames are stored in kw copies shifted by kx; dy is read
 * as it is where its rows are whole vec4s, else widened to frames of fw (zeros past the output
 * width). The scratch written per image is kw*cin (+ cout) frames instead of the cin*kh*kw rows
 * of im2col (resnet-8's 16->16 layers at 64x64: 150 ms per filter gradient through im2col).
 * Chunks of images in a fixed order, accumulated into dw. */
static int conv_bwd_filter_shift(struct eng_rec *r, const struct eng_conv *cv, struct eng_tref dy,
                                 struct eng_tref x, struct eng_tref dw)
{
    uint32_t chunk = dw_shift_chunk(r, cv);
    if (chunk == 0)
        return 0;
    uint32_t fh = cv->ih + 2 * cv->pad, fw = dw_frame_width(cv);
    uint32_t K = cv->cin * cv->kh * cv->kw;
    int tr = filter_grad_transposed(cv), direct = dw_shift_dy_direct(r->d, cv);
    for (uint32_t img0 = 0; img0 < cv->n; img0 += chunk) {
        uint32_t nc = cv->n - img0 < chunk ? cv->n - img0 : chunk;
        uint64_t copy, total = dw_shift_floats(r->d, cv, nc, &copy);
        struct eng_tref xs = {r->col.buf, r->col.off, cv->kw * copy * 4};
        struct eng_tref dys = {r->col.buf, r->col.off + xs.bytes, (total * 4) - xs.bytes};
        /* dy's rows (dw floats each), its channel stride and first image's offset */
        uint32_t dwid = fw, dstride = nc * cv->oh * fw, doff = 0;
        if (direct) {
            dys = dy;
            dwid = cv->ow;
            dstride = cv->n * cv->oh * cv->ow;
            doff = img0 * cv->oh * cv->ow;
        }
        struct shiftpad_pc px = {
            cv->cin,           cv->ih,           cv->iw, cv->n, img0, nc, fh, fw, (uint32_t)copy,
            -(int32_t)cv->pad, -(int32_t)cv->pad};
        struct eng_tref bufs[2] = {NOBUF, xs};
        eng_rec_dispatch_tex(r, cwt_spv_im2col(CWT_IM2COL_OP_SHIFTPAD), bufs, 2, &x, 1, 1u, &px,
                             sizeof(px), ceil_div((uint64_t)cv->cin * nc * fh, 64), cv->kw, 1);
        if (!direct) {
            struct shiftpad_pc pd = {cv->cout, cv->oh, cv->ow, cv->n, img0, nc,
                                     cv->oh,   fw,     0,      0,     0};
            bufs[1] = dys;
            eng_rec_dispatch_tex(r, cwt_spv_im2col(CWT_IM2COL_OP_SHIFTPAD), bufs, 2, &dy, 1, 1u,
                                 &pd, sizeof(pd), ceil_div((uint64_t)cv->cout * nc * cv->oh, 64), 1,
                                 1);
        }
        uint32_t kq = nc * cv->oh * dwid, acc = img0 ? ENG_EPI_ACC : 0u;
        struct dw_geo geo = {
            .frames =
                {.n = nc, .ih = fh, .iw = fw, .oh = cv->oh, .ow = dwid, .kh = cv->kh, .kw = cv->kw},
            .bcopy = (uint32_t)copy,
            .transposed = tr};
        if (tr) {
            struct eng_gemm g = {K, cv->cout, kq, 0, 1, 1, dstride, 1, K, acc};
            gemm_cpu_dispatch(r, &g, 0, doff, 0, 1, 0, xs, dys, dw, NOBUF, NOBUF, NULL, &geo);
        } else {
            struct eng_gemm g = {cv->cout, K, kq, dstride, 1, 1, 0, K, 1, acc};
            gemm_cpu_dispatch(r, &g, doff, 0, 0, 1, 0, dys, xs, dw, NOBUF, NOBUF, NULL, &geo);
        }
    }
    return 1;
}

/* Whether conv_bwd_filter_x applies: dw (not its transpose) with dy read as it is, rows of x
 * whole vec4s, every tap within one texel of its output column (kx - pad in [-4, 3]), x and dy
 * each in one texel view. By choice (cpu_dw_shift 1) only where it needs no more 8x64 tiles
 * of C than the frames (one tile row per tap column: a 3-channel first layer's 9 columns would
 * fill 9 of 64) and the rows are at least 8 texels (each row starts with one more fetch per
 * column). Measured per filter gradient on resnet-8 at batch 64, three runs each, against the
 * frames: 64x64 16 -> 16 58-62 ms against 94-103 (in chunks within the loop bound); without
 * chunks (whole batch, which overran the bound): 32x32 32 -> 32 64-82 against 55-86 (six tile
 * rows against five), 16x16 64 -> 64 57-67 against 42-55, the 3-channel stem 45-51 against
 * 20-28. */
static int dw_x_direct_ok(const struct eng_device *d, const struct eng_conv *cv)
{
    if (d->cpu_dw_shift == 2 || filter_grad_transposed(cv) || !dw_shift_dy_direct(d, cv) ||
        cv->iw % 4 != 0 || cv->pad > 4 || cv->kw > cv->pad + 4 || dw_loop_images(d, cv, 1) == 0 ||
        (uint64_t)cv->cin * cv->n * cv->ih * cv->iw > d->max_texel_elements)
        return 0;
    return d->cpu_dw_shift == 3 ||
           (cv->kw * ceil_div(cv->cin * cv->kh, 64) <= ceil_div(cv->cin * cv->kh * cv->kw, 64) &&
            cv->ow >= 32);
}

/* Filter gradient of a stride-1 convolution straight from x and dy (GEMM_DW with DW_X): as
 * conv_bwd_filter_shift, but each output column reads its tap as a window of two texels of x's
 * row, so there are no frames to write (their shiftpad was a quarter of the GEMM's time on
 * resnet-8's 64x64 layers) and the whole batch runs in one dispatch, tap column kx in
 * workgroup z. */
static void conv_bwd_filter_x(struct eng_rec *r, const struct eng_conv *cv, struct eng_tref dy,
                              struct eng_tref x, struct eng_tref dw)
{
    uint32_t K = cv->cin * cv->kh * cv->kw, ihw = cv->ih * cv->iw, ohw = cv->oh * cv->ow;
    uint32_t chunk = equal_chunk(cv->n, dw_loop_images(r->d, cv, 1));
    for (uint32_t img0 = 0; img0 < cv->n; img0 += chunk) {
        uint32_t nc = cv->n - img0 < chunk ? cv->n - img0 : chunk;
        struct dw_geo geo = {.frames = *cv, .bcopy = cv->n * ihw, .x_direct = 1};
        geo.frames.n = nc;
        /* columns (ci, ky) of tap column kx land at C column (ci*kh + ky)*kw + kx */
        struct eng_gemm g = {cv->cout, cv->cin * cv->kh,       nc * ohw, cv->n * ohw, 1, 1, 0, K,
                             cv->kw,   img0 ? ENG_EPI_ACC : 0u};
        gemm_cpu_dispatch(r, &g, img0 * ohw, img0 * ihw, 0, cv->kw, 1, dy, x, dw, NOBUF, NOBUF,
                          NULL, &geo);
    }
}

/* Whether conv_bwd_filter_lanes (3x3, padding 1) runs over the flattened pixels (DWL_FLAT):
 * stride 1 (so iw = ow, ih = oh), rows not a multiple of 8, planes of whole texels. */
static int dw_lanes_flat(const struct eng_conv *cv)
{
    return cv->stride == 1 && cv->ow % 8 != 0 && ((uint64_t)cv->oh * cv->ow) % 4 == 0;
}

/* Images per chunk of conv_bwd_filter_lanes (0: it does not apply): 3x3, stride 1 or 2, padding
 * 1, output rows of a multiple of 8 pixels with iw = stride * ow or dw_lanes_flat, x and dy
 * each in one texel view. A chunk has at
 * most 65536 pixels or one image (each lane's running sum then has at most 1024 terms; the
 * chunks are added in order), and its tiles of 64 pixels stay within llvmpipe's loop bound. */
static uint32_t dw_lanes_chunk(const struct eng_device *d, const struct eng_conv *cv)
{
    uint64_t ohw = (uint64_t)cv->oh * cv->ow;
    int rows = cv->ow % 8 == 0 && cv->iw == cv->stride * cv->ow;
    if (!d->cpu_kernels || !d->cpu_dw_lanes || (cv->stride != 1 && cv->stride != 2) ||
        cv->kh != 3 || cv->kw != 3 || cv->pad != 1 || (!rows && !dw_lanes_flat(cv)) ||
        cv->cin > 65535 || (uint64_t)cv->cin * cv->n * cv->ih * cv->iw > d->max_texel_elements ||
        (uint64_t)cv->cout * cv->n * ohw > d->max_texel_elements)
        return 0;
    if ((ohw + 63) / 64 > ENG_CPU_LOOP_MAX - 8)
        return 0;
    uint64_t most = ohw >= 65536 ? 1 : 65536 / ohw;
    return most >= cv->n ? cv->n : (uint32_t)most;
}

/* Filter gradient of a 3x3 convolution with the lanes along the pixels (GEMM_DWL): a
 * workgroup per 8 output channels and input channel, every operand fetch per lane, the lanes'
 * sums added in shared memory at the end; image chunks within the loop bound, each added onto
 * the last. Measured on lavapipe (resnet-8, batch 64, per step): see docs/engine.md. */
static int conv_bwd_filter_lanes(struct eng_rec *r, const struct eng_conv *cv, struct eng_tref dy,
                                 struct eng_tref x, struct eng_tref dw)
{
    uint32_t most = dw_lanes_chunk(r->d, cv);
    if (most == 0)
        return 0;
    uint32_t ohw = cv->oh * cv->ow, ihw = cv->ih * cv->iw, N = cv->cin * 9;
    uint32_t chunk = equal_chunk(cv->n, most);
    for (uint32_t img0 = 0; img0 < cv->n; img0 += chunk) {
        uint32_t nc = cv->n - img0 < chunk ? cv->n - img0 : chunk, K = nc * ohw;
        struct gemm_cpu_pc pc = {cv->cout,
                                 N,
                                 K,
                                 cv->n * ohw,
                                 1,
                                 1,
                                 0,
                                 N,
                                 1,
                                 img0 ? ENG_EPI_ACC : 0u,
                                 K,
                                 0,
                                 ceil_div(K, 64),
                                 img0 * ohw,
                                 img0 * ihw,
                                 0};
        gemm_cpu_pc_geometry(&pc, cv);
        pc.bcopy = cv->n * ihw;
        struct eng_tref bufs[3] = {NOBUF, NOBUF, dw};
        struct eng_tref tex[4] = {dy, x, dy, img0 ? dw : dy};
        int kind = cv->stride == 2     ? CWT_GEMM_CPU_KIND_DWL2
                   : dw_lanes_flat(cv) ? CWT_GEMM_CPU_KIND_DWL_FLAT
                                       : CWT_GEMM_CPU_KIND_DWL;
        enum cwt_spv_id id = cwt_spv_gemm_cpu(
            kind, img0 ? CWT_GEMM_CPU_EPI_RD : CWT_GEMM_CPU_EPI_WO, CWT_GEMM_CPU_STORE_S);
        eng_rec_dispatch_tex(r, id, bufs, 3, tex, 4, 3u, &pc, sizeof(pc), ceil_div(cv->cout, 8),
                             cv->cin, 1);
    }
    return 1;
}

/* dw = dy col^T accumulated over chunks (no split-K: the chunks run in a fixed order). */
static int conv_bwd_filter_cpu(struct eng_rec *r, const struct eng_conv *cv, struct eng_tref dy,
                               struct eng_tref x, struct eng_tref dw)
{
    if (conv_bwd_filter_lanes(r, cv, dy, x, dw))
        return 1;
    if (dw_shift_ok(r->d, cv) && dw_x_direct_ok(r->d, cv)) {
        conv_bwd_filter_x(r, cv, dy, x, dw);
        return 1;
    }
    if (dw_shift_ok(r->d, cv) && conv_bwd_filter_shift(r, cv, dy, x, dw))
        return 1;
    uint32_t K = cv->cin * cv->kh * cv->kw, hw = cv->oh * cv->ow;
    uint32_t chunk = col_chunk(r, cv->n, K, hw);
    if (chunk == 0)
        return 0;
    /* dw[oc][kk] = sum over pixels of dy[oc][p] col[kk][p], or its transpose dw^T = col dy^T
     * (filter_grad_transposed). Same products summed in the same order either way. */
    int tr = filter_grad_transposed(cv);
    for (uint32_t img0 = 0; img0 < cv->n; img0 += chunk) {
        uint32_t nc = cv->n - img0 < chunk ? cv->n - img0 : chunk;
        uint32_t ncols = nc * hw, ld = round4(ncols);
        im2col_dispatch(r, CWT_IM2COL_OP_IM2COL, cv, x, NOBUF, img0, ncols, ld, 0);
        uint32_t acc = img0 ? ENG_EPI_ACC : 0u;
        if (tr) {
            struct eng_gemm g = {K, cv->cout, ncols, ld, 1, 1, cv->n * hw, 1, K, acc};
            gemm_cpu_dispatch(r, &g, 0, img0 * hw, 0, 1, 0, r->col, dy, dw, NOBUF, NOBUF, NULL,
                              NULL);
        } else {
            struct eng_gemm g = {cv->cout, K, ncols, cv->n * hw, 1, 1, ld, K, 1, acc};
            gemm_cpu_dispatch(r, &g, img0 * hw, 0, 0, 1, 0, dy, r->col, dw, NOBUF, NOBUF, NULL,
                              NULL);
        }
    }
    return 1;
}

void op_conv_fwd(struct eng_rec *r, const struct eng_conv *cv, struct eng_tref x, struct eng_tref w,
                 struct eng_tref bias, struct eng_tref y, uint32_t flags)
{
    if (conv_fwd_cpu(r, cv, x, w, bias, y, NOBUF, flags))
        return;
    struct gemm_pc pc;
    conv_pc(cv, &pc);
    uint32_t kk = cv->kh * cv->kw;
    pc.M = cv->cout;
    pc.N = cv->n * cv->oh * cv->ow;
    pc.K = cv->cin * kk;
    pc.sam = pc.K;
    pc.sak = 1;
    pc.scm = pc.N;
    pc.scn = 1;
    pc.kchunk = cv->cin;
    pc.flags = flags;
    pc.L0 = cv->cin;
    pc.L1 = cv->kh;
    pc.L2 = cv->kw;
    gemm_dispatch(r, CWT_GEMM_OPERANDS_CONV_FWD, &pc, w, x, y, bias, NOBUF, 1);
}

void op_conv_wt(struct eng_rec *r, const struct eng_conv *cv, struct eng_tref w, struct eng_tref wt)
{
    uint32_t kk = cv->kh * cv->kw;
    if (phase_chunk(r, cv) > 0) {
        conv_wt_phase(r, cv, w, wt);
        return;
    }
    if (!bwd_as_fwd(cv) && cpu_bwd_data(r, cv)) {
        /* w[oc][ick] -> wt[ick][oc] */
        const uint32_t d[4] = {1, 1, cv->cin * kk, cv->cout};
        const uint32_t s[4] = {0, 0, 1, cv->cin * kk};
        op_permute(r, w, wt, d, s);
        return;
    }
    if (bwd_as_fwd(cv)) {
        /* wt[ic][oc][ky][kx] = w[oc][ic][kh-1-ky][kw-1-kx]: negative strides wrap mod 2^32 */
        const uint32_t d[4] = {cv->cin, cv->cout, cv->kh, cv->kw};
        const uint32_t s[4] = {kk, cv->cin * kk, (uint32_t) - (int32_t)cv->kw, (uint32_t)-1};
        op_permute_at(r, w, wt, d, s, kk - 1);
        return;
    }
    /* w[oc][ic][kk] -> wt[ic][oc][kk] */
    const uint32_t d[4] = {1, cv->cin, cv->cout, kk};
    const uint32_t s[4] = {0, kk, cv->cin * kk, 1};
    op_permute(r, w, wt, d, s);
}

void op_conv_bwd_data(struct eng_rec *r, const struct eng_conv *cv, struct eng_tref dy,
                      struct eng_tref wt, struct eng_tref dx, struct eng_tref mask, uint32_t flags)
{
    struct gemm_pc pc;
    if (conv_bwd_data_phase(r, cv, dy, wt, dx, mask, flags))
        return;
    if (cpu_bwd_data(r, cv)) {
        if (bwd_as_fwd(cv)) {
            struct eng_conv f = flipped(cv);
            conv_fwd_cpu(r, &f, dy, wt, NOBUF, dx, mask, flags & ENG_EPI_MASK);
        } else {
            conv_bwd_data_cpu(r, cv, dy, wt, dx, mask, flags);
        }
        return;
    }
    if (bwd_as_fwd(cv)) {
        struct eng_conv f = flipped(cv);
        conv_pc(&f, &pc);
        /* conv_pc takes one pad for both axes: square kernels only on this path */
        pc.M = cv->cin;
        pc.N = cv->n * cv->ih * cv->iw;
        pc.K = cv->cout * cv->kh * cv->kw;
        pc.sam = pc.K;
        pc.sak = 1;
        pc.scm = pc.N;
        pc.scn = 1;
        pc.kchunk = cv->cout;
        pc.flags = flags & ENG_EPI_MASK;
        pc.L0 = cv->cout;
        pc.L1 = cv->kh;
        pc.L2 = cv->kw;
        gemm_dispatch(r, CWT_GEMM_OPERANDS_CONV_FWD, &pc, wt, dy, dx, NOBUF, mask, 1);
        return;
    }
    conv_pc(cv, &pc);
    uint32_t kk = cv->kh * cv->kw;
    pc.M = cv->cin;
    pc.N = cv->n * cv->ih * cv->iw;
    pc.K = cv->cout * kk;
    pc.sam = pc.K;
    pc.sak = 1;
    pc.scm = pc.N;
    pc.scn = 1;
    pc.kchunk = cv->cout;
    pc.flags = flags & ENG_EPI_MASK;
    pc.L0 = cv->cout;
    pc.L1 = cv->kh;
    pc.L2 = cv->kw;
    gemm_dispatch(r, CWT_GEMM_OPERANDS_CONV_BWD_DATA, &pc, wt, dy, dx, NOBUF, mask, 1);
}

/* Split-K for the filter gradient: the reduction runs over all n*oh*ow output pixels, while
 * the output (cout x cin*kh*kw) may be only a few tiles; enough splits keep every core busy.
 * Splits are whole images so each partial sum runs in a fixed order. */
static uint32_t filt_splits(const struct eng_device *d, const struct eng_conv *cv)
{
    uint32_t tiles = ceil_div(cv->cout, 64) * ceil_div((uint64_t)cv->cin * cv->kh * cv->kw, 64);
    uint32_t target = d->is_cpu ? 16 : 512;
    uint32_t splits = tiles >= target ? 1 : ceil_div(target, tiles);
    if (splits > cv->n)
        splits = cv->n;
    if (splits <= 1)
        return 1;
    uint32_t chunk = ceil_div(cv->n, splits);
    return ceil_div(cv->n, chunk);
}

uint64_t eng_conv_filt_scratch(const struct eng_device *d, const struct eng_conv *cv)
{
    if (d->cpu_kernels)
        return 0; /* the CPU path accumulates over image chunks instead */
    uint32_t s = filt_splits(d, cv);
    return s <= 1 ? 0 : (uint64_t)s * cv->cout * cv->cin * cv->kh * cv->kw;
}

void op_conv_bwd_filter(struct eng_rec *r, const struct eng_conv *cv, struct eng_tref dy,
                        struct eng_tref x, struct eng_tref dw, struct eng_tref scratch)
{
    if (conv_bwd_filter_cpu(r, cv, dy, x, dw))
        return;
    struct gemm_pc pc;
    conv_pc(cv, &pc);
    uint32_t kk = cv->kh * cv->kw;
    uint32_t splits = filt_splits(r->d, cv);
    if (splits > 1 && scratch.bytes < (VkDeviceSize)eng_conv_filt_scratch(r->d, cv) * 4)
        splits = 1;
    pc.M = cv->cout;
    pc.N = cv->cin * kk;
    pc.K = cv->n * cv->oh * cv->ow;
    pc.sam = pc.K;
    pc.sak = 1;
    pc.scm = pc.N;
    pc.scn = 1;
    pc.kchunk = ceil_div(cv->n, splits);
    pc.scz = pc.M * pc.N;
    pc.L0 = cv->n;
    pc.L1 = cv->oh;
    pc.L2 = cv->ow;
    if (splits == 1) {
        gemm_dispatch(r, CWT_GEMM_OPERANDS_CONV_BWD_FILT, &pc, dy, x, dw, NOBUF, NOBUF, 1);
        return;
    }
    gemm_dispatch(r, CWT_GEMM_OPERANDS_CONV_BWD_FILT, &pc, dy, x, scratch, NOBUF, NOBUF, splits);
    op_rowsum(r, scratch, dw, pc.M * pc.N, splits, 1, pc.M * pc.N, 1, 0);
}

/* Whether the CPU devices' texel-buffer variant of a kernel can read t (a view's size limit). */
static int tex_fits(const struct eng_rec *r, struct eng_tref t)
{
    return r->d->cpu_kernels && t.bytes > 0 && t.bytes / 4 <= r->d->max_texel_elements;
}

struct rowsum_pc {
    uint32_t rows, len, si, sj, so, accumulate, chunk, sc, j0;
};

void op_rowsum(struct eng_rec *r, struct eng_tref in, struct eng_tref out, uint32_t rows,
               uint32_t len, uint32_t si, uint32_t sj, uint32_t so, int accumulate)
{
    struct rowsum_pc pc = {rows, len, si, sj, so, accumulate != 0, len, 0, 0};
    struct eng_tref bufs[2] = {in, out};
    if (!r->d->cpu_kernels && len >= 256 && rows <= 65535) {
        /* GPUs: a workgroup per long row (one workgroup for all rows left the GPU idle) */
        eng_rec_dispatch(r, cwt_spv_reduce(CWT_REDUCE_OP_ROWSUM, CWT_REDUCE_MODE_WG), bufs, 2, &pc,
                         sizeof(pc), rows, 1, 1);
        return;
    }
    /* one invocation per row: rows longer than an invocation may loop (ENG_CPU_LOOP_MAX) are
     * summed in passes, each added to the last */
    int tex = tex_fits(r, in) && rows > 0 &&
              (uint64_t)(rows - 1) * si + (uint64_t)(len ? len - 1 : 0) * sj < in.bytes / 4;
    uint32_t pass = ENG_CPU_LOOP_MAX - 16;
    for (uint32_t j0 = 0; j0 == 0 || j0 < len; j0 += pass) {
        pc.j0 = j0;
        pc.len = pc.chunk = len - j0 < pass ? len - j0 : pass;
        pc.accumulate = accumulate != 0 || j0 > 0;
        if (tex) { /* CPU devices: texel reads, 8 rows per workgroup (spread over the threads) */
            struct eng_tref o[2] = {NOBUF, out};
            eng_rec_dispatch_tex(r, cwt_spv_reduce(CWT_REDUCE_OP_ROWSUM, CWT_REDUCE_MODE_TEX), o, 2,
                                 &in, 1, 0, &pc, sizeof(pc), ceil_div(rows, 8), 1, 1);
        } else {
            eng_rec_dispatch(r, cwt_spv_reduce(CWT_REDUCE_OP_ROWSUM, CWT_REDUCE_MODE_PLAIN), bufs,
                             2, &pc, sizeof(pc), ceil_div(rows, 64), 1, 1);
        }
    }
}

struct permute_pc {
    uint32_t d[4], s[4], base;
};

void op_permute(struct eng_rec *r, struct eng_tref src, struct eng_tref dst, const uint32_t d[4],
                const uint32_t s[4])
{
    op_permute_at(r, src, dst, d, s, 0);
}

void op_permute_at(struct eng_rec *r, struct eng_tref src, struct eng_tref dst, const uint32_t d[4],
                   const uint32_t s[4], uint32_t base)
{
    struct permute_pc pc;
    memcpy(pc.d, d, sizeof(pc.d));
    memcpy(pc.s, s, sizeof(pc.s));
    pc.base = base;
    uint32_t gx, gy;
    uint64_t total = (uint64_t)d[0] * d[1] * d[2] * d[3];
    grid1d(total, &gx, &gy);
    if (tex_fits(r, src) && total < (1u << 24)) {
        struct eng_tref bufs[2] = {NOBUF, dst};
        eng_rec_dispatch_tex(r, cwt_spv_reduce(CWT_REDUCE_OP_TRANSPOSE, CWT_REDUCE_MODE_TEX), bufs,
                             2, &src, 1, 0, &pc, sizeof(pc), gx, gy, 1);
        return;
    }
    struct eng_tref bufs[2] = {src, dst};
    eng_rec_dispatch(r, cwt_spv_reduce(CWT_REDUCE_OP_TRANSPOSE, CWT_REDUCE_MODE_PLAIN), bufs, 2,
                     &pc, sizeof(pc), gx, gy, 1);
}

/* Whether an elementwise op runs as its vec4 texel variant (add4, relu_bwd4, sgd4, adam4): CPU
 * devices, whole vec4s, operands in texel views (a and b stand for all of them: same sizes). */
static int elem_vec4(const struct eng_rec *r, struct eng_tref a, struct eng_tref b, uint64_t count)
{
    return count % 4 == 0 && tex_fits(r, a) && tex_fits(r, b);
}

/* Records the vec4 texel variant id4 of an elementwise or optimizer op (elem_vec4 holds): *count,
 * the element count in the push constants pc, becomes the vec4 count; every texel view is rgba32f.
 */
static void elem4_dispatch(struct eng_rec *r, enum cwt_spv_id id4, const struct eng_tref *bufs,
                           uint32_t nbufs, const struct eng_tref *tex, uint32_t ntex,
                           uint32_t *count, const void *pc, uint32_t pc_size)
{
    uint32_t gx, gy;
    *count /= 4;
    grid1d(*count, &gx, &gy);
    eng_rec_dispatch_tex(r, id4, bufs, nbufs, tex, ntex, (1u << ntex) - 1u, pc, pc_size, gx, gy, 1);
}

/* Records elementwise.comp op (CWT_ELEMENTWISE_OP_*; its vec4 form as elem_vec4 allows) on
 * operands a, b into out; pc[0] is the element count. */
static void elem_dispatch(struct eng_rec *r, int op, struct eng_tref a, struct eng_tref b,
                          struct eng_tref out, uint32_t *pc, uint32_t pc_size)
{
    if (elem_vec4(r, a, b, pc[0])) {
        struct eng_tref bufs[3] = {NOBUF, NOBUF, out}, tex[2] = {a, b};
        elem4_dispatch(r, cwt_spv_elementwise(op, CWT_ELEMENTWISE_WIDTH_X4), bufs, 3, tex, 2,
                       &pc[0], pc, pc_size);
        return;
    }
    uint32_t gx, gy;
    grid1d(pc[0], &gx, &gy);
    struct eng_tref bufs[3] = {a, b, out};
    eng_rec_dispatch(r, cwt_spv_elementwise(op, CWT_ELEMENTWISE_WIDTH_X1), bufs, 3, pc, pc_size, gx,
                     gy, 1);
}

void op_add(struct eng_rec *r, struct eng_tref a, struct eng_tref b, struct eng_tref y,
            uint32_t count, int relu)
{
    uint32_t pc[2] = {count, relu != 0};
    elem_dispatch(r, CWT_ELEMENTWISE_OP_ADD, a, b, y, pc, sizeof(pc));
}

void op_relu_bwd(struct eng_rec *r, struct eng_tref dy, struct eng_tref y, struct eng_tref dx,
                 uint32_t count)
{
    uint32_t pc[1] = {count};
    elem_dispatch(r, CWT_ELEMENTWISE_OP_RELU_BWD, dy, y, dx, pc, sizeof(pc));
}

/* Keep threshold: an element is kept when its 32-bit hash >= p * 2^32. */
static uint32_t dropout_threshold(float p)
{
    double t = (double)p * 4294967296.0;
    return t >= 4294967295.0 ? 0xffffffffu : (uint32_t)t;
}

void op_dropout(struct eng_rec *r, struct eng_tref x, struct eng_tref y, struct eng_tref params,
                uint32_t count, float p, uint32_t salt)
{
    struct {
        uint32_t count, threshold, salt;
        float scale;
    } pc = {count, dropout_threshold(p), salt, p < 1.0f ? 1.0f / (1.0f - p) : 0.0f};
    uint32_t gx, gy;
    grid1d(count, &gx, &gy);
    struct eng_tref bufs[3] = {x, y, params};
    eng_rec_dispatch(r, cwt_spv_elementwise(CWT_ELEMENTWISE_OP_DROPOUT, CWT_ELEMENTWISE_WIDTH_X1),
                     bufs, 3, &pc, sizeof(pc), gx, gy, 1);
}

static uint32_t hash_u32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

int eng_dropout_keep(uint32_t seed_lo, uint32_t seed_hi, uint32_t step, uint32_t salt, uint32_t i,
                     float p)
{
    uint32_t h =
        hash_u32((seed_lo ^ salt) ^ hash_u32(seed_hi ^ hash_u32(step ^ hash_u32(i + 0x9e3779b9u))));
    return h >= dropout_threshold(p);
}

/* Must match the push constant block of shaders/pool.comp. */
struct pool_pc {
    uint32_t planes, ih, iw, oh, ow, kh, kw, stride, pad, flags;
    uint32_t nwy, nwx;
};

static struct pool_pc pool_push(const struct eng_pool *pl, uint32_t flags)
{
    return (struct pool_pc){pl->planes,
                            pl->ih,
                            pl->iw,
                            pl->oh,
                            pl->ow,
                            pl->kh,
                            pl->kw,
                            pl->stride,
                            pl->pad,
                            flags,
                            ceil_div(pl->kh, pl->stride),
                            ceil_div(pl->kw, pl->stride)};
}

static void pool_dispatch(struct eng_rec *r, enum cwt_spv_id id, const struct eng_pool *pl,
                          uint32_t flags, const struct eng_tref *bufs, uint32_t nbufs,
                          uint64_t count)
{
    struct pool_pc pc = pool_push(pl, flags);
    uint32_t gx, gy;
    grid1d(count, &gx, &gy);
    eng_rec_dispatch(r, id, bufs, nbufs, &pc, sizeof(pc), gx, gy, 1);
}

/* Whether max pooling over pl with input x takes the texel-buffer kernels (CPU devices; x
 * within a texel view, so dy and the argmax are too; a plane within one row of 65535
 * workgroups, which also keeps udiv exact). Forward and backward decide alike from the same x:
 * the argmax encoding differs. */
static int pool_tex(const struct eng_rec *r, const struct eng_pool *pl, struct eng_tref x)
{
    return tex_fits(r, x) && (uint64_t)pl->ih * pl->iw <= 65535u * 64u;
}

/* The texel kernels' grid: x over positions in a plane, planes folded into y and z. */
static void pool_tex_dispatch(struct eng_rec *r, enum cwt_spv_id id, const struct eng_pool *pl,
                              uint32_t flags, const struct eng_tref *bufs,
                              const struct eng_tref *tex, uint32_t ntex, uint32_t per_plane)
{
    struct pool_pc pc = pool_push(pl, flags);
    uint32_t gy = pl->planes < 65535 ? pl->planes : 65535;
    uint32_t gz = gy == 0 ? 0 : ceil_div(pl->planes, gy);
    eng_rec_dispatch_tex(r, id, bufs, 4, tex, ntex, 0, &pc, sizeof(pc), ceil_div(per_plane, 64), gy,
                         gz);
}

/* 2x2 windows at stride 2 without padding (cnn-small's pools), for the unrolled texel kernels:
 * one invocation per window over all planes, whose index udiv() divides exactly below 2^24.
 * even: the windows also cover every input (the backward kernel writes whole input rows). */
static int pool_2x2(const struct eng_pool *pl, int even)
{
    return pl->kh == 2 && pl->kw == 2 && pl->stride == 2 && pl->pad == 0 &&
           (uint64_t)pl->planes * pl->ih * pl->iw < (1u << 24) &&
           (!even || (pl->ih % 2 == 0 && pl->iw % 2 == 0));
}

/* Whether the 2x2 kernels take two windows per invocation (their _2x2p variants): input rows of
 * whole vec4s, so that each pair's rows are aligned vec4s (pool_2x2(pl, 1) holds too). */
static int pool_2x2_pair(const struct eng_pool *pl)
{
    return pool_2x2(pl, 1) && pl->iw % 4 == 0;
}

/* The 2x2 kernels' grid: one invocation per window, or per pair of windows (pair), over all
 * planes (elem_index); vec4_mask as eng_rec_dispatch_tex. */
static void pool_2x2_dispatch(struct eng_rec *r, enum cwt_spv_id id, const struct eng_pool *pl,
                              uint32_t flags, const struct eng_tref *bufs,
                              const struct eng_tref *tex, uint32_t ntex, int pair,
                              uint32_t vec4_mask)
{
    struct pool_pc pc = pool_push(pl, flags);
    uint32_t gx, gy;
    uint64_t windows = (uint64_t)pl->planes * pl->oh * pl->ow;
    grid1d(pair ? windows / 2 : windows, &gx, &gy);
    eng_rec_dispatch_tex(r, id, bufs, 4, tex, ntex, vec4_mask, &pc, sizeof(pc), gx, gy, 1);
}

void op_maxpool_fwd(struct eng_rec *r, const struct eng_pool *pl, struct eng_tref x,
                    struct eng_tref y, struct eng_tref argmax)
{
    if (pool_tex(r, pl, x) && pool_2x2(pl, 0)) {
        struct eng_tref b[4] = {NOBUF, y, argmax, NOBUF};
        int pair = pool_2x2_pair(pl);
        pool_2x2_dispatch(
            r, cwt_spv_pool(CWT_POOL_OP_MAX_FWD, pair ? CWT_POOL_INPUT_W2P : CWT_POOL_INPUT_W2), pl,
            0, b, &x, 1, pair, pair ? 1u : 0u);
        return;
    }
    if (pool_tex(r, pl, x)) {
        struct eng_tref b[4] = {NOBUF, y, argmax, NOBUF};
        pool_tex_dispatch(r, cwt_spv_pool(CWT_POOL_OP_MAX_FWD, CWT_POOL_INPUT_TEX), pl, 0, b, &x, 1,
                          pl->oh * pl->ow);
        return;
    }
    struct eng_tref b[3] = {x, y, argmax};
    pool_dispatch(r, cwt_spv_pool(CWT_POOL_OP_MAX_FWD, CWT_POOL_INPUT_BUF), pl, 0, b, 3,
                  (uint64_t)pl->planes * pl->oh * pl->ow);
}

void op_maxpool_bwd(struct eng_rec *r, const struct eng_pool *pl, struct eng_tref dy,
                    struct eng_tref argmax, struct eng_tref x, struct eng_tref dx, int relu_mask)
{
    if (pool_tex(r, pl, x) && pool_2x2(pl, 1)) {
        struct eng_tref b[4] = {NOBUF, NOBUF, NOBUF, dx};
        struct eng_tref tex[3] = {dy, argmax, x};
        int pair = pool_2x2_pair(pl);
        pool_2x2_dispatch(
            r, cwt_spv_pool(CWT_POOL_OP_MAX_SCATTER, pair ? CWT_POOL_INPUT_W2P : CWT_POOL_INPUT_W2),
            pl, relu_mask ? ENG_POOL_RELU_MASK : 0u, b, tex, 3, pair, pair ? 3u : 0u);
        return;
    }
    if (pool_tex(r, pl, x)) {
        struct eng_tref b[4] = {NOBUF, NOBUF, NOBUF, dx};
        struct eng_tref tex[3] = {dy, argmax, x};
        /* windows that tile the plane: one invocation per window writes it */
        int tiles = pl->stride == pl->kh && pl->stride == pl->kw && pl->pad == 0;
        pool_tex_dispatch(r,
                          tiles ? cwt_spv_pool(CWT_POOL_OP_MAX_SCATTER, CWT_POOL_INPUT_TEX)
                                : cwt_spv_pool(CWT_POOL_OP_MAX_BWD, CWT_POOL_INPUT_TEX),
                          pl, relu_mask ? ENG_POOL_RELU_MASK : 0u, b, tex, 3,
                          tiles ? pl->oh * pl->ow : pl->ih * pl->iw);
        return;
    }
    struct eng_tref b[4] = {dy, argmax, x, dx};
    pool_dispatch(r, cwt_spv_pool(CWT_POOL_OP_MAX_BWD, CWT_POOL_INPUT_BUF), pl,
                  relu_mask ? ENG_POOL_RELU_MASK : 0u, b, 4,
                  (uint64_t)pl->planes * pl->ih * pl->iw);
}

void op_avgpool_fwd(struct eng_rec *r, const struct eng_pool *pl, struct eng_tref x,
                    struct eng_tref y)
{
    struct eng_tref b[3] = {x, y, NOBUF};
    pool_dispatch(r, cwt_spv_pool(CWT_POOL_OP_AVG_FWD, CWT_POOL_INPUT_BUF), pl, 0, b, 3,
                  (uint64_t)pl->planes * pl->oh * pl->ow);
}

void op_avgpool_bwd(struct eng_rec *r, const struct eng_pool *pl, struct eng_tref dy,
                    struct eng_tref dx)
{
    if (r->d->cpu_kernels && pl->kh == pl->ih && pl->kw == pl->iw && pl->pad == 0 &&
        (pl->ih * pl->iw) % 4 == 0 && tex_fits(r, dy) && pool_tex(r, pl, dx)) {
        /* global pooling on CPU devices: one vec4 store per four positions */
        struct eng_tref b[4] = {NOBUF, NOBUF, NOBUF, dx};
        pool_tex_dispatch(r, cwt_spv_pool(CWT_POOL_OP_AVG_BWD_GLOBAL4, CWT_POOL_INPUT_TEX), pl, 0,
                          b, &dy, 1, pl->ih * pl->iw / 4);
        return;
    }
    struct eng_tref b[4] = {dy, NOBUF, NOBUF, dx};
    pool_dispatch(r, cwt_spv_pool(CWT_POOL_OP_AVG_BWD, CWT_POOL_INPUT_BUF), pl, 0, b, 4,
                  (uint64_t)pl->planes * pl->ih * pl->iw);
}

struct bn_pc {
    uint32_t C, L;
    float eps, momentum;
    uint32_t flags;
};

/* Channel sums by workgroups of 512 (GPUs) rather than 64 (CPU devices; see shaders/bn.comp). */
static int bn_wide(const struct eng_rec *r)
{
    return !r->d->cpu_kernels && r->d->info.max_workgroup_invocations >= 512 &&
           r->d->info.max_shared_memory >= 512 * sizeof(float);
}

/* Whether the batch-norm passes run their VEC4 variants: CPU devices (where they were measured
 * faster), channels of whole vec4s that one grid row covers (bn_cols). */
static int bn_vec4(const struct eng_rec *r, uint32_t L)
{
    return r->d->cpu_kernels && L % 4 == 0 && ceil_div(ceil_div(L / 4, 4), 64) <= 65535;
}

/* Whether the channel sums (one workgroup of 64 per channel, two passes) stay within
 * llvmpipe's loop bound on CPU devices (ENG_CPU_LOOP_MAX); else the recording fails with a
 * clear error rather than summing part of the channel. */
static int bn_sums_fit(struct eng_rec *r, uint32_t L, int v4)
{
    uint64_t loops = 2 * ceil_div(v4 ? L / 4 : L, 64) + 16;
    if (!r->d->is_cpu || bn_wide(r) || loops <= ENG_CPU_LOOP_MAX)
        return 1;
    if (!r->failed)
        r->failed = cwt_seterr(r->err, sizeof(r->err), CWT_ETOOBIG,
                               "batch norm over %u values per channel is too long for a CPU "
                               "device; use a smaller batch or image size",
                               L);
    return 0;
}

void op_bn_stats(struct eng_rec *r, uint32_t C, uint32_t L, float eps, float momentum,
                 struct eng_tref x, struct eng_tref saved, struct eng_tref rmean,
                 struct eng_tref rvar, int update_running)
{
    struct bn_pc pc = {C, L, eps, momentum, update_running ? ENG_BN_UPDATE_RUNNING : 0u};
    struct eng_tref b[4] = {NOBUF, saved, rmean, rvar};
    int v4 = bn_vec4(r, L);
    if (!bn_sums_fit(r, L, v4))
        return;
    int mode = v4 ? CWT_BN_MODE_X4 : bn_wide(r) ? CWT_BN_MODE_WG : CWT_BN_MODE_X1;
    eng_rec_dispatch_tex(r, cwt_spv_bn(CWT_BN_OP_STATS, mode), b, 4, &x, 1, v4 ? 1u : 0u, &pc,
                         sizeof(pc), C, 1, 1);
}

/* Grid of the elementwise batch-norm passes: (column blocks of 64, channel); the VEC4 variants
 * cover the channel at 4 vec4s per invocation (BN_ITEMS in shaders/bn.comp), the scalar ones
 * loop over at most 1024 blocks. */
static uint32_t bn_cols(uint32_t L, int v4)
{
    uint32_t g = ceil_div(v4 ? ceil_div(L / 4, 4) : L, 64);
    return g < 1024 || v4 ? g : 1024;
}

void op_bn_apply(struct eng_rec *r, uint32_t C, uint32_t L, float eps, uint32_t flags,
                 struct eng_tref x, struct eng_tref saved, struct eng_tref rmean,
                 struct eng_tref rvar, struct eng_tref gamma, struct eng_tref beta,
                 struct eng_tref y, struct eng_tref residual)
{
    struct bn_pc pc = {C, L, eps, 0.0f, flags};
    struct eng_tref b[7] = {NOBUF, saved, rmean, rvar, gamma, beta, y};
    struct eng_tref t[2] = {x, residual.bytes ? residual : x};
    int v4 = bn_vec4(r, L);
    eng_rec_dispatch_tex(r, cwt_spv_bn(CWT_BN_OP_APPLY, v4 ? CWT_BN_MODE_X4 : CWT_BN_MODE_X1), b, 7,
                         t, 2, v4 ? 3u : 0u, &pc, sizeof(pc), bn_cols(L, v4), C, 1);
}

void op_bn_bwd(struct eng_rec *r, uint32_t C, uint32_t L, struct eng_tref dy, struct eng_tref x,
               struct eng_tref saved, struct eng_tref gamma, struct eng_tref dgamma,
               struct eng_tref dbeta, struct eng_tref dx)
{
    struct bn_pc pc = {C, L, 0.0f, 0.0f, 0};
    struct eng_tref b1[5] = {NOBUF, NOBUF, saved, dgamma, dbeta}, t1[2] = {dy, x};
    int v4 = bn_vec4(r, L);
    if (!bn_sums_fit(r, L, v4))
        return;
    int sums = v4 ? CWT_BN_MODE_X4 : bn_wide(r) ? CWT_BN_MODE_WG : CWT_BN_MODE_X1;
    eng_rec_dispatch_tex(r, cwt_spv_bn(CWT_BN_OP_BWD_SUMS, sums), b1, 5, t1, 2, v4 ? 3u : 0u, &pc,
                         sizeof(pc), C, 1, 1);
    struct eng_tref b2[7] = {NOBUF, NOBUF, saved, dgamma, dbeta, gamma, dx}, t2[2] = {x, dy};
    eng_rec_dispatch_tex(r, cwt_spv_bn(CWT_BN_OP_BWD, v4 ? CWT_BN_MODE_X4 : CWT_BN_MODE_X1), b2, 7,
                         t2, 2, v4 ? 3u : 0u, &pc, sizeof(pc), bn_cols(L, v4), C, 1);
}

void op_ce(struct eng_rec *r, uint32_t N, uint32_t K, struct eng_tref z, struct eng_tref labels,
           struct eng_tref cw, struct eng_tref ps, struct eng_tref res, struct eng_tref dz)
{
    uint32_t pc[2] = {N, K};
    struct eng_tref b1[5] = {z, labels, cw, ps, dz};
    eng_rec_dispatch(r, cwt_spv_loss(CWT_LOSS_OP_CE_FWD), b1, 5, pc, sizeof(pc), ceil_div(N, 64), 1,
                     1);
    struct eng_tref b2[2] = {ps, res};
    eng_rec_dispatch(r, cwt_spv_loss(CWT_LOSS_OP_CE_REDUCE), b2, 2, pc, sizeof(pc), 1, 1, 1);
    struct eng_tref b3[4] = {dz, labels, cw, res};
    eng_rec_dispatch(r, cwt_spv_loss(CWT_LOSS_OP_CE_GRAD), b3, 4, pc, sizeof(pc),
                     ceil_div((uint64_t)N * K, 64), 1, 1);
}

void op_softmax(struct eng_rec *r, uint32_t N, uint32_t K, struct eng_tref z, struct eng_tref probs)
{
    uint32_t pc[2] = {N, K};
    struct eng_tref b[2] = {z, probs};
    eng_rec_dispatch(r, cwt_spv_loss(CWT_LOSS_OP_SOFTMAX), b, 2, pc, sizeof(pc), ceil_div(N, 64), 1,
                     1);
}

void op_sgd_scaled(struct eng_rec *r, uint32_t count, float momentum, float wd, int nesterov,
                   float lr_scale, struct eng_tref w, struct eng_tref g, struct eng_tref buf,
                   struct eng_tref params)
{
    struct {
        uint32_t count;
        float momentum, wd;
        uint32_t nesterov;
        float lr_scale;
    } pc = {count, momentum, wd, nesterov != 0, lr_scale};
    if (elem_vec4(r, w, g, count)) {
        struct eng_tref b[4] = {w, NOBUF, buf, params}, t[3] = {w, g, buf.bytes ? buf : w};
        elem4_dispatch(r, cwt_spv_optim(CWT_OPTIM_OP_SGD, CWT_OPTIM_WIDTH_X4), b, 4, t, 3,
                       &pc.count, &pc, sizeof(pc));
        return;
    }
    uint32_t gx, gy;
    grid1d(count, &gx, &gy);
    struct eng_tref b[4] = {w, g, buf, params};
    eng_rec_dispatch(r, cwt_spv_optim(CWT_OPTIM_OP_SGD, CWT_OPTIM_WIDTH_X1), b, 4, &pc, sizeof(pc),
                     gx, gy, 1);
}

void op_adam_scaled(struct eng_rec *r, uint32_t count, float beta1, float beta2, float eps,
                    float wd, int decoupled, float lr_scale, struct eng_tref w, struct eng_tref g,
                    struct eng_tref m, struct eng_tref v, struct eng_tref params)
{
    struct {
        uint32_t count;
        float beta1, beta2, eps, wd;
        uint32_t decoupled;
        float lr_scale;
    } pc = {count, beta1, beta2, eps, wd, decoupled != 0, lr_scale};
    if (elem_vec4(r, w, g, count)) {
        struct eng_tref b[5] = {w, NOBUF, m, v, params}, t[4] = {w, g, m, v};
        elem4_dispatch(r, cwt_spv_optim(CWT_OPTIM_OP_ADAM, CWT_OPTIM_WIDTH_X4), b, 5, t, 4,
                       &pc.count, &pc, sizeof(pc));
        return;
    }
    uint32_t gx, gy;
    grid1d(count, &gx, &gy);
    struct eng_tref b[5] = {w, g, m, v, params};
    eng_rec_dispatch(r, cwt_spv_optim(CWT_OPTIM_OP_ADAM, CWT_OPTIM_WIDTH_X1), b, 5, &pc, sizeof(pc),
                     gx, gy, 1);
}

void op_sgd(struct eng_rec *r, uint32_t count, float momentum, float wd, int nesterov,
            struct eng_tref w, struct eng_tref g, struct eng_tref buf, struct eng_tref params)
{
    op_sgd_scaled(r, count, momentum, wd, nesterov, 1.0f, w, g, buf, params);
}

void op_adam(struct eng_rec *r, uint32_t count, float beta1, float beta2, float eps, float wd,
             int decoupled, struct eng_tref w, struct eng_tref g, struct eng_tref m,
             struct eng_tref v, struct eng_tref params)
{
    op_adam_scaled(r, count, beta1, beta2, eps, wd, decoupled, 1.0f, w, g, m, v, params);
}
