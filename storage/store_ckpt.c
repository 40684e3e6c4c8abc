/*
 * store_ckpt.c - the checkpoint environment: a second LMDB environment in STORE/checkpoints/
 * that holds the training driver's records (its `models` database: checkpoints, the model
 * layout) and meta keys (store.h). One writer per environment: cwtd's trainer writes this one
 * while its handle on the main environment (images, ledger, audit, state, the monitor's
 * records) is read-only, and the monitor writes the main one while its handle on this one is
 * read-only (STORE_TRAINER, STORE_MONITOR): a descriptor opened O_RDONLY and a PROT_READ map,
 * which no code in the process can write through.
 *
 * Layouts and their migration, in the order cwt had them:
 *   1. everything in the main environment's `models` and `meta`, no checkpoints/;
 *   2. everything in checkpoints/ (marker CKPT_MIGRATED in its meta), main's `models` empty;
 *   3. now: the monitor's records (store_model_is_main) in main's `models` (marker
 *      MAIN_MIGRATED in main's meta), the training driver's in checkpoints/.
 * An open that may write checkpoints/ copies layout 1's records into it with CKPT_MIGRATED,
 * in one checkpoint transaction (copy_from_main), as before. An open that may write main sets
 * MAIN_MIGRATED, in one main transaction that also copies the monitor's records from
 * checkpoints/ when those are layout 2's (migrate_main). Every copy left behind in the other
 * environment is never read again once its marker exists, and is deleted by the next open or
 * job that may write there. Readers route a name by the markers they see: a main name to main
 * once MAIN_MIGRATED is there, else to checkpoints/ once CKPT_MIGRATED is there, else to main;
 * a training name to checkpoints/ once CKPT_MIGRATED is there, else to main.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fileio.h"
#include "storage/store_internal.h"

#define CKPT_DIR      "checkpoints"
#define CKPT_MAX_DBS  2
#define CKPT_MIGRATED "cwt.migrated"    /* in the checkpoint meta: the copy is done */
#define MAIN_MIGRATED "cwt.models.main" /* in the main meta: the monitor's records are in main */

const struct store_env_mode store_env_modes[STORE_ENV_COUNT] = {
    {"", 0, 0750, 0640, 0660},
    {CKPT_DIR, 1, 02750, 0640, 0660},
};

/* The meta keys the training driver writes (TRAIN_META_NORM in engine/train/train.h): they
 * live beside the checkpoints, so a trainer that cannot write the main environment can still
 * store them. */
static const char *const ckpt_meta_keys[] = {"norm"};

int store_ckpt_meta_key(const char *key)
{
    for (size_t i = 0; i < sizeof(ckpt_meta_keys) / sizeof(ckpt_meta_keys[0]); i++)
        if (strcmp(key, ckpt_meta_keys[i]) == 0)
            return 1;
    return 0;
}

/* 1 when key is in the meta database dbi as seen by txn, 0 when not, or an error. */
static int marker(MDB_txn *txn, MDB_dbi dbi, const char *key)
{
    MDB_val k = {strlen(key), (void *)key}, v;
    int rc = mdb_get(txn, dbi, &k, &v);

    if (rc == MDB_NOTFOUND)
        return 0;
    return rc == 0 ? 1 : store_mdb_err(rc);
}

static int set_marker(MDB_txn *txn, MDB_dbi dbi, const char *key)
{
    MDB_val k = {strlen(key), (void *)key}, v = {1, (void *)"1"};

    return mdb_put(txn, dbi, &k, &v, 0);
}

/* 1 when the main environment holds the monitor's records (MAIN_MIGRATED), 0 when not, or
 * an error. */
static int main_migrated(struct store *st)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);

    if (rc != 0)
        return store_mdb_err(rc);
    rc = marker(txn, st->meta, MAIN_MIGRATED);
    mdb_txn_abort(txn);
    return rc;
}

/* Copies the main environment's training records and meta into the checkpoint environment
 * and sets the marker, in one checkpoint transaction; nothing when the marker is there. The
 * monitor's records are copied too unless main is migrated already: until then a store of
 * layout 1 may be read through checkpoints/ (migrate_main takes them back from there). */
