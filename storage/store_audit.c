/*
 * store_audit.c - the tamper-evident audit log: hash-chained records in the `audit` database,
 * and its signed export (docs/audit-format.md).
 *
 * Key: u64 sequence, big-endian (1, 2, 3 ...). Value: the record's canonical encoding
 *   seq u64 BE | time i64 BE | u16 BE len + event | u16 BE len + details | prev_hash (32)
 * followed by its hash, BLAKE2b-256 of that encoding. The first record's prev_hash is 32 zero
 * bytes. The sequence is stored in the value as well as in the key, so that records moved
 * between keys are caught without trusting the key.
 *
 * The chain's head (last sequence and hash) is also kept in `meta` under "audit-head", written
 * in the same transaction as each record, so cutting records off the end is detected too.
 */
#include "storage/store_audit.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/keyops.h"
#include "storage/store_internal.h"

#define EVENT_MAX   (sizeof(((struct audit_record *)0)->event) - 1)
#define DETAILS_MAX (sizeof(((struct audit_record *)0)->details) - 1)
#define ENCODED_MAX (8 + 8 + 2 + EVENT_MAX + 2 + DETAILS_MAX + 32)
#define VALUE_MAX   (ENCODED_MAX + 32)
#define HEAD_KEY    "audit-head"
#define HEAD_LEN    (8 + 32)
#define SIG_HEX_LEN (2 * crypto_sign_BYTES)
#define DIGEST_LEN  crypto_generichash_BYTES_MAX /* BLAKE2b-512 */
#define SIG_PREFIX  "signature "
#define RECORD_MIN  (7 + 2 + 2 + 2 + 65 + 65 + 1) /* shortest "record ..." line */

static const uint8_t zero_hash[32];

static void put_u16(uint8_t *out, size_t v)
{
    out[0] = (uint8_t)(v >> 8);
    out[1] = (uint8_t)v;
}

/* Writes the canonical encoding of r into out (ENCODED_MAX bytes). */
static int encode_record(const struct audit_record *r, uint8_t *out, size_t *len)
{
    size_t elen = strnlen(r->event, sizeof(r->event));
    size_t dlen = strnlen(r->details, sizeof(r->details));
    size_t off = 0;

    if (elen > EVENT_MAX || dlen > DETAILS_MAX)
        return CWT_EINVAL;
    store_be64(out + off, r->seq);
    off += 8;
    store_be64(out + off, (uint64_t)r->time);
    off += 8;
    put_u16(out + off, elen);
    off += 2;
    memcpy(out + off, r->event, elen);
    off += elen;
    put_u16(out + off, dlen);
    off += 2;
    memcpy(out + off, r->details, dlen);
    off += dlen;
    memcpy(out + off, r->prev_hash, 32);
    off += 32;
    *len = off;
    return 0;
}

int audit_record_hash(const struct audit_record *r, uint8_t out[32])
{
    uint8_t enc[ENCODED_MAX];
    size_t len;

    if (encode_record(r, enc, &len) != 0)
        return CWT_EINVAL;
    return crypto_generichash(out, 32, enc, len, NULL, 0) == 0 ? 0 : CWT_ECRYPTO;
}

/* Reads one length-prefixed text field (no NUL bytes allowed) into dst (cap includes NUL). */
static int decode_text(const uint8_t *v, size_t len, size_t *off, char *dst, size_t cap)
{
    size_t n;

    if (len - *off < 2)
        return CWT_EFORMAT;
    n = (size_t)v[*off] << 8 | v[*off + 1];
    *off += 2;
    if (n >= cap || len - *off < n || memchr(v + *off, '\0', n) != NULL)
        return CWT_EFORMAT;
    memcpy(dst, v + *off, n);
    dst[n] = '\0';
    *off += n;
    return 0;
}

