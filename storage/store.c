/*
 * store.c - the site store's core: environment, images, index, sources, counts, meta.
 * Checkpoints, ledger and audit live in store_models.c, store_ledger.c, store_audit.c; the
 * checkpoint environment in store_ckpt.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fileio.h"
#include "storage/store_internal.h"

/* On-disk image record: the header fields little-endian, then the pixels. */
#define IMAGE_HDR_BYTES 48
#define INDEX_KEY_BYTES 13 /* split(1) | label(4, BE) | id(8, BE) */
#define META_KEY_MAX    255
#define META_SHAPE_KEY  "input_shape"
#define SHAPE_MAX_DIM   65535u
#define SHAPE_MAX_BYTES (64u << 20)

struct store_batch {
    struct store *st;
    MDB_txn *txn;
    uint64_t next_id;
    uint32_t h, w, c;
    size_t pixel_bytes;
    int failed; /* a put failed after LMDB changed state: the batch can only be aborted */
};

void store_be64(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)v;
        v >>= 8;
    }
}

uint64_t store_rd_be64(const uint8_t in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | in[i];
    return v;
}

void store_be32(uint8_t out[4], uint32_t v)
{
    for (int i = 3; i >= 0; i--) {
        out[i] = (uint8_t)v;
        v >>= 8;
    }
}

uint32_t store_rd_be32(const uint8_t in[4])
{
    return ((uint32_t)in[0] << 24) | ((uint32_t)in[1] << 16) | ((uint32_t)in[2] << 8) | in[3];
}

static void le16(uint8_t *out, uint16_t v)
{
    out[0] = (uint8_t)v;
    out[1] = (uint8_t)(v >> 8);
}

