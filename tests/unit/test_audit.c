/*
 * test_audit.c - the hash-chained audit log: append, list and verify; records edited, deleted,
 * swapped or cut off directly in LMDB are detected and named; the signed export round-trips,
 * and a tampered export, a wrong key or a broken chain inside a valid signature all fail.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "crypto/keyops.h"
#include "storage/store.h"
#include "storage/store_audit.h"
#include "storage/store_internal.h"
#include "tests/test_tmp.h"

#define N_RECORDS 5
#define KEY_LINE  "cwt-site-v1 site-a AAAA" /* opaque to the export layer */

struct fixture {
    char dir[PATH_MAX];
    struct store *st;
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    char err[CWT_ERRLEN];

    if (fx == NULL || sodium_init() < 0)
        return -1;
    if (test_tmp_path(fx->dir, sizeof(fx->dir), "test_audit") != 0) { /* a fresh store per test */
        free(fx);
        return -1;
    }
    if (store_open(fx->dir, STORE_CREATE, 64u << 20, &fx->st, err, sizeof(err)) != 0) {
        fprintf(stderr, "setup: %s\n", err);
        free(fx);
        return -1;
    }
    for (int i = 1; i <= N_RECORDS; i++)
        if (audit_append(fx->st, i == 1 ? "key-load" : "config-change", "change number %d", i) != 0)
            return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    int rc;

    store_close(fx->st);
    rc = test_tmp_remove(fx->dir);
    free(fx);
    return rc == 0 ? 0 : -1;
}

/* Direct LMDB surgery on the audit database, as an attacker with file access could do. */
static MDB_txn *raw_begin(struct fixture *fx)
{
    MDB_txn *txn;

    assert_int_equal(store_txn_begin(fx->st, 0, &txn), 0);
    return txn;
}

static void raw_get(MDB_txn *txn, struct fixture *fx, uint64_t seq, uint8_t *buf, size_t *len)
{
    uint8_t key[8];
    MDB_val k = {sizeof(key), key}, v;

    store_be64(key, seq);
    assert_int_equal(mdb_get(txn, fx->st->audit, &k, &v), 0);
    memcpy(buf, v.mv_data, v.mv_size);
    *len = v.mv_size;
}

static void raw_put(MDB_txn *txn, struct fixture *fx, uint64_t seq, uint8_t *buf, size_t len)
{
    uint8_t key[8];
    MDB_val k = {sizeof(key), key}, v = {len, buf};

    store_be64(key, seq);
    assert_int_equal(mdb_put(txn, fx->st->audit, &k, &v, 0), 0);
}

static void raw_del(MDB_txn *txn, struct fixture *fx, uint64_t seq)
{
    uint8_t key[8];
    MDB_val k = {sizeof(key), key};

    store_be64(key, seq);
    assert_int_equal(mdb_del(txn, fx->st->audit, &k, NULL), 0);
}

