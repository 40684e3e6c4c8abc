#version 450
// elementwise.comp - one invocation per element; 2-D grids for large tensors
// (index = x + y * groups_x * 64).
//   OP_ADD      y = a + b, then ReLU when relu != 0 (residual joins)
//   OP_RELU_BWD dx = y > 0 ? dy : 0
//   OP_DROPOUT  y = keep ? x * scale : 0, keep decided by a hash of (seed, step, salt, index):
//               the same mask in the forward and the backward pass, and on every device
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 64) in;

uint elem_index()
{
    return gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u;
}

#if defined(OP_ADD)
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
