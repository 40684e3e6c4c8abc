/*
 * store_internal.h - what the store's backends (store.c, store_models.c, store_ledger.c,
 * store_audit.c) share. Not part of the public contract: only the storage sources include it.
 *
 * Transactions: the environment is opened with MDB_NOTLS, so a read snapshot held between
 * store_read_begin() and store_read_end() may coexist with short read or write transactions
 * that a backend opens itself in the same thread. LMDB allows one write transaction at a time
 * per environment; a backend must not open a write transaction while a store_batch is open
 * on the same struct store (it would deadlock against itself) - store_txn_begin() refuses
 * that with CWT_ESTATE.
 */
#ifndef CWT_STORE_INTERNAL_H
#define CWT_STORE_INTERNAL_H

#include <limits.h>
#include <lmdb.h>

#include "storage/store.h"

#define STORE_DEFAULT_MAP_BYTES (16ull << 30)
#define STORE_MAX_DBS           8

struct store {
    MDB_env *env;      /* the main environment: STORE/data.mdb */
    MDB_env *ckpt_env; /* store_ckpt.c: STORE/checkpoints/; NULL in an open that holds it
                        * read-only while it does not exist or is not migrated yet (its
                        * records are then still in env) */
    MDB_dbi ckpt_models, ckpt_meta;
    MDB_dbi images;     /* u64 BE id -> struct store_image_hdr (LE) + pixels */
    MDB_dbi index;      /* split | label BE | id BE -> empty */
    MDB_dbi sources;    /* 32-byte content hash -> u64 BE id */
    MDB_dbi meta;       /* string key -> value */
    MDB_dbi models;     /* the monitor's records (store_model_is_main; store_ckpt.c) */
    MDB_dbi ledger;     /* store_ledger.c */
    MDB_dbi audit;      /* store_audit.c */
    MDB_dbi imeta;      /* store_imeta.c: u64 BE id -> encoded per-image metadata */
    int has_imeta;      /* 0: a read-only store made before per-image metadata existed */
    int flags;          /* STORE_RDONLY / STORE_CREATE / STORE_TRAINER / STORE_MONITOR */
    uint64_t map_bytes; /* map size of both environments */
    char dir[PATH_MAX];
    MDB_txn *snapshot;         /* open between store_read_begin and store_read_end */
    struct store_batch *batch; /* the open write batch, if any */
};

/* Whether this handle may write the main environment (not STORE_RDONLY, not STORE_TRAINER)
 * and the checkpoint environment (not STORE_RDONLY, not STORE_MONITOR). */
int store_main_writable(const struct store *st);
int store_ckpt_writable(const struct store *st);

/* Begins a transaction on st. rdonly != 0 gives a read snapshot (MDB_RDONLY); rdonly == 0 a
 * write transaction, which fails with CWT_EPERM on a handle that holds the main environment
 * read-only and with CWT_ESTATE while a store_batch is open. The caller ends it with
 * mdb_txn_abort() or store_txn_commit(). Other failures: CWT_ESTORE. */
int store_txn_begin(struct store *st, int rdonly, MDB_txn **txn);

/* Opens (creating it when this handle may write it) the checkpoint environment of st, whose
 * main environment is open, and migrates older layouts (store_ckpt.c): the training driver's
 * records into the checkpoint environment, the monitor's into the main one. 0, or an error
 * with a sentence in err. */
int store_ckpt_open(struct store *st, char *err, size_t errlen);
void store_ckpt_close(struct store *st);

/* Begins a transaction where the training driver's records are, and says which databases
 * hold its models and meta in it: the checkpoint environment, or, while a handle that holds
 * it read-only finds it missing or not migrated, the main one. A write transaction fails
 * with CWT_EPERM on a handle that holds the checkpoint environment read-only. End it as a
 * store_txn_begin() transaction. */
int store_ckpt_txn_begin(struct store *st, int rdonly, MDB_txn **txn, MDB_dbi *models,
                         MDB_dbi *meta);

/* Begins a transaction where the monitor's records (store_model_is_main) are, and says which
 * database holds them: the main environment's models once it is migrated (always so for a
 * handle that may write it), else where an older layout keeps them. A write transaction
 * fails with CWT_EPERM on a handle that holds the main environment read-only. */
int store_main_models_txn_begin(struct store *st, int rdonly, MDB_txn **txn, MDB_dbi *models);

/* store_model_is_main for a name of len bytes, not NUL-terminated (an LMDB key). */
int store_model_is_main_key(const void *key, size_t len);

/* 1 when key is a meta key of the training driver, kept in the checkpoint environment. */
int store_ckpt_meta_key(const char *key);

/* Allocated bytes (st_blocks, not the apparent size: the map may be sparse) of the LMDB
 * environment in dir (its data.mdb and lock.mdb; a missing file counts 0), into *out.
 * 0 or CWT_EIO/CWT_ETOOBIG; *out is left alone on error. */
int store_env_disk_bytes(const char *dir, uint64_t *out);

/* Allocated bytes of the checkpoint environment's files. 0 or CWT_EIO/CWT_ETOOBIG. */
int store_ckpt_disk_bytes(struct store *st, uint64_t *out);

/* Commits txn (which is freed in every case). Returns 0 or the mapped error. */
int store_txn_commit(MDB_txn *txn);

/* Maps an LMDB return code to a CWT_E* code: MDB_SUCCESS -> 0, MDB_NOTFOUND -> CWT_ENOENT,
 * MDB_KEYEXIST -> CWT_EEXIST, MDB_MAP_FULL -> CWT_ETOOBIG (the store reached its map size),
 * ENOMEM -> CWT_ENOMEM, EACCES/EROFS -> CWT_EPERM, anything else -> CWT_ESTORE. */
int store_mdb_err(int mdb_rc);

/* Big-endian u64/u32 keys, so that LMDB's byte order is numeric order. */
void store_be64(uint8_t out[8], uint64_t v);
uint64_t store_rd_be64(const uint8_t in[8]);
void store_be32(uint8_t out[4], uint32_t v);
uint32_t store_rd_be32(const uint8_t in[4]);

#endif
