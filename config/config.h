/*
 * config.h - site configuration (cwtd.conf) and federation roster (roster.conf), libconfig.
 *
 * Both files are parsed strictly: unknown keys, wrong types and out-of-range values are
 * errors reported as "FILE:LINE: KEY: what was expected". The roster holds everything that
 * must be equal at all sites (sites in cycle order with their public key lines, and the
 * training recipe); its fingerprint is BLAKE2b-256 over a canonical encoding, so comments,
 * whitespace and key order in the file do not change it.
 */
#ifndef CWT_CONFIG_H
#define CWT_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cwt.h"

#define CWT_DEFAULT_CONFIG "/etc/cwt/cwtd.conf"
#define CWT_NAME_MAX       63 /* model, optimizer, schedule and class names */
#define CWT_KEYLINE_MAX    255
#define CWT_SIGN_PK_LEN    32 /* Ed25519 public key */
#define CWT_BOX_PK_LEN     32 /* X25519 public key */
#define CWT_KEYID_LEN      8

/* Site configuration: where this site keeps its things. All paths are absolute after
 * config_load (relative paths in the file are taken relative to the file's folder). */
struct cwt_config {
    char path[PATH_MAX]; /* the file this was read from */
    char site_id[CWT_ID_MAX + 1];
    char dir[PATH_MAX]; /* the site folder (folder of cwtd.conf by default) */
    char store_dir[PATH_MAX];
    char keys_dir[PATH_MAX];
    char inbox_dir[PATH_MAX];
    char outbox_dir[PATH_MAX];
    char socket_path[PATH_MAX];
    char roster_path[PATH_MAX];
    char gpu_device[CWT_NAME_MAX + 1];   /* "auto", an index, or a name substring */
    char user[CWT_NAME_MAX + 1];         /* user to run as when started as root ("" = stay) */
    char group[CWT_NAME_MAX + 1];        /* group allowed on the control socket */
    char trainer_user[CWT_NAME_MAX + 1]; /* the trainer's own user ("" = daemon.user's) */
    /* A listening socket where the service manager starts the trainer supervisor (as
     * trainer_user) for each connection, instead of cwtd forking it ("" = fork it). */
    char trainer_socket[PATH_MAX];
    uint64_t store_max_bytes; /* LMDB map size */
    uint32_t rescan_seconds;  /* inbox rescan period */
    uint32_t settle_seconds;  /* a short inbox file must stop growing this long */
    int allow_root;           /* run as root without daemon.user (audited) */
    int allow_no_landlock;    /* run on a kernel without Landlock (audited) */
    uint32_t max_bundle_mb;   /* largest bundle accepted */
};

enum cwt_lr_schedule {
    CWT_LR_CONSTANT = 0,
    CWT_LR_STEP,     /* lr * gamma^(floor(epoch / step_epochs)) */
    CWT_LR_COSINE,   /* cosine from lr to lr_min over the run */
    CWT_LR_CYCLICAL, /* triangular between lr_min and lr, half-period cycle_epochs */
};

enum cwt_optimizer { CWT_OPT_SGD = 0, CWT_OPT_ADAM, CWT_OPT_ADAMW };

enum cwt_heuristic { CWT_H_CWT = 0, CWT_H_SWT, CWT_H_ENSEMBLE };
/* The validation metric whose mean over a cycle's visits chooses the best cycle (the final
 * model) and drives patience: recipe.cycle.select. */
enum cwt_select { CWT_SEL_ACCURACY = 0, CWT_SEL_BALANCED_ACCURACY, CWT_SEL_AUC };

enum cwt_visit_unit { CWT_VISIT_EPOCHS = 0, CWT_VISIT_STEPS, CWT_VISIT_PROPORTIONAL };

/* The training recipe: model, data shape, hyper-parameters, cycle settings. */
struct cwt_recipe {
    char model[CWT_NAME_MAX + 1]; /* "cnn-small" or "resnet" */
    uint32_t resnet_depth;        /* 8, 10 or 18 (resnet only) */
    double width;                 /* width multiplier (resnet only) */
    uint32_t input_h, input_w, input_c;
    uint32_t classes;
    uint32_t n_class_names; /* 0, or == classes */
    char class_names[CWT_MAX_CLASSES][CWT_NAME_MAX + 1];
    uint64_t seed;
    uint32_t batch_size;
    uint32_t epochs; /* default for `cwtctl train` */
    enum cwt_optimizer optimizer;
    double lr, momentum, weight_decay, beta1, beta2, eps;
    int nesterov;
    enum cwt_lr_schedule schedule;
    double lr_min, gamma, step_epochs, cycle_epochs;
    double dropout;
    int augment_hflip;
    uint32_t augment_crop_pad;
    /* Augmentations for larger images (docs/roster.md "Augmentation"), all off by default:
     * torchvision's RandomResizedCrop with area fractions crop_scale and aspect ratios
     * crop_ratio (an alternative to crop_pad), vertical flip, rotation by up to rotate
     * degrees, brightness and contrast factors in [1 - x, 1 + x]. */
    int augment_vflip;
    int augment_resized_crop;
    double augment_crop_scale[2], augment_crop_ratio[2];
    double augment_rotate;
    double augment_brightness, augment_contrast;
    int balanced_sampling;
    int class_weighted_loss;
    enum cwt_heuristic heuristic;
    enum cwt_select select;
    enum cwt_visit_unit visit_unit;
    double visit_length; /* epochs, steps, or steps per 1000 local samples */
    uint32_t cycles;
    uint32_t patience;
    uint32_t bundle_ttl_days; /* expiry of sealed bundles */
    /* recipe.finetune: the first freeze_stages stages of a resnet (stem = stage 0) do not
     * train; the other parameters except the classifier step with lr * backbone_lr_scale. */
    uint32_t freeze_stages;
    double backbone_lr_scale;
    /* recipe.init: the federation starts from these weights instead of the seeded He init.
     * init_file is a plain file name (no '/'), in the roster's folder; init_hash is the
     * BLAKE2b-256 of the file's bytes, part of the roster fingerprint. */
    int has_init;
    char init_file[CWT_NAME_MAX + 1];
    uint8_t init_hash[32];
};