static int copy_from_main(struct store *st, char *err, size_t errlen)
{
    MDB_txn *main_txn = NULL, *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc, skip_main = 0;

    rc = mdb_txn_begin(st->ckpt_env, NULL, 0, &txn);
    if (rc != 0)
        goto mdb_fail;
    rc = marker(txn, st->ckpt_meta, CKPT_MIGRATED);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc < 0 ? cwt_seterr(err, errlen, rc,
                                   "store %s: cannot read the checkpoint "
                                   "environment's marker",
                                   st->dir)
                      : 0;
    }
    rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &main_txn);
    if (rc == 0 && (skip_main = marker(main_txn, st->meta, MAIN_MIGRATED)) < 0) {
        mdb_txn_abort(main_txn);
        mdb_txn_abort(txn);
        return cwt_seterr(err, errlen, skip_main, "store %s: cannot read the main marker", st->dir);
    }
    if (rc == 0)
        rc = mdb_cursor_open(main_txn, st->models, &cur);
    for (int op = MDB_FIRST; rc == 0; op = MDB_NEXT) {
        rc = mdb_cursor_get(cur, &k, &v, (MDB_cursor_op)op);
        if (rc == MDB_NOTFOUND) {
            rc = 0;
            break;
        }
        if (rc == 0 && !(skip_main && store_model_is_main_key(k.mv_data, k.mv_size)))
            rc = mdb_put(txn, st->ckpt_models, &k, &v, 0);
    }
    if (cur != NULL)
        mdb_cursor_close(cur);
    for (size_t i = 0; rc == 0 && i < sizeof(ckpt_meta_keys) / sizeof(ckpt_meta_keys[0]); i++) {
        k.mv_data = (void *)ckpt_meta_keys[i];
        k.mv_size = strlen(ckpt_meta_keys[i]);
        rc = mdb_get(main_txn, st->meta, &k, &v);
        if (rc == 0)
            rc = mdb_put(txn, st->ckpt_meta, &k, &v, 0);
        else if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    if (rc == 0)
        rc = set_marker(txn, st->ckpt_meta, CKPT_MIGRATED);
    if (main_txn != NULL)
        mdb_txn_abort(main_txn);
    if (rc != 0) {
        mdb_txn_abort(txn);
        goto mdb_fail;
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0)
        goto mdb_fail;
    return 0;
mdb_fail:
    return cwt_seterr(err, errlen, store_mdb_err(rc),
                      "store %s: cannot move the checkpoints into %s/: %s", st->dir, CKPT_DIR,
                      mdb_strerror(rc));
}

/* Deletes, through cursor cur (its transaction a write one), every record whose name is a
 * main name (main != 0) or a training one (main == 0). *dirty is set when one went. */
static int delete_names(MDB_cursor *cur, int main, int *dirty)
{
    MDB_val k, v;
    int rc;

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (store_model_is_main_key(k.mv_data, k.mv_size) != main)
            continue;
        /* The cursor then stands on the next record, which MDB_NEXT returns. */
        rc = mdb_cursor_del(cur, 0);
        if (rc != 0)
            return rc;
        *dirty = 1;
    }
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Copies the monitor's records of the checkpoint environment (ck) into main's models (txn).
 * LMDB codes. */
static int copy_main_names(struct store *st, MDB_txn *ck, MDB_txn *txn)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc = mdb_cursor_open(ck, st->ckpt_models, &cur);

    for (int op = MDB_FIRST; rc == 0; op = MDB_NEXT) {
        rc = mdb_cursor_get(cur, &k, &v, (MDB_cursor_op)op);
        if (rc == 0 && store_model_is_main_key(k.mv_data, k.mv_size))
            rc = mdb_put(txn, st->models, &k, &v, 0);
    }
    if (cur != NULL)
        mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Deletes main's copies of the training records and meta (layout 1's). LMDB codes. */
