/*
 * store.h - the site store: two LMDB environments per site (DESIGN section 7), the main one
 * in STORE/ and the checkpoint environment in STORE/checkpoints/ (store_ckpt.c), behind one
 * struct store. Each environment has one writer in cwtd: the monitor writes the main one
 * (STORE_MONITOR), the trainer the checkpoint one (STORE_TRAINER); each maps the other's
 * read-only. cwtctl's read-write opens write both.
 *
 * Named databases of the main environment:
 *   images   image id (u64 big-endian) -> struct store_image_hdr + H*W*C uint8 pixels (HWC)
 *   index    split(1) | label(4, BE) | id(8, BE) -> empty (ordered listing per split/label)
 *   sources  BLAKE2b-256 of the source file's bytes -> image id (idempotent ingest)
 *   meta     string key -> value (input shape, counters, state ...)
 *   models   the monitor's records (store_models.c: incoming weights, visit result, best and
 *            final models, ensemble members)
 *   ledger   bundle records and last sequence per federation (store_ledger.c)
 *   audit    u64 sequence (BE) -> hash-chained audit record (store_audit.c)
 *   imeta    image id (u64 BE) -> the image's metadata columns (store_imeta.c); absent in
 *            stores made before it, which read as images without metadata
 * and of the checkpoint environment:
 *   models   the training driver's records: checkpoints, the model layout (store_models.c)
 *   meta     the training driver's meta keys ("norm"), through store_meta_get/put as usual
 * Which environment holds a record is decided here by its name, never by the caller
 * (store_model_put); older layouts migrate on open (store_ckpt.c).
 *
 * Lifetimes: a struct store is used by one thread. Pointers returned by read functions
 * point into the LMDB map and stay valid until the matching store_read_end().
 */
#ifndef CWT_STORE_H
#define CWT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/cwt.h"

struct store;

enum store_split { STORE_TRAIN = 0, STORE_VAL = 1, STORE_TEST = 2, STORE_NSPLITS = 3 };

#define STORE_RDONLY 0x1 /* open read-only (cwtctl while cwtd runs, auditors) */
#define STORE_CREATE 0x2 /* create the folder and environment if missing */
/* cwtd's trainer: the main environment read-only (a descriptor opened O_RDONLY, a read-only
 * map), the checkpoint environment read-write. Writing images, ledger, audit, a monitor's
 * record (store_model_is_main) or any meta key but the training driver's fails with
 * CWT_EPERM. Not with STORE_RDONLY, STORE_CREATE or STORE_MONITOR. */
#define STORE_TRAINER 0x4
/* cwtd's monitor, the mirror of STORE_TRAINER: the main environment read-write, the
 * checkpoint environment read-only (O_RDONLY descriptor, read-only map). Writing a record or
 * meta key of the training driver fails with CWT_EPERM. May be combined with STORE_CREATE
 * (which then creates the main environment only: the trainer creates its own). */
#define STORE_MONITOR 0x8

/* The owners and modes of the store's two environments when cwtd runs its trainer under
 * daemon.trainer_user (docs/threat-model.md, "Processes and their powers"): the trainer
 * reads the main environment through daemon.user's group and owns checkpoints/, which the
 * monitor reads through the same group; LMDB writes its lock file even for a read
 * transaction, so both lock.mdb are group-writable. cwtd sets them at a privileged start
 * and `cwtctl doctor` checks them, both from this table: [0] the main environment (the
 * store folder), [1] the checkpoint environment beneath it. */
struct store_env_mode {
    const char *dir;   /* relative to the store folder; "" is the folder itself */
    int trainer_owned; /* owner daemon.trainer_user, else daemon.user; group daemon.user's */
    unsigned dir_mode, data_mode, lock_mode; /* the folder, data.mdb, lock.mdb */
};
#define STORE_ENV_COUNT 2
extern const struct store_env_mode store_env_modes[STORE_ENV_COUNT];

/* Header stored in front of every image's pixels (little-endian on disk). */
struct store_image_hdr {
    uint32_t label;
    uint8_t split; /* enum store_split */
    uint8_t reserved[3];
    uint16_t h, w, c; /* equal to the store's input shape */
    uint16_t reserved2;
    uint8_t source_hash[32];
};

/* Opens (or with STORE_CREATE creates) the environment in dir. map_bytes is the LMDB map
 * size (0 = default 16 GiB). *out must be released with store_close(). Without STORE_CREATE,
 * CWT_ENOENT means there is no store yet: none in dir, or one whose creator has not committed
 * its first transaction. */
int store_open(const char *dir, int flags, uint64_t map_bytes, struct store **out, char *err,
               size_t errlen);
void store_close(struct store *st);

/* Name of a split ("train", "val", "test") and its inverse (CWT_EINVAL if unknown). */
const char *store_split_name(enum store_split s);
int store_split_parse(const char *name, enum store_split *out);

/* The store's input shape. Set once (first ingest or init); store_set_shape on a store with a
 * different shape fails with CWT_ESTATE. */