static void le32(uint8_t *out, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        out[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t rd_le16(const uint8_t *in)
{
    return (uint16_t)(in[0] | (in[1] << 8));
}

static uint32_t rd_le32(const uint8_t *in)
{
    return (uint32_t)in[0] | ((uint32_t)in[1] << 8) | ((uint32_t)in[2] << 16) |
           ((uint32_t)in[3] << 24);
}

int store_mdb_err(int mdb_rc)
{
    switch (mdb_rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return CWT_ENOENT;
    case MDB_KEYEXIST:
        return CWT_EEXIST;
    case MDB_MAP_FULL:
        return CWT_ETOOBIG;
    case ENOMEM:
        return CWT_ENOMEM;
    case EACCES:
    case EROFS:
        return CWT_EPERM;
    default:
        return CWT_ESTORE;
    }
}

int store_main_writable(const struct store *st)
{
    return !(st->flags & (STORE_RDONLY | STORE_TRAINER));
}

int store_ckpt_writable(const struct store *st)
{
    return !(st->flags & (STORE_RDONLY | STORE_MONITOR));
}

int store_txn_begin(struct store *st, int rdonly, MDB_txn **txn)
{
    if (st == NULL || txn == NULL)
        return CWT_EINVAL;
    if (!rdonly && !store_main_writable(st))
        return CWT_EPERM;
    if (!rdonly && st->batch != NULL)
        return CWT_ESTATE;
    return store_mdb_err(mdb_txn_begin(st->env, NULL, rdonly ? MDB_RDONLY : 0, txn));
}

int store_txn_commit(MDB_txn *txn)
{
    return store_mdb_err(mdb_txn_commit(txn));
}

/* CWT_ENOENT, "no store yet", for the three ways a reader can find one missing: no data.mdb,
 * an empty one, or one whose creator has not committed. */
static int no_store_yet(const char *dir, char *err, size_t errlen)
{
    return cwt_seterr(err, errlen, CWT_ENOENT, "no store in %s (nothing ingested yet)", dir);
}

/* Opens the eight named databases; in a read-only store they must exist already, except
 * `imeta` (per-image metadata, added later): a read-only store without it is an older store
 * whose images have no metadata, and stays readable. Opening read-write creates it. */
static int open_databases(struct store *st, char *err, size_t errlen)
{
    static const char *const names[STORE_MAX_DBS] = {"images", "index",  "sources", "meta",
                                                     "models", "ledger", "audit",   "imeta"};
    MDB_dbi *handles[STORE_MAX_DBS] = {&st->images, &st->index,  &st->sources, &st->meta,
                                       &st->models, &st->ledger, &st->audit,   &st->imeta};
    int rdonly = !store_main_writable(st);
    MDB_txn *txn;
    int rc;

    rc = mdb_txn_begin(st->env, NULL, rdonly ? MDB_RDONLY : 0, &txn);
    if (rc != 0)
        return cwt_seterr(err, errlen, store_mdb_err(rc), "store %s: %s", st->dir,
                          mdb_strerror(rc));
    for (int i = 0; i < STORE_MAX_DBS; i++) {
        rc = mdb_dbi_open(txn, names[i], rdonly ? 0 : MDB_CREATE, handles[i]);
        if (rc == MDB_NOTFOUND && rdonly && handles[i] == &st->imeta && mdb_txn_id(txn) != 0)
            continue;
        if (rc == 0 && handles[i] == &st->imeta)
            st->has_imeta = 1;
        if (rc != 0) {
            /* This snapshot predates every commit: the store's creator is creating it right
             * now, or was killed before its first commit. Empty, like a store that does not
             * exist. Decided by the snapshot's own id, not the environment's latest one: the
             * creator may commit between this transaction's start and the check. */
            if (rc == MDB_NOTFOUND && mdb_txn_id(txn) == 0) {
                mdb_txn_abort(txn);
                return no_store_yet(st->dir, err, errlen);
            }
            mdb_txn_abort(txn);
            if (rc == MDB_NOTFOUND)
                return cwt_seterr(err, errlen, CWT_ESTORE,
                                  "store %s has no '%s' database (not a cwt store, or made by "
                                  "an older version; open it once read-write)",
                                  st->dir, names[i]);
            return cwt_seterr(err, errlen, store_mdb_err(rc), "store %s: database '%s': %s",
                              st->dir, names[i], mdb_strerror(rc));
        }
    }
    /* Committing (also for a read-only transaction) keeps the handles open for the
     * environment's lifetime. */
    rc = mdb_txn_commit(txn);
    if (rc != 0)
        return cwt_seterr(err, errlen, store_mdb_err(rc), "store %s: %s", st->dir,
                          mdb_strerror(rc));
    return 0;
}

int store_open(const char *dir, int flags, uint64_t map_bytes, struct store **out, char *err,
               size_t errlen)
{
    struct store *st;
    char datafile[PATH_MAX];
    struct stat sb;
    int rc;

    if (dir == NULL || out == NULL || strlen(dir) >= sizeof(st->dir))
        return cwt_seterr(err, errlen, CWT_EINVAL, "store folder name is missing or too long");
    if ((flags & STORE_RDONLY) && (flags & STORE_CREATE))
        return cwt_seterr(err, errlen, CWT_EINVAL, "a store cannot be created read-only");
    if ((flags & STORE_TRAINER) && (flags & (STORE_RDONLY | STORE_CREATE | STORE_MONITOR)))
        return cwt_seterr(err, errlen, CWT_EINVAL,
                          "a trainer's store is neither created nor wholly read-only");
    if ((flags & STORE_MONITOR) && (flags & STORE_RDONLY))
        return cwt_seterr(err, errlen, CWT_EINVAL, "a monitor's store is not wholly read-only");
    *out = NULL;
    if (flags & STORE_CREATE) {
        rc = file_mkdir_p(dir, 0700, err, errlen);
        if (rc != 0)
            return rc;
    }
    if (file_join(datafile, sizeof(datafile), dir, "data.mdb") != 0)
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "store folder name is too long");
    if (!(flags & STORE_CREATE) && stat(datafile, &sb) != 0) {
        if (errno == ENOENT)
            return no_store_yet(dir, err, errlen);
        return cwt_seterr(err, errlen, CWT_EIO, "store %s: %s", datafile, strerror(errno));
    }

    st = calloc(1, sizeof(*st));
    if (st == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory opening the store");
    st->flags = flags;
    memcpy(st->dir, dir, strlen(dir) + 1);
    if (map_bytes == 0)
        map_bytes = STORE_DEFAULT_MAP_BYTES;
    st->map_bytes = map_bytes;

    rc = mdb_env_create(&st->env);
    if (rc != 0) {
        free(st);
        return cwt_seterr(err, errlen, store_mdb_err(rc), "store %s: %s", dir, mdb_strerror(rc));
    }
    if (map_bytes > SIZE_MAX) {
        rc = cwt_seterr(err, errlen, CWT_ETOOBIG, "store map size %llu is too large",
                        (unsigned long long)map_bytes);
        goto fail;
    }
    rc = mdb_env_set_mapsize(st->env, (size_t)map_bytes);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(st->env, STORE_MAX_DBS);
    /* MDB_NOTLS: read snapshots are not tied to the thread's slot, so a snapshot and a
     * backend's own short transaction can coexist (see store_internal.h). */
    if (rc == 0)
        rc = mdb_env_open(st->env, dir, MDB_NOTLS | (store_main_writable(st) ? 0 : MDB_RDONLY),
                          0600);
    if (rc != 0) {
        /* A read-only open in the instant between the creator's open(O_CREAT) and its first
         * header write finds an empty data.mdb, which LMDB would have to initialise: that too
         * is "no store yet". */
        if ((flags & STORE_RDONLY) && stat(datafile, &sb) == 0 && sb.st_size == 0) {
            rc = no_store_yet(dir, err, errlen);
            goto fail;
        }
        rc = cwt_seterr(err, errlen, store_mdb_err(rc), "cannot open the store in %s: %s", dir,
                        mdb_strerror(rc));
        goto fail;
    }
    /* A process killed with -9 leaves its reader slot behind; clear such stale slots so
     * they do not pin old pages forever. */
    int dead = 0;
    (void)mdb_reader_check(st->env, &dead);
    rc = open_databases(st, err, errlen);
    if (rc == 0)
        rc = store_ckpt_open(st, err, errlen);
    if (rc != 0)
        goto fail;
    *out = st;
    return 0;
fail:
    mdb_env_close(st->env);
    free(st);
    return rc;
}

void store_close(struct store *st)
{
    if (st == NULL)
        return;
    if (st->batch != NULL)
        store_batch_abort(st->batch);
    if (st->snapshot != NULL)
        mdb_txn_abort(st->snapshot);
    store_ckpt_close(st);
    mdb_env_close(st->env);
    free(st);
}

const char *store_split_name(enum store_split s)
{
    switch (s) {
    case STORE_TRAIN:
        return "train";
    case STORE_VAL:
        return "val";
    case STORE_TEST:
        return "test";
    default:
        return "?";
    }
}

int store_split_parse(const char *name, enum store_split *out)
{
    if (name == NULL || out == NULL)
        return CWT_EINVAL;
    for (int s = 0; s < STORE_NSPLITS; s++) {
        if (strcmp(name, store_split_name((enum store_split)s)) == 0) {
            *out = (enum store_split)s;
            return 0;
        }
    }
    return CWT_EINVAL;
}

/* --- meta --- */

static int meta_key(const char *key, MDB_val *k)
{
    size_t len;

    if (key == NULL)
        return CWT_EINVAL;
    len = strlen(key);
    if (len == 0 || len > META_KEY_MAX)
        return CWT_EINVAL;
    k->mv_data = (void *)key;
    k->mv_size = len;
    return 0;
}

static int meta_get_txn(struct store *st, MDB_txn *txn, const char *key, void *buf, size_t buflen,
                        size_t *len)
{
    MDB_val k, v;
    int rc;

    rc = meta_key(key, &k);
    if (rc != 0)
        return rc;
    rc = mdb_get(txn, st->meta, &k, &v);
    if (rc != 0)
        return store_mdb_err(rc);
    if (len != NULL)
        *len = v.mv_size;
    if (v.mv_size > buflen)
        return CWT_ETOOBIG;
    if (v.mv_size > 0)
        memcpy(buf, v.mv_data, v.mv_size);
    return 0;
}

int store_meta_get(struct store *st, const char *key, void *buf, size_t buflen, size_t *len)
{
    MDB_txn *txn;
    int rc;

    if (st == NULL || (buf == NULL && buflen > 0) || key == NULL)
        return CWT_EINVAL;
    if (store_ckpt_meta_key(key)) {
        MDB_dbi dbi;
        MDB_val k, v;
        if ((rc = meta_key(key, &k)) != 0 ||
            (rc = store_ckpt_txn_begin(st, 1, &txn, NULL, &dbi)) != 0)
            return rc;
        rc = store_mdb_err(mdb_get(txn, dbi, &k, &v));
        if (rc == 0 && len != NULL)
            *len = v.mv_size;
        if (rc == 0 && v.mv_size > buflen)
            rc = CWT_ETOOBIG;
        if (rc == 0 && v.mv_size > 0)
            memcpy(buf, v.mv_data, v.mv_size);
        mdb_txn_abort(txn);
        return rc;
    }
    rc = store_txn_begin(st, 1, &txn);
    if (rc != 0)
        return rc;
    rc = meta_get_txn(st, txn, key, buf, buflen, len);
    mdb_txn_abort(txn);
    return rc;
}

int store_meta_put(struct store *st, const char *key, const void *val, size_t len)
{
    MDB_txn *txn;
    MDB_val k, v;
    MDB_dbi dbi = st != NULL ? st->meta : 0;
    int rc;

    if (st == NULL || (val == NULL && len > 0))
        return CWT_EINVAL;
    rc = meta_key(key, &k);
    if (rc != 0)
        return rc;
    /* The training driver's keys go where its checkpoints are (store_ckpt.c). */
    if (store_ckpt_meta_key(key))
        rc = store_ckpt_txn_begin(st, 0, &txn, NULL, &dbi);
    else
        rc = store_txn_begin(st, 0, &txn);
    if (rc != 0)
        return rc;
    v.mv_data = (void *)val;
    v.mv_size = len;
    rc = mdb_put(txn, dbi, &k, &v, 0);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return store_mdb_err(rc);
    }
    return store_txn_commit(txn);
}

/* --- shape --- */

static int shape_decode(const uint8_t buf[12], uint32_t *h, uint32_t *w, uint32_t *c)
{
    *h = store_rd_be32(buf);
    *w = store_rd_be32(buf + 4);
    *c = store_rd_be32(buf + 8);
    return 0;
}

static int shape_get_txn(struct store *st, MDB_txn *txn, uint32_t *h, uint32_t *w, uint32_t *c)
{
    uint8_t buf[12];
    size_t len;
    int rc;

    rc = meta_get_txn(st, txn, META_SHAPE_KEY, buf, sizeof(buf), &len);
    if (rc == CWT_ETOOBIG || (rc == 0 && len != sizeof(buf)))
        return CWT_ESTORE;
    if (rc != 0)
        return rc;
    return shape_decode(buf, h, w, c);
}

int store_get_shape(struct store *st, uint32_t *h, uint32_t *w, uint32_t *c)
{
    MDB_txn *txn;
    int rc;

    if (st == NULL || h == NULL || w == NULL || c == NULL)
        return CWT_EINVAL;
    rc = store_txn_begin(st, 1, &txn);
    if (rc != 0)
        return rc;
    rc = shape_get_txn(st, txn, h, w, c);
    mdb_txn_abort(txn);
    return rc;
}

int store_set_shape(struct store *st, uint32_t h, uint32_t w, uint32_t c)
{
    uint32_t oh, ow, oc;
    uint8_t buf[12];
    MDB_txn *txn;
    MDB_val k, v;
    size_t bytes;
    int rc;

    if (st == NULL || h == 0 || w == 0 || c == 0 || h > SHAPE_MAX_DIM || w > SHAPE_MAX_DIM || c > 4)
        return CWT_EINVAL;
    if (cwt_mul_size(h, w, &bytes) != 0 || cwt_mul_size(bytes, c, &bytes) != 0 ||
        bytes > SHAPE_MAX_BYTES)
        return CWT_ETOOBIG;
    rc = store_get_shape(st, &oh, &ow, &oc);
    if (rc == 0)
        return (oh == h && ow == w && oc == c) ? 0 : CWT_ESTATE;
    if (rc != CWT_ENOENT)
        return rc;
    rc = store_txn_begin(st, 0, &txn);
    if (rc != 0)
        return rc;
    /* Check again inside the write transaction: another process may have set it. */
    rc = shape_get_txn(st, txn, &oh, &ow, &oc);
    if (rc == 0) {
        mdb_txn_abort(txn);
        return (oh == h && ow == w && oc == c) ? 0 : CWT_ESTATE;
    }
    if (rc != CWT_ENOENT) {
        mdb_txn_abort(txn);
        return rc;
    }
    store_be32(buf, h);
    store_be32(buf + 4, w);
    store_be32(buf + 8, c);
    k.mv_data = (void *)META_SHAPE_KEY;
    k.mv_size = strlen(META_SHAPE_KEY);
    v.mv_data = buf;
    v.mv_size = sizeof(buf);
    rc = mdb_put(txn, st->meta, &k, &v, 0);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return store_mdb_err(rc);
    }
    return store_txn_commit(txn);
}