/* Parses a stored value strictly: every length in range, nothing left over. */
static int decode_value(const uint8_t *v, size_t len, struct audit_record *r)
{
    size_t off = 16;

    memset(r, 0, sizeof(*r));
    if (len < 16 + 2 + 2 + 32 + 32 || len > VALUE_MAX)
        return CWT_EFORMAT;
    r->seq = store_rd_be64(v);
    r->time = (int64_t)store_rd_be64(v + 8);
    if (decode_text(v, len, &off, r->event, sizeof(r->event)) != 0 ||
        decode_text(v, len, &off, r->details, sizeof(r->details)) != 0 || len - off != 64)
        return CWT_EFORMAT;
    memcpy(r->prev_hash, v + off, 32);
    memcpy(r->hash, v + off + 32, 32);
    return 0;
}

/* Event names are short identifiers ("key-load"), so they never need quoting anywhere. */
static int valid_event(const char *event)
{
    return strlen(event) <= EVENT_MAX && cwt_valid_id(event);
}

/* Finds the last record in the open transaction; *found = 0 for an empty log. */
static int last_record(MDB_txn *txn, MDB_dbi dbi, struct audit_record *last, int *found)
{
    MDB_cursor *cur;
    MDB_val key, val;
    int rc;

    *found = 0;
    if ((rc = mdb_cursor_open(txn, dbi, &cur)) != MDB_SUCCESS)
        return store_mdb_err(rc);
    rc = mdb_cursor_get(cur, &key, &val, MDB_LAST);
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != MDB_SUCCESS)
        return store_mdb_err(rc);
    if (key.mv_size != 8 || decode_value(val.mv_data, val.mv_size, last) != 0 ||
        last->seq != store_rd_be64(key.mv_data))
        return CWT_EFORMAT;
    *found = 1;
    return 0;
}

