/*
 * train.h - the training driver on top of the engine: recipe -> model, data loader over the
 * site store, learning-rate schedules, training sessions, evaluation metrics, prediction and
 * checkpoints (DESIGN section 6).
 *
 * Determinism: every random choice of the loader (shuffle order, balanced draws, flips, crop
 * offsets) is a pure function of (loader seed, epoch, position in the epoch), so the loader's
 * whole random state is struct train_cursor. Together with the engine's state (weights,
 * batch-norm buffers, optimizer state and step) a checkpoint therefore resumes a run exactly:
 * the same seed and the same device give bit-identical weights, interrupted or not.
 *
 * Threads: like the engine, a loader, session or model is used by one thread at a time. The
 * loader opens its own read snapshot for each batch (store_read_begin/end), so the caller
 * must not hold one on the same struct store while calling loader, session or evaluation
 * functions.
 */
#ifndef CWT_TRAIN_H
#define CWT_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "common/cwt.h"
#include "config/config.h"
#include "engine/engine.h"
#include "engine/rng.h"
#include "storage/store.h"

#define TRAIN_MAX_CHANNELS 4

/* Checkpoint names in the store's `models` database used by cwtctl train/eval/predict/model.
 * Other callers (daemon, simulate) may use names of their own. */
#define TRAIN_CKPT_RESUME "train.resume" /* full state of the current `cwtctl train` run */
#define TRAIN_CKPT_MODEL  "model"        /* the site's model: weights + buffers + metadata */

/* Meta key of the per-channel normalisation statistics (text, see train_norm_*). */
#define TRAIN_META_NORM "norm"

/* ------------------------------------------------------------ recipe -> engine specs */

/* Fills the engine's model and optimizer specs from a recipe (arch, depth, width, input
 * shape, classes, dropout, seed; optimizer kind and hyper-parameters). CWT_EUNSUPPORTED with
 * a sentence in err for a model name, depth or channel count the engine does not build. */
int train_specs_from_recipe(const struct cwt_recipe *r, struct eng_model_spec *model,
                            struct eng_optim_spec *optim, char *err, size_t errlen);

/* Creates a model from a recipe with max_batch = recipe batch size (at least 1). Release
 * with eng_model_free(). */
int train_model_from_recipe(struct eng_device *dev, const struct cwt_recipe *r,
                            struct eng_model **out, char *err, size_t errlen);

/* Applies recipe.finetune (frozen stages, backbone lr multiplier) to a model created from
 * the recipe's specs and not yet stepped (eng_model_set_finetune); train_model_from_recipe
 * does this itself. Errors as eng_model_set_finetune. */
int train_model_finetune(struct eng_model *m, const struct cwt_recipe *r, char *err, size_t errlen);

/* Fingerprint of the recipe's model (architecture and tensor shapes, eng_model_fingerprint):
 * what every bundle of the federation must carry. Opens the device `device_choice` (NULL or
 * "auto" as eng_device_open), builds the model once and frees it again. */
int train_recipe_fingerprint(const struct cwt_recipe *r, const char *device_choice, uint8_t out[32],
                             char *err, size_t errlen);

/* ------------------------------------------------------------ random numbers */

/* SplitMix64 finaliser of a, b, c: the counter-based generator behind every random choice. */
uint64_t train_hash3(uint64_t a, uint64_t b, uint64_t c);

/* A small sequential generator seeded from a 64-bit value: the engine's xoshiro256**. */
struct train_rng {
    struct eng_rng g;
};
void train_rng_seed(struct train_rng *rng, uint64_t seed);
uint64_t train_rng_next(struct train_rng *rng);
/* Uniform integer in [0, bound) without modulo bias; bound > 0. */
uint64_t train_rng_below(struct train_rng *rng, uint64_t bound);
/* Uniform double in [0, 1) with 53 random bits. */
double train_rng_unit(struct train_rng *rng);

/* ------------------------------------------------------------ normalisation */

/* Per-channel statistics of pixel/255 over a training split; x = (pixel/255 - mean) / std. */
struct train_norm {
    uint32_t channels; /* 1..TRAIN_MAX_CHANNELS */
    float mean[TRAIN_MAX_CHANNELS];
    float std[TRAIN_MAX_CHANNELS]; /* > 0 (a constant channel gets std 1) */
};