/* --- writing images --- */

int store_batch_begin(struct store *st, struct store_batch **out)
{
    struct store_batch *b;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    if (st == NULL || out == NULL)
        return CWT_EINVAL;
    *out = NULL;
    if (!store_main_writable(st))
        return CWT_EPERM;
    if (st->batch != NULL)
        return CWT_ESTATE;
    b = calloc(1, sizeof(*b));
    if (b == NULL)
        return CWT_ENOMEM;
    b->st = st;
    rc = store_txn_begin(st, 0, &b->txn);
    if (rc != 0) {
        free(b);
        return rc;
    }
    rc = shape_get_txn(st, b->txn, &b->h, &b->w, &b->c);
    if (rc != 0) {
        rc = rc == CWT_ENOENT ? CWT_ESTATE : rc; /* no shape set yet */
        goto fail;
    }
    b->pixel_bytes = (size_t)b->h * b->w * b->c; /* bounded by store_set_shape */

    /* Ids grow from the highest one stored, so they stay in insertion order. */
    rc = store_mdb_err(mdb_cursor_open(b->txn, st->images, &cur));
    if (rc != 0)
        goto fail;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) {
        b->next_id = 1;
    } else if (rc == 0 && k.mv_size == 8) {
        b->next_id = store_rd_be64(k.mv_data) + 1;
    } else {
        rc = rc != 0 ? store_mdb_err(rc) : CWT_ESTORE;
        goto fail;
    }
    st->batch = b;
    *out = b;
    return 0;