static int drop_training_copies(struct store *st, MDB_txn *txn, int *dirty)
{
    MDB_cursor *cur;
    MDB_val k;
    int rc = mdb_cursor_open(txn, st->models, &cur);

    if (rc == 0) {
        rc = delete_names(cur, 0, dirty);
        mdb_cursor_close(cur);
    }
    for (size_t i = 0; rc == 0 && i < sizeof(ckpt_meta_keys) / sizeof(ckpt_meta_keys[0]); i++) {
        k.mv_data = (void *)ckpt_meta_keys[i];
        k.mv_size = strlen(ckpt_meta_keys[i]);
        rc = mdb_del(txn, st->meta, &k, NULL);
        if (rc == 0)
            *dirty = 1;
        else if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    return rc;
}

/* The main side of the migration, in one main write transaction: without MAIN_MIGRATED, the
 * monitor's records come from checkpoints/ when those are layout 2's (main's own `models` then
 * holds layout 1's older copies only, which go), and the marker is set; once checkpoints/ is
 * migrated, main's copies of the training records and meta (layout 1's) are deleted. Without
 * a migrated checkpoints/ (layout 1, or a new store) main's records stay where they are: the
 * trainer's first open copies the training ones from there. */
static int migrate_main(struct store *st, char *err, size_t errlen)
{
    MDB_txn *txn = NULL, *ck = NULL;
    int rc, have = 0, ckpt_done = 0, dirty = 0;

    rc = store_mdb_err(mdb_txn_begin(st->env, NULL, 0, &txn));
    if (rc == 0 && st->ckpt_env != NULL) {
        rc = store_mdb_err(mdb_txn_begin(st->ckpt_env, NULL, MDB_RDONLY, &ck));
        if (rc == 0)
            rc = ckpt_done = marker(ck, st->ckpt_meta, CKPT_MIGRATED);
        rc = rc < 0 ? rc : 0;
    }
    if (rc == 0)
        rc = have = marker(txn, st->meta, MAIN_MIGRATED);
    rc = rc < 0 ? rc : 0;
    if (rc == 0 && !have && ckpt_done) {
        rc = store_mdb_err(mdb_drop(txn, st->models, 0));
        if (rc == 0)
            rc = store_mdb_err(copy_main_names(st, ck, txn));
        dirty = 1;
    }
    if (rc == 0 && ckpt_done)
        rc = store_mdb_err(drop_training_copies(st, txn, &dirty));
    if (rc == 0 && !have) {
        rc = store_mdb_err(set_marker(txn, st->meta, MAIN_MIGRATED));
        dirty = 1;
    }
    if (ck != NULL)
        mdb_txn_abort(ck);
    if (rc == 0 && dirty) {
        rc = store_txn_commit(txn); /* frees txn */
        txn = NULL;
    }
    if (txn != NULL)
        mdb_txn_abort(txn);
    if (rc != 0)
        return cwt_seterr(err, errlen, rc,
                          "store %s: cannot move the monitor's records into the main "
                          "environment: %s",
                          st->dir, cwt_strerror(rc));
    return 0;
}

/* Inside txn, a write transaction of the checkpoint environment: deletes the copies of the
 * monitor's records once the main environment holds them (MAIN_MIGRATED). */
static int tidy_ckpt_txn(struct store *st, MDB_txn *txn, int *dirty)
{
    MDB_cursor *cur;
    int rc = main_migrated(st);

    if (rc <= 0)
        return rc;
    rc = mdb_cursor_open(txn, st->ckpt_models, &cur);
    if (rc != 0)
        return store_mdb_err(rc);
    rc = delete_names(cur, 1, dirty);
    mdb_cursor_close(cur);
    return store_mdb_err(rc);
}

static int tidy_ckpt(struct store *st, char *err, size_t errlen)
{
    MDB_txn *txn;
    int rc, dirty = 0;

    rc = store_mdb_err(mdb_txn_begin(st->ckpt_env, NULL, 0, &txn));
    if (rc == 0) {
        rc = tidy_ckpt_txn(st, txn, &dirty);
        if (rc == 0 && dirty)
            rc = store_txn_commit(txn);
        else
            mdb_txn_abort(txn);
    }
    if (rc != 0)
        return cwt_seterr(err, errlen, rc, "store %s: cannot remove the old copies in %s/: %s",
                          st->dir, CKPT_DIR, cwt_strerror(rc));
    return 0;
}

/* Opens the two databases of the checkpoint environment (created unless rdonly). */
static int open_ckpt_databases(struct store *st, int rdonly)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->ckpt_env, NULL, rdonly ? MDB_RDONLY : 0, &txn);

    if (rc != 0)
        return rc;
    rc = mdb_dbi_open(txn, "models", rdonly ? 0 : MDB_CREATE, &st->ckpt_models);
    if (rc == 0)
        rc = mdb_dbi_open(txn, "meta", rdonly ? 0 : MDB_CREATE, &st->ckpt_meta);
    if (rc == 0 && rdonly && marker(txn, st->ckpt_meta, CKPT_MIGRATED) != 1)
        rc = MDB_NOTFOUND;
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

