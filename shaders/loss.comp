#version 450
// loss.comp - softmax cross-entropy on logits laid out [K][N] (class-major, as the dense GEMM
// writes them), with per-class weights (PyTorch CrossEntropyLoss(weight=w): the mean is
// sum(w_y * loss) / sum(w_y)).
//   OP_CE_FWD    per sample: probabilities into dz, per-sample (w*loss, w, correct) into ps
//   OP_CE_REDUCE one invocation sums ps in sample order: res = (mean loss, sum w, correct)
//   OP_CE_GRAD   dz = w_y * (p - onehot(y)) / sum w, in place
//   OP_SOFTMAX   probs[n*K + k] (sample-major for the host)
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 64) in;
layout(push_constant) uniform PC { uint N, K; } p;

#if defined(OP_CE_FWD)
BUF_RO(0, z);
UBUF_RO(1, labels);
BUF_RO(2, cw);
BUF_RW(3, ps);
BUF_RW(4, dz);
void main()
{
    uint n = gl_GlobalInvocationID.x;
    if (n >= p.N)
        return;
    float mx = z[n];
    uint am = 0u;
    for (uint k = 1u; k < p.K; k++) {
        float v = z[k * p.N + n];
        if (v > mx) {
            mx = v;
            am = k;
        }
    }
    float s = 0.0;
    for (uint k = 0u; k < p.K; k++)
        s += exp(z[k * p.N + n] - mx);
    float inv = 1.0 / s;
    for (uint k = 0u; k < p.K; k++)
        dz[k * p.N + n] = exp(z[k * p.N + n] - mx) * inv;
    uint y = labels[n];
    float w = cw[y];
    float loss = log(s) - (z[y * p.N + n] - mx);
    ps[n * 3u] = w * loss;
    ps[n * 3u + 1u] = w;
    ps[n * 3u + 2u] = am == y ? 1.0 : 0.0;
}
#elif defined(OP_CE_REDUCE)
BUF_RO(0, ps);
BUF_RW(1, res);
void main()
{
    if (gl_GlobalInvocationID.x != 0u)
        return;
    float l = 0.0, w = 0.0, c = 0.0;
    for (uint n = 0u; n < p.N; n++) {
        l += ps[n * 3u];
        w += ps[n * 3u + 1u];
        c += ps[n * 3u + 2u];
    }
    res[0] = w > 0.0 ? l / w : 0.0;
    res[1] = w;
    res[2] = c;
}
#elif defined(OP_CE_GRAD)
BUF_RW(0, dz);
UBUF_RO(1, labels);
BUF_RO(2, cw);
BUF_RO(3, res);
void main()
{
    uint i = gl_GlobalInvocationID.x;
    if (i >= p.N * p.K)
        return;
    uint k = i / p.N, n = i - k * p.N;
    uint y = labels[n];
    float sw = res[1];
    float scale = sw > 0.0 ? cw[y] / sw : 0.0;
    dz[i] = (dz[i] - (k == y ? 1.0 : 0.0)) * scale;
}
#elif defined(OP_SOFTMAX)
BUF_RO(0, z);
BUF_RW(1, probs);
void main()
{
    uint n = gl_GlobalInvocationID.x;
    if (n >= p.N)
        return;
    float mx = z[n];
    for (uint k = 1u; k < p.K; k++)
        mx = max(mx, z[k * p.N + n]);
    float s = 0.0;
    for (uint k = 0u; k < p.K; k++)
        s += exp(z[k * p.N + n] - mx);
    for (uint k = 0u; k < p.K; k++)
        probs[n * p.K + k] = exp(z[k * p.N + n] - mx) / s;
}
#endif