int audit_append(struct store *st, const char *event, const char *fmt, ...)
{
    struct audit_record r, last;
    uint8_t enc[VALUE_MAX], keybuf[8], head[HEAD_LEN];
    MDB_val key, val, hkey, hval;
    MDB_txn *txn;
    va_list ap;
    size_t len;
    int n, found, rc;

    if (!valid_event(event))
        return CWT_EINVAL;
    memset(&r, 0, sizeof(r));
    memcpy(r.event, event, strlen(event) + 1);
    va_start(ap, fmt);
    n = vsnprintf(r.details, sizeof(r.details), fmt, ap);
    va_end(ap);
    if (n < 0)
        return CWT_EINVAL;
    if ((size_t)n > DETAILS_MAX) /* mark the cut rather than lose it silently */
        memcpy(r.details + DETAILS_MAX - 3, "...", 3);
    /* One line of printable text: control characters would break `audit show` and exports. */
    for (char *p = r.details; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    r.time = cwt_now();

    if ((rc = store_txn_begin(st, 0, &txn)) != 0)
        return rc;
    if ((rc = last_record(txn, st->audit, &last, &found)) != 0)
        goto abort; /* a damaged tail: refuse to chain onto it; `audit verify` says where */
    r.seq = found ? last.seq + 1 : 1;
    memcpy(r.prev_hash, found ? last.hash : zero_hash, 32);
    if (r.seq == 0) {
        rc = CWT_ETOOBIG;
        goto abort;
    }
    if ((rc = audit_record_hash(&r, r.hash)) != 0 || (rc = encode_record(&r, enc, &len)) != 0)
        goto abort;
    memcpy(enc + len, r.hash, 32);
    len += 32;

    store_be64(keybuf, r.seq);
    key.mv_data = keybuf;
    key.mv_size = sizeof(keybuf);
    val.mv_data = enc;
    val.mv_size = len;
    if ((rc = store_mdb_err(mdb_put(txn, st->audit, &key, &val, MDB_APPEND))) != 0)
        goto abort;
    store_be64(head, r.seq);
    memcpy(head + 8, r.hash, 32);
    hkey.mv_data = (void *)HEAD_KEY;
    hkey.mv_size = strlen(HEAD_KEY);
    hval.mv_data = head;
    hval.mv_size = sizeof(head);
    if ((rc = store_mdb_err(mdb_put(txn, st->meta, &hkey, &hval, 0))) != 0)
        goto abort;
    return store_txn_commit(txn);
abort:
    mdb_txn_abort(txn);
    return rc;
}

int audit_list(struct store *st, struct audit_record **out, size_t *n)
{
    struct audit_record *recs = NULL;
    MDB_cursor *cur = NULL;
    MDB_val key, val;
    MDB_txn *txn;
    MDB_stat ms;
    size_t count = 0, bytes;
    int rc, op = MDB_FIRST;

    *out = NULL;
    *n = 0;
    if ((rc = store_txn_begin(st, 1, &txn)) != 0)
        return rc;
    if ((rc = store_mdb_err(mdb_stat(txn, st->audit, &ms))) != 0)
        goto done;
    if (ms.ms_entries == 0)
        goto done;
    if (cwt_mul_size(ms.ms_entries, sizeof(*recs), &bytes) != 0) {
        rc = CWT_ETOOBIG;
        goto done;
    }
    if ((recs = malloc(bytes)) == NULL) {
        rc = CWT_ENOMEM;
        goto done;
    }
    if ((rc = store_mdb_err(mdb_cursor_open(txn, st->audit, &cur))) != 0)
        goto done;
    while (count < ms.ms_entries && (rc = mdb_cursor_get(cur, &key, &val, op)) == MDB_SUCCESS) {
        op = MDB_NEXT;
        if (key.mv_size != 8 || decode_value(val.mv_data, val.mv_size, &recs[count]) != 0) {
            rc = CWT_EFORMAT;
            goto done;
        }
        count++;
    }
    rc = rc == MDB_NOTFOUND || rc == MDB_SUCCESS ? 0 : store_mdb_err(rc);
done:
    if (cur != NULL)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (rc != 0) {
        free(recs);
        return rc;
    }
    *out = recs;
    *n = count;
    return 0;
}

/* Where the chain check stands: the sequence expected next and the hash it must point to. */
struct chain_state {
    uint64_t expect_seq;
    uint8_t prev[32];
};

static void chain_start(struct chain_state *cs)
{
    cs->expect_seq = 1;
    memset(cs->prev, 0, sizeof(cs->prev));
}

/* Checks one record against the chain so far and advances it. */
static int chain_step(struct chain_state *cs, const struct audit_record *r, char *err,
                      size_t errlen)
{
    uint8_t hash[32];

    if (r->seq > cs->expect_seq)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "audit record %llu is missing (the next record is %llu)",
                          (unsigned long long)cs->expect_seq, (unsigned long long)r->seq);
    if (r->seq < cs->expect_seq)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "audit record %llu is out of order (record %llu was expected)",
                          (unsigned long long)r->seq, (unsigned long long)cs->expect_seq);
    if (audit_record_hash(r, hash) != 0 || sodium_memcmp(hash, r->hash, 32) != 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "audit record %llu was altered (its hash does not match its contents)",
                          (unsigned long long)r->seq);
    if (sodium_memcmp(r->prev_hash, cs->prev, 32) != 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "audit record %llu does not link to the record before it (a record "
                          "was altered, replaced or removed)",
                          (unsigned long long)r->seq);
    memcpy(cs->prev, r->hash, 32);
    cs->expect_seq++;
    return 0;
}

int audit_chain_check(const struct audit_record *recs, size_t n, char *err, size_t errlen)
{
    struct chain_state cs;
    int rc;

    chain_start(&cs);
    for (size_t i = 0; i < n; i++)
        if ((rc = chain_step(&cs, &recs[i], err, errlen)) != 0)
            return rc;
    return 0;
}

