// wg_sum.glsl - a sum over the WG_SIZE invocations of a workgroup (a power of two, defined by
// the including shader, which also declares local_size_x = WG_SIZE) in a fixed tree order, so
// that the result does not depend on scheduling (bit-identical runs). Every invocation must
// call it; every invocation gets the total.

shared float wg_red[WG_SIZE];

float wg_sum(float v)
{
    uint lid = gl_LocalInvocationID.x;
    wg_red[lid] = v;
    barrier();
    for (uint s = uint(WG_SIZE) / 2u; s > 0u; s >>= 1) {
        if (lid < s)
            wg_red[lid] += wg_red[lid + s];
        barrier();
    }
    float t = wg_red[0];
    barrier();
    return t;
}