/* Exact integer statistics of pixel values 0..255 over a set of images, per channel. */
struct train_norm_sums {
    uint32_t channels;
    uint64_t pixels; /* per channel */
    uint64_t sum[TRAIN_MAX_CHANNELS], sumsq[TRAIN_MAX_CHANNELS];
};

/* The sums over the images ids[0..n) (n > 0). CWT_EINVAL if n == 0, store errors as
 * returned. */
int train_norm_sums(struct store *st, const uint64_t *ids, size_t n, struct train_norm_sums *out);
/* Mean and std of pixel/255 from sums (also sums pooled over several sites, which is how
 * a federation shares one normalisation). CWT_EINVAL when channels or pixels are 0. */
int train_norm_from_sums(const struct train_norm_sums *s, struct train_norm *out);

/* Computes mean and standard deviation over the images ids[0..n) (n > 0) in double
 * precision. CWT_EINVAL if n == 0, store errors as returned. */
int train_norm_compute(struct store *st, const uint64_t *ids, size_t n, struct train_norm *out);

/* Stores / loads the statistics under TRAIN_META_NORM as one text line
 * "cwt-norm-v1 C mean0 std0 ..." (round-trip exact). Load: CWT_ENOENT if absent,
 * CWT_EFORMAT if malformed or if the channel count differs from the store's shape. */
int train_norm_save(struct store *st, const struct train_norm *n);
int train_norm_load(struct store *st, struct train_norm *out);

/* Loads the stored statistics, or computes them once from the whole training split and
 * stores them (a read-only store only computes). CWT_ENOENT with a sentence if the training
 * split is empty. */
int train_norm_ensure(struct store *st, struct train_norm *out, char *err, size_t errlen);

/* Formats "m0,m1,...", "s0,s1,..." (%.9g) and parses them back, for safetensors metadata.
 * Parse: CWT_EFORMAT unless exactly `channels` finite values (std > 0). */
void train_norm_format(const struct train_norm *n, char *mean_out, char *std_out, size_t len);
int train_norm_parse(const char *mean, const char *std, uint32_t channels, struct train_norm *out);

/* Normalises n HWC uint8 images (h*w*c each) into float NCHW (out: n*c*h*w floats). */
void train_normalize_images(const struct train_norm *norm, const uint8_t *hwc, uint32_t n,
                            uint32_t h, uint32_t w, uint32_t c, float *out);

/* ------------------------------------------------------------ data loader */

/* Where the loader stands; this is its whole random state (see the top of this file). */
struct train_cursor {
    uint64_t epoch; /* 0-based epoch the next batch comes from */
    uint64_t pos;   /* index in that epoch's order of the next sample */
};

/* Augmentations for larger images, applied after hflip / crop_pad's draw (all zero = off).
 * Order as torchvision composes them: random resized crop, flips, rotation, then brightness
 * and contrast. The geometric ones are one affine map from output to source pixel centres,
 * sampled once with bilinear interpolation; a source point more than half a pixel outside the
 * image is black (pixel 0, torchvision's fill=0), nearer ones take the edge pixel. */
struct train_augment {
    int vflip;            /* random vertical flip, p = 1/2 */
    int resized_crop;     /* RandomResizedCrop: area fraction in crop_scale, aspect ratio
                             log-uniform in crop_ratio, resized to the input size */
    double crop_scale[2]; /* 0 < lo <= hi <= 1 (torchvision: 0.08, 1) */
    double crop_ratio[2]; /* 0 < lo <= hi (torchvision: 3/4, 4/3) */
    double rotate;        /* angle uniform in [-rotate, rotate] degrees, 0..180 */
    double brightness;    /* pixel factor uniform in [1 - b, 1 + b], 0..1 */
    double contrast;      /* blend with the image's mean grey, factor in [1 - c, 1 + c], 0..1 */
};

/* The random draws of one sample's augmentation (train_augment_draw), exposed so tests can
 * apply chosen values. */
struct train_aug_draw {
    uint32_t crop_y, crop_x, crop_h, crop_w; /* source window, resized to the image size */
    int32_t pad_dy, pad_dx;                  /* crop_pad shift in [-pad, pad] */
    int hflip, vflip;
    double angle;                /* degrees, counter-clockwise as torchvision's rotate */
    double brightness, contrast; /* factors; 1 = unchanged */
};

