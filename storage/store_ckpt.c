/*
 * store_ckpt.c - the checkpoint environment: a second LMDB environment in STORE/checkpoints/
 * that holds the `models` database and the training driver's meta keys (store.h). It exists
 * so that cwtd's trainer, which hosts the GPU driver, can write its checkpoints while its
 * handle on the main environment (images, ledger, audit, state) is read-only: a descriptor
 * opened O_RDONLY and a PROT_READ map, which no code in the trainer can write through.
 *
 * Migration of a store made before the split: the first open that may write the checkpoint
 * environment copies the main environment's models and training meta into it, with a marker,
 * in one transaction; an open that may write the main environment then empties the old
 * copies there. A crash between the two leaves the old copies behind, which the next such
 * open removes; readers never see them once the marker exists. A read-only open of a store
 * not yet migrated reads the models where they still are, in the main environment.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fileio.h"
#include "storage/store_internal.h"

#define CKPT_DIR      "checkpoints"
#define CKPT_MAX_DBS  2
#define CKPT_MIGRATED "cwt.migrated" /* in the checkpoint meta: the copy is done */

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

/* 1 when the marker is in the checkpoint meta as seen by txn, 0 when not, or an error. */
static int migrated(struct store *st, MDB_txn *txn)
{
    MDB_val k = {strlen(CKPT_MIGRATED), (void *)CKPT_MIGRATED}, v;
    int rc = mdb_get(txn, st->ckpt_meta, &k, &v);

    if (rc == MDB_NOTFOUND)
        return 0;
    return rc == 0 ? 1 : store_mdb_err(rc);
}

/* Copies the main environment's models and training meta into the checkpoint environment
 * and sets the marker, in one checkpoint transaction; nothing when the marker is there. */
static int copy_from_main(struct store *st, char *err, size_t errlen)
{
    MDB_txn *main_txn = NULL, *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc;

    rc = mdb_txn_begin(st->ckpt_env, NULL, 0, &txn);
    if (rc != 0)
        goto mdb_fail;
    rc = migrated(st, txn);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc < 0 ? cwt_seterr(err, errlen, rc,
                                   "store %s: cannot read the checkpoint "
                                   "environment's marker",
                                   st->dir)
                      : 0;
    }
    rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &main_txn);
    if (rc == 0)
        rc = mdb_cursor_open(main_txn, st->models, &cur);
    for (int op = MDB_FIRST; rc == 0; op = MDB_NEXT) {
        rc = mdb_cursor_get(cur, &k, &v, (MDB_cursor_op)op);
        if (rc == MDB_NOTFOUND) {
            rc = 0;
            break;
        }
        if (rc == 0)
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
    if (rc == 0) {
        k.mv_data = (void *)CKPT_MIGRATED;
        k.mv_size = strlen(CKPT_MIGRATED);
        v.mv_data = (void *)"1";
        v.mv_size = 1;
        rc = mdb_put(txn, st->ckpt_meta, &k, &v, 0);
    }
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

/* Empties the main environment's old copies (models, training meta) where there are any. */
static int clear_main(struct store *st, char *err, size_t errlen)
{
    MDB_txn *txn;
    MDB_stat ms;
    MDB_val k, v;
    int rc, dirty = 0;

    rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (rc == 0)
        rc = mdb_stat(txn, st->models, &ms);
    if (rc == 0 && ms.ms_entries > 0) {
        rc = mdb_drop(txn, st->models, 0);
        dirty = 1;
    }
    for (size_t i = 0; rc == 0 && i < sizeof(ckpt_meta_keys) / sizeof(ckpt_meta_keys[0]); i++) {
        k.mv_data = (void *)ckpt_meta_keys[i];
        k.mv_size = strlen(ckpt_meta_keys[i]);
        rc = mdb_get(txn, st->meta, &k, &v);
        if (rc == 0) {
            rc = mdb_del(txn, st->meta, &k, NULL);
            dirty = 1;
        } else if (rc == MDB_NOTFOUND) {
            rc = 0;
        }
    }
    if (rc != 0) {
        if (txn != NULL)
            mdb_txn_abort(txn);
        return cwt_seterr(err, errlen, store_mdb_err(rc),
                          "store %s: cannot remove the old copies of the checkpoints: %s", st->dir,
                          mdb_strerror(rc));
    }
    if (!dirty) {
        mdb_txn_abort(txn);
        return 0;
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0)
        return cwt_seterr(err, errlen, store_mdb_err(rc),
                          "store %s: cannot remove the old copies of the checkpoints: %s", st->dir,
                          mdb_strerror(rc));
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
    if (rc == 0 && rdonly && migrated(st, txn) != 1)
        rc = MDB_NOTFOUND;
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

int store_ckpt_open(struct store *st, uint64_t map_bytes, char *err, size_t errlen)
{
    int rdonly = (st->flags & STORE_RDONLY) != 0;
    char dir[PATH_MAX], datafile[PATH_MAX];
    struct stat sb;
    int rc, dead = 0;

    if (file_join(dir, sizeof(dir), st->dir, CKPT_DIR) != 0 ||
        file_join(datafile, sizeof(datafile), dir, "data.mdb") != 0)
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "store folder name is too long");
    if (rdonly) {
        /* A store not yet migrated (or being migrated right now) keeps its models in the
         * main environment: read them there. */
        if (stat(datafile, &sb) != 0 || sb.st_size == 0)
            return 0;
    } else {
        rc = file_mkdir_p(dir, 0700, err, errlen);
        if (rc != 0)
            return rc;
    }
    rc = mdb_env_create(&st->ckpt_env);
    if (rc == 0)
        rc = mdb_env_set_mapsize(st->ckpt_env, (size_t)map_bytes);
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
            return 0; /* not migrated yet: the main environment still has the models */
        return cwt_seterr(err, errlen, store_mdb_err(rc),
                          "cannot open the checkpoint environment in %s: %s", dir,
                          mdb_strerror(rc));
    }
    if (rdonly)
        return 0;
    rc = copy_from_main(st, err, errlen);
    if (rc == 0 && !(st->flags & STORE_TRAINER))
        rc = clear_main(st, err, errlen);
    if (rc != 0) {
        mdb_env_close(st->ckpt_env);
        st->ckpt_env = NULL;
    }
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
    if (st->ckpt_env == NULL) {
        /* A read-only open of a store not yet migrated. */
        if (!rdonly)
            return CWT_EPERM;
        if (models != NULL)
            *models = st->models;
        if (meta != NULL)
            *meta = st->meta;
        return store_mdb_err(mdb_txn_begin(st->env, NULL, MDB_RDONLY, txn));
    }
    if (!rdonly && (st->flags & STORE_RDONLY))
        return CWT_EPERM;
    if (models != NULL)
        *models = st->ckpt_models;
    if (meta != NULL)
        *meta = st->ckpt_meta;
    return store_mdb_err(mdb_txn_begin(st->ckpt_env, NULL, rdonly ? MDB_RDONLY : 0, txn));
}

int store_ckpt_disk_bytes(struct store *st, uint64_t *out)
{
    char dir[PATH_MAX];

    *out = 0;
    if (file_join(dir, sizeof(dir), st->dir, CKPT_DIR) != 0)
        return CWT_ETOOBIG;
    return store_env_disk_bytes(dir, out);
}
