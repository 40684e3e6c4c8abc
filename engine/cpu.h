/*
 * cpu.h - internal: the CPU backend's device (cpu_device.c) and model (cpu_model.c) state.
 *
 * oneDNN (the 2.x C API, dnnl.h) runs convolutions, batch norm, pooling, inner products and
 * layout reorders; plain C loops run the residual joins, ReLU masks, dropout, the loss and the
 * optimizers, with the formulas of the shaders. Activations live in the formats oneDNN prefers
 * (blocked, format_tag_any); parameters, gradients and optimizer state stay flat in PyTorch
 * layout, so tensors by name are plain copies and the optimizer is one loop.
 */
#ifndef CWT_ENGINE_CPU_H
#define CWT_ENGINE_CPU_H

#include <oneapi/dnnl/dnnl.h>

#include "engine/model.h"

struct cpu_device {
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    int threads; /* OpenMP threads oneDNN and the loops use */
};

/* Releases the oneDNN engine and stream (the backend's device_close). */
void cpu_device_close(struct eng_device *d);

/* Sets a sentence for a failed oneDNN call; returns CWT_EUNSUPPORTED or CWT_ENOMEM. */
int cpu_dnnl_err(dnnl_status_t st, const char *what, char *err, size_t errlen);

#endif