struct train_loader_opts {
    uint32_t batch_size;    /* >= 1 */
    uint64_t seed;          /* shuffle / sampling / augmentation seed */
    int shuffle;            /* 0: ids in the given order every epoch (evaluation) */
    int balanced;           /* class-balanced sampling with replacement, p(i) ~ 1/count(label) */
    int hflip;              /* random horizontal flip, p = 1/2 */
    uint32_t crop_pad;      /* random crop of the original size after padding with black
                               (pixel 0, as torchvision's RandomCrop(padding)); 0 = none */
    int drop_last;          /* drop a final partial batch (never drops a whole 1-batch epoch) */
    struct train_norm norm; /* normalisation applied to every batch */
    struct train_augment aug;
};

/* Sets the loader's augmentation options (hflip, crop_pad, aug) from the recipe. */
void train_loader_augment_from_recipe(const struct cwt_recipe *r, struct train_loader_opts *o);

struct train_loader;

/* Creates a loader over ids[0..n) of st (copied; duplicates allowed). Reads every image's
 * label and checks its shape against the store's (CWT_EFORMAT naming the id otherwise).
 * Labels >= classes are an error (CWT_EFORMAT). The cursor starts at {0, 0}. Release with
 * train_loader_free(). */
int train_loader_new(struct store *st, const uint64_t *ids, size_t n, uint32_t classes,
                     const struct train_loader_opts *o, struct train_loader **out, char *err,
                     size_t errlen);
void train_loader_free(struct train_loader *l);

/* Shape of a batch element, number of samples and number of batches per epoch. */
void train_loader_shape(const struct train_loader *l, uint32_t *h, uint32_t *w, uint32_t *c);
size_t train_loader_size(const struct train_loader *l);
uint64_t train_loader_batches_per_epoch(const struct train_loader *l);
/* The loader's options (normalisation, seed, batch size ...). */
const struct train_loader_opts *train_loader_opts(const struct train_loader *l);
/* Samples per class among the loader's ids (counts[classes]). */
const uint64_t *train_loader_class_counts(const struct train_loader *l);

/* Order of epoch e: out[0..size) gets indices into the loader's ids (a permutation, or with
 * `balanced` a draw with replacement). Pure function of (seed, e). */
void train_loader_epoch_order(const struct train_loader *l, uint64_t epoch, uint32_t *out);

/* Fills the next batch: x gets *n * c*h*w floats NCHW (capacity batch_size images), labels
 * *n entries, ids (may be NULL) the image ids. If the cursor is at the end of its epoch it
 * first moves to the start of the next one. *epoch_end is set to 1 when this batch is the
 * last of its epoch (may be NULL). */
int train_loader_next(struct train_loader *l, float *x, uint32_t *labels, uint64_t *ids,
                      uint32_t *n, int *epoch_end);

/* The cursor; set it to resume where a checkpoint left off. */
struct train_cursor train_loader_get_cursor(const struct train_loader *l);
void train_loader_set_cursor(struct train_loader *l, struct train_cursor c);

/* Augments one HWC uint8 image as the loader does for the sample at (epoch, pos): exposed
 * so tests can check it. out has h*w*c bytes and must not overlap in. Without o->aug options
 * this is the crop with padding, then the flip, by whole pixels. */
void train_augment_image(const struct train_loader_opts *o, uint64_t epoch, uint64_t pos,
                         const uint8_t *in, uint32_t h, uint32_t w, uint32_t c, uint8_t *out);
/* The draws train_augment_image makes for (epoch, pos) when o->aug has an option on: a pure
 * function of (o->seed, epoch, pos), so batches do not depend on threads or history. */
void train_augment_draw(const struct train_loader_opts *o, uint64_t epoch, uint64_t pos, uint32_t h,
                        uint32_t w, struct train_aug_draw *d);
/* Applies draws d to in (h*w*c bytes, HWC) into out (same size, no overlap). */
void train_augment_apply(const struct train_aug_draw *d, const uint8_t *in, uint32_t h, uint32_t w,
                         uint32_t c, uint8_t *out);
/* CWT_EINVAL with a sentence in err when the options are out of range (the limits in
 * struct train_augment; resized_crop together with crop_pad). */
