/*
 * ingest.c - the ingest engine behind `cwtctl ingest` (see ingest.h for the formats).
 *
 * A run has two phases. Listing reads the CSV, walks the folder or reads the IDX headers and
 * labels, rejecting what can be judged without opening an image (bad rows, unknown labels,
 * paths leading out), and yields a list of items. Splits are then assigned (stratified
 * splitting needs every label first), and each item is hashed, skipped if its content is
 * stored already, decoded, prepared and stored, in batches of one LMDB transaction each.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <sodium.h>
#include <zlib.h>

#include "decode/decode.h"
#include "decode/decoder.h"
#include "cli/ingest.h"
#include "cli/progress.h"
#include "common/fileio.h"

#define CSV_MAX_BYTES  (1024u * 1024u * 1024u)
#define CSV_LINE_MAX   8192
#define CSV_MAX_FIELDS (3 + STORE_IMETA_MAX) /* path, label, split, metadata columns */
#define DIR_MAX_DEPTH  16
#define IDX_DOMAIN     "cwt-idx-image-v1" /* separates IDX image hashes from file hashes */
/* Default batching: a commit costs two fsyncs, which on slow disks is most of the time of a
 * 512-image batch of small images. So without --batch, a batch grows in steps of 512 until
 * it holds half a second of work or 64 MiB of pixels; a crash still loses at most that. */
#define BATCH_MIN_SECONDS 0.5
#define BATCH_MAX_BYTES   (64u << 20)

struct item {
    char *path;   /* CSV, DIR: the file to read (malloc'd); NULL for IDX */
    uint64_t key; /* order for stratified splitting: independent of listing order */
    uint32_t label;
    int split;     /* enum store_split, or -1 until assigned */
    uint8_t *meta; /* CSV: encoded metadata columns (store_imeta_encode), malloc'd; or NULL */
    size_t meta_len;
};

struct item_list {
    struct item *v;
    size_t n, cap;
};

struct run {
    struct store *st;
    const struct cwt_recipe *recipe;
    const struct ingest_options *opt;
    struct ingest_summary *sum;
    struct decoder *dec; /* the sandboxed decoder child of image files */
    struct store_batch *batch;
    uint32_t in_batch, batch_images;
    int fixed_batch; /* --batch N: commit every N images exactly */
    double batch_t0; /* when the open batch began */
    uint8_t *pixels; /* one prepared image */
    size_t pixel_bytes;
    struct progress prog; /* "images i/N, ETA" on a terminal */
    size_t done, total;
    struct seen *seen; /* duplicates: what each stored source was (see on_duplicate) */
    size_t seen_cap, seen_n;
    int store_scanned; /* earlier runs' images are in seen */
    char *err;         /* ingest_run's: the sentence of a refused conflict */
    size_t errlen;
};

const char *ingest_reason_text(enum ingest_reason r)
{
    switch (r) {
    case INGEST_R_FIELDS:
        return "malformed CSV row";
    case INGEST_R_LABEL:
        return "label not in the recipe";
    case INGEST_R_SPLIT:
        return "unknown split";
    case INGEST_R_OUTSIDE:
        return "path outside the CSV's folder";
    case INGEST_R_CLASSFOLDER:
        return "file not in a class folder";
    case INGEST_R_UNREADABLE:
        return "missing or unreadable file";
    case INGEST_R_NOTIMAGE:
        return "not an image";
    case INGEST_R_CORRUPT:
        return "corrupt or truncated image";
    case INGEST_R_TOOBIG:
        return "over the size limit";
    case INGEST_R_UNSUPPORTED:
        return "no usable pixel data";
    case INGEST_R_META:
        return "bad metadata value";
    default:
        return "rejected";
    }
}

static void draw(struct run *r, int force)
{
    if (r->total > 0)
        progress_draw(&r->prog, force, r->done, r->total, "images %zu/%zu", r->done, r->total);
}

static void reject(struct run *r, enum ingest_reason why, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Counts a rejected item and reports it on one line. */
static void reject(struct run *r, enum ingest_reason why, const char *where, const char *fmt, ...)
{
    va_list ap;

    r->sum->rejected++;
    r->sum->reasons[why]++;
    if (r->opt->report == NULL)
        return;
    if (r->opt->report == stderr)
        progress_clear(&r->prog);
    fprintf(r->opt->report, "cwtctl: rejected %s: ", where);
    va_start(ap, fmt);
    vfprintf(r->opt->report, fmt, ap);
    va_end(ap);
    fputc('\n', r->opt->report);
}

/* --- the item list --- */

static int list_add(struct item_list *l, char *path, uint64_t key, uint32_t label, int split)
{
    if (l->n >= INGEST_MAX_ITEMS)
        return CWT_ETOOBIG;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 256, bytes;
        struct item *grown;
        if (cwt_mul_size(ncap, sizeof(*grown), &bytes) != 0)
            return CWT_ETOOBIG;
        grown = realloc(l->v, bytes);
        if (grown == NULL)
            return CWT_ENOMEM;
        l->v = grown;
        l->cap = ncap;
    }
    l->v[l->n++] = (struct item){.path = path, .key = key, .label = label, .split = split};
    return 0;
}

static void list_free(struct item_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].path);
        free(l->v[i].meta);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* FNV-1a of a name, mixed with the seed: the stratified order of an item depends only on
 * its own name and the seed, not on where it appears in the listing. */
static uint64_t name_key(uint64_t seed, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *name != '\0'; name++)
        h = (h ^ (uint8_t)*name) * 0x100000001b3ull;
    return splitmix64(seed ^ splitmix64(h));
}

struct order {
    uint64_t key;
    size_t index;
};

