/*
 * harness.h - shared helpers for the engine tests: a device per test binary, host-visible
 * test buffers, a seeded generator (fresh seed per run, printed on failure; CWT_TEST_SEED
 * repeats a run) and error measures.
 */
#ifndef CWT_TESTS_ENGINE_HARNESS_H
#define CWT_TESTS_ENGINE_HARNESS_H

#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/ops.h"
#include "engine/rng.h"

struct th {
    struct eng_device *d;
    struct eng_rng rng;
    uint64_t seed;
    struct eng_buf bufs[64];
    int nbufs;
};

/* LeakSanitizer: lavapipe (Mesa 22.3.6 in Debian 12) leaves a 128-byte block that only its
 * own static data points to; it is reported after the Vulkan loader has unloaded the driver,
 * with no module left to name (so lsan.supp's libvulkan_lvp.so rule cannot match it). Keeping the
 * driver loaded (RTLD_NODELETE) lets the rule see it. Call before the first eng_device_open; no
 * effect where lavapipe is not installed. */
static inline void th_keep_lavapipe_loaded(void)
{
    (void)dlopen("libvulkan_lvp.so", RTLD_NOW | RTLD_NODELETE);
}

static inline uint64_t th_seed(void)
{
    const char *s = getenv("CWT_TEST_SEED");
    if (s && *s)
        return strtoull(s, NULL, 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec;
}

/* Host-visible buffer of n floats filled from src (or zero); returns its tref. */
static inline struct eng_tref th_buf(struct th *t, const void *src, size_t n)
{
    char err[CWT_ERRLEN];
    struct eng_buf *b = &t->bufs[t->nbufs++];
    if (eng_buf_create(t->d, (n ? n : 1) * 4, ENG_MEM_HOST, b, err, sizeof(err)) != 0) {
        fprintf(stderr, "th_buf: %s\n", err);
        abort();
    }
    if (src)
        memcpy(b->map, src, n * 4);
    else
        memset(b->map, 0, (n ? n : 1) * 4);
    struct eng_tref r = {b->buf, 0, (n ? n : 1) * 4};
    return r;
}

static inline float *th_map(struct th *t, struct eng_tref r)
{
    for (int i = 0; i < t->nbufs; i++)
        if (t->bufs[i].buf == r.buf)
            return t->bufs[i].map;
    return NULL;
}

/* Zeroes the outputs before a run of another kernel variant, so that a variant that writes
 * nothing cannot pass on the results of the one before. */
static inline void th_clear(struct th *t, const struct eng_tref *refs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        memset(th_map(t, refs[i]), 0, refs[i].bytes);
}

static inline void th_free_bufs(struct th *t)
{
    for (int i = 0; i < t->nbufs; i++)
        eng_buf_free(t->d, &t->bufs[i]);
    t->nbufs = 0;
}

static inline void th_fill(struct th *t, float *x, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((eng_rng_uniform(&t->rng) * 2.0 - 1.0) * scale);
}

/* max |got - ref| / max(max |ref|, floor): a relative error against the output's scale. */
static inline double th_relerr(const float *got, const double *ref, size_t n, double floor)
{
    double mx = floor, e = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(ref[i]) > mx)
            mx = fabs(ref[i]);
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= e))
            e = d; /* NaN propagates */
    }
    return e / mx;
}

/* Opens t (zeroed first) for a test program NAME on device "cpu" or "vulkan" (keeping lavapipe
 * loaded for "vulkan"): seed from th_seed(), rng seeded with it, t->d open. With "vulkan" the
 * device must be a Vulkan one (CWT_VK_DEVICE may name another). Prints the device and the seed
 * on stderr; 0, or -1 with the reason on stderr. Pair with th_close. */
static inline int th_open(struct th *t, const char *device, const char *name)
{
    char err[CWT_ERRLEN];
    int vk = strcmp(device, "vulkan") == 0;
    memset(t, 0, sizeof(*t));
    t->seed = th_seed();
    if (vk)
        th_keep_lavapipe_loaded();
    eng_rng_seed(&t->rng, t->seed);
    if (eng_device_open(device, 0, &t->d, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: cannot open a %s device: %s\n", name, device, err);
        return -1;
    }
    if (vk && strcmp(t->d->info.backend, "vulkan") != 0) {
        fprintf(stderr, "%s needs a Vulkan device (CWT_VK_DEVICE names another)\n", name);
        eng_device_close(t->d);
        return -1;
    }
    fprintf(stderr, "%s: device %s, seed 0x%llx (CWT_TEST_SEED repeats a run)\n", name,
            t->d->info.name, (unsigned long long)t->seed);
    return 0;
}

/* cmocka teardown for a th_open fixture in *state: frees its buffers, closes its device. */
static inline int th_close(void **state)
{
    struct th *t = *state;
    th_free_bufs(t);
    eng_device_close(t->d);
    return 0;
}

#endif