static void expect_broken(struct fixture *fx, const char *words)
{
    char err[CWT_ERRLEN] = "";

    assert_int_equal(audit_verify(fx->st, err, sizeof(err)), CWT_EFORMAT);
    if (strstr(err, words) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", words, err);
}

static void test_append_list_verify(void **state)
{
    struct fixture *fx = *state;
    static const uint8_t zero[32];
    struct audit_record *recs;
    char err[CWT_ERRLEN], long_details[2000];
    uint8_t hash[32];
    size_t n;

    assert_int_equal(audit_verify(fx->st, err, sizeof(err)), 0);
    assert_int_equal(audit_list(fx->st, &recs, &n), 0);
    assert_int_equal(n, N_RECORDS);
    for (size_t i = 0; i < n; i++) {
        char want[48];

        snprintf(want, sizeof(want), "change number %zu", i + 1);
        assert_int_equal(recs[i].seq, i + 1);
        assert_string_equal(recs[i].details, want);
        assert_string_equal(recs[i].event, i == 0 ? "key-load" : "config-change");
        assert_memory_equal(recs[i].prev_hash, i == 0 ? zero : recs[i - 1].hash, 32);
        assert_int_equal(audit_record_hash(&recs[i], hash), 0);
        assert_memory_equal(hash, recs[i].hash, 32);
        assert_true(recs[i].time > 1600000000);
    }
    free(recs);

    /* Details stay one line; overlong details are cut visibly; bad event names refused. */
    assert_int_equal(audit_append(fx->st, "ingest", "two\nlines\tand a tab"), 0);
    memset(long_details, 'x', sizeof(long_details) - 1);
    long_details[sizeof(long_details) - 1] = '\0';
    assert_int_equal(audit_append(fx->st, "ingest", "%s", long_details), 0);
    assert_int_equal(audit_append(fx->st, "bad event", "x"), CWT_EINVAL);
    assert_int_equal(audit_append(fx->st, "", "x"), CWT_EINVAL);
    assert_int_equal(audit_append(fx->st, "an-event-name-longer-than-31-chars", "x"), CWT_EINVAL);
    assert_int_equal(audit_list(fx->st, &recs, &n), 0);
    assert_int_equal(n, N_RECORDS + 2);
    assert_string_equal(recs[N_RECORDS].details, "two lines and a tab");
    assert_int_equal(strlen(recs[N_RECORDS + 1].details), 511);
    assert_string_equal(recs[N_RECORDS + 1].details + 508, "...");
    free(recs);
    assert_int_equal(audit_verify(fx->st, err, sizeof(err)), 0);
}

static void test_edited_record_named(void **state)
{
    struct fixture *fx = *state;
    uint8_t buf[1024];
    size_t len;
    MDB_txn *txn = raw_begin(fx);

    raw_get(txn, fx, 3, buf, &len);
    buf[8 + 8 + 2 + strlen("config-change") + 2] ^= 0x01; /* first byte of the details */
    raw_put(txn, fx, 3, buf, len);
    assert_int_equal(store_txn_commit(txn), 0);
    expect_broken(fx, "audit record 3 was altered");
}

static void test_edited_time_named(void **state)
{
    struct fixture *fx = *state;
    uint8_t buf[1024];
    size_t len;
    MDB_txn *txn = raw_begin(fx);

    raw_get(txn, fx, 2, buf, &len);
    buf[15] ^= 0x40; /* the time field */
    raw_put(txn, fx, 2, buf, len);
    assert_int_equal(store_txn_commit(txn), 0);
    expect_broken(fx, "audit record 2 was altered");
}

static void test_rehashed_edit_breaks_the_link(void **state)
{
    struct fixture *fx = *state;
    struct audit_record *recs;
    uint8_t buf[1024];
    size_t n, len;
    MDB_txn *txn;

    /* An attacker who edits record 3 and recomputes its own hash still breaks record 4. */
    assert_int_equal(audit_list(fx->st, &recs, &n), 0);
    txn = raw_begin(fx);
    raw_get(txn, fx, 3, buf, &len);
    buf[8 + 8 + 2 + strlen("config-change") + 2] = 'C';
    memcpy(recs[2].details, "C", 1);
    assert_int_equal(audit_record_hash(&recs[2], buf + len - 32), 0);
    raw_put(txn, fx, 3, buf, len);
    assert_int_equal(store_txn_commit(txn), 0);
    free(recs);
    expect_broken(fx, "audit record 4 does not link");
}

static void test_deleted_middle_record_named(void **state)
{
    struct fixture *fx = *state;
    MDB_txn *txn = raw_begin(fx);

    raw_del(txn, fx, 3);
    assert_int_equal(store_txn_commit(txn), 0);
    expect_broken(fx, "audit record 3 is missing (the next record is 4)");
}

static void test_deleted_last_record_named(void **state)
{
    struct fixture *fx = *state;
    MDB_txn *txn = raw_begin(fx);

    raw_del(txn, fx, N_RECORDS);
    assert_int_equal(store_txn_commit(txn), 0);
    expect_broken(fx, "audit record 5 is missing");
}

static void test_swapped_records_named(void **state)
{
    struct fixture *fx = *state;
    uint8_t a[1024], b[1024];
    size_t alen, blen;
    MDB_txn *txn = raw_begin(fx);

    raw_get(txn, fx, 2, a, &alen);
    raw_get(txn, fx, 3, b, &blen);
    raw_put(txn, fx, 2, b, blen);
    raw_put(txn, fx, 3, a, alen);
    assert_int_equal(store_txn_commit(txn), 0);
    expect_broken(fx, "audit record 2 holds the contents of record 3");
}

/* Builds the stored value of a record (canonical encoding, then its hash). */
static size_t encode_value(const struct audit_record *r, uint8_t *out)
{
    size_t elen = strlen(r->event), dlen = strlen(r->details), off = 0;

    store_be64(out, r->seq);
    store_be64(out + 8, (uint64_t)r->time);
    off = 16;
    out[off++] = (uint8_t)(elen >> 8);
    out[off++] = (uint8_t)elen;
    memcpy(out + off, r->event, elen);
    off += elen;
    out[off++] = (uint8_t)(dlen >> 8);
    out[off++] = (uint8_t)dlen;
    memcpy(out + off, r->details, dlen);
    off += dlen;
    memcpy(out + off, r->prev_hash, 32);
    memcpy(out + off + 32, r->hash, 32);
    return off + 64;
}

static void test_appended_outside_the_log_named(void **state)
{
    struct fixture *fx = *state;
    struct audit_record *recs, r = {0};
    uint8_t buf[1024];
    size_t n, len;
    MDB_txn *txn;

    /* A well-chained record 6 written straight into LMDB, bypassing audit_append: the chain
     * alone looks intact, the head kept beside it does not. */
    assert_int_equal(audit_list(fx->st, &recs, &n), 0);
    r.seq = N_RECORDS + 1;
    r.time = recs[n - 1].time;
    strcpy(r.event, "config-change");
    strcpy(r.details, "forged");
    memcpy(r.prev_hash, recs[n - 1].hash, 32);
    free(recs);
    assert_int_equal(audit_record_hash(&r, r.hash), 0);
    len = encode_value(&r, buf);
    txn = raw_begin(fx);
    raw_put(txn, fx, r.seq, buf, len);
    assert_int_equal(store_txn_commit(txn), 0);
    expect_broken(fx, "audit record 6 was added outside the log");

    /* The same bytes at their rightful place verify: the encoding above is the real one. */
    txn = raw_begin(fx);
    raw_del(txn, fx, r.seq);
    assert_int_equal(store_txn_commit(txn), 0);
    assert_int_equal(audit_append(fx->st, "config-change", "forged"), 0);
    txn = raw_begin(fx);
    raw_get(txn, fx, r.seq, buf, &len);
    mdb_txn_abort(txn);
    assert_int_equal(len, encode_value(&r, buf + 512));
    /* Same sequence, event, details and previous hash; only time and hash may differ. */
    assert_memory_equal(buf, buf + 512, 8);
    assert_memory_equal(buf + 16, buf + 512 + 16, len - 16 - 32);
}

static void test_malformed_value_named(void **state)
{
    struct fixture *fx = *state;
    uint8_t buf[1024];
    size_t len;
    MDB_txn *txn = raw_begin(fx);

    raw_get(txn, fx, 4, buf, &len);
    raw_put(txn, fx, 4, buf, len - 1);
    assert_int_equal(store_txn_commit(txn), 0);
    expect_broken(fx, "audit record 4 is malformed");
}

/* --- export --- */

/* An audit export signer over a bare Ed25519 secret key (the in-process key operations). */
static int sk_sign(void *ctx, uint8_t context, const uint8_t digest[KEYOPS_DIGEST_LEN],
                   uint8_t sig[KEYOPS_SIG_LEN])
{
    return keyops_sign_sk(ctx, context, digest, sig);
}

static struct key_ops sk_ops(uint8_t *sk)
{
    struct key_ops ops = {.ctx = sk, .sign = sk_sign, .open_key = NULL};
    return ops;
}

static void make_export(struct fixture *fx, uint8_t pk[32], uint8_t sk[64], uint8_t **out,
                        size_t *len)
{
    struct audit_record *recs;
    char err[CWT_ERRLEN];
    size_t n;

    struct key_ops ops = sk_ops(sk);

    crypto_sign_keypair(pk, sk);
    assert_int_equal(audit_list(fx->st, &recs, &n), 0);
    assert_int_equal(
        audit_export_encode(recs, n, KEY_LINE, &ops, 1700000000, out, len, err, sizeof(err)), 0);
    free(recs);
}

static void test_export_round_trip(void **state)
{
    struct fixture *fx = *state;
    struct audit_record *orig, *recs;
    struct audit_export_info info;
    uint8_t pk[32], sk[64], *buf;
    struct key_ops ops = sk_ops(sk);
    char err[CWT_ERRLEN];
    size_t len, n, on;

    /* A backslash and a non-ASCII byte survive the text escaping. */
    assert_int_equal(audit_append(fx->st, "ingest", "path C:\\data\\x41 caf\xc3\xa9"), 0);
    make_export(fx, pk, sk, &buf, &len);
    assert_memory_equal(buf, AUDIT_EXPORT_MAGIC "\n", strlen(AUDIT_EXPORT_MAGIC) + 1);
    assert_int_equal(audit_export_verify(buf, len, pk, &info, &recs, &n, err, sizeof(err)), 0);
    assert_int_equal(audit_list(fx->st, &orig, &on), 0);
    assert_int_equal(n, on);
    assert_int_equal(info.n_records, on);
    assert_int_equal(info.created, 1700000000);
    assert_string_equal(info.key_line, KEY_LINE);
    assert_memory_equal(info.head_hash, orig[on - 1].hash, 32);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(recs[i].seq, orig[i].seq);
        assert_int_equal(recs[i].time, orig[i].time);
        assert_string_equal(recs[i].event, orig[i].event);
        assert_string_equal(recs[i].details, orig[i].details);
        assert_memory_equal(recs[i].hash, orig[i].hash, 32);
    }
    free(recs);
    free(orig);
    free(buf);

    /* An empty log exports and verifies too. */
    assert_int_equal(audit_export_encode(NULL, 0, KEY_LINE, &ops, 1, &buf, &len, err, sizeof(err)),
                     0);
    assert_int_equal(audit_export_verify(buf, len, pk, &info, NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(info.n_records, 0);
    free(buf);
}

static void test_tampered_export_fails(void **state)
{
    struct fixture *fx = *state;
    struct audit_export_info info;
    uint8_t pk[32], sk[64], *buf, *copy;
    char err[CWT_ERRLEN];
    size_t len;
    char *p;

    make_export(fx, pk, sk, &buf, &len);
    copy = malloc(len + 16);
    assert_non_null(copy);

    /* A changed character in a record's details. */
    memcpy(copy, buf, len);
    p = strstr((char *)copy, "change number 3");
    assert_non_null(p);
    p[strlen("change number ")] = '7';
    assert_int_equal(audit_export_verify(copy, len, pk, &info, NULL, NULL, err, sizeof(err)),
                     CWT_EB_SIGNATURE);
    assert_non_null(strstr(err, "signature does not verify"));

    /* A bit flip in the signature itself. */
    memcpy(copy, buf, len);
    copy[len - 2] = copy[len - 2] == '0' ? '1' : '0';
    assert_int_equal(audit_export_verify(copy, len, pk, &info, NULL, NULL, err, sizeof(err)),
                     CWT_EB_SIGNATURE);

    /* Truncated, or with bytes appended. */
    assert_int_equal(audit_export_verify(buf, len - 1, pk, &info, NULL, NULL, err, sizeof(err)),
                     CWT_EFORMAT);
    assert_int_equal(audit_export_verify(buf, len / 2, pk, &info, NULL, NULL, err, sizeof(err)),
                     CWT_EFORMAT);
    memcpy(copy, buf, len);
    memcpy(copy + len, "extra\n", 6);
    assert_int_equal(audit_export_verify(copy, len + 6, pk, &info, NULL, NULL, err, sizeof(err)),
                     CWT_EFORMAT);
    assert_int_equal(audit_export_verify(buf, 0, pk, &info, NULL, NULL, err, sizeof(err)),
                     CWT_EFORMAT);
    free(copy);
    free(buf);
}

static void test_export_wrong_key_fails(void **state)
{
    struct fixture *fx = *state;
    struct audit_export_info info;
    uint8_t pk[32], sk[64], other_pk[32], other_sk[64], *buf;
    char err[CWT_ERRLEN];
    size_t len;

    make_export(fx, pk, sk, &buf, &len);
    crypto_sign_keypair(other_pk, other_sk);
    assert_int_equal(audit_export_verify(buf, len, other_pk, &info, NULL, NULL, err, sizeof(err)),
                     CWT_EB_SIGNATURE);
    assert_int_equal(audit_export_verify(buf, len, pk, &info, NULL, NULL, err, sizeof(err)), 0);
    free(buf);
}

static void test_signed_broken_chain_fails(void **state)
{
    struct fixture *fx = *state;
    struct audit_export_info info;
    struct audit_record *recs;
    uint8_t pk[32], sk[64], *buf;
    char err[CWT_ERRLEN];
    size_t len, n;

    struct key_ops ops = sk_ops(sk);

    /* A site that exports an edited log signs the evidence of the edit: verification must
     * still name the record even though the signature is good. */
    crypto_sign_keypair(pk, sk);
    assert_int_equal(audit_list(fx->st, &recs, &n), 0);
    recs[1].details[0] = 'C';
    assert_int_equal(audit_export_encode(recs, n, KEY_LINE, &ops, 1, &buf, &len, err, sizeof(err)),
                     0);
    assert_int_equal(audit_export_verify(buf, len, pk, &info, NULL, NULL, err, sizeof(err)),
                     CWT_EFORMAT);
    assert_non_null(strstr(err, "audit record 2 was altered"));
    free(buf);

    /* Record 3 dropped from the export. */
    memmove(&recs[2], &recs[3], (n - 3) * sizeof(*recs));
    recs[1].details[0] = 'c';
    assert_int_equal(
        audit_export_encode(recs, n - 1, KEY_LINE, &ops, 1, &buf, &len, err, sizeof(err)), 0);
    assert_int_equal(audit_export_verify(buf, len, pk, &info, NULL, NULL, err, sizeof(err)),
                     CWT_EFORMAT);
    assert_non_null(strstr(err, "audit record 3 is missing"));
    free(buf);
    free(recs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_list_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edited_record_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edited_time_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rehashed_edit_breaks_the_link, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted_middle_record_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted_last_record_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_swapped_records_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_appended_outside_the_log_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_value_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampered_export_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_wrong_key_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signed_broken_chain_fails, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