fail:
    mdb_txn_abort(b->txn);
    free(b);
    return rc;
}

int store_put_image(struct store_batch *b, const struct store_image_hdr *hdr, const uint8_t *pixels,
                    uint64_t *id_out)
{
    uint8_t idkey[8], ixkey[INDEX_KEY_BYTES];
    MDB_val k, v;
    uint64_t id;
    uint8_t *rec;
    int rc;

    if (b == NULL || hdr == NULL || pixels == NULL || hdr->split >= STORE_NSPLITS)
        return CWT_EINVAL;
    if (b->failed)
        return CWT_ESTATE;
    if (hdr->h != b->h || hdr->w != b->w || hdr->c != b->c)
        return CWT_EINVAL;
    id = b->next_id;
    store_be64(idkey, id);

    /* The source hash goes first with NOOVERWRITE: a duplicate changes nothing. */
    k.mv_data = (void *)hdr->source_hash;
    k.mv_size = sizeof(hdr->source_hash);
    v.mv_data = idkey;
    v.mv_size = sizeof(idkey);
    rc = mdb_put(b->txn, b->st->sources, &k, &v, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST)
        return CWT_EDUPLICATE;
    if (rc != 0)
        goto fail;

    k.mv_data = idkey;
    k.mv_size = sizeof(idkey);
    v.mv_size = IMAGE_HDR_BYTES + b->pixel_bytes;
    v.mv_data = NULL;
    rc = mdb_put(b->txn, b->st->images, &k, &v, MDB_RESERVE | MDB_APPEND);
    if (rc != 0)
        goto fail;
    rec = v.mv_data;
    memset(rec, 0, IMAGE_HDR_BYTES);
    le32(rec, hdr->label);
    rec[4] = hdr->split;
    le16(rec + 8, hdr->h);
    le16(rec + 10, hdr->w);
    le16(rec + 12, hdr->c);
    memcpy(rec + 16, hdr->source_hash, 32);
    memcpy(rec + IMAGE_HDR_BYTES, pixels, b->pixel_bytes);

    ixkey[0] = hdr->split;
    store_be32(ixkey + 1, hdr->label);
    memcpy(ixkey + 5, idkey, 8);
    k.mv_data = ixkey;
    k.mv_size = sizeof(ixkey);
    v.mv_data = NULL;
    v.mv_size = 0;
    rc = mdb_put(b->txn, b->st->index, &k, &v, 0);
    if (rc != 0)
        goto fail;
    b->next_id++;
    if (id_out != NULL)
        *id_out = id;
    return 0;
fail:
    /* LMDB may have modified pages: only abort is safe from here on. */
    b->failed = store_mdb_err(rc);
    return b->failed;
}

