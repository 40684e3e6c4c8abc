/*
 * backend.h - internal: the table of functions a compute backend provides behind engine.h.
 *
 * In the spirit of ggml's ggml-backend.h: engine.c implements the public contract once
 * (argument checks, the model description of graph.c, initialisation, fingerprint, tensors by
 * name) and calls the device's backend for what runs on it. Two backends exist: "vulkan"
 * (device.c, ops.c, model.c, train.c: compute shaders on any Vulkan 1.1 device, lavapipe
 * included) and "cpu" (cpu_*.c: oneDNN primitives and plain C loops). Not part of the public
 * contract.
 */
#ifndef CWT_ENGINE_BACKEND_H
#define CWT_ENGINE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

struct eng_model;

struct eng_backend {
    const char *name; /* "vulkan" or "cpu": eng_device_info.backend */
    /* Releases what the backend holds for the device; the device itself is freed by the
     * caller. */
    void (*device_close)(struct eng_device *d);
    /* Allocates the backend's state for a model whose description (graph.c) is built: memory
     * for parameters, gradients, optimizer state and activations of up to max_batch images.
     * Tensors are written (initialised) after this returns. On failure model_free must still
     * be safe to call. */
    int (*model_init)(struct eng_model *m, char *err, size_t errlen);
    void (*model_free)(struct eng_model *m);
    /* The step functions of engine.h, arguments already checked. */
    int (*train_begin)(struct eng_model *m, const float *x, const uint32_t *labels, uint32_t n,
                       const float *class_weights, float lr);
    int (*train_end)(struct eng_model *m, float *loss, uint32_t *correct);
    int (*predict)(struct eng_model *m, const float *x, uint32_t n, float *probs);
    /* Tensor i (index checked) to / from numel floats in PyTorch layout. */
    int (*read_tensor)(struct eng_model *m, uint32_t i, float *dst);
    int (*write_tensor)(struct eng_model *m, uint32_t i, const float *src);
};

extern const struct eng_backend eng_backend_vulkan;
extern const struct eng_backend eng_backend_cpu;

/* How vk_device_open chooses among Vulkan devices. */
enum eng_vk_pick {
    ENG_VK_ANY = 0, /* the best of any type: discrete > integrated > virtual > CPU */
    ENG_VK_GPU,     /* discrete > integrated; CWT_ENOENT when there is none */
    ENG_VK_NAMED,   /* a decimal index or a substring of the device name */
};

/* Opens a Vulkan device (device.c); *out is filled in by the caller's allocation. */
int vk_device_open(const char *choice, enum eng_vk_pick pick, int validation,
                   struct eng_device **out, char *err, size_t errlen);
/* Opens the oneDNN CPU device (cpu_device.c). */
int cpu_device_open(struct eng_device **out, char *err, size_t errlen);

#endif