/* Compares the chain's end with the head kept in meta. */
static int check_head(MDB_txn *txn, struct store *st, const struct chain_state *cs, char *err,
                      size_t errlen)
{
    uint64_t last_seq = cs->expect_seq - 1, head_seq;
    MDB_val hkey, hval;
    int rc;

    hkey.mv_data = (void *)HEAD_KEY;
    hkey.mv_size = strlen(HEAD_KEY);
    rc = mdb_get(txn, st->meta, &hkey, &hval);
    if (rc == MDB_NOTFOUND) {
        if (last_seq == 0)
            return 0;
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "audit record %llu is the last record, but the store's record of the "
                          "audit head is missing",
                          (unsigned long long)last_seq);
    }
    if (rc != MDB_SUCCESS)
        return cwt_seterr(err, errlen, store_mdb_err(rc), "cannot read the audit head: %s",
                          mdb_strerror(rc));
    if (hval.mv_size != HEAD_LEN)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "the store's audit head is malformed");
    head_seq = store_rd_be64(hval.mv_data);
    if (head_seq > last_seq)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "audit record %llu is missing (the log ends at record %llu but its "
                          "head is record %llu)",
                          (unsigned long long)(last_seq + 1), (unsigned long long)last_seq,
                          (unsigned long long)head_seq);
    if (head_seq < last_seq)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "audit record %llu was added outside the log (the head is record %llu)",
                          (unsigned long long)(head_seq + 1), (unsigned long long)head_seq);
    if (sodium_memcmp((const uint8_t *)hval.mv_data + 8, cs->prev, 32) != 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "audit record %llu was replaced (it does not match the audit head)",
                          (unsigned long long)last_seq);
    return 0;
}

