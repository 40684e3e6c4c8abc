/*
 * sim_fed.c - the engine-free step arithmetic of `cwtctl simulate`: for fedavg and fedprox the
 * sample-weighted average, a round cut to the budget and the FedProx correction of an SGD
 * step; for cwt visits and fedavg rounds the whole steps of a fractional visit
 * (docs/simulate.md defines them; tests/unit/test_sim_fed.c checks them).
 */
#include <math.h>
#include <string.h>

#include "sim/sim.h"

void sim_avg_add(double *acc, const float *x, size_t numel, double w)
{
    for (size_t j = 0; j < numel; j++)
        acc[j] += w * (double)x[j];
}

int sim_avg_finish(const double *acc, size_t numel, double wsum, float *out)
{
    if (!(wsum > 0) || !isfinite(wsum))
        return CWT_EINVAL;
    for (size_t j = 0; j < numel; j++)
        out[j] = (float)(acc[j] / wsum);
    return 0;
}

void sim_round_steps(const uint64_t *full, uint32_t n, uint64_t left, uint64_t *out)
{
    uint64_t sum = 0, given = 0;

    for (uint32_t i = 0; i < n; i++)
        sum += full[i];
    if (sum <= left) {
        memcpy(out, full, n * sizeof(*out));
        return;
    }
    /* left < sum here. Below 2^32 both factors make the product exact in 64 bits; above, the
     * double quotient may be off by one, which the clamps and the deal below absorb. */
    for (uint32_t i = 0; i < n; i++) {
        if (left <= UINT32_MAX && full[i] <= UINT32_MAX)
            out[i] = left * full[i] / sum;
        else
            out[i] = (uint64_t)floor((double)left * ((double)full[i] / (double)sum));
        if (out[i] > full[i])
            out[i] = full[i];
        if (given + out[i] > left)
            out[i] = left - given;
        given += out[i];
    }
    /* At most n steps are missing after the floors; deal them in institution order. */
    while (given < left)
        for (uint32_t i = 0; i < n && given < left; i++)
            if (out[i] < full[i]) {
                out[i]++;
                given++;
            }
}

void sim_prox_correct(float *w, float *buf, const float *w_prev, const float *w_glob, size_t numel,
                      float mu, float lr, float momentum, int nesterov)
{
    const float k = buf != NULL && nesterov ? 1.0f + momentum : 1.0f;

    for (size_t j = 0; j < numel; j++) {
        float p = mu * (w_prev[j] - w_glob[j]);
        if (buf != NULL)
            buf[j] += p;
        w[j] -= lr * k * p;
    }
}

uint64_t sim_visit_steps(double x, uint64_t k)
{
    double a, b;

    if (!(x >= 1.0))
        return 1;
    /* Each end rounded on its own, so the sum over visits telescopes to round(k x). */
    a = floor((double)k * x + 0.5);
    b = floor((double)(k + 1) * x + 0.5);
    return b > a ? (uint64_t)(b - a) : 1;
}