int store_set_shape(struct store *st, uint32_t h, uint32_t w, uint32_t c);
int store_get_shape(struct store *st, uint32_t *h, uint32_t *w, uint32_t *c);

/* --- writing images, in batches (one LMDB write transaction each) --- */

struct store_batch;
/* Begins a write batch. Only one batch may be open per store. */
int store_batch_begin(struct store *st, struct store_batch **out);
/* Adds one image (pixels: h*w*c bytes, HWC). Fails with CWT_EDUPLICATE if an image with the
 * same source hash exists (already committed or earlier in this batch). *id_out may be NULL. */
int store_put_image(struct store_batch *b, const struct store_image_hdr *hdr, const uint8_t *pixels,
                    uint64_t *id_out);
/* Commits (all images become visible at once) or aborts. Both free the batch. */
int store_batch_commit(struct store_batch *b);
void store_batch_abort(struct store_batch *b);

/* Returns 1 if a source with this content hash was ingested, 0 if not, <0 on error. */
int store_has_source(struct store *st, const uint8_t hash[32]);

/* --- reading images --- */

/* Starts a read snapshot; required around store_get_image / store_list. Nested calls are
 * not allowed. */
int store_read_begin(struct store *st);
void store_read_end(struct store *st);
/* Image by id; *pixels points into the map (valid until store_read_end). */
int store_get_image(struct store *st, uint64_t id, struct store_image_hdr *hdr,
                    const uint8_t **pixels);
/* Ids of every image in a split (all labels), ascending. *ids is malloc'd; caller frees. */
int store_list(struct store *st, enum store_split split, uint64_t **ids, size_t *n);
/* Ids of one split and label. */
int store_list_label(struct store *st, enum store_split split, uint32_t label, uint64_t **ids,
                     size_t *n);

/* Counts per split and label (counts[split][label], labels < max_labels). */
int store_counts(struct store *st, uint32_t max_labels, uint64_t (*counts)[CWT_MAX_CLASSES]);

/* Bytes the environment uses on disk. */
int store_disk_bytes(struct store *st, uint64_t *out);

/* --- per-image metadata (store_imeta.c): short text columns from the ingest CSV --- */

#define STORE_IMETA_MAX       16  /* columns per image */
#define STORE_IMETA_NAME_MAX  64  /* bytes of a column name */
#define STORE_IMETA_VALUE_MAX 128 /* bytes of a value */
/* Encoded: for each column, u8 name length, name, u8 value length, value (names ascending,
 * distinct; both non-empty). */
#define STORE_IMETA_BYTES_MAX (STORE_IMETA_MAX * (2 + STORE_IMETA_NAME_MAX + STORE_IMETA_VALUE_MAX))

struct store_imeta {
    uint32_t n;
    struct {
        char name[STORE_IMETA_NAME_MAX + 1];
        char value[STORE_IMETA_VALUE_MAX + 1];
    } kv[STORE_IMETA_MAX];
};

/* 1 if name is a valid column name: 1..STORE_IMETA_NAME_MAX bytes of [A-Za-z0-9_.-]. */
int store_imeta_name_ok(const char *name);
/* 0 if value is a valid value: 1..STORE_IMETA_VALUE_MAX bytes of well-formed UTF-8 without
 * control characters (C0, DEL, C1); else CWT_ETOOBIG (too long), CWT_EINVAL (empty),
 * CWT_EFORMAT (not UTF-8) or CWT_EPERM (a control character). */
int store_imeta_value_check(const char *value);

/* Adds (name, value) to m, keeping names ascending. CWT_EEXIST for a name given twice,
 * CWT_ETOOBIG beyond STORE_IMETA_MAX, CWT_EINVAL for a bad name or value. */
int store_imeta_set(struct store_imeta *m, const char *name, const char *value);
/* The value of column name in m, or NULL. */
const char *store_imeta_get(const struct store_imeta *m, const char *name);

/* Encodes m into out (cap >= STORE_IMETA_BYTES_MAX is always enough), *len bytes. Decodes
 * back, checking every rule above (CWT_ESTORE when malformed). */
int store_imeta_encode(const struct store_imeta *m, uint8_t *out, size_t cap, size_t *len);
int store_imeta_decode(const uint8_t *buf, size_t len, struct store_imeta *out);

/* Stores the metadata of image id (just added in this batch with store_put_image); m->n == 0
 * stores nothing. Errors as store_put_image. */
int store_put_image_meta(struct store_batch *b, uint64_t id, const struct store_imeta *m);

/* Metadata of image id inside a read snapshot (store_read_begin); out->n == 0 when the
 * image has none (also in a store without the imeta database). */
int store_get_image_meta(struct store *st, uint64_t id, struct store_imeta *out);

/* Calls fn for every image with metadata, in id order, inside a read snapshot; a non-zero
 * return from fn stops and is returned. Store errors as CWT_ESTORE. */
