/*
 * engine.h - the training engine: device, models, training steps, inference. Two backends
 * run behind it: Vulkan compute shaders and the CPU (oneDNN).
 *
 * The engine knows nothing of crypto, bundles or the daemon. It takes batches of normalised
 * float images and labels, and exposes the model's tensors by name so callers can save them
 * (checkpoints, safetensors) and load them back.
 *
 * Lifetimes: a device outlives every model made on it. One thread uses a device and its
 * models at a time.
 */
#ifndef CWT_ENGINE_H
#define CWT_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "common/cwt.h"

/* ---------------------------------------------------------------- device */

struct eng_device;

struct eng_device_info {
    char name[256];
    char driver[256];     /* driver name and info, e.g. "llvmpipe / Mesa 22.3.6 (LLVM 15)" */
    char type[16];        /* "discrete", "integrated", "virtual", "cpu", "other" */
    uint32_t api_version; /* VK_MAKE_API_VERSION */
    uint32_t subgroup_size;
    uint32_t max_shared_memory;
    uint32_t max_workgroup_invocations;
    uint64_t max_storage_buffer_range;
    uint32_t index;   /* physical device index (Vulkan) */
    char backend[16]; /* "vulkan" or "cpu" (oneDNN) */
};

/* Opens a compute device. choice ($CWT_VK_DEVICE overrides it):
 *   NULL, "" or "auto"  a Vulkan GPU (discrete > integrated) if there is one, else "cpu"
 *   "cpu"               the CPU backend (oneDNN; threads: $CWT_CPU_THREADS, default all cores)
 *   "vulkan"            the best Vulkan device of any type (discrete > integrated > virtual >
 *                       CPU), lavapipe when there is no GPU
 *   "lavapipe"          Vulkan on llvmpipe (Mesa's CPU driver)
 *   a decimal index or a substring of a Vulkan device name
 * validation != 0 enables VK_LAYER_KHRONOS_validation on Vulkan and makes any message an error
 * (no effect on the CPU backend). Release with eng_device_close(). CWT_EVULKAN / CWT_ENOENT /
 * CWT_ENOMEM with a sentence in err. */
int eng_device_open(const char *choice, int validation, struct eng_device **out, char *err,
                    size_t errlen);
void eng_device_close(struct eng_device *dev);
void eng_device_get_info(const struct eng_device *dev, struct eng_device_info *info);
/* Number of validation messages reported so far (0 when validation is off). */
uint32_t eng_device_validation_errors(const struct eng_device *dev);

/* ---------------------------------------------------------------- model */

enum eng_optim { ENG_SGD = 0, ENG_ADAM, ENG_ADAMW };

struct eng_model_spec {
    char arch[32];  /* "cnn-small" or "resnet" */
    uint32_t depth; /* resnet: 8, 10 or 18 */
    float width;    /* resnet width multiplier (1.0 = 16/32/64 or 64.. channels) */
    uint32_t in_h, in_w, in_c;
    uint32_t classes;
    float dropout; /* before the last dense layer; 0 = none */
    uint64_t seed; /* He initialisation and dropout masks */
};

struct eng_optim_spec {
    enum eng_optim kind;
    float momentum;          /* SGD */
    int nesterov;            /* SGD */
    float weight_decay;      /* SGD: L2 added to the gradient; AdamW: decoupled */
    float beta1, beta2, eps; /* Adam/AdamW */
};

struct eng_model;

/* Creates a model with freshly initialised weights (deterministic from spec->seed) and its
 * arena (parameters, gradients, optimizer state, activations for up to max_batch images).
 * Release with eng_model_free(). */
int eng_model_create(struct eng_device *dev, const struct eng_model_spec *spec,
                     const struct eng_optim_spec *opt, uint32_t max_batch, struct eng_model **out,
                     char *err, size_t errlen);
void eng_model_free(struct eng_model *m);