/* Opens the checkpoint environment: read-write (created if missing) when this handle may
 * write it, else read-only and only once it exists and is migrated; st->ckpt_env stays NULL
 * then. */
static int open_ckpt_env(struct store *st, char *err, size_t errlen)
{
    int rdonly = !store_ckpt_writable(st);
    char dir[PATH_MAX], datafile[PATH_MAX];
    struct stat sb;
    int rc, dead = 0;

    if (file_join(dir, sizeof(dir), st->dir, CKPT_DIR) != 0 ||
        file_join(datafile, sizeof(datafile), dir, "data.mdb") != 0)
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "store folder name is too long");
    if (rdonly) {
        /* Not made yet, or being made right now: its records are still in main. */
        if (stat(datafile, &sb) != 0 || sb.st_size == 0)
            return 0;
    } else {
        rc = file_mkdir_p(dir, 0700, err, errlen);
        if (rc != 0)
            return rc;
    }
    rc = mdb_env_create(&st->ckpt_env);
    if (rc == 0)
        rc = mdb_env_set_mapsize(st->ckpt_env, (size_t)st->map_bytes);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(st->ckpt_env, CKPT_MAX_DBS);
    if (rc == 0)
        rc = mdb_env_open(st->ckpt_env, dir, MDB_NOTLS | (rdonly ? MDB_RDONLY : 0), 0600);
    if (rc == 0) {
        (void)mdb_reader_check(st->ckpt_env, &dead);
        rc = open_ckpt_databases(st, rdonly);
    }
    if (rc != 0) {
        if (st->ckpt_env != NULL)
            mdb_env_close(st->ckpt_env);
        st->ckpt_env = NULL;
        if (rdonly && rc == MDB_NOTFOUND)
            return 0; /* not migrated yet: the main environment still has the records */
        return cwt_seterr(err, errlen, store_mdb_err(rc),
                          "cannot open the checkpoint environment in %s: %s", dir,
                          mdb_strerror(rc));
    }
    return 0;
}

int store_ckpt_open(struct store *st, char *err, size_t errlen)
{
    int rc = open_ckpt_env(st, err, errlen);

    /* The order lets one open of cwtctl take a store of layout 1 or 2 to layout 3. */
    if (rc == 0 && st->ckpt_env != NULL && store_ckpt_writable(st))
        rc = copy_from_main(st, err, errlen);
    if (rc == 0 && store_main_writable(st))
        rc = migrate_main(st, err, errlen);
    if (rc == 0 && st->ckpt_env != NULL && store_ckpt_writable(st))
        rc = tidy_ckpt(st, err, errlen);
    if (rc != 0)
        store_ckpt_close(st);
    return rc;
}

void store_ckpt_close(struct store *st)
{
    if (st->ckpt_env != NULL)
        mdb_env_close(st->ckpt_env);
    st->ckpt_env = NULL;
}

int store_ckpt_txn_begin(struct store *st, int rdonly, MDB_txn **txn, MDB_dbi *models,
                         MDB_dbi *meta)
{
    if (st == NULL || txn == NULL)
        return CWT_EINVAL;
    if (!rdonly && !store_ckpt_writable(st))
        return CWT_EPERM;
    if (st->ckpt_env == NULL) {
        /* A handle that holds it read-only tries again: the trainer may have made or migrated
         * it since (a failure here reads main, as before). */
        (void)open_ckpt_env(st, NULL, 0);
    }
    if (st->ckpt_env == NULL) {
        if (!rdonly)
            return CWT_EPERM;
        if (models != NULL)
            *models = st->models;
        if (meta != NULL)
            *meta = st->meta;
        return store_mdb_err(mdb_txn_begin(st->env, NULL, MDB_RDONLY, txn));
    }
    if (models != NULL)
        *models = st->ckpt_models;
    if (meta != NULL)
        *meta = st->ckpt_meta;
    return store_mdb_err(mdb_txn_begin(st->ckpt_env, NULL, rdonly ? MDB_RDONLY : 0, txn));
}

