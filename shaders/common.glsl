// common.glsl - shared declarations for every cwt compute shader.
//
// Binding convention: set 0, bindings 0..7 are storage buffers of float (or uint) that each
// shader names itself; the engine binds unused slots to a small dummy buffer. Shapes come as
// push constants (<= 128 bytes); per-step values (learning rate, step, seed) come in the
// StepParams buffer so that command buffers can be recorded once and re-submitted.

#include "flags.h"

#define BUF_RO(i, name) \
    layout(std430, set = 0, binding = i) readonly buffer Buf##i { float name[]; }
#define BUF_RW(i, name) layout(std430, set = 0, binding = i) buffer Buf##i { float name[]; }
#define UBUF_RO(i, name) \
    layout(std430, set = 0, binding = i) readonly buffer Buf##i { uint name[]; }
#define UBUF_RW(i, name) layout(std430, set = 0, binding = i) buffer Buf##i { uint name[]; }

// VEC4 variants of the elementwise shaders handle four consecutive elements per invocation
// through rgba32f texel views and vec4 stores: on llvmpipe every storage-buffer store is a loop
// over the lanes, and a store of a vec4 costs about what a store of one float does (batch-norm
// apply 16.2 -> 9.0 ms per call in resnet-8). VT is the element type, TFETCH reads one,
// VPOS(v) tests v > 0 per component (false for NaN).
#if defined(VEC4)
#define VT vec4
#define TFETCH(t, i) texelFetch(t, int(i))
#define VPOS(v) greaterThan(v, vec4(0.0))
#else
#define VT float
#define TFETCH(t, i) texelFetch(t, int(i)).x
#define VPOS(v) ((v) > 0.0)
#endif

// Per-step parameters, written by the host before each submit (layout shared with
// engine/internal.h struct eng_step_params).
struct StepParams {
    float lr;
    uint step;     // optimizer step, 1-based during the update
    float bc1;     // 1 / (1 - beta1^step)
    float bc2;     // 1 / (1 - beta2^step)
    uint seed_lo;  // dropout seed (model seed)
    uint seed_hi;
    uint n;        // images in this batch
    uint pad;
};

#define PARAMS_BUF(i) \
    layout(std430, set = 0, binding = i) readonly buffer Params { StepParams prm; }

// Counter-based hash (a 32-bit "lowbias" finalizer applied to a mix of key and counter);
// gives dropout masks that depend only on (seed, step, element), never on scheduling.
uint hash_u32(uint x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

uint hash4(uint a, uint b, uint c, uint d)
{
    return hash_u32(a ^ hash_u32(b ^ hash_u32(c ^ hash_u32(d + 0x9e3779b9u))));
}

// a / b for a < 2^24 and b >= 1: a float estimate corrected to the exact quotient. llvmpipe has
// no vector integer division and scalarises `/` lane by lane; this stays in vector registers.
uint udiv(uint a, uint b)
{
    uint q = uint(float(a) / float(b));
    if (q * b > a)
        q--;
    else if ((q + 1u) * b <= a)
        q++;
    return q;
}