int audit_verify(struct store *st, char *err, size_t errlen)
{
    struct chain_state cs;
    struct audit_record r;
    MDB_cursor *cur;
    MDB_val key, val;
    MDB_txn *txn;
    int rc, op = MDB_FIRST;

    if ((rc = store_txn_begin(st, 1, &txn)) != 0)
        return cwt_seterr(err, errlen, rc, "cannot read the store: %s", cwt_strerror(rc));
    if ((rc = mdb_cursor_open(txn, st->audit, &cur)) != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        return cwt_seterr(err, errlen, store_mdb_err(rc), "cannot read the audit log: %s",
                          mdb_strerror(rc));
    }
    chain_start(&cs);
    while ((rc = mdb_cursor_get(cur, &key, &val, op)) == MDB_SUCCESS) {
        uint64_t key_seq;

        op = MDB_NEXT;
        if (key.mv_size != 8) {
            rc = cwt_seterr(err, errlen, CWT_EFORMAT,
                            "audit record %llu: the log holds a malformed key after it",
                            (unsigned long long)cs.expect_seq);
            goto done;
        }
        key_seq = store_rd_be64(key.mv_data);
        if (decode_value(val.mv_data, val.mv_size, &r) != 0) {
            rc = cwt_seterr(err, errlen, CWT_EFORMAT, "audit record %llu is malformed",
                            (unsigned long long)key_seq);
            goto done;
        }
        if (r.seq != key_seq) {
            rc = cwt_seterr(err, errlen, CWT_EFORMAT,
                            "audit record %llu holds the contents of record %llu (records were "
                            "moved or reordered)",
                            (unsigned long long)key_seq, (unsigned long long)r.seq);
            goto done;
        }
        if ((rc = chain_step(&cs, &r, err, errlen)) != 0)
            goto done;
    }
    if (rc != MDB_NOTFOUND) {
        rc = cwt_seterr(err, errlen, store_mdb_err(rc), "cannot read the audit log: %s",
                        mdb_strerror(rc));
        goto done;
    }
    rc = check_head(txn, st, &cs, err, errlen);
done:
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

/* --- export (docs/audit-format.md) --- */

/* Writes details with every byte outside printable ASCII, and the backslash, as \xNN. */
static int put_escaped(FILE *f, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        int rc = c >= 0x20 && c < 0x7f && c != '\\' ? fputc(c, f) : fprintf(f, "\\x%02x", c);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int valid_key_line(const char *line)
{
    size_t n = strlen(line);

    if (n == 0 || n > AUDIT_KEYLINE_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] >= 0x7f)
            return 0;
    return 1;
}

int audit_export_encode(const struct audit_record *recs, size_t n, const char *key_line,
                        const struct key_ops *ops, int64_t created, uint8_t **out, size_t *outlen,
                        char *err, size_t errlen)
{
    uint8_t digest[DIGEST_LEN], sig[crypto_sign_BYTES];
    char prev_hex[65], hash_hex[65], sig_hex[SIG_HEX_LEN + 1];
    char *text = NULL;
    size_t len = 0;
    FILE *f;
    int ok;

    *out = NULL;
    *outlen = 0;
    if (!valid_key_line(key_line))
        return cwt_seterr(err, errlen, CWT_EINVAL, "the key line is not one line of text");
    if ((f = open_memstream(&text, &len)) == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory for the audit export");
    ok = fprintf(f, "%s\nkey %s\ncreated %lld\nrecords %zu\n", AUDIT_EXPORT_MAGIC, key_line,
                 (long long)created, n) > 0;
    for (size_t i = 0; ok && i < n; i++) {
        if (!valid_event(recs[i].event)) {
            fclose(f);
            free(text);
            return cwt_seterr(err, errlen, CWT_EINVAL, "audit record %llu has a bad event name",
                              (unsigned long long)recs[i].seq);
        }
        cwt_hex(recs[i].prev_hash, 32, prev_hex);
        cwt_hex(recs[i].hash, 32, hash_hex);
        ok = fprintf(f, "record %llu %lld %s %s %s ", (unsigned long long)recs[i].seq,
                     (long long)recs[i].time, recs[i].event, prev_hex, hash_hex) > 0 &&
             put_escaped(f, recs[i].details) == 0 && fputc('\n', f) != EOF;
    }
    if (fclose(f) != 0 || !ok) {
        free(text);
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory for the audit export");
    }
    /* Sign BLAKE2b-512 of everything before the signature line under the audit-export
     * context: a bundle signature over the same digest would not verify here. */
    crypto_generichash(digest, sizeof(digest), (const uint8_t *)text, len, NULL, 0);
    if ((ok = ops->sign(ops->ctx, KEYOPS_CTX_AUDIT_EXPORT, digest, sig)) != 0) {
        free(text);
        return cwt_seterr(err, errlen, ok == CWT_EIO ? CWT_EIO : CWT_ECRYPTO,
                          "signing the audit export failed (%s)", cwt_strerror(ok));
    }
    cwt_hex(sig, sizeof(sig), sig_hex);
    {
        size_t total, tail = strlen(SIG_PREFIX) + SIG_HEX_LEN + 1;
        char *grown;

        if (cwt_add_size(len, tail + 1, &total) != 0 || (grown = realloc(text, total)) == NULL) {
            free(text);
            return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory for the audit export");
        }
        text = grown;
        snprintf(text + len, tail + 1, "%s%s\n", SIG_PREFIX, sig_hex);
        len += tail;
    }
    *out = (uint8_t *)text;
    *outlen = len;
    return 0;
}

/* A cursor over the signed text, one '\n'-terminated line at a time. */
struct line_reader {
    const char *p, *end;
    size_t lineno;
};

static int next_line(struct line_reader *lr, const char **line, size_t *len)
{
    const char *nl;

    if (lr->p >= lr->end)
        return 0;
    nl = memchr(lr->p, '\n', (size_t)(lr->end - lr->p));
    if (nl == NULL)
        return 0;
    *line = lr->p;
    *len = (size_t)(nl - lr->p);
    lr->p = nl + 1;
    lr->lineno++;
    return 1;
}

/* Matches "PREFIX<value>" and copies the value (at most cap-1 bytes) into out. */
static int line_field(const char *line, size_t len, const char *prefix, char *out, size_t cap)
{
    size_t plen = strlen(prefix);

    if (len < plen || memcmp(line, prefix, plen) != 0 || len - plen >= cap || len == plen)
        return CWT_EFORMAT;
    memcpy(out, line + plen, len - plen);
    out[len - plen] = '\0';
    return 0;
}

/* Splits the next space-terminated token of a record line into out. */
static int take_token(const char **p, const char *end, char *out, size_t cap)
{
    const char *sp = memchr(*p, ' ', (size_t)(end - *p));
    size_t n;

    if (sp == NULL || sp == *p || (n = (size_t)(sp - *p)) >= cap)
        return CWT_EFORMAT;
    memcpy(out, *p, n);
    out[n] = '\0';
    *p = sp + 1;
    return 0;
}

static int unescape_details(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        uint8_t byte;

        if (c < 0x20 || c >= 0x7f)
            return CWT_EFORMAT;
        if (c == '\\') {
            char hex[3];

            if (len - i < 4 || s[i + 1] != 'x')
                return CWT_EFORMAT;
            hex[0] = s[i + 2];
            hex[1] = s[i + 3];
            hex[2] = '\0';
            if (cwt_unhex(hex, &byte, 1) != 0 || byte == 0)
                return CWT_EFORMAT;
            i += 3;
        } else {
            byte = c;
        }
        if (o + 1 >= cap)
            return CWT_EFORMAT;
        out[o++] = (char)byte;
    }
    out[o] = '\0';
    return 0;
}

static int parse_record_line(const char *line, size_t len, struct audit_record *r)
{
    const char *p = line, *end = line + len;
    char word[16], num[24], hex[65];
    int64_t v;

    memset(r, 0, sizeof(*r));
    if (take_token(&p, end, word, sizeof(word)) != 0 || strcmp(word, "record") != 0)
        return CWT_EFORMAT;
    if (take_token(&p, end, num, sizeof(num)) != 0 || cwt_parse_i64(num, 1, INT64_MAX, &v) != 0)
        return CWT_EFORMAT;
    r->seq = (uint64_t)v;
    if (take_token(&p, end, num, sizeof(num)) != 0 ||
        cwt_parse_i64(num, INT64_MIN, INT64_MAX, &r->time) != 0)
        return CWT_EFORMAT;
    if (take_token(&p, end, r->event, sizeof(r->event)) != 0 || !valid_event(r->event))
        return CWT_EFORMAT;
    if (take_token(&p, end, hex, sizeof(hex)) != 0 || cwt_unhex(hex, r->prev_hash, 32) != 0)
        return CWT_EFORMAT;
    if (take_token(&p, end, hex, sizeof(hex)) != 0 || cwt_unhex(hex, r->hash, 32) != 0)
        return CWT_EFORMAT;
    return unescape_details(p, (size_t)(end - p), r->details, sizeof(r->details));
}

int audit_export_verify(const uint8_t *buf, size_t len, const uint8_t sign_pk[32],
                        struct audit_export_info *info, struct audit_record **recs, size_t *n,
                        char *err, size_t errlen)
{
    uint8_t digest[DIGEST_LEN], sig[crypto_sign_BYTES];
    const char *text = (const char *)buf, *line, *magic;
    int v2;
    struct audit_record *list = NULL;
    struct line_reader lr;
    char field[AUDIT_KEYLINE_MAX + 1];
    size_t signed_len, line_len, tail = strlen(SIG_PREFIX) + SIG_HEX_LEN + 1, bytes;
    int64_t count;
    int rc;

    memset(info, 0, sizeof(*info));
    if (recs != NULL) {
        *recs = NULL;
        *n = 0;
    }
    if (len > AUDIT_EXPORT_MAX)
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "the audit export is larger than %u bytes",
                          AUDIT_EXPORT_MAX);
    if (len < tail || memchr(buf, '\0', len) != NULL)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "this is not a cwt audit export");
    /* The signature line is the fixed-size last line; everything before it is signed. */
    signed_len = len - tail;
    if ((signed_len > 0 && buf[signed_len - 1] != '\n') ||
        memcmp(buf + signed_len, SIG_PREFIX, strlen(SIG_PREFIX)) != 0 || buf[len - 1] != '\n')
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "the audit export does not end with its signature line (truncated or "
                          "extended)");
    memcpy(field, buf + signed_len + strlen(SIG_PREFIX), SIG_HEX_LEN);
    field[SIG_HEX_LEN] = '\0';
    if (cwt_unhex(field, sig, sizeof(sig)) != 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "the audit export's signature is not hex");
    /* The magic line says which signed message to check; it is itself signed. */
    if (signed_len > strlen(AUDIT_EXPORT_MAGIC) &&
        memcmp(buf, AUDIT_EXPORT_MAGIC "\n", strlen(AUDIT_EXPORT_MAGIC) + 1) == 0)
        magic = AUDIT_EXPORT_MAGIC, v2 = 1;
    else if (signed_len > strlen(AUDIT_EXPORT_MAGIC_V1) &&
             memcmp(buf, AUDIT_EXPORT_MAGIC_V1 "\n", strlen(AUDIT_EXPORT_MAGIC_V1) + 1) == 0)
        magic = AUDIT_EXPORT_MAGIC_V1, v2 = 0;
    else
        return cwt_seterr(err, errlen, CWT_EFORMAT, "the export does not start with '%s'",
                          AUDIT_EXPORT_MAGIC);
    crypto_generichash(digest, sizeof(digest), buf, signed_len, NULL, 0);
    if (keyops_verify(v2 ? KEYOPS_CTX_AUDIT_EXPORT : KEYOPS_CTX_LEGACY, digest, sig, sign_pk) != 0)
        return cwt_seterr(err, errlen, CWT_EB_SIGNATURE,
                          "the audit export's signature does not verify with the given key (it "
                          "was altered or signed by another key)");

    lr.p = text;
    lr.end = text + signed_len;
    lr.lineno = 0;
    if (!next_line(&lr, &line, &line_len) || line_len != strlen(magic) ||
        memcmp(line, magic, line_len) != 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "the export does not start with '%s'", magic);
    if (!next_line(&lr, &line, &line_len) ||
        line_field(line, line_len, "key ", info->key_line, sizeof(info->key_line)) != 0 ||
        !valid_key_line(info->key_line))
        return cwt_seterr(err, errlen, CWT_EFORMAT, "audit export line 2: expected 'key ...'");
    if (!next_line(&lr, &line, &line_len) ||
        line_field(line, line_len, "created ", field, 24) != 0 ||
        cwt_parse_i64(field, INT64_MIN, INT64_MAX, &info->created) != 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "audit export line 3: expected 'created SECONDS'");
    /* Each record takes at least RECORD_MIN bytes, which bounds the allocation below. */
    if (!next_line(&lr, &line, &line_len) ||
        line_field(line, line_len, "records ", field, 24) != 0 ||
        cwt_parse_i64(field, 0, (int64_t)(signed_len / RECORD_MIN), &count) != 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "audit export line 4: expected 'records N' with N records following");
    if (count > 0) {
        if (cwt_mul_size((size_t)count, sizeof(*list), &bytes) != 0)
            return cwt_seterr(err, errlen, CWT_ETOOBIG, "too many audit records");
        if ((list = malloc(bytes)) == NULL)
            return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory for audit records");
    }
    for (int64_t i = 0; i < count; i++) {
        if (!next_line(&lr, &line, &line_len) || parse_record_line(line, line_len, &list[i]) != 0) {
            rc = cwt_seterr(err, errlen, CWT_EFORMAT,
                            "audit export line %zu: expected record %lld of %lld", lr.lineno,
                            (long long)i + 1, (long long)count);
            goto fail;
        }
    }
    if (lr.p != lr.end) {
        rc = cwt_seterr(err, errlen, CWT_EFORMAT,
                        "audit export line %zu: more lines than the %lld records announced",
                        lr.lineno + 1, (long long)count);
        goto fail;
    }
    if ((rc = audit_chain_check(list, (size_t)count, err, errlen)) != 0)
        goto fail;
    info->n_records = (uint64_t)count;
    if (count > 0)
        memcpy(info->head_hash, list[count - 1].hash, 32);
    if (recs != NULL) {
        *recs = list;
        *n = (size_t)count;
    } else {
        free(list);
    }
    return 0;
fail:
    free(list);
    return rc;
}