int store_main_models_txn_begin(struct store *st, int rdonly, MDB_txn **txn, MDB_dbi *models)
{
    int rc;

    if (st == NULL || txn == NULL || models == NULL)
        return CWT_EINVAL;
    if ((rc = store_txn_begin(st, rdonly, txn)) != 0)
        return rc;
    *models = st->models;
    if (!rdonly)
        return 0; /* a handle that may write main migrated it when it opened */
    rc = marker(*txn, st->meta, MAIN_MIGRATED);
    if (rc != 0) {
        if (rc < 0)
            mdb_txn_abort(*txn);
        return rc < 0 ? rc : 0;
    }
    /* Layout 1 or 2, read by a handle that may not write main: the records are where
     * checkpoints are read (layout 2, or layout 1 copied by a trainer), else in main. */
    mdb_txn_abort(*txn);
    return store_ckpt_txn_begin(st, 1, txn, models, NULL);
}

int store_visit_begin(struct store *st, const char *name, const uint8_t input_hash[32], int *resume)
{
    char own_input[160];
    size_t nlen, plen = strlen(STORE_VISIT_PREFIX);
    MDB_cursor *cur = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_val k, v;
    int rc, keep, dirty = 0;

    if (st == NULL || name == NULL || input_hash == NULL || resume == NULL)
        return CWT_EINVAL;
    *resume = 0;
    nlen = strlen(name);
    if (nlen <= plen || strncmp(name, STORE_VISIT_PREFIX, plen) != 0 ||
        nlen + sizeof(STORE_VISIT_INPUT_SUFFIX) > sizeof(own_input))
        return CWT_EINVAL;
    memcpy(own_input, name, nlen);
    memcpy(own_input + nlen, STORE_VISIT_INPUT_SUFFIX, sizeof(STORE_VISIT_INPUT_SUFFIX));
    if ((rc = store_ckpt_txn_begin(st, 0, &txn, &dbi, NULL)) != 0)
        return rc;
    k.mv_data = own_input;
    k.mv_size = strlen(own_input);
    rc = mdb_get(txn, dbi, &k, &v);
    keep = rc == 0 && v.mv_size == 32 && memcmp(v.mv_data, input_hash, 32) == 0;
    rc = rc == MDB_NOTFOUND ? 0 : rc;
    if (rc == 0)
        rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc == 0) {
        k.mv_data = (void *)STORE_VISIT_PREFIX;
        k.mv_size = plen;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    }
    /* Every name under the prefix, in order; this visit's are "name" and "name.*" (a bare
     * prefix match would take "...h1" for "...h10"). */
    while (rc == 0 && k.mv_size >= plen && memcmp(k.mv_data, STORE_VISIT_PREFIX, plen) == 0) {
        int own = k.mv_size >= nlen && memcmp(k.mv_data, name, nlen) == 0 &&
                  (k.mv_size == nlen || ((const char *)k.mv_data)[nlen] == '.');
        /* After a delete the cursor stands on the next record, which MDB_NEXT returns. */
        if ((!own || !keep) && (rc = mdb_cursor_del(cur, 0)) != 0)
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (cur != NULL)
        mdb_cursor_close(cur);
    rc = rc == MDB_NOTFOUND ? 0 : store_mdb_err(rc);
    if (rc == 0 && !keep) {
        k.mv_data = own_input;
        k.mv_size = strlen(own_input);
        v.mv_data = (void *)input_hash;
        v.mv_size = 32;
        rc = store_mdb_err(mdb_put(txn, dbi, &k, &v, 0));
    }
    if (rc == 0)
        rc = tidy_ckpt_txn(st, txn, &dirty);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    rc = store_txn_commit(txn);
    if (rc == 0)
        *resume = keep;
    return rc;
}

int store_ckpt_disk_bytes(struct store *st, uint64_t *out)
{
    char dir[PATH_MAX];

    *out = 0;
    if (file_join(dir, sizeof(dir), st->dir, CKPT_DIR) != 0)
        return CWT_ETOOBIG;
    return store_env_disk_bytes(dir, out);
}