int store_put_image_meta(struct store_batch *b, uint64_t id, const struct store_imeta *m)
{
    uint8_t idkey[8], enc[STORE_IMETA_BYTES_MAX];
    MDB_val k, v;
    size_t len;
    int rc;

    if (b == NULL || m == NULL)
        return CWT_EINVAL;
    if (b->failed)
        return CWT_ESTATE;
    if (m->n == 0)
        return 0;
    if ((rc = store_imeta_encode(m, enc, sizeof(enc), &len)) != 0)
        return rc;
    store_be64(idkey, id);
    k.mv_data = idkey;
    k.mv_size = sizeof(idkey);
    v.mv_data = enc;
    v.mv_size = len;
    rc = mdb_put(b->txn, b->st->imeta, &k, &v, 0);
    if (rc != 0) {
        b->failed = store_mdb_err(rc);
        return b->failed;
    }
    return 0;
}

static void batch_free(struct store_batch *b)
{
    b->st->batch = NULL;
    free(b);
}

int store_batch_commit(struct store_batch *b)
{
    int rc;

    if (b == NULL)
        return CWT_EINVAL;
    if (b->failed) {
        rc = b->failed;
        mdb_txn_abort(b->txn);
    } else {
        rc = store_txn_commit(b->txn);
    }
    batch_free(b);
    return rc;
}

