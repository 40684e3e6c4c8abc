#version 450
// elementwise.comp - one invocation per element; 2-D grids for large tensors
// (index = x + y * groups_x * 64).
//   OP_ADD      y = a + b, then ReLU when relu != 0 (residual joins)
//   OP_RELU_BWD dx = y > 0 ? dy : 0
//   OP_DROPOUT  y = keep ? x * scale : 0, keep decided by a hash of (seed, step, salt, index):
//               the same mask in the forward and the backward pass, and on every device
// TEX variants (CPU devices, built with VEC4: count in vec4s): the operands through uniform
// texel buffers (bindings 8, 9), fetched before the bounds branch (a storage-buffer load inside
// it is a loop over the lanes on llvmpipe; a fetch past the view reads 0).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 64) in;

uint elem_index()
{
    return gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u;
}

#if defined(TEX)
layout(set = 0, binding = 8) uniform samplerBuffer TA;
layout(set = 0, binding = 9) uniform samplerBuffer TB;
#endif

#if defined(OP_ADD) && defined(TEX)
layout(push_constant) uniform PC { uint count, relu; } p;
layout(std430, set = 0, binding = 2) buffer Buf2 { VT y[]; };
void main()
{
    uint i = elem_index();
    VT v = TFETCH(TA, i) + TFETCH(TB, i);
    v = p.relu != 0u ? max(v, VT(0.0)) : v;
    if (i < p.count)
        y[i] = v;
}
#elif defined(OP_ADD)
layout(push_constant) uniform PC { uint count, relu; } p;
BUF_RO(0, a);
BUF_RO(1, b);
BUF_RW(2, y);
void main()
{
    uint i = elem_index();
    if (i >= p.count)
        return;
    float v = a[i] + b[i];
    y[i] = p.relu != 0u ? max(v, 0.0) : v;
}
#elif defined(OP_RELU_BWD) && defined(TEX)
layout(push_constant) uniform PC { uint count; } p;
layout(std430, set = 0, binding = 2) buffer Buf2 { VT dx[]; };
// TA = dy, TB = y
void main()
{
    uint i = elem_index();
    VT g = TFETCH(TA, i), v = TFETCH(TB, i);
    VT r = mix(VT(0.0), g, VPOS(v));
    if (i < p.count)
        dx[i] = r;
}
#elif defined(OP_RELU_BWD)
layout(push_constant) uniform PC { uint count; } p;
BUF_RO(0, dy);
BUF_RO(1, y);
BUF_RW(2, dx);
void main()
{
    uint i = elem_index();
    if (i >= p.count)
        return;
    dx[i] = y[i] > 0.0 ? dy[i] : 0.0;
}
#elif defined(OP_DROPOUT)
layout(push_constant) uniform PC { uint count, threshold, salt; float scale; } p;
BUF_RO(0, x);
BUF_RW(1, y);
PARAMS_BUF(2);
void main()
{
    uint i = elem_index();
    if (i >= p.count)
        return;
    bool keep = hash4(prm.seed_lo ^ p.salt, prm.seed_hi, prm.step, i) >= p.threshold;
    y[i] = keep ? x[i] * p.scale : 0.0;
}
#endif