static int cmp_order(const void *a, const void *b)
{
    const struct order *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* Gives every item without a split one: the fixed split, train, or per label the first
 * round(n * val) of a seeded order to val, the next round(n * test) to test, the rest to
 * train. */
static int assign_splits(struct item_list *l, const struct ingest_options *opt, uint32_t classes)
{
    struct order *ord;
    size_t n;

    if (opt->split_mode != INGEST_SPLIT_STRATIFIED) {
        int s = opt->split_mode == INGEST_SPLIT_FIXED ? (int)opt->split : STORE_TRAIN;
        for (size_t i = 0; i < l->n; i++)
            if (l->v[i].split < 0)
                l->v[i].split = s;
        return 0;
    }
    if (l->n == 0)
        return 0;
    ord = malloc(l->n * sizeof(*ord)); /* l->n <= INGEST_MAX_ITEMS: no overflow */
    if (ord == NULL)
        return CWT_ENOMEM;
    for (uint32_t label = 0; label < classes; label++) {
        size_t n_val, n_test;
        n = 0;
        for (size_t i = 0; i < l->n; i++)
            if (l->v[i].split < 0 && l->v[i].label == label)
                ord[n++] = (struct order){.key = l->v[i].key, .index = i};
        if (n == 0)
            continue;
        qsort(ord, n, sizeof(*ord), cmp_order);
        n_val = (size_t)llround((double)n * opt->val_fraction);
        n_test = (size_t)llround((double)n * opt->test_fraction);
        if (n_val > n)
            n_val = n;
        if (n_test > n - n_val)
            n_test = n - n_val;
        for (size_t k = 0; k < n; k++)
            l->v[ord[k].index].split =
                k < n_val ? STORE_VAL : (k < n_val + n_test ? STORE_TEST : STORE_TRAIN);
    }
    free(ord);
    return 0;
}

/* --- duplicates --- */

/* Images stored in this run (with where they came from) and, once a duplicate needs them,
 * those of earlier runs (where unknown): what a duplicate's label and split are compared
 * with. Open addressing on the first 8 bytes of the BLAKE2b hash, which are uniform. */
struct seen {
    uint8_t hash[32];
    uint32_t label;
    int split;
    char *where; /* path or "FILE[i]"; NULL for an image of an earlier run */
    int used;
};

static uint64_t seen_slot(const uint8_t hash[32], size_t cap)
{
    uint64_t k;

    memcpy(&k, hash, sizeof(k));
    return k & (cap - 1);
}

static struct seen *seen_find(struct run *r, const uint8_t hash[32])
{
    if (r->seen_cap == 0)
        return NULL;
    for (uint64_t i = seen_slot(hash, r->seen_cap);; i = (i + 1) & (r->seen_cap - 1)) {
        struct seen *s = &r->seen[i];
        if (!s->used)
            return NULL;
        if (memcmp(s->hash, hash, 32) == 0)
            return s;
    }
}

static int seen_add(struct run *r, const uint8_t hash[32], uint32_t label, int split,
                    const char *where)
{
    struct seen *s;

    /* Kept at most half full so that probes stay short. */
    if (2 * (r->seen_n + 1) > r->seen_cap) {
        size_t cap = r->seen_cap ? 2 * r->seen_cap : 1024;
        struct seen *old = r->seen, *grown;
        if (cap > SIZE_MAX / sizeof(*grown) || (grown = calloc(cap, sizeof(*grown))) == NULL)
            return CWT_ENOMEM;
        for (size_t i = 0; i < r->seen_cap; i++) {
            uint64_t j;
            if (!old[i].used)
                continue;
            for (j = seen_slot(old[i].hash, cap); grown[j].used; j = (j + 1) & (cap - 1))
                ;
            grown[j] = old[i];
        }
        free(old);
        r->seen = grown;
        r->seen_cap = cap;
    }
    if (seen_find(r, hash) != NULL)
        return 0;
    for (uint64_t i = seen_slot(hash, r->seen_cap);; i = (i + 1) & (r->seen_cap - 1)) {
        s = &r->seen[i];
        if (!s->used)
            break;
    }
    memcpy(s->hash, hash, 32);
    s->label = label;
    s->split = split;
    s->where = NULL;
    if (where != NULL && (s->where = strdup(where)) == NULL)
        return CWT_ENOMEM;
    s->used = 1;
    r->seen_n++;
    return 0;
}

static void seen_free(struct run *r)
{
    for (size_t i = 0; i < r->seen_cap; i++)
        free(r->seen[i].where);
    free(r->seen);
    r->seen = NULL;
    r->seen_cap = r->seen_n = 0;
}

/* Adds the images of earlier runs (committed before this one began or in its earlier
 * batches; those of this run are there already). Done once, at the first duplicate. */
static int seen_load_store(struct run *r)
{
    int rc;

    r->store_scanned = 1;
    if ((rc = store_read_begin(r->st)) != 0)
        return rc;
    for (int sp = 0; sp < STORE_NSPLITS && rc == 0; sp++) {
        uint64_t *ids = NULL;
        size_t n = 0;
        if ((rc = store_list(r->st, (enum store_split)sp, &ids, &n)) != 0)
            break;
        for (size_t i = 0; i < n && rc == 0; i++) {
            struct store_image_hdr hdr;
            const uint8_t *px;
            if ((rc = store_get_image(r->st, ids[i], &hdr, &px)) == 0 &&
                seen_find(r, hdr.source_hash) == NULL)
                rc = seen_add(r, hdr.source_hash, hdr.label, hdr.split, NULL);
        }
        free(ids);
    }
    store_read_end(r->st);
    return rc;
}

/* The source hash a kept conflicting copy is stored under: the content hash bound to its
 * label and split, so the store's one-image-per-source rule still holds for it. */
static void conflict_hash(const uint8_t hash[32], uint32_t label, int split, uint8_t out[32])
{
    static const char domain[] = "cwt ingest conflicting copy";
    crypto_generichash_state hs;
    uint8_t ls[5] = {(uint8_t)label, (uint8_t)(label >> 8), (uint8_t)(label >> 16),
                     (uint8_t)(label >> 24), (uint8_t)split};

    crypto_generichash_init(&hs, NULL, 0, 32);
    crypto_generichash_update(&hs, (const uint8_t *)domain, sizeof(domain));
    crypto_generichash_update(&hs, hash, 32);
    crypto_generichash_update(&hs, ls, sizeof(ls));
    crypto_generichash_final(&hs, out, 32);
}

/* A source whose bytes are stored already arrived as (label, split) from where. A copy that
 * agrees with the stored one is skipped silently, as before. One that differs in label or
 * split is a data-quality problem: reported, passed to opt->on_conflict, and then skipped
 * (0), kept (1: store it under *alt), or refused (CWT_EDUPLICATE with a sentence in r->err). */
static int on_duplicate(struct run *r, const uint8_t hash[32], uint32_t label, int split,
                        const char *where, uint8_t alt[32])
{
    struct ingest_conflict c;
    struct seen *s = seen_find(r, hash);
    char stored[96], hex[17];
    int rc;

    if (s == NULL && !r->store_scanned) {
        if ((rc = seen_load_store(r)) != 0)
            return rc;
        s = seen_find(r, hash);
    }
    if (s == NULL || (s->label == label && s->split == split)) {
        r->sum->duplicates++;
        return 0;
    }
    r->sum->conflicts++;
    memset(&c, 0, sizeof(c));
    c.where = where;
    c.stored_where = s->where;
    memcpy(c.hash, hash, 32);
    c.label = label;
    c.split = split;
    c.stored_label = s->label;
    c.stored_split = s->split;
    sodium_bin2hex(hex, sizeof(hex), hash, 8);
    if (s->where != NULL)
        snprintf(stored, sizeof(stored), "%s", s->where);
    else
        snprintf(stored, sizeof(stored), "the stored image %s...", hex);
    if (r->opt->duplicates == INGEST_DUP_KEEP) {
        conflict_hash(hash, label, split, alt);
        rc = seen_find(r, alt) != NULL ? 1 : store_has_source(r->st, alt);
        if (rc < 0)
            return rc;
        c.kept = rc == 0;
    }
    if (r->opt->report != NULL) {
        if (r->opt->report == stderr)
            progress_clear(&r->prog);
        fprintf(r->opt->report,
                "cwtctl: %s (label %u, %s) has the same image bytes as %s (label %u, %s); %s\n",
                where, label, store_split_name((enum store_split)split), stored, s->label,
                store_split_name((enum store_split)s->split),
                r->opt->duplicates == INGEST_DUP_REFUSE ? "stopping"
                : c.kept                                ? "stored it too"
                                                        : "skipped");
    }
    if (r->opt->on_conflict != NULL)
        r->opt->on_conflict(&c, r->opt->conflict_ctx);
    if (r->opt->duplicates == INGEST_DUP_REFUSE)
        return cwt_seterr(r->err, r->errlen, CWT_EDUPLICATE,
                          "%s (label %u, %s) has the same image bytes as %s (label %u, %s); "
                          "nothing after it was ingested (--duplicates refuse)",
                          where, label, store_split_name((enum store_split)split), stored, s->label,
                          store_split_name((enum store_split)s->split));
    if (c.kept)
        return 1;
    r->sum->duplicates++;
    return 0;
}

/* --- storing --- */

static int batch_flush(struct run *r)
{
    int rc;

    if (r->batch == NULL)
        return 0;
    rc = store_batch_commit(r->batch);
    r->batch = NULL;
    r->in_batch = 0;
    return rc;
}

/* Prepares and stores one decoded image. Returns 0 (stored or duplicate) or a store error. */
static int store_one(struct run *r, const struct decoded_image *img, const uint8_t hash[32],
                     uint32_t label, int split, const uint8_t *meta, size_t meta_len,
                     const char *where)
{
    struct store_image_hdr hdr = {0};
    struct store_imeta m;
    uint64_t id;
    int rc;

    rc = image_prepare(img, r->recipe->input_h, r->recipe->input_w, r->recipe->input_c, r->pixels);
    if (rc != 0) {
        reject(r, rc == CWT_ETOOBIG ? INGEST_R_TOOBIG : INGEST_R_CORRUPT, where,
               "cannot resize: %s", cwt_strerror(rc));
        return rc == CWT_ENOMEM ? rc : 0;
    }
    if (r->batch == NULL) {
        rc = store_batch_begin(r->st, &r->batch);
        if (rc != 0)
            return rc;
        r->batch_t0 = cwt_monotonic();
    }
    hdr.label = label;
    hdr.split = (uint8_t)split;
    hdr.h = (uint16_t)r->recipe->input_h;
    hdr.w = (uint16_t)r->recipe->input_w;
    hdr.c = (uint16_t)r->recipe->input_c;
    memcpy(hdr.source_hash, hash, 32);
    rc = store_put_image(r->batch, &hdr, r->pixels, &id);
    if (rc == CWT_EDUPLICATE) {
        /* The same content earlier in this batch. */
        uint8_t alt[32];
        if ((rc = on_duplicate(r, hash, label, split, where, alt)) != 1)
            return rc;
        memcpy(hdr.source_hash, alt, 32);
        rc = store_put_image(r->batch, &hdr, r->pixels, &id);
        if (rc == CWT_EDUPLICATE) {
            r->sum->duplicates++;
            return 0;
        }
    }
    if (rc != 0)
        return rc;
    if ((rc = seen_add(r, hdr.source_hash, label, split, where)) != 0)
        return rc;
    /* The list holds what csv_parse encoded and checked; decoding checks it once more. */
    if (meta != NULL && ((rc = store_imeta_decode(meta, meta_len, &m)) != 0 ||
                         (rc = store_put_image_meta(r->batch, id, &m)) != 0))
        return rc;
    r->sum->ingested++;
    if (++r->in_batch % r->batch_images == 0 &&
        (r->fixed_batch || cwt_monotonic() - r->batch_t0 >= BATCH_MIN_SECONDS ||
         (uint64_t)r->in_batch * r->pixel_bytes >= BATCH_MAX_BYTES))
        return batch_flush(r);
    return 0;
}

static enum ingest_reason decode_reason(int rc)
{
    switch (rc) {
    case CWT_EFORMAT:
        return INGEST_R_NOTIMAGE;
    case CWT_ETOOBIG:
        return INGEST_R_TOOBIG;
    case CWT_EUNSUPPORTED:
        return INGEST_R_UNSUPPORTED;
    default:
        return INGEST_R_CORRUPT;
    }
}

/* Reads, hashes, decodes (in the decoder child, to the recipe's shape) and stores one image
 * file. */
static int ingest_file(struct run *r, const struct item *it)
{
    struct decoded_image img = {r->recipe->input_h, r->recipe->input_w, r->recipe->input_c, NULL};
    char msg[CWT_ERRLEN];
    uint8_t hash[32];
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc;

    rc = file_read_all(it->path, DECODE_MAX_FILE, &buf, &len, msg, sizeof(msg));
    if (rc != 0) {
        if (rc == CWT_ENOMEM)
            return rc;
        reject(r, rc == CWT_ETOOBIG ? INGEST_R_TOOBIG : INGEST_R_UNREADABLE, it->path, "%s", msg);
        return 0;
    }
    crypto_generichash(hash, sizeof(hash), buf, len, NULL, 0);
    rc = store_has_source(r->st, hash);
    if (rc == 1) {
        uint8_t alt[32];
        rc = on_duplicate(r, hash, it->label, it->split, it->path, alt);
        if (rc == 1) {
            memcpy(hash, alt, 32); /* --duplicates keep: stored as its own source */
            rc = 0;
        } else {
            free(buf);
            return rc;
        }
    }
    if (rc != 0) {
        free(buf);
        return rc;
    }
    img.pixels = malloc(r->pixel_bytes);
    if (img.pixels == NULL) {
        free(buf);
        return CWT_ENOMEM;
    }
    rc = decoder_decode_memory(r->dec, buf, len, it->path, img.h, img.w, img.c, img.pixels, msg,
                               sizeof(msg));
    free(buf);
    if (rc != 0) {
        decode_free(&img);
        if (rc == CWT_ENOMEM)
            return rc;
        reject(r, decode_reason(rc), it->path, "%s", msg);
        return 0;
    }
    rc = store_one(r, &img, hash, it->label, it->split, it->meta, it->meta_len, it->path);
    decode_free(&img);
    return rc;
}

/* --- CSV --- */

/* Splits a line into fields in place (RFC 4180 quoting: "a,b" and "" for a quote). Returns
 * the number of fields (possibly more than max, of which the first max are stored), or -1
 * for an unterminated quote. */
static int csv_fields(char *line, char **fields, int max)
{
    int n = 0;
    char *p = line;

    for (;;) {
        char *start = p, *w = p;
        if (*p == '"') {
            p++;
            for (;;) {
                if (*p == '\0')
                    return -1;
                if (*p == '"') {
                    if (p[1] == '"') {
                        *w++ = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                *w++ = *p++;
            }
            if (*p != ',' && *p != '\0')
                return -1; /* text after the closing quote */
        } else {
            while (*p != ',' && *p != '\0')
                w = ++p;
        }
        char sep = *p;
        *w = '\0';
        if (n < max)
            fields[n] = start;
        n++;
        if (sep == '\0')
            return n;
        p++;
    }
}

static char *trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t')
        s++;
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
        *--end = '\0';
    return s;
}

/* Resolves a CSV path inside base (a realpath). Returns 0 with the real path in out, or a
 * reason with a sentence in detail. */
static int csv_resolve(const char *base, const char *rel, char out[PATH_MAX],
                       enum ingest_reason *why, char *detail, size_t dlen)
{
    char joined[PATH_MAX];
    size_t blen = strlen(base);
    long depth = 0;
    const char *p = rel;

    if (*rel == '\0') {
        *why = INGEST_R_FIELDS;
        snprintf(detail, dlen, "empty path");
        return -1;
    }
    if (*rel == '/') {
        *why = INGEST_R_OUTSIDE;
        snprintf(detail, dlen, "absolute path '%s' (paths are relative to the CSV's folder)", rel);
        return -1;
    }
    /* Lexical check first, so that a path through ".." is refused even if it does not
     * exist; the realpath check below catches symlinks. */
    while (*p != '\0') {
        size_t clen = strcspn(p, "/");
        if (clen == 2 && p[0] == '.' && p[1] == '.')
            depth--;
        else if (clen > 0 && !(clen == 1 && p[0] == '.'))
            depth++;
        if (depth < 0) {
            *why = INGEST_R_OUTSIDE;
            snprintf(detail, dlen, "path '%s' leads outside the CSV's folder", rel);
            return -1;
        }
        p += clen;
        while (*p == '/')
            p++;
    }
    if (file_join(joined, sizeof(joined), base, rel) != 0) {
        *why = INGEST_R_UNREADABLE;
        snprintf(detail, dlen, "path '%s' is too long", rel);
        return -1;
    }
    if (realpath(joined, out) == NULL) {
        *why = INGEST_R_UNREADABLE;
        snprintf(detail, dlen, "%s: %s", joined, strerror(errno));
        return -1;
    }
    if (!(strncmp(out, base, blen) == 0 && (out[blen] == '/' || strcmp(base, "/") == 0))) {
        *why = INGEST_R_OUTSIDE;
        snprintf(detail, dlen, "path '%s' leads outside the CSV's folder through a symlink", rel);
        return -1;
    }
    return 0;
}

/* The CSV's columns: path, label, then in any order an optional split column and metadata
 * columns (every other name). */
struct csv_head {
    int ncols;
    int split_col;                                       /* -1 without one */
    char name[CSV_MAX_FIELDS][STORE_IMETA_NAME_MAX + 1]; /* metadata columns; "" otherwise */
};

#define CSV_HEADER_TEXT "'path,label', optionally followed by 'split' and metadata columns"

/* Parses the header line. 0, or -1 with a sentence in msg. */
static int csv_header_parse(char *line, struct csv_head *h, char *msg, size_t mlen)
{
    char *fields[CSV_MAX_FIELDS];
    int n, meta = 0;

    memset(h, 0, sizeof(*h));
    h->split_col = -1;
    if ((unsigned char)line[0] == 0xef && (unsigned char)line[1] == 0xbb &&
        (unsigned char)line[2] == 0xbf)
        line += 3; /* UTF-8 byte order mark */
    n = csv_fields(line, fields, CSV_MAX_FIELDS);
    if (n < 2 || strcasecmp(trim(fields[0]), "path") != 0 ||
        strcasecmp(trim(fields[1]), "label") != 0) {
        snprintf(msg, mlen, "expected the header " CSV_HEADER_TEXT);
        return -1;
    }
    if (n > CSV_MAX_FIELDS) {
        snprintf(msg, mlen, "the header has %d columns; at most %d metadata columns are kept", n,
                 STORE_IMETA_MAX);
        return -1;
    }
    for (int j = 2; j < n; j++) {
        const char *name = trim(fields[j]);
        for (int k = 0; k < j; k++)
            if (strcasecmp(trim(fields[k]), name) == 0) {
                snprintf(msg, mlen, "column '%.64s' appears twice in the header", name);
                return -1;
            }
        if (strcasecmp(name, "split") == 0) {
            h->split_col = j;
            continue;
        }
        if (!store_imeta_name_ok(name)) {
            snprintf(msg, mlen,
                     "column name '%.64s' is not valid (1 to %d letters, digits, '_', '.' or "
                     "'-')",
                     name, STORE_IMETA_NAME_MAX);
            return -1;
        }
        if (++meta > STORE_IMETA_MAX) {
            snprintf(msg, mlen, "more than %d metadata columns", STORE_IMETA_MAX);
            return -1;
        }
        strcpy(h->name[j], name); /* length checked by store_imeta_name_ok */
    }
    h->ncols = n;
    return 0;
}

/* The row's metadata fields (empty ones are absent) encoded into *out (malloc'd; NULL when
 * there are none). 0, 1 with a sentence in msg for a bad value, or CWT_ENOMEM. */
static int csv_row_meta(const struct csv_head *h, char **fields, int n, uint8_t **out,
                        size_t *out_len, char *msg, size_t mlen)
{
    struct store_imeta m;
    uint8_t enc[STORE_IMETA_BYTES_MAX];
    size_t len;

    *out = NULL;
    *out_len = 0;
    memset(&m, 0, sizeof(m));
    for (int j = 2; j < n; j++) {
        const char *v;
        int rc;
        if (h->name[j][0] == '\0')
            continue;
        v = trim(fields[j]);
        if (*v == '\0')
            continue;
        rc = store_imeta_value_check(v);
        if (rc == CWT_ETOOBIG) {
            snprintf(msg, mlen, "column '%s': value longer than %d bytes", h->name[j],
                     STORE_IMETA_VALUE_MAX);
            return 1;
        }
        if (rc == CWT_EPERM) {
            snprintf(msg, mlen, "column '%s': value contains a control character", h->name[j]);
            return 1;
        }
        if (rc != 0 || store_imeta_set(&m, h->name[j], v) != 0) {
            snprintf(msg, mlen, "column '%s': value is not valid UTF-8", h->name[j]);
            return 1;
        }
    }
    if (m.n == 0)
        return 0;
    if (store_imeta_encode(&m, enc, sizeof(enc), &len) != 0) {
        snprintf(msg, mlen, "the metadata cannot be encoded");
        return 1;
    }
    if ((*out = malloc(len)) == NULL)
        return CWT_ENOMEM;
    memcpy(*out, enc, len);
    *out_len = len;
    return 0;
}

/* Lists the rows of CSV text buf (len bytes, with a NUL at buf[len]; changed in place) named
 * csv in messages, with paths relative to the real folder base. */
static int csv_parse(struct run *r, const char *csv, const char *base, char *buf, size_t len,
                     struct item_list *l, char *err, size_t errlen)
{
    char where[PATH_MAX + 32], detail[PATH_MAX + 128], resolved[PATH_MAX], *p, *next, *end;
    unsigned long lineno = 0;
    uint64_t rejected_before = r->sum->rejected;
    struct csv_head head;
    int rc, have_header = 0;

    for (p = buf, end = buf + len; p < end; p = next) {
        char *nl = memchr(p, '\n', (size_t)(end - p)), *line, *fields[CSV_MAX_FIELDS];
        size_t llen;
        uint32_t label;
        uint8_t *meta = NULL;
        size_t meta_len = 0;
        int n, split = -1;
        enum store_split sp;
        enum ingest_reason why;

        /* file_read_all leaves a NUL past the end, so the last line is terminated too. */
        if (nl != NULL)
            *nl = '\0';
        next = nl != NULL ? nl + 1 : end;
        llen = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        lineno++;
        snprintf(where, sizeof(where), "%s:%lu", csv, lineno);
        if (llen > 0 && p[llen - 1] == '\r')
            p[--llen] = '\0';
        if (strlen(p) != llen) {
            if (!have_header)
                goto bad_header;
            reject(r, INGEST_R_FIELDS, where, "row contains a NUL byte");
            continue;
        }
        line = p;
        if (*trim(line) == '\0')
            continue;
        if (!have_header) {
            if (csv_header_parse(line, &head, detail, sizeof(detail)) != 0)
                return cwt_seterr(err, errlen, CWT_EINVAL, "%s:%lu: %s", csv, lineno, detail);
            have_header = 1;
            continue;
        }
        if (llen > CSV_LINE_MAX) {
            reject(r, INGEST_R_FIELDS, where, "row longer than %d bytes", CSV_LINE_MAX);
            continue;
        }
        n = csv_fields(line, fields, CSV_MAX_FIELDS);
        if (n < 0) {
            reject(r, INGEST_R_FIELDS, where, "unterminated quote");
            continue;
        }
        if (n < 2) {
            reject(r, INGEST_R_FIELDS, where, "too few fields (expected at least path,label)");
            continue;
        }
        if (n > head.ncols) {
            reject(r, INGEST_R_FIELDS, where, "too many fields (the header has %d)", head.ncols);
            continue;
        }
        if (recipe_label_index(r->recipe, trim(fields[1]), &label) != 0) {
            reject(r, INGEST_R_LABEL, where, "label '%s' is not a class of the recipe",
                   trim(fields[1]));
            continue;
        }
        if (head.split_col >= 0 && n > head.split_col && *trim(fields[head.split_col]) != '\0') {
            if (store_split_parse(trim(fields[head.split_col]), &sp) != 0) {
                reject(r, INGEST_R_SPLIT, where, "split '%s' is not train, val or test",
                       trim(fields[head.split_col]));
                continue;
            }
            split = (int)sp;
        }
        rc = csv_row_meta(&head, fields, n, &meta, &meta_len, detail, sizeof(detail));
        if (rc == CWT_ENOMEM)
            return rc;
        if (rc != 0) {
            reject(r, INGEST_R_META, where, "%s", detail);
            continue;
        }
        if (csv_resolve(base, trim(fields[0]), resolved, &why, detail, sizeof(detail)) != 0) {
            free(meta);
            reject(r, why, where, "%s", detail);
            continue;
        }
        char *path = strdup(resolved);
        if (path == NULL) {
            free(meta);
            return CWT_ENOMEM;
        }
        rc = list_add(l, path, name_key(r->opt->seed, trim(fields[0])), label, split);
        if (rc != 0) {
            free(path);
            free(meta);
            return cwt_seterr(err, errlen, rc, "%s: too many rows", csv);
        }
        l->v[l->n - 1].meta = meta;
        l->v[l->n - 1].meta_len = meta_len;
    }
    /* Refused rows are items too; listed rows are counted with the list, as for folders. */
    r->sum->items += r->sum->rejected - rejected_before;
    if (!have_header)
        return cwt_seterr(err, errlen, CWT_EINVAL,
                          "%s is empty (expected a header line " CSV_HEADER_TEXT ")", csv);
    return 0;
bad_header:
    return cwt_seterr(err, errlen, CWT_EINVAL, "%s:%lu: expected the header " CSV_HEADER_TEXT, csv,
                      lineno);
}

static int list_csv(struct run *r, const char *csv, struct item_list *l, char *err, size_t errlen)
{
    char base[PATH_MAX], dirbuf[PATH_MAX], *slash, *buf = NULL;
    size_t len;
    int rc;

    rc = file_read_all(csv, CSV_MAX_BYTES, (uint8_t **)&buf, &len, err, errlen);
    if (rc != 0)
        return rc == CWT_ENOMEM ? rc : CWT_EINVAL;
    /* The folder the paths are relative to, as a real path (symlinks resolved). */
    if (strlen(csv) >= sizeof(dirbuf)) {
        free(buf);
        return cwt_seterr(err, errlen, CWT_EINVAL, "CSV path is too long");
    }
    strcpy(dirbuf, csv);
    slash = strrchr(dirbuf, '/');
    if (slash == NULL)
        strcpy(dirbuf, ".");
    else if (slash == dirbuf)
        dirbuf[1] = '\0';
    else
        *slash = '\0';
    if (realpath(dirbuf, base) == NULL) {
        free(buf);
        return cwt_seterr(err, errlen, CWT_EINVAL, "%s: %s", dirbuf, strerror(errno));
    }
    rc = csv_parse(r, csv, base, buf, len, l, err, errlen);
    free(buf);
    return rc;
}

/* --- DIR --- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of a folder (hidden ones left out), so listings are deterministic. */
static int read_names(const char *dir, char ***names, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **v = NULL;
    size_t count = 0, cap = 0;

    *names = NULL;
    *n = 0;
    if (d == NULL)
        return CWT_EIO;
    while ((errno = 0, de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **grown = ncap > INGEST_MAX_ITEMS ? NULL : realloc(v, ncap * sizeof(*v));
            if (grown == NULL)
                goto fail;
            v = grown;
            cap = ncap;
        }
        v[count] = strdup(de->d_name);
        if (v[count] == NULL)
            goto fail;
        count++;
    }
    if (errno != 0)
        goto fail;
    closedir(d);
    if (count > 1)
        qsort(v, count, sizeof(*v), cmp_str);
    *names = v;
    *n = count;
    return 0;
fail:
    closedir(d);
    for (size_t i = 0; i < count; i++)
        free(v[i]);
    free(v);
    return CWT_ENOMEM;
}

/* Walks a folder. label < 0 at the top level; bad_class names a sub-folder that is not a
 * class (its files are rejected). rel is the path below the root, for the split order. */
static int walk(struct run *r, struct item_list *l, const char *dir, const char *rel, int depth,
                int64_t label, const char *bad_class)
{
    char **names;
    size_t n;
    int rc;

    rc = read_names(dir, &names, &n);
    if (rc == CWT_EIO) {
        r->sum->items++;
        reject(r, INGEST_R_UNREADABLE, dir, "cannot read the folder: %s", strerror(errno));
        return 0;
    }
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char path[PATH_MAX], relpath[PATH_MAX];
        struct stat sb;
        uint32_t idx;

        if (file_join(path, sizeof(path), dir, names[i]) != 0 ||
            (depth == 0 ? snprintf(relpath, sizeof(relpath), "%s", names[i])
                        : snprintf(relpath, sizeof(relpath), "%s/%s", rel, names[i])) >=
                (int)sizeof(relpath)) {
            r->sum->items++;
            reject(r, INGEST_R_UNREADABLE, names[i], "path too long");
            continue;
        }
        if (stat(path, &sb) != 0) {
            r->sum->items++;
            reject(r, INGEST_R_UNREADABLE, path, "%s", strerror(errno));
            continue;
        }
        if (S_ISDIR(sb.st_mode)) {
            if (depth >= DIR_MAX_DEPTH) {
                r->sum->items++;
                reject(r, INGEST_R_UNREADABLE, path, "folders nested deeper than %d",
                       DIR_MAX_DEPTH);
            } else if (depth == 0) {
                if (recipe_label_index(r->recipe, names[i], &idx) == 0)
                    rc = walk(r, l, path, relpath, 1, idx, NULL);
                else
                    rc = walk(r, l, path, relpath, 1, -1, names[i]);
            } else {
                rc = walk(r, l, path, relpath, depth + 1, label, bad_class);
            }
            continue;
        }
        if (!S_ISREG(sb.st_mode)) {
            r->sum->items++;
            reject(r, INGEST_R_UNREADABLE, path, "not a regular file");
        } else if (depth == 0) {
            r->sum->items++;
            reject(r, INGEST_R_CLASSFOLDER, path,
                   "files must be inside a folder named after their class");
        } else if (bad_class != NULL) {
            r->sum->items++;
            reject(r, INGEST_R_LABEL, path, "folder '%s' is not a class of the recipe", bad_class);
        } else {
            /* Listed items are counted in sum->items when the list is done. */
            char *copy = strdup(path);
            if (copy == NULL)
                rc = CWT_ENOMEM;
            else if ((rc = list_add(l, copy, name_key(r->opt->seed, relpath), (uint32_t)label,
                                    -1)) != 0)
                free(copy);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* --- IDX --- */

struct idx_file {
    gzFile gz;
    uint32_t dims[3];
    int ndims;
};

/* Reads exactly n bytes; gzread also reads files that are not compressed. */
static int gz_read_exact(gzFile gz, void *buf, size_t n)
{
    uint8_t *p = buf;

    while (n > 0) {
        unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        int got = gzread(gz, p, chunk);
        if (got <= 0)
            return -1;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static int idx_open(const char *path, int want_dims, struct idx_file *f, char *err, size_t errlen)
{
    uint8_t hdr[4], dim[4];

    memset(f, 0, sizeof(*f));
    f->gz = gzopen(path, "rb");
    if (f->gz == NULL)
        return cwt_seterr(err, errlen, CWT_EINVAL, "%s: %s", path,
                          errno ? strerror(errno) : "cannot open");
    (void)gzbuffer(f->gz, 1u << 18);
    /* Magic: two zero bytes, type 0x08 (unsigned byte), number of dimensions. */
    if (gz_read_exact(f->gz, hdr, 4) != 0 || hdr[0] != 0 || hdr[1] != 0 || hdr[2] != 0x08 ||
        hdr[3] != want_dims)
        goto bad;
    f->ndims = hdr[3];
    for (int i = 0; i < f->ndims; i++) {
        if (gz_read_exact(f->gz, dim, 4) != 0)
            goto bad;
        f->dims[i] =
            ((uint32_t)dim[0] << 24) | ((uint32_t)dim[1] << 16) | ((uint32_t)dim[2] << 8) | dim[3];
    }
    return 0;
bad:
    gzclose(f->gz);
    f->gz = NULL;
    return cwt_seterr(err, errlen, CWT_EINVAL,
                      "%s is not an IDX %s file (expected unsigned-byte data with %d "
                      "dimension%s)",
                      path, want_dims == 3 ? "images" : "labels", want_dims,
                      want_dims == 1 ? "" : "s");
}

static int ingest_idx(struct run *r, const char *images, const char *labels, char *err,
                      size_t errlen)
{
    struct idx_file fi = {0}, fl = {0};
    struct item_list l = {0};
    uint8_t *labelbuf = NULL, *pix = NULL, extra;
    crypto_generichash_state hs;
    uint8_t hash[32], shape[8];
    uint32_t n, rows, cols;
    size_t npix;
    int rc;

    rc = idx_open(images, 3, &fi, err, errlen);
    if (rc != 0)
        return rc;
    rc = idx_open(labels, 1, &fl, err, errlen);
    if (rc != 0)
        goto out;
    n = fi.dims[0];
    rows = fi.dims[1];
    cols = fi.dims[2];
    if (fl.dims[0] != n) {
        rc = cwt_seterr(err, errlen, CWT_EINVAL, "%s holds %u images but %s holds %u labels",
                        images, n, labels, fl.dims[0]);
        goto out;
    }
    if (n > INGEST_MAX_ITEMS || rows == 0 || cols == 0 || rows > 65535 || cols > 65535 ||
        (size_t)rows * cols > DECODE_MAX_PIXELS) {
        rc = cwt_seterr(err, errlen, CWT_EINVAL, "%s: %u images of %ux%u are over the limits",
                        images, n, rows, cols);
        goto out;
    }
    npix = (size_t)rows * cols;
    labelbuf = malloc(n > 0 ? n : 1);
    pix = malloc(npix);
    if (labelbuf == NULL || pix == NULL) {
        rc = CWT_ENOMEM;
        goto out;
    }
    if (gz_read_exact(fl.gz, labelbuf, n) != 0 || gzread(fl.gz, &extra, 1) != 0) {
        rc = cwt_seterr(err, errlen, CWT_EINVAL,
                        "%s: the labels file is truncated, corrupt or longer than its header "
                        "says",
                        labels);
        goto out;
    }
    r->sum->items += n;
    for (uint32_t i = 0; i < n; i++) {
        /* Images with a label outside the recipe keep their place in the list, marked
         * STORE_NSPLITS, so that the list stays in file order; no split is given to them. */
        int ok = labelbuf[i] < r->recipe->classes;
        rc = list_add(&l, NULL, splitmix64(r->opt->seed ^ splitmix64(i)), labelbuf[i],
                      ok ? -1 : STORE_NSPLITS);
        if (rc != 0)
            goto out;
    }
    rc = assign_splits(&l, r->opt, r->recipe->classes);
    if (rc != 0)
        goto out;
    r->total = n;
    for (int b = 0; b < 4; b++) {
        shape[b] = (uint8_t)(rows >> (24 - 8 * b));
        shape[4 + b] = (uint8_t)(cols >> (24 - 8 * b));
    }
    for (uint32_t i = 0; i < n; i++) {
        char where[PATH_MAX + 32];
        if (gz_read_exact(fi.gz, pix, npix) != 0) {
            rc = cwt_seterr(err, errlen, CWT_EFORMAT, "%s is truncated or corrupt at image %u",
                            images, i);
            goto out;
        }
        if (l.v[i].split == STORE_NSPLITS) {
            snprintf(where, sizeof(where), "%s[%u]", images, i);
            reject(r, INGEST_R_LABEL, where, "label %u is not a class of the recipe (%u)",
                   labelbuf[i], r->recipe->classes);
        } else {
            /* Hash of the image's own bytes, with a prefix naming what they are. */
            crypto_generichash_init(&hs, NULL, 0, sizeof(hash));
            crypto_generichash_update(&hs, (const uint8_t *)IDX_DOMAIN, sizeof(IDX_DOMAIN));
            crypto_generichash_update(&hs, shape, sizeof(shape));
            crypto_generichash_update(&hs, pix, npix);
            crypto_generichash_final(&hs, hash, sizeof(hash));
            rc = store_has_source(r->st, hash);
            if (rc < 0)
                goto out;
            if (rc == 1) {
                uint8_t alt[32];
                snprintf(where, sizeof(where), "%s[%u]", images, i);
                rc = on_duplicate(r, hash, l.v[i].label, l.v[i].split, where, alt);
                if (rc < 0)
                    goto out;
                if (rc == 1) {
                    struct decoded_image img = {.h = rows, .w = cols, .c = 1, .pixels = pix};
                    rc = store_one(r, &img, alt, l.v[i].label, l.v[i].split, NULL, 0, where);
                    if (rc != 0)
                        goto out;
                }
            } else {
                struct decoded_image img = {.h = rows, .w = cols, .c = 1, .pixels = pix};
                snprintf(where, sizeof(where), "%s[%u]", images, i);
                rc = store_one(r, &img, hash, l.v[i].label, l.v[i].split, NULL, 0, where);
                if (rc != 0)
                    goto out;
            }
        }
        r->done++;
        draw(r, 0);
    }
    rc = 0;
out:
    if (fi.gz != NULL)
        gzclose(fi.gz);
    if (fl.gz != NULL)
        gzclose(fl.gz);
    free(labelbuf);
    free(pix);
    list_free(&l);
    return rc;
}

/* --- the run --- */

static int check_options(const struct cwt_recipe *recipe, const struct ingest_options *opt,
                         char *err, size_t errlen)
{
    if (recipe->input_h == 0 || recipe->input_w == 0 || recipe->input_h > 65535 ||
        recipe->input_w > 65535 || (recipe->input_c != 1 && recipe->input_c != 3))
        return cwt_seterr(err, errlen, CWT_EINVAL,
                          "the recipe's input %ux%ux%u cannot be stored (channels must be 1 or "
                          "3)",
                          recipe->input_h, recipe->input_w, recipe->input_c);
    if (recipe->classes == 0 || recipe->classes > CWT_MAX_CLASSES)
        return cwt_seterr(err, errlen, CWT_EINVAL, "the recipe has %u classes", recipe->classes);
    if (opt->split_mode == INGEST_SPLIT_FIXED && (unsigned)opt->split >= STORE_NSPLITS)
        return cwt_seterr(err, errlen, CWT_EINVAL, "unknown split");
    if (opt->split_mode == INGEST_SPLIT_STRATIFIED &&
        (!(opt->val_fraction >= 0 && opt->val_fraction < 1) ||
         !(opt->test_fraction >= 0 && opt->test_fraction < 1) ||
         opt->val_fraction + opt->test_fraction >= 1))
        return cwt_seterr(err, errlen, CWT_EINVAL,
                          "--val-fraction and --test-fraction must each be in [0, 1) and sum "
                          "to less than 1");
    return 0;
}

int ingest_run(struct store *st, const struct cwt_recipe *recipe, const char *const *inputs,
               int ninputs, const struct ingest_options *opt, struct ingest_summary *sum, char *err,
               size_t errlen)
{
    struct run r = {0};
    struct item_list l = {0};
    struct stat sb;
    int rc;

    if (st == NULL || recipe == NULL || inputs == NULL || opt == NULL || sum == NULL)
        return cwt_seterr(err, errlen, CWT_EINVAL, "ingest called without its arguments");
    memset(sum, 0, sizeof(*sum));
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    rc = check_options(recipe, opt, err, errlen);
    if (rc != 0)
        return rc;
    if (sodium_init() < 0)
        return cwt_seterr(err, errlen, CWT_ECRYPTO, "libsodium failed to initialise");
    r.st = st;
    r.recipe = recipe;
    r.opt = opt;
    r.sum = sum;
    r.err = err;
    r.errlen = errlen;
    r.batch_images = opt->batch_images ? opt->batch_images : INGEST_BATCH_DEFAULT;
    r.fixed_batch = opt->batch_images != 0;
    r.pixel_bytes = (size_t)recipe->input_h * recipe->input_w * recipe->input_c;
    r.pixels = malloc(r.pixel_bytes);
    if (r.pixels == NULL || decoder_open(&r.dec) != 0) {
        free(r.pixels);
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
    }
    progress_start(&r.prog, opt->progress);

    if (ninputs == 2) {
        rc = ingest_idx(&r, inputs[0], inputs[1], err, errlen);
        goto finish;
    }
    if (ninputs != 1) {
        rc = cwt_seterr(err, errlen, CWT_EINVAL,
                        "expected one CSV file, one folder, or an IDX images file and its "
                        "labels file");
        goto finish;
    }
    if (stat(inputs[0], &sb) != 0) {
        rc = cwt_seterr(err, errlen, CWT_EINVAL, "%s: %s", inputs[0], strerror(errno));
        goto finish;
    }
    if (S_ISDIR(sb.st_mode)) {
        rc = walk(&r, &l, inputs[0], "", 0, -1, NULL);
    } else {
        rc = list_csv(&r, inputs[0], &l, err, errlen);
    }
    if (rc == 0)
        rc = assign_splits(&l, opt, recipe->classes);
    if (rc == 0) {
        r.total = l.n;
        sum->items += l.n;
        for (size_t i = 0; i < l.n && rc == 0; i++) {
            rc = ingest_file(&r, &l.v[i]);
            r.done++;
            draw(&r, 0);
        }
    }
finish:
    if (rc == 0) {
        rc = batch_flush(&r);
    } else if (r.batch != NULL) {
        store_batch_abort(r.batch);
        r.batch = NULL;
    }
    /* Failures that came back without a sentence: the store's, or out of memory. */
    if (rc != 0 && err != NULL && errlen > 0 && err[0] == '\0') {
        if (rc == CWT_ETOOBIG)
            cwt_seterr(err, errlen, rc,
                       "the store is full, or the source lists more than %u items (the store's "
                       "size is store_max_bytes in cwtd.conf)",
                       INGEST_MAX_ITEMS);
        else
            cwt_seterr(err, errlen, rc, "ingest failed: %s", cwt_strerror(rc));
    }
    draw(&r, 1);
    progress_clear(&r.prog);
    sum->seconds = progress_elapsed(&r.prog);
    seen_free(&r);
    decoder_close(r.dec);
    free(r.pixels);
    list_free(&l);
    return rc;
}

int ingest_csv_list(const char *text, size_t len, const char *name, const char *base,
                    const struct cwt_recipe *recipe, const struct ingest_options *opt,
                    struct ingest_summary *sum, size_t *rows, char *err, size_t errlen)
{
    struct run r = {0};
    struct item_list l = {0};
    char *buf;
    int rc;

    if ((text == NULL && len > 0) || name == NULL || base == NULL || recipe == NULL ||
        opt == NULL || sum == NULL || rows == NULL)
        return cwt_seterr(err, errlen, CWT_EINVAL, "CSV listing called without its arguments");
    memset(sum, 0, sizeof(*sum));
    *rows = 0;
    rc = check_options(recipe, opt, err, errlen);
    if (rc != 0)
        return rc;
    if (len > CSV_MAX_BYTES)
        return cwt_seterr(err, errlen, CWT_EINVAL, "%s is larger than %u bytes", name,
                          CSV_MAX_BYTES);
    /* The parser works in place on NUL-terminated text, as file_read_all leaves it. */
    buf = malloc(len + 1);
    if (buf == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
    if (len > 0)
        memcpy(buf, text, len);
    buf[len] = '\0';
    r.recipe = recipe;
    r.opt = opt;
    r.sum = sum;
    rc = csv_parse(&r, name, base, buf, len, &l, err, errlen);
    free(buf);
    if (rc == 0) {
        sum->items += l.n;
        *rows = l.n;
    }
    list_free(&l);
    return rc;
}