void store_batch_abort(struct store_batch *b)
{
    if (b == NULL)
        return;
    mdb_txn_abort(b->txn);
    batch_free(b);
}

int store_has_source(struct store *st, const uint8_t hash[32])
{
    MDB_txn *txn;
    MDB_val k, v;
    int rc;

    if (st == NULL || hash == NULL)
        return CWT_EINVAL;
    rc = store_txn_begin(st, 1, &txn);
    if (rc != 0)
        return rc;
    k.mv_data = (void *)hash;
    k.mv_size = 32;
    rc = mdb_get(txn, st->sources, &k, &v);
    mdb_txn_abort(txn);
    if (rc == MDB_NOTFOUND)
        return 0;
    return rc == 0 ? 1 : store_mdb_err(rc);
}

/* --- reading --- */

int store_read_begin(struct store *st)
{
    if (st == NULL)
        return CWT_EINVAL;
    if (st->snapshot != NULL)
        return CWT_ESTATE;
    return store_mdb_err(mdb_txn_begin(st->env, NULL, MDB_RDONLY, &st->snapshot));
}

void store_read_end(struct store *st)
{
    if (st == NULL || st->snapshot == NULL)
        return;
    mdb_txn_abort(st->snapshot);
    st->snapshot = NULL;
}

int store_get_image(struct store *st, uint64_t id, struct store_image_hdr *hdr,
                    const uint8_t **pixels)
{
    uint8_t idkey[8];
    const uint8_t *rec;
    MDB_val k, v;
    size_t expect;
    int rc;

    if (st == NULL || hdr == NULL || pixels == NULL)
        return CWT_EINVAL;
    if (st->snapshot == NULL)
        return CWT_ESTATE;
    store_be64(idkey, id);
    k.mv_data = idkey;
    k.mv_size = sizeof(idkey);
    rc = mdb_get(st->snapshot, st->images, &k, &v);
    if (rc != 0)
        return store_mdb_err(rc);
    if (v.mv_size < IMAGE_HDR_BYTES)
        return CWT_ESTORE;
    rec = v.mv_data;
    memset(hdr, 0, sizeof(*hdr));
    hdr->label = rd_le32(rec);
    hdr->split = rec[4];
    hdr->h = rd_le16(rec + 8);
    hdr->w = rd_le16(rec + 10);
    hdr->c = rd_le16(rec + 12);
    memcpy(hdr->source_hash, rec + 16, 32);
    expect = (size_t)hdr->h * hdr->w * hdr->c + IMAGE_HDR_BYTES;
    if (v.mv_size != expect)
        return CWT_ESTORE;
    *pixels = rec + IMAGE_HDR_BYTES;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Collects the ids of every index key that starts with prefix (1 or 5 bytes). */
static int list_prefix(struct store *st, const uint8_t *prefix, size_t plen, uint64_t **ids,
                       size_t *n)
{
    uint8_t start[INDEX_KEY_BYTES] = {0};
    MDB_txn *txn = st->snapshot;
    MDB_cursor *cur = NULL;
    uint64_t *list = NULL;
    size_t count = 0, cap = 0;
    MDB_val k, v;
    int rc, own = 0;

    *ids = NULL;
    *n = 0;
    if (txn == NULL) {
        rc = store_txn_begin(st, 1, &txn);
        if (rc != 0)
            return rc;
        own = 1;
    }
    rc = store_mdb_err(mdb_cursor_open(txn, st->index, &cur));
    if (rc != 0)
        goto out;
    memcpy(start, prefix, plen);
    k.mv_data = start;
    k.mv_size = sizeof(start);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != INDEX_KEY_BYTES || memcmp(k.mv_data, prefix, plen) != 0)
            break;
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 1024, bytes;
            uint64_t *grown;
            if (cwt_mul_size(ncap, sizeof(*list), &bytes) != 0) {
                rc = CWT_ETOOBIG;
                goto out;
            }
            grown = realloc(list, bytes);
            if (grown == NULL) {
                rc = CWT_ENOMEM;
                goto out;
            }
            list = grown;
            cap = ncap;
        }
        list[count++] = store_rd_be64((const uint8_t *)k.mv_data + 5);
    }
    rc = (rc == 0 || rc == MDB_NOTFOUND) ? 0 : store_mdb_err(rc);
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    if (own)
        mdb_txn_abort(txn);
    if (rc != 0) {
        free(list);
        return rc;
    }
    *ids = list;
    *n = count;
    return 0;
}

