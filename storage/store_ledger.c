/*
 * store_ledger.c - the `ledger` database: bundles accepted and sent, and the last accepted
 * sequence per federation (the replay and rollback rules of DESIGN section 4).
 *
 * Keys, one prefix byte each, all in the one named database:
 *   'b' | bundle id (16)       -> entry record (LEDGER_REC_LEN bytes, below)
 *   'n' | order (u64 BE)       -> bundle id (16): insertion order, for oldest-first listing
 *   'l' | federation id        -> last accepted sequence (u64 LE) | that bundle's hash (32)
 *   'c'                        -> next order number (u64 LE)
 * Every ledger_record is one write transaction, so an entry, its order key and the raised
 * last sequence become visible together or not at all.
 */
#include <stdlib.h>
#include <string.h>

#include "storage/store_internal.h"

/* Kind code of ensemble members (BUNDLE_KIND_ENSEMBLE_MEMBER in crypto/bundle.h): they
 * arrive in any order and so never move the last sequence. */
#define LEDGER_KIND_ENSEMBLE 3

/* Record layout: id 16 | hash 32 | federation 64 (NUL padded) | peer 64 | sequence u64 |
 * cycle u32 | hop u32 | kind u8 | outgoing u8 | time i64; integers little-endian. */
#define LEDGER_REC_LEN (16 + 32 + 64 + 64 + 8 + 4 + 4 + 1 + 1 + 8)

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;

    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void encode_entry(const struct ledger_entry *e, uint8_t *r)
{
    memset(r, 0, LEDGER_REC_LEN);
    memcpy(r, e->bundle_id, 16);
    memcpy(r + 16, e->bundle_hash, 32);
    memcpy(r + 48, e->federation, strnlen(e->federation, CWT_ID_MAX));
    memcpy(r + 112, e->peer, strnlen(e->peer, CWT_ID_MAX));
    put_le(r + 176, e->sequence, 8);
    put_le(r + 184, e->cycle, 4);
    put_le(r + 188, e->hop, 4);
    r[192] = e->kind;
    r[193] = e->outgoing;
    put_le(r + 194, (uint64_t)e->time, 8);
}

static int decode_entry(const MDB_val *v, struct ledger_entry *e)
{
    const uint8_t *r = v->mv_data;

    if (v->mv_size != LEDGER_REC_LEN)
        return CWT_ESTORE;
    memset(e, 0, sizeof(*e));
    memcpy(e->bundle_id, r, 16);
    memcpy(e->bundle_hash, r + 16, 32);
    memcpy(e->federation, r + 48, CWT_ID_MAX); /* 64th byte stays the NUL */
    memcpy(e->peer, r + 112, CWT_ID_MAX);
    e->sequence = get_le(r + 176, 8);
    e->cycle = (uint32_t)get_le(r + 184, 4);
    e->hop = (uint32_t)get_le(r + 188, 4);
    e->kind = r[192];
    e->outgoing = r[193];
    e->time = (int64_t)get_le(r + 194, 8);
    return 0;
}

static int fed_key(const char *federation, uint8_t *buf, MDB_val *key)
{
    size_t len = strnlen(federation, CWT_ID_MAX + 1);

    if (len == 0 || len > CWT_ID_MAX)
        return CWT_EINVAL;
    buf[0] = 'l';
    memcpy(buf + 1, federation, len);
    key->mv_data = buf;
    key->mv_size = 1 + len;
    return 0;
}

static int put(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t klen, const void *v, size_t vlen)
{
    MDB_val key = {klen, (void *)k}, val = {vlen, (void *)v};

    return store_mdb_err(mdb_put(txn, dbi, &key, &val, 0));
}