struct cwt_roster_site {
    char id[CWT_ID_MAX + 1];
    char key_line[CWT_KEYLINE_MAX + 1];
    uint8_t sign_pk[CWT_SIGN_PK_LEN];
    uint8_t box_pk[CWT_BOX_PK_LEN];
    uint8_t key_id[CWT_KEYID_LEN];
};

struct cwt_roster {
    char path[PATH_MAX];
    char federation[CWT_ID_MAX + 1];
    struct cwt_recipe recipe;
    uint32_t n_sites;
    struct cwt_roster_site sites[CWT_MAX_SITES];
};

/* Fills *cfg from path. Missing optional keys get defaults. CWT_ECONFIG with
 * "FILE:LINE: KEY: ..." in err on any error (unknown key, wrong type, out of range),
 * CWT_ENOENT if the file does not exist. */
int config_load(const char *path, struct cwt_config *cfg, char *err, size_t errlen);

/* Resolves the config path a command should use: explicit (if not NULL), else $CWT_CONFIG,
 * else CWT_DEFAULT_CONFIG. Never fails; returns a pointer to explicit, the environment or a
 * static string. */
const char *config_default_path(const char *explicit_path);

/* Sets every recipe field to its default (cnn-small 28x28x1, 10 classes, SGD ...). */
void recipe_defaults(struct cwt_recipe *r);

/* Loads and validates a roster file (key lines well-formed, site ids and keys unique,
 * recipe complete and in range). */
int roster_load(const char *path, struct cwt_roster *r, char *err, size_t errlen);

/* Writes a roster atomically (temp + fsync + rename) in the canonical layout. */
/* The path of the roster's initial weights (recipe.init.file beside the roster file).
 * CWT_ENOENT when the recipe has none, CWT_ETOOBIG when the path does not fit. */
int roster_init_path(const struct cwt_roster *r, char *out, size_t outlen);
int roster_save(const char *path, const struct cwt_roster *r, char *err, size_t errlen);

/* BLAKE2b-256 over the canonical encoding of federation id, sites (order, ids, keys) and
 * recipe. */
int roster_fingerprint(const struct cwt_roster *r, uint8_t out[32]);

/* Formats a fingerprint as grouped hex for reading aloud ("3f2a 91c0 ..."), out >= 80 bytes. */
void roster_fingerprint_text(const uint8_t fp[32], char *out, size_t outlen);

/* Index of the site with this id in cycle order, or -1. */
int roster_find_site(const struct cwt_roster *r, const char *site_id);

/* Index of the site whose signing key id matches, or -1. */
int roster_find_key_id(const struct cwt_roster *r, const uint8_t key_id[CWT_KEYID_LEN]);

/* Parses "cwt-site-v1 <site-id> <base64(ed25519_pk || x25519_pk)>" into site (fills id,
 * key_line, both public keys and the key id). CWT_EFORMAT with a sentence in err. */
int keyline_parse(const char *line, struct cwt_roster_site *site, char *err, size_t errlen);

/* Formats a key line and computes the key id (first 8 bytes of BLAKE2b-256 of
 * ed25519_pk || x25519_pk). out needs CWT_KEYLINE_MAX + 1 bytes. */
int keyline_format(const char *site_id, const uint8_t sign_pk[CWT_SIGN_PK_LEN],
                   const uint8_t box_pk[CWT_BOX_PK_LEN], char *out, size_t outlen,
                   uint8_t key_id[CWT_KEYID_LEN]);

/* Class index for a label string: a decimal index < classes, or a class name from the
 * recipe. Returns 0 and sets *out, or CWT_ENOENT. */
int recipe_label_index(const struct cwt_recipe *r, const char *label, uint32_t *out);

/* Creates a new site folder: DIR/cwtd.conf, DIR/roster.conf (the recipe and an empty site
 * list), and DIR/store, inbox, outbox, keys. Refuses (CWT_EEXIST) if DIR/cwtd.conf exists. */
int site_init(const char *dir, const char *site_id, const struct cwt_recipe *recipe, char *err,
              size_t errlen);

#endif
