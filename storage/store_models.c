/*
 * store_models.c - the `models` databases: name -> blob. The monitor's records live in the
 * main environment, the training driver's in the checkpoint environment (store_ckpt.c); the
 * name decides which (store_model_is_main), so that no caller can put a record where the
 * other process would trust it.
 *
 * A blob is an opaque byte string (the training driver stores safetensors images). Each put
 * is its own write transaction, so a record is replaced atomically and survives a crash once
 * store_model_put returns.
 */
#include <stdlib.h>
#include <string.h>

#include "storage/store_internal.h"

/* Names are short printable identifiers; bounding them keeps keys well under LMDB's limit. */
#define STORE_MODEL_NAME_MAX 128

/* The monitor's records (daemon/daemon.h, engine/train/train.h's TRAIN_CKPT_MODEL). */
static const char *const main_names[] = {"cwtd.input", "cwtd.result", "cwtd.best", "model"};
#define MAIN_PREFIX "ensemble."

int store_model_is_main_key(const void *key, size_t len)
{
    size_t plen = strlen(MAIN_PREFIX);

    for (size_t i = 0; i < sizeof(main_names) / sizeof(main_names[0]); i++)
        if (len == strlen(main_names[i]) && memcmp(key, main_names[i], len) == 0)
            return 1;
    return len > plen && memcmp(key, MAIN_PREFIX, plen) == 0;
}

int store_model_is_main(const char *name)
{
    return name != NULL && store_model_is_main_key(name, strlen(name));
}

/* Begins a transaction where name's record is, with its database in *dbi. */
static int model_txn_begin(struct store *st, const MDB_val *key, int rdonly, MDB_txn **txn,
                           MDB_dbi *dbi)
{
    if (store_model_is_main_key(key->mv_data, key->mv_size))
        return store_main_models_txn_begin(st, rdonly, txn, dbi);
    return store_ckpt_txn_begin(st, rdonly, txn, dbi, NULL);
}

static int model_key(const char *name, MDB_val *key)
{
    size_t len;

    if (name == NULL)
        return CWT_EINVAL;
    len = strnlen(name, STORE_MODEL_NAME_MAX + 1);
    if (len == 0 || len > STORE_MODEL_NAME_MAX)
        return CWT_EINVAL;
    key->mv_data = (void *)name;
    key->mv_size = len;
    return 0;
}

int store_model_put(struct store *st, const char *name, const void *blob, size_t len)
{
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val key, val;
    int rc;

    if (st == NULL || (blob == NULL && len > 0))
        return CWT_EINVAL;
    if ((rc = model_key(name, &key)) != 0)
        return rc;
    if ((rc = model_txn_begin(st, &key, 0, &txn, &dbi)) != 0)
        return rc;
    val.mv_data = (void *)blob;
    val.mv_size = len;
    rc = mdb_put(txn, dbi, &key, &val, 0);
    if (rc != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        return store_mdb_err(rc);
    }
    return store_txn_commit(txn);
}

int store_model_get(struct store *st, const char *name, uint8_t **blob, size_t *len)
{
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val key, val;
    uint8_t *copy;
    int rc;

    if (st == NULL || blob == NULL || len == NULL)
        return CWT_EINVAL;
    *blob = NULL;
    *len = 0;
    if ((rc = model_key(name, &key)) != 0)
        return rc;
    if ((rc = model_txn_begin(st, &key, 1, &txn, &dbi)) != 0)
        return rc;
    rc = mdb_get(txn, dbi, &key, &val);
    if (rc != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        return store_mdb_err(rc);
    }
    /* One extra byte so that an empty blob still gets a non-NULL buffer. */
    copy = malloc(val.mv_size + 1);
    if (copy == NULL) {
        mdb_txn_abort(txn);
        return CWT_ENOMEM;
    }
    memcpy(copy, val.mv_data, val.mv_size);
    mdb_txn_abort(txn);
    *blob = copy;
    *len = val.mv_size;
    return 0;
}

int store_model_del(struct store *st, const char *name)
{
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val key;
    int rc;

    if (st == NULL)
        return CWT_EINVAL;
    if ((rc = model_key(name, &key)) != 0)
        return rc;
    if ((rc = model_txn_begin(st, &key, 0, &txn, &dbi)) != 0)
        return rc;
    rc = mdb_del(txn, dbi, &key, NULL);
    if (rc != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        return store_mdb_err(rc);
    }
    return store_txn_commit(txn);
}