int ledger_record(struct store *st, const struct ledger_entry *e)
{
    uint8_t bkey[17], nkey[9], lkey[1 + CWT_ID_MAX], rec[LEDGER_REC_LEN], last[40], cnt[8];
    MDB_val key, val;
    MDB_txn *txn;
    uint64_t order = 0;
    int rc;

    if (st == NULL || e == NULL || e->federation[0] == '\0')
        return CWT_EINVAL;
    if ((rc = store_txn_begin(st, 0, &txn)) != 0)
        return rc;
    bkey[0] = 'b';
    memcpy(bkey + 1, e->bundle_id, 16);
    key.mv_data = bkey;
    key.mv_size = sizeof(bkey);
    rc = store_mdb_err(mdb_get(txn, st->ledger, &key, &val));
    if (rc == 0) {
        rc = CWT_EB_REPLAY;
        goto fail;
    }
    if (rc != CWT_ENOENT)
        goto fail;
    key.mv_data = "c";
    key.mv_size = 1;
    rc = store_mdb_err(mdb_get(txn, st->ledger, &key, &val));
    if (rc == 0 && val.mv_size == 8)
        order = get_le(val.mv_data, 8);
    else if (rc != CWT_ENOENT)
        goto fail;
    put_le(cnt, order + 1, 8);
    nkey[0] = 'n';
    store_be64(nkey + 1, order);
    encode_entry(e, rec);
    if ((rc = put(txn, st->ledger, "c", 1, cnt, 8)) != 0 ||
        (rc = put(txn, st->ledger, bkey, sizeof(bkey), rec, sizeof(rec))) != 0 ||
        (rc = put(txn, st->ledger, nkey, sizeof(nkey), e->bundle_id, 16)) != 0)
        goto fail;
    if (!e->outgoing && e->kind != LEDGER_KIND_ENSEMBLE) {
        if ((rc = fed_key(e->federation, lkey, &key)) != 0)
            goto fail;
        rc = store_mdb_err(mdb_get(txn, st->ledger, &key, &val));
        if (rc != 0 && rc != CWT_ENOENT)
            goto fail;
        if (rc == CWT_ENOENT ||
            (val.mv_size == sizeof(last) && e->sequence > get_le(val.mv_data, 8))) {
            put_le(last, e->sequence, 8);
            memcpy(last + 8, e->bundle_hash, 32);
            if ((rc = put(txn, st->ledger, key.mv_data, key.mv_size, last, sizeof(last))) != 0)
                goto fail;
        }
    }
    return store_txn_commit(txn);
fail:
    mdb_txn_abort(txn);
    return rc;
}

int ledger_lookup(struct store *st, const uint8_t bundle_id[16], struct ledger_entry *out)
{
    uint8_t bkey[17];
    MDB_val key = {sizeof(bkey), bkey}, val;
    MDB_txn *txn;
    int rc;

    if (st == NULL || out == NULL)
        return CWT_EINVAL;
    bkey[0] = 'b';
    memcpy(bkey + 1, bundle_id, 16);
    if ((rc = store_txn_begin(st, 1, &txn)) != 0)
        return rc;
    rc = store_mdb_err(mdb_get(txn, st->ledger, &key, &val));
    if (rc == 0)
        rc = decode_entry(&val, out);
    mdb_txn_abort(txn);
    return rc;
}

int ledger_last(struct store *st, const char *federation, uint64_t *sequence, uint8_t head_hash[32])
{
    uint8_t lkey[1 + CWT_ID_MAX];
    MDB_val key, val;
    MDB_txn *txn;
    int rc;

    *sequence = 0;
    if (head_hash != NULL)
        memset(head_hash, 0, 32);
    if (st == NULL || (rc = fed_key(federation, lkey, &key)) != 0)
        return CWT_EINVAL;
    if ((rc = store_txn_begin(st, 1, &txn)) != 0)
        return rc;
    rc = store_mdb_err(mdb_get(txn, st->ledger, &key, &val));
    if (rc == 0 && val.mv_size != 40)
        rc = CWT_ESTORE;
    if (rc == 0) {
        *sequence = get_le(val.mv_data, 8);
        if (head_hash != NULL)
            memcpy(head_hash, (const uint8_t *)val.mv_data + 8, 32);
    }
    mdb_txn_abort(txn);
    return rc;
}

int ledger_list(struct store *st, struct ledger_entry **out, size_t *n)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val key = {1, "n"}, val;
    struct ledger_entry *list = NULL;
    size_t cap = 0, cnt = 0;
    int rc, mrc;

    *out = NULL;
    *n = 0;
    if (st == NULL)
        return CWT_EINVAL;
    if ((rc = store_txn_begin(st, 1, &txn)) != 0)
        return rc;
    if ((rc = store_mdb_err(mdb_cursor_open(txn, st->ledger, &cur))) != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    for (mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); mrc == MDB_SUCCESS;
         mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        uint8_t bkey[17];
        MDB_val k2 = {sizeof(bkey), bkey}, v2;
        if (key.mv_size != 9 || ((const uint8_t *)key.mv_data)[0] != 'n')
            break;
        if (val.mv_size != 16) {
            rc = CWT_ESTORE;
            break;
        }
        bkey[0] = 'b';
        memcpy(bkey + 1, val.mv_data, 16);
        if ((rc = store_mdb_err(mdb_get(txn, st->ledger, &k2, &v2))) != 0) {
            if (rc == CWT_ENOENT)
                rc = CWT_ESTORE; /* an order key without its entry */
            break;
        }
        if (cnt == cap) {
            size_t ncap = cap ? cap * 2 : 32;
            struct ledger_entry *nl = realloc(list, ncap * sizeof(*nl));
            if (nl == NULL) {
                rc = CWT_ENOMEM;
                break;
            }
            list = nl;
            cap = ncap;
        }
        if ((rc = decode_entry(&v2, &list[cnt])) != 0)
            break;
        cnt++;
    }
    if (rc == 0 && mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
        rc = store_mdb_err(mrc);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (rc != 0) {
        free(list);
        return rc;
    }
    *out = list;
    *n = cnt;
    return 0;
}