/* Fine-tuning groups (recipe.finetune). Stages of a resnet: 0 is the stem (conv1, bn1), s in
 * 1..4 is layer<s> (three stages 1..3 for depth 8); the head is the last dense layer (fc, or fc2
 * of cnn-small). Every parameter outside the head and the frozen stages is the "backbone". */
struct eng_finetune {
    uint32_t freeze_stages;  /* resnet: stages 0..freeze_stages-1 are frozen; 0 = none */
    float backbone_lr_scale; /* backbone parameters step with lr * this (1 = as the head) */
};

/* Sets the fine-tuning groups of m. Frozen layers behave as PyTorch's requires_grad=False
 * plus module.eval(): their parameters, optimizer state and batch-norm running statistics
 * never change, their batch norms normalise with the running statistics, and no gradient is
 * computed for them. Backbone parameters update as a PyTorch parameter group with lr * scale
 * (momentum, Adam moments and weight decay all see the scaled rate). Call before the first
 * training step or prediction (CWT_ESTATE afterwards); CWT_EINVAL with a sentence in err for
 * freezing on cnn-small, more stages than the model has, or a scale outside [0, 1e3]. */
int eng_model_set_finetune(struct eng_model *m, const struct eng_finetune *f, char *err,
                           size_t errlen);
/* Number of stages of m that eng_model_set_finetune can freeze (0 for cnn-small). */
uint32_t eng_model_stages(const struct eng_model *m);

/* Fingerprint of architecture and tensor shapes (BLAKE2b-256): equal for equal specs, no
 * matter the weights. */
void eng_model_fingerprint(const struct eng_model *m, uint8_t out[32]);

/* Input layout expected by the step functions: float32 NCHW, n * in_c * in_h * in_w. */

/* Starts one training step on a batch (forward, backward, optimizer update with learning
 * rate lr). The batch is copied into the staging ring before this returns, so the caller
 * may prepare the next batch while the device works. class_weights: NULL or `classes`
 * floats (weighted cross-entropy). */
int eng_train_begin(struct eng_model *m, const float *x, const uint32_t *labels, uint32_t n,
                    const float *class_weights, float lr);
/* Waits for the step begun last; *loss = mean (weighted) loss, *correct = number of correct
 * top-1 predictions. Either pointer may be NULL. */
int eng_train_end(struct eng_model *m, float *loss, uint32_t *correct);

/* Inference in eval mode (batch norm running statistics, no dropout): probs gets
 * n * classes softmax probabilities. n <= max_batch. */
int eng_predict(struct eng_model *m, const float *x, uint32_t n, float *probs);

/* ------------------------------------------------------- tensors by name */

enum eng_tensor_kind {
    ENG_T_PARAM = 0, /* trainable parameter */
    ENG_T_BUFFER,    /* batch norm running mean / var */
    ENG_T_OPTIM,     /* optimizer state (momentum, Adam moments) */
};

struct eng_tensor_info {
    const char *name; /* e.g. "conv1.weight", "bn1.running_mean", "optim.conv1.weight.m"
                         (PyTorch naming where one exists); valid while the model lives */
    enum eng_tensor_kind kind;
    uint32_t ndim;
    uint32_t shape[4]; /* PyTorch layout: conv OIHW, dense [out, in] */
    uint64_t numel;
    float lr_scale; /* ENG_T_PARAM: its group's lr multiplier (0 = frozen); 1 otherwise */
};

uint32_t eng_model_tensor_count(const struct eng_model *m);
int eng_model_tensor_info(const struct eng_model *m, uint32_t i, struct eng_tensor_info *info);
/* Copies tensor i to/from host memory (numel floats). Waits for pending work. */
int eng_model_read_tensor(struct eng_model *m, uint32_t i, float *dst);
int eng_model_write_tensor(struct eng_model *m, uint32_t i, const float *src);

/* Optimizer step counter (Adam bias correction); saved with checkpoints. */
uint64_t eng_model_step(const struct eng_model *m);
void eng_model_set_step(struct eng_model *m, uint64_t step);

#endif