int train_augment_check(const struct train_loader_opts *o, char *err, size_t errlen);

/* Class weights for the weighted loss: w[k] = N / (K_present * count[k]) for classes present,
 * 1 for absent ones (they never occur in a batch). */
void train_class_weights(const uint64_t *counts, uint32_t classes, float *out);

/* ------------------------------------------------------------ learning-rate schedule */

/* Learning rate at a fractional epoch t (steps done / steps per epoch, counted from the start
 * of the schedule) of a schedule lasting total_epochs (cosine only):
 *   constant  lr
 *   step      lr * gamma^floor(t / step_epochs)
 *   cosine    lr_min + (lr - lr_min) * (1 + cos(pi * min(t, T) / T)) / 2
 *   cyclical  triangular between lr_min and lr, starting at lr_min, half period cycle_epochs */
double train_lr_at(const struct cwt_recipe *r, double t, double total_epochs);

/* ------------------------------------------------------------ metrics */

struct train_metrics {
    uint32_t classes;
    uint64_t n;
    double loss; /* mean cross-entropy -log p[label] (p clamped to 1e-12) */
    double accuracy;
    double balanced_accuracy; /* mean recall over classes that occur in the labels */
    double auc;               /* macro one-vs-rest ROC AUC over classes with positives and
                                 negatives (Mann-Whitney, ties count 1/2); NaN if none.
                                 Two classes: the AUC of class 1's probability. */
    double sensitivity;       /* two classes only: recall of class 1 (NaN otherwise) */
    double specificity;       /* two classes only: recall of class 0 (NaN otherwise) */
    double *recall;           /* [classes]; NaN for a class absent from the labels */
    double *class_auc;        /* [classes]; NaN where undefined */
    uint64_t *confusion;      /* [classes * classes], row = true label, column = predicted */
};

/* Computes every metric from probabilities (n * classes, row per sample) and labels < classes.
 * Predicted class = argmax (first on ties). Allocates the arrays; release with
 * train_metrics_free(). CWT_EINVAL for classes == 0 or a label out of range. */
int train_metrics_compute(const float *probs, const uint32_t *labels, size_t n, uint32_t classes,
                          struct train_metrics *out);
void train_metrics_free(struct train_metrics *m);

/* One-vs-rest ROC AUC of scores for the samples where positive[i] != 0 against the others,
 * with average ranks for ties. NaN if either group is empty. Allocates scratch memory; returns
 * NaN also when that fails. */
double train_auc(const float *scores, size_t stride, const uint8_t *positive, size_t n);

/* ------------------------------------------------------------ evaluation and prediction */

/* Runs the model in eval mode over ids (sequential batches of batch_size, no augmentation),
 * fills *out (release with train_metrics_free) and, if probs_out != NULL, a malloc'd array of
 * n * classes probabilities (caller frees). */
int train_evaluate(struct eng_model *m, struct store *st, const uint64_t *ids, size_t n,
                   uint32_t classes, const struct train_norm *norm, uint32_t batch_size,
                   struct train_metrics *out, float **probs_out, char *err, size_t errlen);

/* Probabilities for n HWC uint8 images of the model's input shape, in chunks of at most
 * max_batch. probs gets n * classes floats. */
int train_predict_images(struct eng_model *m, const struct eng_model_spec *spec,
                         const struct train_norm *norm, const uint8_t *hwc, uint32_t n,
                         uint32_t max_batch, float *probs);

/* ------------------------------------------------------------ training session */

/* What the session reports after every step (callers rate-limit what they draw). */
struct train_progress {
    uint64_t epoch;      /* 1-based loader epoch in progress */
    uint64_t step;       /* steps done in this run */
    uint64_t steps;      /* steps planned for this run */
    double loss;         /* mean training loss so far in this epoch */
    double images_per_s; /* over this run's steps so far */
    double eta_s;        /* remaining steps at the current speed */
};

/* Metrics of one finished epoch (or of the last, partial epoch of a step-based run). */
struct train_epoch_result {
    uint64_t epoch; /* 1-based loader epoch */
    uint64_t step;  /* optimizer step (eng_model_step) at its end */
    uint64_t images;
    double train_loss, train_accuracy; /* running over the epoch, train mode */
    double val_loss, val_accuracy;     /* eval mode on the validation ids; NaN without them */
    double val_balanced_accuracy, val_auc;
    double lr;           /* learning rate of the epoch's last step */
    double images_per_s; /* training images per second of compute in this epoch */
    double seconds;      /* wall time of the epoch including validation */
    int best;            /* 1 if this epoch is the best validation so far (see below) */
};

