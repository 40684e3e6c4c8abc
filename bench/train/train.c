/*
 * bench/train/train.c - training throughput of the engine (images/s) on synthetic data.
 *
 * Usage: bench_train ARCH H W C BATCH [STEPS] [DEPTH]
 *   e.g. bench_train cnn-small 28 28 1 64 30     bench_train resnet 64 64 3 64 10 8
 * The device is eng_device_open's "auto" unless CWT_VK_DEVICE names one (cpu, lavapipe,
 * vulkan, an index or a name); CWT_CPU_THREADS sets the CPU backend's threads.
 * Optimizer: SGD, momentum 0.9, lr 0.01 (what bench/train/torch_bench.py uses). Prints
 * "backend=", then "images_per_s=<x>" after a warm-up step (pipeline compile, command buffer
 * recording, oneDNN plans) and "gflop_per_s=<x>": 3x the forward pass's multiply-adds of the
 * convolutions and dense layers (x2 flops each), the usual estimate of a training step.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cwt.h"
#include "engine/engine.h"
#include "engine/model.h"

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: bench_train ARCH H W C BATCH [STEPS] [DEPTH]\n");
        return 2;
    }
    struct eng_model_spec spec = {0};
    snprintf(spec.arch, sizeof(spec.arch), "%s", argv[1]);
    spec.in_h = (uint32_t)atoi(argv[2]);
    spec.in_w = (uint32_t)atoi(argv[3]);
    spec.in_c = (uint32_t)atoi(argv[4]);
    uint32_t batch = (uint32_t)atoi(argv[5]);
    int steps = argc > 6 ? atoi(argv[6]) : 20;
    spec.depth = argc > 7 ? (uint32_t)atoi(argv[7]) : 8;
    spec.width = 1.0f;
    spec.classes = 10;
    spec.seed = 1;
    struct eng_optim_spec opt = {.kind = ENG_SGD, .momentum = 0.9f};
    char err[CWT_ERRLEN];
    struct eng_device *d;
    struct eng_model *m;
    if (eng_device_open(NULL, 0, &d, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_train: %s\n", err);
        return 1;
    }
    struct eng_device_info info;
    eng_device_get_info(d, &info);
    printf("device=%s type=%s driver=%s\nbackend=%s\n", info.name, info.type, info.driver,
           info.backend);
    if (eng_model_create(d, &spec, &opt, batch, &m, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_train: %s\n", err);
        eng_device_close(d);
        return 1;
    }
    size_t per = (size_t)spec.in_c * spec.in_h * spec.in_w;
    float *x = malloc(per * batch * sizeof(float));
    uint32_t *y = malloc(batch * sizeof(uint32_t));
    if (!x || !y)
        return 1;
    for (size_t i = 0; i < per * batch; i++)
        x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (uint32_t i = 0; i < batch; i++)
        y[i] = i % spec.classes;
    float loss = 0;
    uint32_t correct = 0;
    double t0 = cwt_monotonic();
    int rc = eng_train_begin(m, x, y, batch, NULL, 0.01f);
    if (rc == 0)
        rc = eng_train_end(m, &loss, &correct);
    printf("warmup_s=%.3f loss=%.4f\n", cwt_monotonic() - t0, loss);
    t0 = cwt_monotonic();
    for (int s = 0; s < steps && rc == 0; s++) {
        rc = eng_train_begin(m, x, y, batch, NULL, 0.01f);
        if (rc == 0)
            rc = eng_train_end(m, &loss, &correct);
    }
    double t = cwt_monotonic() - t0;
    if (rc != 0)
        fprintf(stderr, "bench_train: step failed: %s\n", cwt_strerror(rc));
    double flop = 0; /* per image, forward */
    for (uint32_t i = 0; i < m->nl; i++) {
        const struct layer *l = &m->layers[i];
        const struct act *a = &m->acts[l->in], *o = &m->acts[l->out];
        if (l->t == L_CONV)
            flop += 2.0 * o->c * o->h * o->w * a->c * l->k * l->k;
        else if (l->t == L_DENSE)
            flop += 2.0 * o->c * a->c * a->h * a->w;
    }
    printf("loss=%.4f steps=%d seconds=%.3f\nimages_per_s=%.1f\ngflop_per_s=%.1f\n", loss, steps, t,
           steps * (double)batch / t, 3.0 * flop * steps * batch / t / 1e9);
    free(x);
    free(y);
    eng_model_free(m);
    eng_device_close(d);
    return rc == 0 ? 0 : 1;
}
