#version 450
// optim.comp - parameter updates over the arena's flat parameter region (all parameters, their
// gradients and their optimizer state are laid out in the same order, so one dispatch updates
// every tensor). Learning rate and bias corrections come from the StepParams buffer; lr_scale
// multiplies the rate for one parameter group (1 = the step's rate exactly).
//   OP_SGD   PyTorch SGD: g += wd*w; buf = mom*buf + g; g = nesterov ? g + mom*buf : buf
//   OP_ADAM  Adam (wd as L2 on the gradient) or AdamW (decoupled: w *= 1 - lr*wd)
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 64) in;

uint elem_index()
{
    return gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u;
}

#if defined(TEX)
// TEX variants (CPU devices, built with VEC4: count in vec4s): every operand is fetched from a
// uniform texel buffer before the bounds branch and the results are stored as vec4s (on
// llvmpipe a storage-buffer access in a branch is a loop over the lanes). Same arithmetic as
// the scalar variants, so the same results.
layout(set = 0, binding = 8) uniform samplerBuffer TW;
layout(set = 0, binding = 9) uniform samplerBuffer TG;
layout(set = 0, binding = 10) uniform samplerBuffer TM; // SGD momentum buffer / Adam m
layout(set = 0, binding = 11) uniform samplerBuffer TV; // Adam v
#endif

#if defined(OP_SGD) && defined(TEX)
layout(push_constant) uniform PC {
    uint count;
    float momentum, wd;
    uint nesterov;
    float lr_scale;
} p;
layout(std430, set = 0, binding = 0) buffer Buf0 { VT w[]; };
layout(std430, set = 0, binding = 2) buffer Buf2 { VT buf[]; };
PARAMS_BUF(3);
// TM is bound to w when there is no momentum (read, not used)
void main()
{
    float lr = prm.lr * p.lr_scale;
    uint i = elem_index();
    VT wi = TFETCH(TW, i);
    VT gr = TFETCH(TG, i) + p.wd * wi;
    VT b = p.momentum * TFETCH(TM, i) + gr;
    bool mom = p.momentum != 0.0;
    VT upd = mom ? (p.nesterov != 0u ? gr + p.momentum * b : b) : gr;
    if (i < p.count) {
        if (mom)
            buf[i] = b;
        w[i] = wi - lr * upd;
    }
}
#elif defined(OP_ADAM) && defined(TEX)
layout(push_constant) uniform PC {
    uint count;
    float beta1, beta2, eps, wd;
    uint decoupled;
    float lr_scale;
} p;
layout(std430, set = 0, binding = 0) buffer Buf0 { VT w[]; };
layout(std430, set = 0, binding = 2) buffer Buf2 { VT m[]; };
layout(std430, set = 0, binding = 3) buffer Buf3 { VT v[]; };
PARAMS_BUF(4);
void main()
{
    float lr = prm.lr * p.lr_scale, bc1 = prm.bc1, bc2 = prm.bc2;
    uint i = elem_index();
    VT wi = TFETCH(TW, i);
    VT gr = TFETCH(TG, i);
    bool dec = p.decoupled != 0u;
    wi = dec ? wi * (1.0 - lr * p.wd) : wi;
    gr = dec ? gr : gr + p.wd * wi;
    VT mi = p.beta1 * TFETCH(TM, i) + (1.0 - p.beta1) * gr;
    VT vi = p.beta2 * TFETCH(TV, i) + (1.0 - p.beta2) * gr * gr;
    VT wn = wi - lr * bc1 * mi / (sqrt(vi * bc2) + p.eps);
    if (i < p.count) {
        m[i] = mi;
        v[i] = vi;
        w[i] = wn;
    }
}
#elif defined(OP_SGD)
layout(push_constant) uniform PC {
    uint count;
    float momentum, wd;
    uint nesterov;
    float lr_scale;
} p;
BUF_RW(0, w);
BUF_RO(1, g);
BUF_RW(2, buf);
PARAMS_BUF(3);
void main()
{
    uint i = elem_index();
    if (i >= p.count)
        return;
    float gr = g[i] + p.wd * w[i];
    if (p.momentum != 0.0) {
        float b = p.momentum * buf[i] + gr;
        buf[i] = b;
        gr = p.nesterov != 0u ? gr + p.momentum * b : b;
    }
    w[i] = w[i] - prm.lr * p.lr_scale * gr;
}
#elif defined(OP_ADAM)
layout(push_constant) uniform PC {
    uint count;
    float beta1, beta2, eps, wd;
    uint decoupled;
    float lr_scale;
} p;
BUF_RW(0, w);
BUF_RO(1, g);
BUF_RW(2, m);
BUF_RW(3, v);
PARAMS_BUF(4);
void main()
{
    uint i = elem_index();
    if (i >= p.count)
        return;
    float wi = w[i];
    float gr = g[i];
    float lr = prm.lr * p.lr_scale;
    if (p.decoupled != 0u)
        wi *= 1.0 - lr * p.wd;
    else
        gr += p.wd * wi;
    float mi = p.beta1 * m[i] + (1.0 - p.beta1) * gr;
    float vi = p.beta2 * v[i] + (1.0 - p.beta2) * gr * gr;
    m[i] = mi;
    v[i] = vi;
    w[i] = wi - lr * prm.bc1 * mi / (sqrt(vi * prm.bc2) + p.eps);
}
#endif