/* Return non-zero from a callback to stop the run after the current step (the session then
 * writes a checkpoint, if it has a name, and returns CWT_ESTATE). */
typedef int (*train_progress_fn)(const struct train_progress *p, void *ctx);
typedef int (*train_epoch_fn)(const struct train_epoch_result *r, void *ctx);

/* How long a run lasts. */
struct train_plan {
    enum cwt_visit_unit unit; /* epochs, steps, or steps per 1000 local samples */
    double length;            /* > 0 */
    /* Fractional visits: the run is visit number `visit` (0-based) of a series of equal visits
     * at one site, after `steps_before` steps of the earlier ones when has_before is 1 (else
     * taken as round(visit x)). Zero for a single run. */
    uint64_t visit, steps_before;
    int has_before;
};

/* Whole steps of the run planned by p on a loader of n samples and spe batches per epoch.
 * x, the real-valued steps of one visit, is length (steps), length * n / 1000 (proportional)
 * or length * spe (epochs); the run takes round((visit + 1) x) - steps_before steps, at least
 * one, so the remainder carries from visit to visit and k equal visits from the first take
 * round(k x) steps together (as simulate's sim_visit_steps). */
uint64_t train_plan_steps(const struct train_plan *p, uint64_t spe, size_t n);
/* The steps before the run that train_plan_steps counted from: steps_before, or
 * round(visit x) when has_before is 0. */
uint64_t train_plan_steps_before(const struct train_plan *p, uint64_t spe, size_t n);

struct train_session_opts {
    const struct cwt_recipe *recipe; /* schedule, class weighting */
    struct train_plan plan;
    /* Schedule position: the run's first step is at fractional epoch sched_offset of a
     * schedule lasting sched_total epochs (0 = the length of this run). CWT visits pass the
     * epochs done before this visit so the schedule continues across sites. */
    double sched_offset, sched_total;
    /* Validation after every epoch (eval mode): NULL/0 for none. The ids are copied. */
    const uint64_t *val_ids;
    size_t n_val;
    /* Checkpoints: when ckpt_name != NULL the full state (train_state_save with
     * TRAIN_SAVE_ALL) is put in the store's `models` database when a new run starts, at
     * every epoch end, every ckpt_every_steps steps (0 = epoch ends only), when stopped, and
     * at the end. */
    const char *ckpt_name;
    uint32_t ckpt_every_steps;
    /* When best_name != NULL, the weights (TRAIN_SAVE_WEIGHTS) are put there after every
     * epoch whose validation accuracy beats the best so far (every epoch without validation
     * ids), so the best-validation model is kept. */
    const char *best_name;
    train_progress_fn on_progress; /* may be NULL */
    train_epoch_fn on_epoch;       /* may be NULL */
    void *ctx;
};

struct train_session;

/* Creates a session training model m on the loader's data (both stay owned by the caller and
 * must outlive the session). The session saves and restores the loader's cursor. The store is
 * the loader's and also receives the checkpoints. Release with train_session_free(). */
int train_session_new(struct eng_model *m, const struct eng_model_spec *spec,
                      struct train_loader *loader, struct store *st,
                      const struct train_session_opts *o, struct train_session **out, char *err,
                      size_t errlen);
void train_session_free(struct train_session *s);

/* Loads the run's state from checkpoint `name` (written by a session with the same model
 * spec): weights, buffers, optimizer state and step, loader cursor, steps done and planned,
 * the epoch's running sums and the best validation so far. CWT_ENOENT if there is none,
 * CWT_EB_MODEL if it belongs to another model, CWT_EFORMAT if malformed. */
int train_session_resume(struct train_session *s, const char *name, char *err, size_t errlen);

/* Runs until the planned steps are done (a resumed run continues to the plan it was started
 * with). Each step: eng_train_begin(batch n) -> prepare batch n+1 on the CPU ->
 * eng_train_end(). Returns 0, CWT_ESTATE if a callback stopped it, CWT_ENUMERIC if the loss
 * became NaN/Inf, or an engine/store error. */