int store_list(struct store *st, enum store_split split, uint64_t **ids, size_t *n)
{
    uint8_t prefix[1];
    int rc;

    if (st == NULL || ids == NULL || n == NULL || (unsigned)split >= STORE_NSPLITS)
        return CWT_EINVAL;
    prefix[0] = (uint8_t)split;
    rc = list_prefix(st, prefix, sizeof(prefix), ids, n);
    /* The index orders by label first; the contract promises ascending ids. */
    if (rc == 0 && *n > 1)
        qsort(*ids, *n, sizeof(**ids), cmp_u64);
    return rc;
}

int store_list_label(struct store *st, enum store_split split, uint32_t label, uint64_t **ids,
                     size_t *n)
{
    uint8_t prefix[5];

    if (st == NULL || ids == NULL || n == NULL || (unsigned)split >= STORE_NSPLITS)
        return CWT_EINVAL;
    prefix[0] = (uint8_t)split;
    store_be32(prefix + 1, label);
    return list_prefix(st, prefix, sizeof(prefix), ids, n);
}

int store_counts(struct store *st, uint32_t max_labels, uint64_t (*counts)[CWT_MAX_CLASSES])
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc, own = 0;

    if (st == NULL || counts == NULL)
        return CWT_EINVAL;
    if (max_labels > CWT_MAX_CLASSES)
        max_labels = CWT_MAX_CLASSES;
    for (int s = 0; s < STORE_NSPLITS; s++)
        memset(counts[s], 0, sizeof(counts[s]));
    txn = st->snapshot;
    if (txn == NULL) {
        rc = store_txn_begin(st, 1, &txn);
        if (rc != 0)
            return rc;
        own = 1;
    }
    rc = store_mdb_err(mdb_cursor_open(txn, st->index, &cur));
    if (rc != 0)
        goto out;
    /* The index holds only keys (13 bytes each), so a full scan reads little. */
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *key = k.mv_data;
        uint32_t label;
        if (k.mv_size != INDEX_KEY_BYTES || key[0] >= STORE_NSPLITS) {
            rc = MDB_CORRUPTED;
            break;
        }
        label = store_rd_be32(key + 1);
        if (label < max_labels)
            counts[key[0]][label]++;
    }
    rc = rc == MDB_NOTFOUND ? 0 : store_mdb_err(rc);
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    if (own)
        mdb_txn_abort(txn);
    return rc;
}

int store_env_disk_bytes(const char *dir, uint64_t *out)
{
    static const char *const files[] = {"data.mdb", "lock.mdb"};
    char path[PATH_MAX];
    struct stat sb;
    uint64_t total = 0;

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        if (file_join(path, sizeof(path), dir, files[i]) != 0)
            return CWT_ETOOBIG;
        if (stat(path, &sb) != 0) {
            if (errno == ENOENT)
                continue;
            return CWT_EIO;
        }
        /* Allocated blocks, not the apparent size: the map may be sparse. */
        total += (uint64_t)sb.st_blocks * 512u;
    }
    *out = total;
    return 0;
}

int store_disk_bytes(struct store *st, uint64_t *out)
{
    uint64_t total = 0;

    if (st == NULL || out == NULL)
        return CWT_EINVAL;
    {
        int rc = store_env_disk_bytes(st->dir, &total);
        if (rc != 0)
            return rc;
    }
    {
        uint64_t ckpt = 0;
        int rc = store_ckpt_disk_bytes(st, &ckpt);
        if (rc != 0)
            return rc;
        total += ckpt;
    }
    *out = total;
    return 0;
}