int store_each_image_meta(struct store *st,
                          int (*fn)(uint64_t id, const struct store_imeta *m, void *ctx),
                          void *ctx);

/* --- meta --- */

/* Copies the value of key into buf (at most buflen bytes), length in *len. CWT_ENOENT if
 * absent, CWT_ETOOBIG if buf is too small. */
int store_meta_get(struct store *st, const char *key, void *buf, size_t buflen, size_t *len);
int store_meta_put(struct store *st, const char *key, const void *val, size_t len);

/* --- models: weights and checkpoints by name (store_models.c) --- */

/* The names of the monitor's records, kept in the main environment: "cwtd.input",
 * "cwtd.result", "cwtd.best", "model" and "ensemble.*". Every other name (visit checkpoints
 * and their ".best", ".plateau", ".input", "cwtd.layout", cwtctl train's "train.resume") is
 * the training driver's, kept in the checkpoint environment. 1 for a main name, else 0. */
int store_model_is_main(const char *name);

/* Stores a blob under name, atomically replacing the previous one, in the environment the
 * name belongs to. CWT_EPERM when this handle holds that environment read-only. */
int store_model_put(struct store *st, const char *name, const void *blob, size_t len);
/* Copies a blob into a malloc'd buffer (*blob, caller frees). CWT_ENOENT if absent. */
int store_model_get(struct store *st, const char *name, uint8_t **blob, size_t *len);
/* Deletes a blob; CWT_ENOENT if absent, CWT_EPERM as store_model_put. */
int store_model_del(struct store *st, const char *name);

/* Prefix of cwtd's visit checkpoints ("cwtd.visit.cC.hH", see cycle_ckpt_name) and suffix of
 * the record beside one that holds the BLAKE2b-256 of the input weights its visit started
 * from. */
#define STORE_VISIT_PREFIX       "cwtd.visit."
#define STORE_VISIT_INPUT_SUFFIX ".input"

/* The start of a training job of visit `name` (a name under STORE_VISIT_PREFIX) whose input
 * weights hash to input_hash (BLAKE2b-256). In one transaction of the checkpoint environment:
 * deletes every record of every other visit; keeps this visit's records ("name", "name.*")
 * when "name.input" holds input_hash, else deletes them and records input_hash; deletes the
 * copies of main names that a migrated store left behind once the main environment has them.
 * *resume is 1 when the visit's checkpoints were kept (resume them), 0 when it starts afresh.
 * So a job resumes its own visit's checkpoint or none, and never one of an earlier run or
 * one written by a cwtd that did not record the hash. CWT_EPERM on a handle whose checkpoint
 * environment is read-only. */
int store_visit_begin(struct store *st, const char *name, const uint8_t input_hash[32],
                      int *resume);

/* --- ledger: bundles accepted and sent (store_ledger.c) --- */

struct ledger_entry {
    uint8_t bundle_id[16];
    uint8_t bundle_hash[32]; /* BLAKE2b-256 of the whole file */
    char federation[CWT_ID_MAX + 1];
    char peer[CWT_ID_MAX + 1]; /* sender (received) or first recipient (sent) */
    uint64_t sequence;
    uint32_t cycle, hop;
    uint8_t kind;     /* bundle kind code */
    uint8_t outgoing; /* 1 sent, 0 received */
    int64_t time;
};

/* Records a bundle. CWT_EB_REPLAY if its id is recorded already. For received bundles the
 * federation's last accepted sequence rises to entry->sequence. */
int ledger_record(struct store *st, const struct ledger_entry *e);
/* Looks a bundle up by id. CWT_ENOENT if unknown. */
int ledger_lookup(struct store *st, const uint8_t bundle_id[16], struct ledger_entry *out);
/* Highest accepted sequence for a federation (0 and CWT_ENOENT if none) and the hash of the
 * bundle that carried it (the chain head this site knows). */
int ledger_last(struct store *st, const char *federation, uint64_t *sequence,
                uint8_t head_hash[32]);
/* Every entry, oldest first. *out malloc'd; caller frees. */
int ledger_list(struct store *st, struct ledger_entry **out, size_t *n);

/* --- audit: hash-chained records (store_audit.c) --- */

struct audit_record {
    uint64_t seq;
    int64_t time;
    char event[32];    /* "key-load", "bundle-sealed", "bundle-opened", "bundle-rejected",
                          "ingest", "config-change", ... */
    char details[512]; /* one line, no newline */
    uint8_t prev_hash[32];
    uint8_t hash[32]; /* BLAKE2b-256(seq | time | event | details | prev_hash) */
};

/* Appends a record (seq and hashes filled in). The write is its own transaction. */
int audit_append(struct store *st, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* All records, oldest first. *out malloc'd; caller frees. */
int audit_list(struct store *st, struct audit_record **out, size_t *n);
/* Recomputes the chain. 0 if intact; CWT_EFORMAT with the first bad sequence in err. */
int audit_verify(struct store *st, char *err, size_t errlen);

#endif