int train_session_run(struct train_session *s, char *err, size_t errlen);

/* Steps planned for the run and done so far; the last finished epoch's result (epoch 0 if
 * none yet); the best validation accuracy so far (-1 if none). */
uint64_t train_session_steps_planned(const struct train_session *s);
uint64_t train_session_steps_done(const struct train_session *s);
void train_session_last_epoch(const struct train_session *s, struct train_epoch_result *out);
double train_session_best_val(const struct train_session *s);

/* ------------------------------------------------------------ saving state */

#define TRAIN_SAVE_WEIGHTS 0x1 /* parameters and batch-norm buffers */
#define TRAIN_SAVE_OPTIM   0x2 /* optimizer state and step */
#define TRAIN_SAVE_ALL     (TRAIN_SAVE_WEIGHTS | TRAIN_SAVE_OPTIM)

/* What travels in the safetensors __metadata__ besides the tensors (all text). Keys written:
 * format ("cwt-model-v1"), arch, depth, width, input ("HxWxC"), classes, dropout, fingerprint
 * (hex), norm_mean, norm_std, class_names (comma-joined, only when it fits in 255 bytes),
 * step; and for checkpoints the state_* keys of the session. */
struct train_model_meta {
    struct eng_model_spec spec;
    uint8_t fingerprint[32];
    int has_norm;
    struct train_norm norm;
    uint32_t n_class_names;                      /* 0 or spec.classes */
    const char (*class_names)[CWT_NAME_MAX + 1]; /* save: from the recipe; NULL if none */
    uint64_t step;
};

/* A key/value pair for __metadata__. */
struct train_kv {
    const char *key;
    const char *value;
};

/* Serialises the model's tensors chosen by flags (engine names; PyTorch layout) with the
 * metadata above into a malloc'd safetensors image (*out, caller frees). extra: NULL or
 * n_extra more key/value pairs for __metadata__ (values of at most 255 bytes). The output depends
 * only on the model state and the arguments (no time stamps), so equal states give equal bytes. */
int train_state_save(struct eng_model *m, const struct eng_model_spec *spec,
                     const struct train_norm *norm, const struct cwt_recipe *recipe, int flags,
                     const struct train_kv *extra, size_t n_extra, uint8_t **out, size_t *outlen,
                     char *err, size_t errlen);

/* Loads a safetensors image into m. Strict: the fingerprint in __metadata__ must equal the
 * model's (CWT_EB_MODEL), every tensor of the kinds in flags must be present with the model's
 * shape and dtype F32, values finite (CWT_ENUMERIC), and no unknown tensor may be present
 * (CWT_EFORMAT) except an export's num_batches_tracked counters (skipped); with TRAIN_SAVE_OPTIM
 * the step is restored too. meta (may be NULL) gets the metadata read back (class_names stays
 * NULL). Nothing is written into m unless everything checks out. */
int train_state_load(struct eng_model *m, const uint8_t *buf, size_t len, int flags,
                     struct train_model_meta *meta, char *err, size_t errlen);

/* The export form of a saved image (`cwtctl model export`): the same tensors and metadata plus,
 * for every batch-norm layer, PyTorch's <layer>.num_batches_tracked (int64, 0-d) set to the
 * metadata's step, so that load_state_dict(strict=True) accepts the file. train_state_load
 * skips those counters. *out is malloc'd (caller frees). CWT_EFORMAT with a sentence in err
 * when buf is not a saved image. */
int train_state_export(const uint8_t *buf, size_t len, uint8_t **out, size_t *outlen, char *err,
                       size_t errlen);

/* Convenience for eval/predict/export: opens checkpoint `name` from st, creates the model
 * from the recipe on dev, loads the weights (TRAIN_SAVE_WEIGHTS) and returns the model, its
 * spec and the normalisation it was trained with. CWT_ENOENT with a sentence ("no trained
 * model in the store; run 'cwtctl train' first") if absent. */
int train_load_named(struct eng_device *dev, struct store *st, const char *name,
                     const struct cwt_recipe *r, struct eng_model **model,
                     struct eng_model_spec *spec, struct train_norm *norm, char *err,
                     size_t errlen);

#endif
