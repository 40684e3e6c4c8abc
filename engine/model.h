/*
 * model.h - internal: the model structure. Its description part (spec, tensors, activations,
 * layers; built by graph.c) is shared by both backends; the arena, staging ring and
 * recordings are the Vulkan backend's (model.c, train.c); the CPU backend keeps its state
 * behind `cpu` (cpu_model.c). Not part of the public contract.
 */
#ifndef CWT_ENGINE_MODEL_H
#define CWT_ENGINE_MODEL_H

#include "engine/backend.h"
#include "engine/ops.h"

#define ENG_MAX_TENSORS     320
#define ENG_MAX_ACTS        160
#define ENG_MAX_LAYERS      160
#define ENG_MAX_RECS        6
#define ENG_SLOTS           2          /* staging ring depth */
#define ENG_COL_CHUNK_BYTES (4u << 20) /* target im2col chunk of the CPU path (cache-sized) */
#define ENG_BN_EPS          1e-5f      /* PyTorch BatchNorm2d defaults */
#define ENG_BN_MOMENTUM     0.1f

/* Arena regions: parameters, their gradients and optimizer state share offsets, so one
 * optimizer dispatch covers every parameter. */
enum eng_region { REG_PARAM = 0, REG_GRAD, REG_OPT1, REG_OPT2, REG_BUF, REG_ACT, REG_COUNT };

struct mtensor {
    char name[96];
    enum eng_tensor_kind kind;
    uint32_t ndim, shape[4];
    uint64_t numel;
    enum eng_region region;
    VkDeviceSize off; /* bytes into the region (Vulkan backend) */
    int param;        /* ENG_T_OPTIM: the parameter it belongs to */
    float lr_scale;   /* ENG_T_PARAM: lr multiplier (0 = frozen: never updated) */
};

/* An activation in CNHW layout (c channels of n*h*w), with its gradient. */
struct act {
    uint32_t c, h, w;
    VkDeviceSize off, goff; /* value and gradient, bytes into REG_ACT */
    int relu;               /* produced by a fused ReLU: its gradient must be masked */
    int needs_grad;
    /* recording state */
    int has_grad, grad_masked;
};

enum ltype { L_CONV, L_BN, L_MAXPOOL, L_GAP, L_FLATTEN, L_DENSE, L_DROPOUT };

struct layer {
    enum ltype t;
    int in, out, res; /* activation indices (res: BN residual or -1) */
    int relu;
    uint32_t k, stride, pad;       /* conv, pool */
    int w, b, gamma, beta, rm, rv; /* tensor indices or -1 */
    VkDeviceSize aux;              /* conv: transposed weights; bn: saved stats; pool: argmax */
    VkDeviceSize scratch;          /* conv: split-K partials (max over batch sizes) */
    VkDeviceSize scratch_bytes;
    float p;
    uint32_t salt;
    uint32_t stage; /* fine-tuning stage (eng_finetune); ENG_STAGE_HEAD for the classifier */
    int frozen;     /* eng_model_set_finetune: eval-mode batch norm, no backward */
};

#define ENG_STAGE_HEAD 0xffffu

struct rec_entry {
    int used;
    uint32_t n;
    int predict;
    int slot;
    uint64_t last_use;
    struct eng_rec rec;
};

struct eng_model {
    struct eng_device *d;
    struct eng_model_spec spec;
    struct eng_optim_spec opt;
    uint32_t max_batch;
    uint64_t step;

    struct mtensor t[ENG_MAX_TENSORS];
    uint32_t nt;
    struct act acts[ENG_MAX_ACTS];
    uint32_t nacts;
    struct layer layers[ENG_MAX_LAYERS];
    uint32_t nl;
    int input, logits;
    uint32_t nstages; /* stages eng_model_set_finetune may freeze */
    int used;         /* a step or prediction has run: the groups are fixed */

    VkDeviceSize region_size[REG_COUNT];
    struct eng_buf region[REG_COUNT];
    /* small device-side areas inside REG_ACT */
    VkDeviceSize a_prm, a_labels, a_cw, a_ps, a_res, a_probs, a_temp, temp_bytes;
    VkDeviceSize a_col, col_bytes; /* im2col scratch of the CPU path (0 bytes: none) */

    /* host-visible staging ring */
    struct eng_buf staging[ENG_SLOTS];
    VkDeviceSize s_prm, s_labels, s_cw, s_x, s_res, s_probs, s_size;
    VkFence fence[ENG_SLOTS];
    int pending[ENG_SLOTS];
    struct eng_rec *inflight[ENG_SLOTS]; /* the recording submitted in each pending slot */
    int cur;

    struct rec_entry recs[ENG_MAX_RECS];
    uint64_t clock;
    uint8_t fingerprint[32];

    struct cpu_model *cpu; /* CPU backend state (cpu_model.c); NULL on Vulkan */
};

/* graph.c: builds the description of m->spec / m->opt (tensors in their final order, optimizer
 * state last, activations, layers) and the fingerprint. Nothing is allocated. */
int eng_graph_build(struct eng_model *m, char *err, size_t errlen);
/* graph.c: writes every tensor's initial value through eng_model_write_tensor (He init from
 * spec.seed, drawn in tensor order). */
int eng_graph_init(struct eng_model *m, char *err, size_t errlen);
/* graph.c: calls fn once per run of consecutive parameters with the same lr multiplier, in
 * tensor order, skipping frozen runs (multiplier 0). first is the run's first tensor index and
 * next the index of the tensor that starts the following run, or m->nt for the last run (its
 * end is then the end of the parameter region); scale is the run's multiplier. */
void eng_param_runs(struct eng_model *m,
                    void (*fn)(struct eng_model *m, uint32_t first, uint32_t next, float scale,
                               void *ctx),
                    void *ctx);

/* The Vulkan backend's entry points (device.c, model.c, train.c; the table is train.c's). */
void vk_device_close(struct eng_device *d);
int vk_model_init(struct eng_model *m, char *err, size_t errlen);
void vk_model_free(struct eng_model *m);
int vk_train_begin(struct eng_model *m, const float *x, const uint32_t *labels, uint32_t n,
                   const float *class_weights, float lr);
int vk_train_end(struct eng_model *m, float *loss, uint32_t *correct);
int vk_predict(struct eng_model *m, const float *x, uint32_t n, float *probs);
int vk_read_tensor(struct eng_model *m, uint32_t i, float *dst);
int vk_write_tensor(struct eng_model *m, uint32_t i, const float *src);

/* Records the training step (predict = 0) or inference (predict = 1) for batch size n,
 * reading from staging slot `slot`. */
int eng_model_record(struct eng_model *m, struct eng_rec *r, uint32_t n, int predict, int slot,
                     char *err, size_t errlen);

/* Waits for every pending step. */
int eng_model_sync(struct eng_model *m);

/* Tensor reference helpers. */
static inline struct eng_tref eng_region_ref(const struct eng_model *m, enum eng_region reg,
                                             VkDeviceSize off, VkDeviceSize bytes)
{
    struct eng_tref t = {m->region[reg].buf, off, bytes};
    return t;
}

#endif
