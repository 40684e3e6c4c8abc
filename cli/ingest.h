/*
 * ingest.h - loading images and labels into the site store (cwtctl ingest).
 *
 * Sources:
 *   CSV   a file with the header "path,label", optionally followed by a "split" column and
 *         up to STORE_IMETA_MAX metadata columns (any other name: kept per image, see
 *         store_imeta in storage/store.h); paths are relative to the CSV's folder and must
 *         stay inside it (no absolute paths, no "..", no symlink leading out); label is a
 *         class index or a class name of the recipe.
 *   DIR   a folder with one sub-folder per class, named by class name or index; files may be
 *         nested deeper inside a class folder.
 *   IDX   an images file (idx3-ubyte) and a labels file (idx1-ubyte), each optionally gzip'd.
 *
 * Every image is decoded (PNG, JPEG, DICOM; IDX is raw), converted to the recipe's channel
 * count and resized to its input size, then stored with its label, split and content hash.
 * A source whose content hash is in the store already is skipped, so a run can be repeated
 * or resumed after a crash. Images are committed in batches.
 */
#ifndef CWT_INGEST_H
#define CWT_INGEST_H

#include <stdint.h>
#include <stdio.h>

#include "config/config.h"
#include "storage/store.h"

#define INGEST_BATCH_DEFAULT 512
#define INGEST_MAX_ITEMS     100000000u /* bounds a CSV, a folder tree or an IDX file */

enum ingest_split_mode {
    INGEST_SPLIT_DEFAULT = 0, /* the CSV's split column where present, else train */
    INGEST_SPLIT_FIXED,       /* every image without a CSV split goes to opt->split */
    INGEST_SPLIT_STRATIFIED,  /* seeded per-label shuffle: val, test, rest train */
};

/* What ingest does with a duplicate (the same image bytes as a stored image) whose label or
 * split differs from the stored copy's: a conflict the data steward must see. Duplicates that
 * agree are always skipped. */
enum ingest_dup_mode {
    INGEST_DUP_SKIP = 0, /* report it, store nothing (the default, as before) */
    INGEST_DUP_KEEP,     /* report it and store the conflicting copy too */
    INGEST_DUP_REFUSE    /* stop at the first, CWT_EDUPLICATE with a sentence in err */
};

/* The audit event of one conflict (cwtctl ingest appends them, cwtctl data counts them). */
#define INGEST_CONFLICT_EVENT "ingest-conflict"

/* One conflicting duplicate, as reported. */
struct ingest_conflict {
    const char *where;        /* the new copy: its path, or "FILE[i]" for IDX */
    const char *stored_where; /* the stored copy's path if ingested in this run, else NULL */
    uint8_t hash[32];         /* BLAKE2b-256 of the source bytes (the stored copy's too) */
    uint32_t label, stored_label;
    int split, stored_split; /* enum store_split */
    int kept;                /* INGEST_DUP_KEEP: the new copy was stored too */
};

struct ingest_options {
    enum ingest_split_mode split_mode;
    enum store_split split;             /* INGEST_SPLIT_FIXED */
    double val_fraction, test_fraction; /* INGEST_SPLIT_STRATIFIED, each in [0, 1) */
    uint64_t seed;                      /* INGEST_SPLIT_STRATIFIED */
    uint32_t batch_images;              /* images per commit; 0 = multiples of
                                           INGEST_BATCH_DEFAULT, at least 0.5 s of work */
    int progress;                       /* a progress line on stderr, redrawn with \r */
    FILE *report;                       /* one line per rejected item; NULL = silent */
    enum ingest_dup_mode duplicates;    /* conflicting duplicates */
    /* Called for each conflicting duplicate (the pointers live only during the call);
     * NULL = none. */
    void (*on_conflict)(const struct ingest_conflict *c, void *ctx);
    void *conflict_ctx;
};

/* Why an item was rejected; each is counted in the summary. */
enum ingest_reason {
    INGEST_R_FIELDS = 0,  /* CSV row with too few or too many fields, or too long */
    INGEST_R_LABEL,       /* label (or class folder) not in the recipe */
    INGEST_R_SPLIT,       /* CSV split not train, val or test */
    INGEST_R_OUTSIDE,     /* path absolute or outside the CSV's folder */
    INGEST_R_CLASSFOLDER, /* DIR: a file that is not inside a class folder */
    INGEST_R_UNREADABLE,  /* missing or unreadable file */
    INGEST_R_NOTIMAGE,    /* empty file or not a PNG, JPEG or DICOM image */
    INGEST_R_CORRUPT,     /* corrupt or truncated image */
    INGEST_R_TOOBIG,      /* over the file size or pixel limit */
    INGEST_R_UNSUPPORTED, /* valid file without usable pixels (DICOM without pixel data) */
    INGEST_R_META,        /* CSV metadata value too long, not UTF-8 or with a control char */
    INGEST_NREASONS
};

struct ingest_summary {
    uint64_t items;      /* rows, files or IDX images seen */
    uint64_t ingested;   /* newly stored */
    uint64_t duplicates; /* skipped: content already in the store */
    uint64_t conflicts;  /* duplicates whose label or split differed (skipped or kept) */
    uint64_t rejected;   /* reported and not stored */
    uint64_t reasons[INGEST_NREASONS];
    double seconds;
};

/* A short phrase for a reason ("label not in the recipe"). Never NULL. */
const char *ingest_reason_text(enum ingest_reason r);

/* Ingests inputs into st: one CSV file or one folder (ninputs == 1), or an IDX images file
 * and its labels file (ninputs == 2). The store's shape must equal the recipe's input
 * (store_set_shape first). Returns 0 when the run went through, rejected items included
 * (see sum->rejected); CWT_EINVAL with err filled for unusable inputs (missing source, bad
 * CSV header, bad IDX header, options out of range); other codes for store failures, after
 * which every batch committed so far stays committed. */
int ingest_run(struct store *st, const struct cwt_recipe *recipe, const char *const *inputs,
               int ninputs, const struct ingest_options *opt, struct ingest_summary *sum, char *err,
               size_t errlen);

/* Lists CSV text the way ingest_run lists a CSV file, without opening any image (for tests
 * and the fuzzer): text is len bytes, not necessarily NUL-terminated; name stands for the
 * file in messages; base is the real path of the folder the rows' paths are relative to.
 * Rejected rows are counted in sum and reported to opt->report; *rows is set to the number of
 * rows that would be ingested. CWT_EINVAL with err filled for a missing or bad header or
 * options out of range; CWT_ENOMEM. */
int ingest_csv_list(const char *text, size_t len, const char *name, const char *base,
                    const struct cwt_recipe *recipe, const struct ingest_options *opt,
                    struct ingest_summary *sum, size_t *rows, char *err, size_t errlen);

#endif
