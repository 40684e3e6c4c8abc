/*
 * bundle.c - sealing, verifying and opening weight bundles (docs/bundle-format.md).
 *
 * Both directions stream: the payload moves in chunks of BUNDLE_CHUNK bytes, while one or two
 * hashing threads (bundle_pipe.c) digest the same bytes, so memory stays at a few MiB.
 * Opening reads the file twice: pass one checks the signature (nothing is decrypted before
 * it verifies), pass two decrypts into a temp file that is renamed only when every rule holds.
 */
#include "crypto/bundle.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/utf8.h"
#include "crypto/bundle_pipe.h"
#include "crypto/keyops.h"
#include "storage/safetensors.h"
#include "storage/store.h"

#define PREAMBLE_LEN 12u
#define ENTRY_LEN    (CWT_KEYID_LEN + crypto_box_SEALBYTES + 32u) /* 88 */
#define SS_HDR_LEN   crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define SS_ABYTES    crypto_secretstream_xchacha20poly1305_ABYTES
#define SIG_LEN      crypto_sign_BYTES
#define TRAILER_LEN  (CWT_KEYID_LEN + SIG_LEN)
#define SUMMARY_LEN  72u

/* Header TLV tags (docs/bundle-format.md, section 3). */
enum {
    TAG_BUNDLE_ID = 1,
    TAG_FEDERATION = 2,
    TAG_ROSTER_FP = 3,
    TAG_SENDER = 4,
    TAG_RECIPIENTS = 5,
    TAG_KIND = 6,
    TAG_SEQUENCE = 7,
    TAG_CYCLE = 8,
    TAG_HOP = 9,
    TAG_PARENT = 10,
    TAG_MODEL_FP = 11,
    TAG_CREATED = 12,
    TAG_EXPIRES = 13,
    TAG_PAYLOAD_HASH = 14,
    TAG_PAYLOAD_LEN = 15,
    TAG_SUMMARY = 16,
    TAG_MAX = 16,
};

static const char *const tag_names[TAG_MAX + 1] = {
    "?",       "bundle id",  "federation",   "roster fingerprint",
    "sender",  "recipients", "kind",         "sequence",
    "cycle",   "hop",        "parent",       "model fingerprint",
    "created", "expires",    "payload hash", "payload length",
    "summary"};

/* ------------------------------------------------------------------ small helpers */

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void put_f64(uint8_t *p, double d)
{
    uint64_t v;

    memcpy(&v, &d, 8);
    put_le64(p, v);
}

static double get_f64(const uint8_t *p)
{
    uint64_t v = get_le64(p);
    double d;

    memcpy(&d, &v, 8);
    return d;
}

static int read_full(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0) {
            errno = EIO; /* the file shrank while being read */
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0) {
            errno = EIO;
            return -1;
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static uint64_t chunk_count(uint64_t payload_len)
{
    return payload_len == 0 ? 1 : (payload_len + BUNDLE_CHUNK - 1) / BUNDLE_CHUNK;
}

/* Size the whole file must have, or 0 if it would overflow. */
static uint64_t expected_size(uint32_t header_len, uint32_t n_entries, uint64_t payload_len)
{
    uint64_t fixed = PREAMBLE_LEN + (uint64_t)header_len + 2 + (uint64_t)n_entries * ENTRY_LEN +
                     SS_HDR_LEN + TRAILER_LEN;

    if (payload_len > BUNDLE_PAYLOAD_MAX)
        return 0;
    return fixed + payload_len + chunk_count(payload_len) * SS_ABYTES;
}

static void key_id_hex(const uint8_t id[CWT_KEYID_LEN], char out[2 * CWT_KEYID_LEN + 1])
{
    cwt_hex(id, CWT_KEYID_LEN, out);
}

static const char *fmt_time(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (gmtime_r(&tt, &tm) == NULL || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, len, "%lld", (long long)t);
    return buf;
}

const char *bundle_kind_name(uint8_t kind)
{
    switch (kind) {
    case BUNDLE_KIND_CYCLE:
        return "cycle";
    case BUNDLE_KIND_FINAL:
        return "final";
    case BUNDLE_KIND_ENSEMBLE_MEMBER:
        return "ensemble-member";
    default:
        return "unknown";
    }
}

int bundle_kind_parse(const char *name, uint8_t *kind)
{
    for (uint8_t k = BUNDLE_KIND_CYCLE; k <= BUNDLE_KIND_ENSEMBLE_MEMBER; k++) {
        if (strcmp(name, bundle_kind_name(k)) == 0) {
            *kind = k;
            return 0;
        }
    }
    return CWT_EINVAL;
}

/* ------------------------------------------------------------------ header TLV */

struct tlv_out {
    uint8_t *buf;
    size_t cap, len;
    int overflow;
};

/* Starts an item and returns where its value goes (NULL once the buffer is full). */
static uint8_t *tlv_item(struct tlv_out *o, uint16_t tag, size_t vlen)
{
    uint8_t *p;

    if (o->overflow || vlen > UINT16_MAX || o->cap - o->len < 4 + vlen) {
        o->overflow = 1;
        return NULL;
    }
    p = o->buf + o->len;
    put_le16(p, tag);
    put_le16(p + 2, (uint16_t)vlen);
    o->len += 4 + vlen;
    return p + 4;
}

static void tlv_bytes(struct tlv_out *o, uint16_t tag, const void *v, size_t vlen)
{
    uint8_t *p = tlv_item(o, tag, vlen);

    if (p != NULL)
        memcpy(p, v, vlen);
}

static void tlv_u64(struct tlv_out *o, uint16_t tag, uint64_t v)
{
    uint8_t *p = tlv_item(o, tag, 8);

    if (p != NULL)
        put_le64(p, v);
}

static void tlv_u32(struct tlv_out *o, uint16_t tag, uint32_t v)
{
    uint8_t *p = tlv_item(o, tag, 4);

    if (p != NULL)
        put_le32(p, v);
}

int bundle_header_encode(const struct bundle_header *h, uint8_t *buf, size_t buflen, size_t *outlen)
{
    struct tlv_out o = {buf, buflen, 0, 0};
    uint8_t rec[1 + CWT_MAX_SITES * (1 + CWT_ID_MAX)], summary[SUMMARY_LEN];
    size_t rlen = 1;

    *outlen = 0;
    if (h->n_recipients == 0 || h->n_recipients > CWT_MAX_SITES)
        return CWT_EINVAL;
    rec[0] = (uint8_t)h->n_recipients;
    for (uint32_t i = 0; i < h->n_recipients; i++) {
        size_t n = strnlen(h->recipients[i], CWT_ID_MAX + 1);
        if (n == 0 || n > CWT_ID_MAX)
            return CWT_EINVAL;
        rec[rlen++] = (uint8_t)n;
        memcpy(rec + rlen, h->recipients[i], n);
        rlen += n;
    }
    put_f64(summary, h->summary.local_epochs);
    put_le64(summary + 8, h->summary.local_steps);
    put_le64(summary + 16, h->summary.train_samples);
    put_le64(summary + 24, h->summary.val_samples);
    put_f64(summary + 32, h->summary.train_loss);
    put_f64(summary + 40, h->summary.train_accuracy);
    put_f64(summary + 48, h->summary.val_loss);
    put_f64(summary + 56, h->summary.val_accuracy);
    put_f64(summary + 64, h->summary.val_auc);

    tlv_bytes(&o, TAG_BUNDLE_ID, h->bundle_id, 16);
    tlv_bytes(&o, TAG_FEDERATION, h->federation, strnlen(h->federation, CWT_ID_MAX + 1));
    tlv_bytes(&o, TAG_ROSTER_FP, h->roster_fp, 32);
    tlv_bytes(&o, TAG_SENDER, h->sender, strnlen(h->sender, CWT_ID_MAX + 1));
    tlv_bytes(&o, TAG_RECIPIENTS, rec, rlen);
    tlv_bytes(&o, TAG_KIND, &h->kind, 1);
    tlv_u64(&o, TAG_SEQUENCE, h->sequence);
    tlv_u32(&o, TAG_CYCLE, h->cycle);
    tlv_u32(&o, TAG_HOP, h->hop);
    if (h->has_parent)
        tlv_bytes(&o, TAG_PARENT, h->parent_hash, 32);
    tlv_bytes(&o, TAG_MODEL_FP, h->model_fp, 32);
    tlv_u64(&o, TAG_CREATED, (uint64_t)h->created);
    tlv_u64(&o, TAG_EXPIRES, (uint64_t)h->expires);
    tlv_bytes(&o, TAG_PAYLOAD_HASH, h->payload_hash, 32);
    tlv_u64(&o, TAG_PAYLOAD_LEN, h->payload_len);
    tlv_bytes(&o, TAG_SUMMARY, summary, SUMMARY_LEN);
    if (o.overflow)
        return CWT_ETOOBIG;
    *outlen = o.len;
    return 0;
}

/* Copies an id value into out and checks it (1..CWT_ID_MAX chars of the id alphabet). */
static int decode_id(const uint8_t *v, size_t len, char *out, const char *what, char *err,
                     size_t errlen)
{
    if (len == 0 || len > CWT_ID_MAX)
        return cwt_seterr(err, errlen, CWT_EB_HEADER,
                          "bundle header: %s has length %zu (1..%d allowed)", what, len,
                          CWT_ID_MAX);
    memcpy(out, v, len);
    out[len] = '\0';
    if (strlen(out) != len || !cwt_valid_id(out))
        return cwt_seterr(err, errlen, CWT_EB_HEADER,
                          "bundle header: %s is not a valid site or federation id", what);
    return 0;
}

static int decode_recipients(const uint8_t *v, size_t len, struct bundle_header *h, char *err,
                             size_t errlen)
{
    size_t pos = 1;
    int rc;

    if (len < 1 || v[0] == 0 || v[0] > CWT_MAX_SITES)
        return cwt_seterr(err, errlen, CWT_EB_HEADER,
                          "bundle header: recipient count must be 1..%d", CWT_MAX_SITES);
    h->n_recipients = v[0];
    for (uint32_t i = 0; i < h->n_recipients; i++) {
        size_t n;
        if (pos >= len)
            return cwt_seterr(err, errlen, CWT_EB_HEADER,
                              "bundle header: recipient list ends after %u of %u ids", i,
                              h->n_recipients);
        n = v[pos++];
        if (n > len - pos)
            return cwt_seterr(err, errlen, CWT_EB_HEADER,
                              "bundle header: recipient %u runs past the recipient list", i);
        if ((rc = decode_id(v + pos, n, h->recipients[i], "a recipient id", err, errlen)) != 0)
            return rc;
        pos += n;
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(h->recipients[j], h->recipients[i]) == 0)
                return cwt_seterr(err, errlen, CWT_EB_HEADER,
                                  "bundle header: recipient %s is listed twice", h->recipients[i]);
    }
    if (pos != len)
        return cwt_seterr(err, errlen, CWT_EB_HEADER,
                          "bundle header: %zu stray bytes after the recipient list", len - pos);
    return 0;
}

static int decode_summary(const uint8_t *v, struct bundle_summary *s, char *err, size_t errlen)
{
    double *f[] = {&s->local_epochs, &s->train_loss,   &s->train_accuracy,
                   &s->val_loss,     &s->val_accuracy, &s->val_auc};

    s->local_epochs = get_f64(v);
    s->local_steps = get_le64(v + 8);
    s->train_samples = get_le64(v + 16);
    s->val_samples = get_le64(v + 24);
    s->train_loss = get_f64(v + 32);
    s->train_accuracy = get_f64(v + 40);
    s->val_loss = get_f64(v + 48);
    s->val_accuracy = get_f64(v + 56);
    s->val_auc = get_f64(v + 64);
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
        if (isinf(*f[i]))
            return cwt_seterr(err, errlen, CWT_EB_HEADER,
                              "bundle header: the training summary holds an infinity");
    return 0;
}

int bundle_header_decode(const uint8_t *buf, size_t len, struct bundle_header *h, char *err,
                         size_t errlen)
{
    static const uint16_t fixed_len[TAG_MAX + 1] = {
        [TAG_BUNDLE_ID] = 16,       [TAG_ROSTER_FP] = 32,    [TAG_KIND] = 1,
        [TAG_SEQUENCE] = 8,         [TAG_CYCLE] = 4,         [TAG_HOP] = 4,
        [TAG_PARENT] = 32,          [TAG_MODEL_FP] = 32,     [TAG_CREATED] = 8,
        [TAG_EXPIRES] = 8,          [TAG_PAYLOAD_HASH] = 32, [TAG_PAYLOAD_LEN] = 8,
        [TAG_SUMMARY] = SUMMARY_LEN};
    uint32_t seen = 0;
    size_t pos = 0;
    int last_tag = 0, rc;

    memset(h, 0, sizeof(*h));
    if (len > BUNDLE_HEADER_MAX)
        return cwt_seterr(err, errlen, CWT_EB_HEADER,
                          "bundle header: %zu bytes exceed the limit of %u", len,
                          BUNDLE_HEADER_MAX);
    while (pos < len) {
        uint16_t tag, vlen;
        const uint8_t *v;
        if (len - pos < 4)
            return cwt_seterr(err, errlen, CWT_EB_HEADER,
                              "bundle header: item at offset %zu is cut short", pos);
        tag = get_le16(buf + pos);
        vlen = get_le16(buf + pos + 2);
        if (tag == 0 || tag > TAG_MAX)
            return cwt_seterr(err, errlen, CWT_EB_HEADER,
                              "bundle header: unknown tag %u at offset %zu", tag, pos);
        if (seen & (1u << tag))
            return cwt_seterr(err, errlen, CWT_EB_HEADER,
                              "bundle header: tag %u (%s) appears twice", tag, tag_names[tag]);
        if (tag < last_tag)
            return cwt_seterr(err, errlen, CWT_EB_HEADER,
                              "bundle header: tag %u (%s) follows tag %d; tags must ascend", tag,
                              tag_names[tag], last_tag);
        if (vlen > len - pos - 4)
            return cwt_seterr(err, errlen, CWT_EB_HEADER,
                              "bundle header: tag %u (%s) of %u bytes runs past the header end",
                              tag, tag_names[tag], vlen);
        if (fixed_len[tag] != 0 && vlen != fixed_len[tag])
            return cwt_seterr(err, errlen, CWT_EB_HEADER,
                              "bundle header: tag %u (%s) has length %u, not %u", tag,
                              tag_names[tag], vlen, fixed_len[tag]);
        v = buf + pos + 4;
        switch (tag) {
        case TAG_BUNDLE_ID:
            memcpy(h->bundle_id, v, 16);
            break;
        case TAG_FEDERATION:
            if ((rc = decode_id(v, vlen, h->federation, "federation", err, errlen)) != 0)
                return rc;
            break;
        case TAG_ROSTER_FP:
            memcpy(h->roster_fp, v, 32);
            break;
        case TAG_SENDER:
            if ((rc = decode_id(v, vlen, h->sender, "sender", err, errlen)) != 0)
                return rc;
            break;
        case TAG_RECIPIENTS:
            if ((rc = decode_recipients(v, vlen, h, err, errlen)) != 0)
                return rc;
            break;
        case TAG_KIND:
            h->kind = v[0];
            if (h->kind < BUNDLE_KIND_CYCLE || h->kind > BUNDLE_KIND_ENSEMBLE_MEMBER)
                return cwt_seterr(err, errlen, CWT_EB_HEADER, "bundle header: unknown kind %u",
                                  h->kind);
            break;
        case TAG_SEQUENCE:
            h->sequence = get_le64(v);
            break;
        case TAG_CYCLE:
            h->cycle = get_le32(v);
            break;
        case TAG_HOP:
            h->hop = get_le32(v);
            break;
        case TAG_PARENT:
            h->has_parent = 1;
            memcpy(h->parent_hash, v, 32);
            break;
        case TAG_MODEL_FP:
            memcpy(h->model_fp, v, 32);
            break;
        case TAG_CREATED:
            h->created = (int64_t)get_le64(v);
            break;
        case TAG_EXPIRES:
            h->expires = (int64_t)get_le64(v);
            break;
        case TAG_PAYLOAD_HASH:
            memcpy(h->payload_hash, v, 32);
            break;
        case TAG_PAYLOAD_LEN:
            h->payload_len = get_le64(v);
            if (h->payload_len > BUNDLE_PAYLOAD_MAX)
                return cwt_seterr(err, errlen, CWT_EB_HEADER,
                                  "bundle header: payload length %llu exceeds the limit",
                                  (unsigned long long)h->payload_len);
            break;
        case TAG_SUMMARY:
            if ((rc = decode_summary(v, &h->summary, err, errlen)) != 0)
                return rc;
            break;
        }
        seen |= 1u << tag;
        last_tag = tag;
        pos += 4 + (size_t)vlen;
    }
    for (int tag = 1; tag <= TAG_MAX; tag++)
        if (tag != TAG_PARENT && !(seen & (1u << tag)))
            return cwt_seterr(err, errlen, CWT_EB_HEADER,
                              "bundle header: required tag %d (%s) is missing", tag,
                              tag_names[tag]);
    if (h->created < 0 || h->expires <= h->created)
        return cwt_seterr(err, errlen, CWT_EB_HEADER,
                          "bundle header: expiry must come after the creation time");
    return 0;
}

static int hash_stream(int fd, uint64_t n, uint8_t out[32], char *err, size_t errlen);

/* ------------------------------------------------------------------ reading the frame */

/* What the structural parse of a file yields besides struct bundle_info. */
struct frame {
    int fd;
    uint64_t size;
    uint32_t header_len;
    uint8_t header[BUNDLE_HEADER_MAX];
    uint8_t entries[CWT_MAX_SITES][ENTRY_LEN];
    uint64_t payload_off; /* secretstream header */
    uint64_t trailer_off; /* signer key id */
};

/* Size and framing, magic and version, header syntax, exact size: everything that needs no
 * roster. */
static int read_frame(struct frame *fr, struct bundle_info *info, char *err, size_t errlen)
{
    struct stat sb;
    uint8_t pre[PREAMBLE_LEN], nbuf[2];
    uint64_t want, off;
    uint16_t n;
    int rc;

    if (fstat(fr->fd, &sb) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "cannot stat the bundle: %s", strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return cwt_seterr(err, errlen, CWT_EB_FRAMING, "the bundle is not a regular file");
    fr->size = (uint64_t)sb.st_size;
    info->file_size = fr->size;
    if (fr->size < BUNDLE_MIN_SIZE)
        return cwt_seterr(err, errlen, CWT_EB_FRAMING,
                          "file of %llu bytes is shorter than the smallest bundle (%u bytes)",
                          (unsigned long long)fr->size, BUNDLE_MIN_SIZE);
    if (pread_full(fr->fd, pre, sizeof(pre), 0) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "cannot read the bundle: %s", strerror(errno));
    if (memcmp(pre, BUNDLE_MAGIC, 4) != 0)
        return cwt_seterr(err, errlen, CWT_EB_MAGIC,
                          "not a cwt bundle: the file does not start with \"CWTB\"");
    info->version = get_le16(pre + 4);
    info->flags = get_le16(pre + 6);
    /* Version 1 differs only in what its signature covers (the bare digest): it is still
     * read, so bundles sealed before the signature contexts keep verifying. */
    if (info->version < BUNDLE_VERSION_MIN || info->version > BUNDLE_VERSION)
        return cwt_seterr(err, errlen, CWT_EB_MAGIC,
                          "bundle format version %u is not supported (this build reads %d to %d)",
                          info->version, BUNDLE_VERSION_MIN, BUNDLE_VERSION);
    if (info->flags != 0)
        return cwt_seterr(err, errlen, CWT_EB_MAGIC,
                          "bundle flags 0x%04x are not defined in version %u", info->flags,
                          info->version);
    fr->header_len = get_le32(pre + 8);
    if (fr->header_len == 0 || fr->header_len > BUNDLE_HEADER_MAX)
        return cwt_seterr(err, errlen, CWT_EB_FRAMING, "header length %u is outside 1..%u",
                          fr->header_len, BUNDLE_HEADER_MAX);
    if ((uint64_t)PREAMBLE_LEN + fr->header_len + 2 >
        fr->size - SS_HDR_LEN - SS_ABYTES - TRAILER_LEN)
        return cwt_seterr(err, errlen, CWT_EB_FRAMING,
                          "header length %u is larger than the file allows", fr->header_len);
    if (pread_full(fr->fd, fr->header, fr->header_len, PREAMBLE_LEN) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "cannot read the bundle: %s", strerror(errno));
    if ((rc = bundle_header_decode(fr->header, fr->header_len, &info->hdr, err, errlen)) != 0)
        return rc;
    off = PREAMBLE_LEN + fr->header_len;
    if (pread_full(fr->fd, nbuf, 2, off) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "cannot read the bundle: %s", strerror(errno));
    n = get_le16(nbuf);
    if (n != info->hdr.n_recipients)
        return cwt_seterr(err, errlen, CWT_EB_FRAMING,
                          "the file holds %u recipient entries but its header names %u "
                          "recipients",
                          n, info->hdr.n_recipients);
    info->n_entries = n;
    want = expected_size(fr->header_len, n, info->hdr.payload_len);
    info->declared_size = want;
    if (want != fr->size)
        return cwt_seterr(err, errlen, CWT_EB_FRAMING,
                          "file is %llu bytes but its header declares %llu (truncated, "
                          "extended or a wrong length field)",
                          (unsigned long long)fr->size, (unsigned long long)want);
    off += 2;
    if (pread_full(fr->fd, fr->entries, (size_t)n * ENTRY_LEN, off) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "cannot read the bundle: %s", strerror(errno));
    for (uint16_t i = 0; i < n; i++)
        memcpy(info->entry_key_ids[i], fr->entries[i], CWT_KEYID_LEN);
    fr->payload_off = off + (uint64_t)n * ENTRY_LEN;
    fr->trailer_off = fr->size - TRAILER_LEN;
    if (pread_full(fr->fd, info->signer_key_id, CWT_KEYID_LEN, fr->trailer_off) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "cannot read the bundle: %s", strerror(errno));
    info->n_chunks = (uint32_t)chunk_count(info->hdr.payload_len);
    return 0;
}

/* The header and recipient entries were read before the signature pass and are what the
 * later rules use: they must be the very bytes the signature covers, or a file swapped
 * between the reads could pair a signed header with unsigned entries. The prefix (at most
 * 22 KiB) always lies in the first block. */
static int same_prefix(const struct frame *fr, const uint8_t *block, size_t n)
{
    size_t hl = fr->header_len, entries = (size_t)(fr->payload_off - PREAMBLE_LEN - hl - 2);

    if (n < fr->payload_off)
        return 0;
    return memcmp(block + PREAMBLE_LEN, fr->header, hl) == 0 &&
           memcmp(block + PREAMBLE_LEN + hl + 2, fr->entries, entries) == 0;
}

/* Pass one: BLAKE2b-512 of [0, trailer_off + 8) and BLAKE2b-256 of the whole file, on two
 * threads; then the signature check. */
static int hash_and_check_signature(struct frame *fr, const struct cwt_roster_site *signer,
                                    struct bundle_info *info, char *err, size_t errlen)
{
    static const size_t outlen[2] = {crypto_generichash_BYTES_MAX, 32};
    struct hash_pipe *pipe;
    uint8_t digest[crypto_generichash_BYTES_MAX], sig[SIG_LEN], tail[CWT_KEYID_LEN] = {0};
    uint64_t signed_len = fr->trailer_off + CWT_KEYID_LEN, pos = 0;
    char kid[2 * CWT_KEYID_LEN + 1];
    int rc = 0;

    if (hash_pipe_new(2, outlen, &pipe) != 0)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "cannot start the hashing threads");
    if (lseek(fr->fd, 0, SEEK_SET) != 0)
        rc = cwt_seterr(err, errlen, CWT_EIO, "cannot seek the bundle: %s", strerror(errno));
    while (rc == 0 && pos < signed_len) {
        uint8_t *slot = hash_pipe_slot(pipe);
        uint64_t n = signed_len - pos < BUNDLE_CHUNK ? signed_len - pos : BUNDLE_CHUNK;
        if (read_full(fr->fd, slot, (size_t)n) != 0) {
            rc = cwt_seterr(err, errlen, CWT_EIO, "cannot read the bundle: %s", strerror(errno));
            break;
        }
        if (pos == 0 && !same_prefix(fr, slot, (size_t)n)) {
            rc = cwt_seterr(err, errlen, CWT_EIO, "the bundle changed while it was read");
            break;
        }
        /* Keep the last 8 bytes hashed: the signer key id the signature must cover. */
        if (n >= CWT_KEYID_LEN) {
            memcpy(tail, slot + n - CWT_KEYID_LEN, CWT_KEYID_LEN);
        } else {
            memmove(tail, tail + n, CWT_KEYID_LEN - (size_t)n);
            memcpy(tail + CWT_KEYID_LEN - n, slot, (size_t)n);
        }
        hash_pipe_submit(pipe, (size_t)n);
        pos += n;
    }
    hash_pipe_finish(pipe);
    if (rc == 0 && memcmp(tail, info->signer_key_id, CWT_KEYID_LEN) != 0)
        rc = cwt_seterr(err, errlen, CWT_EIO, "the bundle changed while it was read");
    if (rc == 0 && read_full(fr->fd, sig, SIG_LEN) != 0)
        rc = cwt_seterr(err, errlen, CWT_EIO, "cannot read the bundle: %s", strerror(errno));
    if (rc == 0) {
        crypto_generichash_final(&pipe->st[0], digest, sizeof(digest));
        crypto_generichash_update(&pipe->st[1], sig, SIG_LEN);
        crypto_generichash_final(&pipe->st[1], info->file_hash, 32);
        /* Version 2 signs under the bundle context (crypto/keyops.h), so no audit export
         * signature verifies here; version 1 signed the bare digest. */
        uint8_t context = info->version == 1 ? KEYOPS_CTX_LEGACY : KEYOPS_CTX_BUNDLE;
        if (keyops_verify(context, digest, sig, signer->sign_pk) != 0) {
            key_id_hex(signer->key_id, kid);
            rc = cwt_seterr(err, errlen, CWT_EB_SIGNATURE,
                            "the signature does not verify against key %s of %s", kid, signer->id);
        }
    }
    hash_pipe_free(pipe);
    return rc;
}

/* Every rule bundle_verify promises; roster may be NULL for inspect (frame only). */
static int verify_frame(const struct cwt_roster *roster, struct frame *fr, struct bundle_info *info,
                        char *err, size_t errlen)
{
    const struct bundle_header *h = &info->hdr;
    uint8_t fp[32];
    char kid[2 * CWT_KEYID_LEN + 1], kid2[2 * CWT_KEYID_LEN + 1];
    int signer, sender, rc;

    info->sender_index = -1;
    if ((rc = read_frame(fr, info, err, errlen)) != 0 || roster == NULL)
        return rc;
    if (roster_fingerprint(roster, fp) != 0)
        return cwt_seterr(err, errlen, CWT_ECRYPTO, "cannot compute the roster fingerprint");
    if (strcmp(h->federation, roster->federation) != 0 || sodium_memcmp(fp, h->roster_fp, 32))
        return cwt_seterr(err, errlen, CWT_EB_ROSTER,
                          "the bundle was made under another roster (federation %s) than this "
                          "one (federation %s); compare fingerprints with 'cwtctl roster check'",
                          h->federation, roster->federation);
    signer = roster_find_key_id(roster, info->signer_key_id);
    key_id_hex(info->signer_key_id, kid);
    if (signer < 0)
        return cwt_seterr(err, errlen, CWT_EB_SIGNER,
                          "the bundle is signed by key %s, which is not in the roster", kid);
    sender = roster_find_site(roster, h->sender);
    if (sender != signer)
        return cwt_seterr(err, errlen, CWT_EB_SIGNER,
                          "the bundle is signed by %s (key %s) but names %s as its sender",
                          roster->sites[signer].id, kid, h->sender);
    if ((rc = hash_and_check_signature(fr, &roster->sites[signer], info, err, errlen)) != 0)
        return rc;
    info->sender_index = sender;
    /* A roster member signed this; what follows catches a buggy or dishonest member. */
    if (h->hop != (uint32_t)sender)
        return cwt_seterr(err, errlen, CWT_EB_HEADER,
                          "bundle header: hop %u but the sender %s is site %d of the roster",
                          h->hop, h->sender, sender);
    if (h->sequence != (uint64_t)h->cycle * roster->n_sites + h->hop)
        return cwt_seterr(err, errlen, CWT_EB_HEADER,
                          "bundle header: sequence %llu is not cycle %u x %u sites + hop %u",
                          (unsigned long long)h->sequence, h->cycle, roster->n_sites, h->hop);
    for (uint32_t i = 0; i < h->n_recipients; i++) {
        int r = roster_find_site(roster, h->recipients[i]);
        if (r < 0)
            return cwt_seterr(err, errlen, CWT_EB_HEADER,
                              "bundle header: recipient %s is not in the roster", h->recipients[i]);
        if (memcmp(info->entry_key_ids[i], roster->sites[r].key_id, CWT_KEYID_LEN) != 0) {
            key_id_hex(info->entry_key_ids[i], kid);
            key_id_hex(roster->sites[r].key_id, kid2);
            return cwt_seterr(err, errlen, CWT_EB_HEADER,
                              "recipient entry %u is for key %s but %s has key %s", i, kid,
                              h->recipients[i], kid2);
        }
    }
    return 0;
}

static int open_bundle_fd(const char *path, int *fd, char *err, size_t errlen)
{
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return cwt_seterr(err, errlen, errno == ENOENT ? CWT_ENOENT : CWT_EIO,
                          "%s: cannot open: %s", path, strerror(errno));
    return 0;
}

int bundle_verify_fd(const struct cwt_roster *roster, int fd, struct bundle_info *out, char *err,
                     size_t errlen)
{
    struct bundle_info local;
    struct bundle_info *info = out ? out : &local;
    struct frame *fr;
    int rc;

    memset(info, 0, sizeof(*info));
    info->sender_index = -1;
    if (roster == NULL)
        return cwt_seterr(err, errlen, CWT_EINVAL, "no roster to verify against");
    fr = calloc(1, sizeof(*fr));
    if (fr == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
    fr->fd = fd;
    rc = verify_frame(roster, fr, info, err, errlen);
    free(fr);
    return rc;
}

int bundle_verify(const struct cwt_roster *roster, const char *path, struct bundle_info *out,
                  char *err, size_t errlen)
{
    char sub[CWT_ERRLEN];
    int fd, rc;

    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if ((rc = open_bundle_fd(path, &fd, err, errlen)) != 0)
        return rc;
    rc = bundle_verify_fd(roster, fd, out, sub, sizeof(sub));
    close(fd);
    if (rc != 0)
        cwt_seterr(err, errlen, rc, "%s: %s", path, sub);
    return rc;
}

int bundle_inspect_fd(int fd, struct bundle_info *out, char *err, size_t errlen)
{
    struct frame *fr;
    int rc;

    memset(out, 0, sizeof(*out));
    out->sender_index = -1;
    fr = calloc(1, sizeof(*fr));
    if (fr == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
    fr->fd = fd;
    rc = verify_frame(NULL, fr, out, err, errlen);
    free(fr);
    if (rc == 0 && lseek(fd, 0, SEEK_SET) == 0)
        rc = hash_stream(fd, out->file_size, out->file_hash, err, errlen);
    return rc;
}

int bundle_inspect(const char *path, struct bundle_info *out, char *err, size_t errlen)
{
    char sub[CWT_ERRLEN];
    int fd, rc;

    memset(out, 0, sizeof(*out));
    out->sender_index = -1;
    if ((rc = open_bundle_fd(path, &fd, err, errlen)) != 0)
        return rc;
    rc = bundle_inspect_fd(fd, out, sub, sizeof(sub));
    close(fd);
    if (rc != 0)
        cwt_seterr(err, errlen, rc, "%s: %s", path, sub);
    return rc;
}

/* ------------------------------------------------------------------ temp files */

/* Creates "<path>.tmp.XXXXXX" beside path. */
static int make_temp(const char *path, char *tmp, size_t tmplen, int *fd, char *err, size_t errlen)
{
    int n = snprintf(tmp, tmplen, "%s.tmp.XXXXXX", path);

    if (n < 0 || (size_t)n >= tmplen)
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "%s: path too long", path);
    *fd = mkostemp(tmp, O_CLOEXEC);
    if (*fd < 0)
        return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    return 0;
}

/* fsync + close + rename + folder fsync; on failure the temp file is removed. */
static int commit_temp(int fd, const char *tmp, const char *path, mode_t mode, char *err,
                       size_t errlen)
{
    if (fchmod(fd, mode) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot write: %s", path, strerror(e));
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot replace: %s", path, strerror(e));
    }
    if (file_fsync_dir(path) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot sync its folder", path);
    return 0;
}

/* ------------------------------------------------------------------ sealing */

/* BLAKE2b-256 of n bytes read from fd (from its current position); fails if fewer. */
static int hash_stream(int fd, uint64_t n, uint8_t out[32], char *err, size_t errlen)
{
    crypto_generichash_state *st;
    uint8_t *buf;
    int rc = 0;

    st = sodium_malloc(sizeof(*st));
    buf = malloc(BUNDLE_CHUNK);
    if (st == NULL || buf == NULL) {
        sodium_free(st);
        free(buf);
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
    }
    crypto_generichash_init(st, NULL, 0, 32);
    while (n > 0) {
        size_t k = n < BUNDLE_CHUNK ? (size_t)n : BUNDLE_CHUNK;
        if (read_full(fd, buf, k) != 0) {
            rc = cwt_seterr(err, errlen, CWT_EIO, "cannot read: %s", strerror(errno));
            break;
        }
        crypto_generichash_update(st, buf, k);
        n -= k;
    }
    crypto_generichash_final(st, out, 32);
    sodium_free(st);
    free(buf);
    return rc;
}

/* Fills the fields seal owns and checks the caller's against the roster. */
static int seal_header(const struct site_keys *sender, const struct cwt_roster *roster,
                       const struct bundle_header *in, uint64_t payload_len,
                       struct bundle_header *h, char *err, size_t errlen)
{
    int me = roster_find_site(roster, sender->site_id);

    if (me < 0 || memcmp(roster->sites[me].key_id, sender->key_id, CWT_KEYID_LEN) != 0)
        return cwt_seterr(err, errlen, CWT_ECONFIG,
                          "this site (%s) is not in the roster with its current key",
                          sender->site_id);
    *h = *in;
    if (h->kind < BUNDLE_KIND_CYCLE || h->kind > BUNDLE_KIND_ENSEMBLE_MEMBER)
        return cwt_seterr(err, errlen, CWT_EINVAL, "unknown bundle kind %u", h->kind);
    if (h->hop != (uint32_t)me)
        return cwt_seterr(err, errlen, CWT_EINVAL,
                          "hop must be this site's place in the roster (%d), not %u", me, h->hop);
    if (h->n_recipients == 0 || h->n_recipients > CWT_MAX_SITES)
        return cwt_seterr(err, errlen, CWT_EINVAL, "a bundle needs 1..%d recipients",
                          CWT_MAX_SITES);
    for (uint32_t i = 0; i < h->n_recipients; i++) {
        if (roster_find_site(roster, h->recipients[i]) < 0)
            return cwt_seterr(err, errlen, CWT_EINVAL, "recipient %s is not in the roster",
                              h->recipients[i]);
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(h->recipients[i], h->recipients[j]) == 0)
                return cwt_seterr(err, errlen, CWT_EINVAL, "recipient %s is named twice",
                                  h->recipients[i]);
    }
    h->sequence = (uint64_t)h->cycle * roster->n_sites + h->hop;
    if (h->kind != BUNDLE_KIND_ENSEMBLE_MEMBER && h->sequence > 0 && !h->has_parent)
        return cwt_seterr(err, errlen, CWT_EINVAL,
                          "a %s bundle at sequence %llu needs a parent bundle",
                          bundle_kind_name(h->kind), (unsigned long long)h->sequence);
    randombytes_buf(h->bundle_id, sizeof(h->bundle_id));
    snprintf(h->federation, sizeof(h->federation), "%s", roster->federation);
    if (roster_fingerprint(roster, h->roster_fp) != 0)
        return cwt_seterr(err, errlen, CWT_ECRYPTO, "cannot compute the roster fingerprint");
    snprintf(h->sender, sizeof(h->sender), "%s", sender->site_id);
    if (h->created == 0)
        h->created = cwt_now();
    if (h->expires == 0) {
        uint32_t days = roster->recipe.bundle_ttl_days ? roster->recipe.bundle_ttl_days : 30;
        h->expires = h->created + (int64_t)days * 86400;
    }
    h->payload_len = payload_len;
    return 0;
}

/* Writes preamble, header, recipient entries and secretstream header into slot; returns the
 * length, or 0 on failure (err filled). */
static size_t seal_prefix(const struct cwt_roster *roster, const struct bundle_header *h,
                          const uint8_t *hdr, size_t hdr_len, const uint8_t *key,
                          crypto_secretstream_xchacha20poly1305_state *ss, uint8_t *slot, char *err,
                          size_t errlen)
{
    size_t pos = 0;

    memcpy(slot, BUNDLE_MAGIC, 4);
    put_le16(slot + 4, BUNDLE_VERSION);
    put_le16(slot + 6, 0);
    put_le32(slot + 8, (uint32_t)hdr_len);
    memcpy(slot + PREAMBLE_LEN, hdr, hdr_len);
    pos = PREAMBLE_LEN + hdr_len;
    put_le16(slot + pos, (uint16_t)h->n_recipients);
    pos += 2;
    for (uint32_t i = 0; i < h->n_recipients; i++) {
        const struct cwt_roster_site *s =
            &roster->sites[roster_find_site(roster, h->recipients[i])];
        memcpy(slot + pos, s->key_id, CWT_KEYID_LEN);
        if (crypto_box_seal(slot + pos + CWT_KEYID_LEN, key, 32, s->box_pk) != 0) {
            cwt_seterr(err, errlen, CWT_ECRYPTO, "cannot seal the content key for %s", s->id);
            return 0;
        }
        pos += ENTRY_LEN;
    }
    if (crypto_secretstream_xchacha20poly1305_init_push(ss, slot + pos, key) != 0) {
        cwt_seterr(err, errlen, CWT_ECRYPTO, "cannot start the payload encryption");
        return 0;
    }
    return pos + SS_HDR_LEN;
}

int bundle_seal(const struct site_keys *sender, const struct cwt_roster *roster,
                const struct bundle_header *hdr, const char *payload_path, const char *out_path,
                struct bundle_info *out, char *err, size_t errlen)
{
    struct key_ops ops;

    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (sender == NULL || sender->sign_sk == NULL)
        return cwt_seterr(err, errlen, CWT_EINVAL, "sealing needs the site's secret signing key");
    keyops_local(sender, &ops);
    return bundle_seal_ops(&ops, sender, roster, hdr, payload_path, out_path, out, err, errlen);
}

int bundle_seal_ops(const struct key_ops *ops, const struct site_keys *sender,
                    const struct cwt_roster *roster, const struct bundle_header *hdr,
                    const char *payload_path, const char *out_path, struct bundle_info *out,
                    char *err, size_t errlen)
{
    static const size_t outlen[2] = {crypto_generichash_BYTES_MAX, 32};
    struct bundle_info *info = NULL;
    struct hash_pipe *pipe = NULL;
    crypto_secretstream_xchacha20poly1305_state *ss = NULL;
    uint8_t *key = NULL, *plain = NULL, *hbuf = NULL;
    uint8_t digest[crypto_generichash_BYTES_MAX], sig[SIG_LEN];
    char tmp[PATH_MAX], sub[CWT_ERRLEN];
    struct stat sb;
    size_t hlen;
    uint64_t left;
    int in = -1, fd = -1, rc;

    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if ((rc = st_check_file(payload_path, err, errlen)) != 0)
        return rc;
    info = calloc(1, sizeof(*info));
    hbuf = malloc(BUNDLE_HEADER_MAX);
    plain = malloc(BUNDLE_CHUNK);
    key = sodium_malloc(crypto_secretstream_xchacha20poly1305_KEYBYTES);
    ss = sodium_malloc(sizeof(*ss));
    if (info == NULL || hbuf == NULL || plain == NULL || key == NULL || ss == NULL) {
        rc = cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
        goto out;
    }
    in = open(payload_path, O_RDONLY | O_CLOEXEC);
    if (in < 0 || fstat(in, &sb) != 0) {
        rc = cwt_seterr(err, errlen, CWT_EIO, "%s: cannot open: %s", payload_path, strerror(errno));
        goto out;
    }
    if ((uint64_t)sb.st_size > BUNDLE_PAYLOAD_MAX) {
        rc = cwt_seterr(err, errlen, CWT_ETOOBIG, "%s: larger than a bundle may carry",
                        payload_path);
        goto out;
    }
    if ((rc = seal_header(sender, roster, hdr, (uint64_t)sb.st_size, &info->hdr, err, errlen)) != 0)
        goto out;
    if ((rc = hash_stream(in, info->hdr.payload_len, info->hdr.payload_hash, sub, sizeof(sub))) !=
        0) {
        rc = cwt_seterr(err, errlen, rc, "%s: %s", payload_path, sub);
        goto out;
    }
    if (bundle_header_encode(&info->hdr, hbuf, BUNDLE_HEADER_MAX, &hlen) != 0 ||
        bundle_header_decode(hbuf, hlen, &info->hdr, sub, sizeof(sub)) != 0) {
        rc = cwt_seterr(err, errlen, CWT_EINVAL, "the header cannot be encoded: %s", sub);
        goto out;
    }
    if (lseek(in, 0, SEEK_SET) != 0) {
        rc = cwt_seterr(err, errlen, CWT_EIO, "%s: cannot seek: %s", payload_path, strerror(errno));
        goto out;
    }
    if ((rc = make_temp(out_path, tmp, sizeof(tmp), &fd, err, errlen)) != 0)
        goto out;
    if (hash_pipe_new(2, outlen, &pipe) != 0) {
        rc = cwt_seterr(err, errlen, CWT_ENOMEM, "cannot start the hashing threads");
        goto out;
    }
    crypto_secretstream_xchacha20poly1305_keygen(key);

    /* Everything written goes through the pipe: worker 0 digests the signed bytes
     * (BLAKE2b-512), worker 1 the file hash (BLAKE2b-256). */
    {
        uint8_t *slot = hash_pipe_slot(pipe);
        size_t n = seal_prefix(roster, &info->hdr, hbuf, hlen, key, ss, slot, err, errlen);
        if (n == 0) {
            rc = CWT_ECRYPTO;
            goto out;
        }
        hash_pipe_submit(pipe, n);
        if (write_full(fd, slot, n) != 0)
            goto write_error;
    }
    left = info->hdr.payload_len;
    do {
        size_t n = left < BUNDLE_CHUNK ? (size_t)left : BUNDLE_CHUNK;
        uint8_t tag = left <= BUNDLE_CHUNK ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
                                           : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE;
        uint8_t *slot;
        if (read_full(in, plain, n) != 0) {
            rc = cwt_seterr(err, errlen, CWT_EIO, "%s: cannot read: %s", payload_path,
                            strerror(errno));
            goto out;
        }
        slot = hash_pipe_slot(pipe);
        crypto_secretstream_xchacha20poly1305_push(ss, slot, NULL, plain, n, hbuf, hlen, tag);
        hash_pipe_submit(pipe, n + SS_ABYTES);
        if (write_full(fd, slot, n + SS_ABYTES) != 0)
            goto write_error;
        left -= n;
    } while (left > 0);
    {
        /* The payload must not have changed since it was hashed. */
        uint8_t extra;
        if (read(in, &extra, 1) != 0) {
            rc = cwt_seterr(err, errlen, CWT_EIO, "%s: changed while it was being sealed",
                            payload_path);
            goto out;
        }
    }
    {
        uint8_t *slot = hash_pipe_slot(pipe);
        memcpy(slot, sender->key_id, CWT_KEYID_LEN);
        hash_pipe_submit(pipe, CWT_KEYID_LEN);
        if (write_full(fd, slot, CWT_KEYID_LEN) != 0)
            goto write_error;
    }
    hash_pipe_finish(pipe);
    crypto_generichash_final(&pipe->st[0], digest, sizeof(digest));
    if ((rc = ops->sign(ops->ctx, KEYOPS_CTX_BUNDLE, digest, sig)) != 0) {
        rc = cwt_seterr(err, errlen, rc == CWT_EIO ? CWT_EIO : CWT_ECRYPTO,
                        "the bundle could not be signed (%s)", cwt_strerror(rc));
        goto out;
    }
    crypto_generichash_update(&pipe->st[1], sig, SIG_LEN);
    crypto_generichash_final(&pipe->st[1], info->file_hash, 32);
    if (write_full(fd, sig, SIG_LEN) != 0)
        goto write_error;
    rc = commit_temp(fd, tmp, out_path, 0644, err, errlen);
    fd = -1;
    if (rc != 0)
        goto out;
    tmp[0] = '\0';
    info->version = BUNDLE_VERSION;
    info->file_size = expected_size((uint32_t)hlen, info->hdr.n_recipients, info->hdr.payload_len);
    memcpy(info->signer_key_id, sender->key_id, CWT_KEYID_LEN);
    info->sender_index = (int)info->hdr.hop;
    info->n_chunks = (uint32_t)chunk_count(info->hdr.payload_len);
    info->n_entries = info->hdr.n_recipients;
    for (uint32_t i = 0; i < info->hdr.n_recipients; i++)
        memcpy(info->entry_key_ids[i],
               roster->sites[roster_find_site(roster, info->hdr.recipients[i])].key_id,
               CWT_KEYID_LEN);
    if (out != NULL)
        *out = *info;
    goto out;
write_error:
    rc = cwt_seterr(err, errlen, CWT_EIO, "%s: cannot write: %s", out_path, strerror(errno));
out:
    hash_pipe_free(pipe);
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    if (in >= 0)
        close(in);
    sodium_free(key);
    sodium_free(ss);
    free(plain);
    free(hbuf);
    free(info);
    return rc;
}

/* ------------------------------------------------------------------ opening */

/* Replay, rollback and parent rules against the ledger (read only). */
static int check_ledger(struct store *st, const struct bundle_info *info, char *err, size_t errlen)
{
    const struct bundle_header *h = &info->hdr;
    struct ledger_entry e, *all = NULL;
    uint64_t last;
    uint8_t head[32];
    size_t n = 0;
    char hex[65], when[32];
    int rc, known_parent = 0, known_prev = 0, prev_matches = 0;

    rc = ledger_lookup(st, h->bundle_id, &e);
    if (rc == 0) {
        cwt_hex(h->bundle_id, 16, hex);
        return cwt_seterr(err, errlen, CWT_EB_REPLAY, "bundle %s was %s on %s already (replay)",
                          hex, e.outgoing ? "sent by this site" : "accepted",
                          fmt_time(e.time, when, sizeof(when)));
    }
    if (rc != CWT_ENOENT)
        return cwt_seterr(err, errlen, rc, "cannot read the ledger: %s", cwt_strerror(rc));
    if (h->kind == BUNDLE_KIND_ENSEMBLE_MEMBER)
        return 0;
    rc = ledger_last(st, h->federation, &last, head);
    if (rc == 0 && h->sequence <= last)
        return cwt_seterr(err, errlen, CWT_EB_ROLLBACK,
                          "bundle sequence %llu is not newer than the last accepted %llu "
                          "(rollback or stale copy)",
                          (unsigned long long)h->sequence, (unsigned long long)last);
    if (rc != 0 && rc != CWT_ENOENT)
        return cwt_seterr(err, errlen, rc, "cannot read the ledger: %s", cwt_strerror(rc));
    if (!h->has_parent) {
        if (h->sequence > 0)
            return cwt_seterr(err, errlen, CWT_EB_PARENT,
                              "bundle at sequence %llu names no parent; only the first bundle "
                              "of a chain may",
                              (unsigned long long)h->sequence);
        return 0;
    }
    if ((rc = ledger_list(st, &all, &n)) != 0)
        return cwt_seterr(err, errlen, rc, "cannot read the ledger: %s", cwt_strerror(rc));
    rc = 0;
    for (size_t i = 0; i < n; i++) {
        const struct ledger_entry *x = &all[i];
        if (strcmp(x->federation, h->federation) != 0 || x->kind == BUNDLE_KIND_ENSEMBLE_MEMBER)
            continue;
        if (memcmp(x->bundle_hash, h->parent_hash, 32) == 0) {
            known_parent = 1;
            if (x->sequence + 1 != h->sequence) {
                rc = cwt_seterr(err, errlen, CWT_EB_PARENT,
                                "the parent is the bundle at sequence %llu, but this bundle's "
                                "sequence %llu does not follow it",
                                (unsigned long long)x->sequence, (unsigned long long)h->sequence);
                break;
            }
        }
        if (h->sequence > 0 && x->sequence == h->sequence - 1) {
            known_prev = 1;
            if (memcmp(x->bundle_hash, h->parent_hash, 32) == 0)
                prev_matches = 1;
        }
    }
    free(all);
    if (rc == 0 && known_prev && !prev_matches) {
        cwt_hex(h->parent_hash, 32, hex);
        rc = cwt_seterr(err, errlen, CWT_EB_PARENT,
                        "the parent %.16s... is not the bundle this site knows at sequence %llu "
                        "(a fork)",
                        hex, (unsigned long long)(h->sequence - 1));
    }
    (void)known_parent;
    return rc;
}

/* Pass two: decrypt every chunk into fd while a thread hashes the plaintext. */
static int decrypt_payload(struct frame *fr, const struct bundle_info *info, const uint8_t *key,
                           int fd, char *err, size_t errlen)
{
    static const size_t outlen[1] = {32};
    crypto_secretstream_xchacha20poly1305_state *ss;
    struct hash_pipe *pipe = NULL;
    uint8_t ssh[SS_HDR_LEN], *cbuf, digest[32];
    uint64_t left = info->hdr.payload_len;
    uint32_t i = 0;
    char hex1[65], hex2[65];
    int rc = 0;

    ss = sodium_malloc(sizeof(*ss));
    cbuf = malloc(BUNDLE_CHUNK + SS_ABYTES);
    if (ss == NULL || cbuf == NULL || hash_pipe_new(1, outlen, &pipe) != 0) {
        rc = cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
        goto out;
    }
    if (lseek(fr->fd, (off_t)fr->payload_off, SEEK_SET) < 0 ||
        read_full(fr->fd, ssh, sizeof(ssh)) != 0) {
        rc = cwt_seterr(err, errlen, CWT_EIO, "cannot read the bundle: %s", strerror(errno));
        goto out;
    }
    if (crypto_secretstream_xchacha20poly1305_init_pull(ss, ssh, key) != 0) {
        rc = cwt_seterr(err, errlen, CWT_EB_DECRYPT, "the payload stream header is invalid");
        goto out;
    }
    do {
        size_t n = left < BUNDLE_CHUNK ? (size_t)left : BUNDLE_CHUNK;
        int last = left <= BUNDLE_CHUNK;
        uint8_t tag, *slot;
        if (read_full(fr->fd, cbuf, n + SS_ABYTES) != 0) {
            rc = cwt_seterr(err, errlen, CWT_EIO, "cannot read the bundle: %s", strerror(errno));
            goto out;
        }
        slot = hash_pipe_slot(pipe);
        if (crypto_secretstream_xchacha20poly1305_pull(ss, slot, NULL, &tag, cbuf, n + SS_ABYTES,
                                                       fr->header, fr->header_len) != 0) {
            rc = cwt_seterr(err, errlen, CWT_EB_DECRYPT,
                            "payload chunk %u of %u fails to authenticate (altered, dropped, "
                            "reordered or duplicated)",
                            i, info->n_chunks);
            goto out;
        }
        if (tag != (last ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
                         : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE)) {
            rc = cwt_seterr(err, errlen, CWT_EB_DECRYPT,
                            last ? "the last payload chunk (%u) is not tagged final"
                                 : "payload chunk %u is tagged final before the end",
                            i);
            goto out;
        }
        hash_pipe_submit(pipe, n);
        if (write_full(fd, slot, n) != 0) {
            rc = cwt_seterr(err, errlen, CWT_EIO, "cannot write the payload: %s", strerror(errno));
            goto out;
        }
        left -= n;
        i++;
    } while (left > 0);
    hash_pipe_finish(pipe);
    crypto_generichash_final(&pipe->st[0], digest, sizeof(digest));
    if (sodium_memcmp(digest, info->hdr.payload_hash, 32) != 0) {
        cwt_hex(digest, 32, hex1);
        cwt_hex(info->hdr.payload_hash, 32, hex2);
        rc = cwt_seterr(err, errlen, CWT_EB_PAYLOAD,
                        "the payload hashes to %.16s... but the header says %.16s...", hex1, hex2);
    }
out:
    hash_pipe_free(pipe);
    sodium_free(ss);
    free(cbuf);
    return rc;
}

/* Rule "times": a sender's clock may be ahead of ours by BUNDLE_CLOCK_SKEW at most, and no
 * bundle may live longer than the roster allows (a bundle created at 2^62 and expiring a
 * second later was once accepted; issue 18, L5). */
static int check_times(const struct cwt_roster *roster, const struct bundle_header *h, int64_t now,
                       char *err, size_t errlen)
{
    int64_t days = roster->recipe.bundle_ttl_days ? roster->recipe.bundle_ttl_days : 30;
    char when[32];

    if (h->created > now + BUNDLE_CLOCK_SKEW)
        return cwt_seterr(err, errlen, CWT_EB_TIME,
                          "the bundle was created on %s, more than %d hours ahead of this "
                          "site's clock",
                          fmt_time(h->created, when, sizeof(when)), BUNDLE_CLOCK_SKEW / 3600);
    if (h->expires - h->created > days * 86400 + BUNDLE_CLOCK_SKEW)
        return cwt_seterr(err, errlen, CWT_EB_TIME,
                          "the bundle lives %lld days, longer than the roster's bundle_ttl_days "
                          "(%lld)",
                          (long long)((h->expires - h->created) / 86400), (long long)days);
    return 0;
}

/* The payload against the roster's model: its "fingerprint" metadata and its tensor table
 * (names, dtypes, shapes). A payload of one 16-byte U8 tensor under a correct header
 * fingerprint was once opened and recorded (issue 18, M3). */
static int check_payload_model(int fd, const struct bundle_expect *ex, char *err, size_t errlen)
{
    struct st_file f;
    char sub[CWT_ERRLEN], want[65];
    const char *fp;
    int rc;

    if ((rc = st_header_fd(fd, &f, sub, sizeof(sub))) != 0)
        return cwt_seterr(err, errlen, CWT_EB_TENSORS, "the payload is refused: %s", sub);
    rc = 0;
    if (ex->model_fp != NULL && ex->layout != NULL) {
        cwt_hex(ex->model_fp, 32, want);
        fp = st_meta_get(&f, "fingerprint");
        if (fp == NULL || strcmp(fp, want) != 0)
            rc = cwt_seterr(err, errlen, CWT_EB_MODEL,
                            "the payload's \"fingerprint\" metadata is not the roster "
                            "model's %.16s...",
                            want);
    }
    if (rc == 0 && st_same_layout(ex->layout, &f, sub, sizeof(sub)) != 0 &&
        (ex->layout_alt == NULL || st_same_layout(ex->layout_alt, &f, NULL, 0) != 0))
        rc = cwt_seterr(err, errlen, CWT_EB_MODEL,
                        "the payload's tensors are not the roster model's: %s", sub);
    st_free(&f);
    return rc;
}

static int open_checks(const struct key_ops *ops, const struct site_keys *me,
                       const struct cwt_roster *roster, struct store *st, struct frame *fr,
                       const char *payload_out_path, const struct bundle_expect *ex,
                       struct bundle_info *info, char *err, size_t errlen)
{
    const uint8_t *expected_model_fp = ex != NULL ? ex->model_fp : NULL;
    const struct bundle_header *h = &info->hdr;
    uint8_t *key = NULL;
    char tmp[PATH_MAX], kid[2 * CWT_KEYID_LEN + 1], when[32], sub[CWT_ERRLEN];
    int r = -1, fd = -1, rc;

    if ((rc = verify_frame(roster, fr, info, err, errlen)) != 0)
        return rc;
    for (uint32_t i = 0; i < h->n_recipients; i++)
        if (strcmp(h->recipients[i], me->site_id) == 0)
            r = (int)i;
    if (r < 0)
        return cwt_seterr(err, errlen, CWT_EB_RECIPIENT,
                          "this site (%s) is not among the bundle's %u recipient(s), the first "
                          "being %s",
                          me->site_id, h->n_recipients, h->recipients[0]);
    if (memcmp(info->entry_key_ids[r], me->key_id, CWT_KEYID_LEN) != 0) {
        key_id_hex(info->entry_key_ids[r], kid);
        return cwt_seterr(err, errlen, CWT_EB_RECIPIENT,
                          "the bundle was sealed for key %s of %s, not for this site's key", kid,
                          me->site_id);
    }
    if (cwt_now() > h->expires)
        return cwt_seterr(err, errlen, CWT_EB_EXPIRED, "the bundle expired on %s",
                          fmt_time(h->expires, when, sizeof(when)));
    if ((rc = check_times(roster, h, cwt_now(), err, errlen)) != 0)
        return rc;
    if (st != NULL && (rc = check_ledger(st, info, err, errlen)) != 0)
        return rc;
    key = sodium_malloc(KEYOPS_KEY_LEN);
    if (key == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
    rc = ops->open_key(ops->ctx, fr->entries[r] + CWT_KEYID_LEN, key);
    if (rc == CWT_EB_DECRYPT) {
        rc = cwt_seterr(err, errlen, CWT_EB_DECRYPT,
                        "the content key sealed for %s does not open with this site's key",
                        me->site_id);
        goto out;
    }
    if (rc != 0) {
        /* The key holder failed, not the bundle: a local error the caller retries. */
        rc = cwt_seterr(err, errlen, rc == CWT_EINVAL ? CWT_EINVAL : CWT_EIO,
                        "the content key could not be opened (%s)", cwt_strerror(rc));
        goto out;
    }
    if ((rc = make_temp(payload_out_path, tmp, sizeof(tmp), &fd, err, errlen)) != 0)
        goto out;
    if ((rc = decrypt_payload(fr, info, key, fd, err, errlen)) != 0)
        goto out;
    if (expected_model_fp != NULL && memcmp(expected_model_fp, h->model_fp, 32) != 0) {
        char a[65], b[65];
        cwt_hex(h->model_fp, 32, a);
        cwt_hex(expected_model_fp, 32, b);
        rc = cwt_seterr(err, errlen, CWT_EB_MODEL,
                        "the bundle's model fingerprint %.16s... is not the roster model's "
                        "%.16s...",
                        a, b);
        goto out;
    }
    if ((rc = st_check_fd(fd, sub, sizeof(sub))) != 0) {
        rc = cwt_seterr(err, errlen, CWT_EB_TENSORS, "the payload is refused: %s", sub);
        goto out;
    }
    if (ex != NULL && ex->layout != NULL && (rc = check_payload_model(fd, ex, err, errlen)) != 0)
        goto out;
    rc = commit_temp(fd, tmp, payload_out_path, 0600, err, errlen);
    fd = -1;
out:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    sodium_free(key);
    return rc;
}

int bundle_open_fd(const struct site_keys *me, const struct cwt_roster *roster, struct store *st,
                   int fd, const char *name, const char *payload_out_path,
                   const struct bundle_expect *ex, struct bundle_info *out, char *err,
                   size_t errlen)
{
    struct key_ops ops;

    if (me == NULL || me->box_sk == NULL) {
        if (out != NULL) {
            memset(out, 0, sizeof(*out));
            out->sender_index = -1;
        }
        return cwt_seterr(err, errlen, CWT_EINVAL, "opening needs the site's secret box key");
    }
    keyops_local(me, &ops);
    return bundle_open_fd_ops(&ops, me, roster, st, fd, name, payload_out_path, ex, out, err,
                              errlen);
}

int bundle_open_fd_ops(const struct key_ops *ops, const struct site_keys *me,
                       const struct cwt_roster *roster, struct store *st, int fd, const char *name,
                       const char *payload_out_path, const struct bundle_expect *ex,
                       struct bundle_info *out, char *err, size_t errlen)
{
    struct bundle_info local;
    struct bundle_info *info = out ? out : &local;
    struct frame *fr;
    char sub[CWT_ERRLEN];
    int rc;

    memset(info, 0, sizeof(*info));
    info->sender_index = -1;
    if (ops == NULL || me == NULL || roster == NULL || payload_out_path == NULL)
        return cwt_seterr(err, errlen, CWT_EINVAL, "bundle_open: missing argument");
    fr = calloc(1, sizeof(*fr));
    if (fr == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
    fr->fd = fd;
    rc = open_checks(ops, me, roster, st, fr, payload_out_path, ex, info, sub, sizeof(sub));
    free(fr);
    if (rc != 0)
        cwt_seterr(err, errlen, rc, "%s: %s", name, sub);
    return rc;
}

int bundle_open(const struct site_keys *me, const struct cwt_roster *roster, struct store *st,
                const char *path, const char *payload_out_path, const uint8_t expected_model_fp[32],
                struct bundle_info *out, char *err, size_t errlen)
{
    struct bundle_expect ex = {.model_fp = expected_model_fp, .layout = NULL};
    int fd, rc;

    if (out != NULL) {
        memset(out, 0, sizeof(*out));
        out->sender_index = -1;
    }
    if ((rc = open_bundle_fd(path, &fd, err, errlen)) != 0)
        return rc;
    rc = bundle_open_fd(me, roster, st, fd, path, payload_out_path, &ex, out, err, errlen);
    close(fd);
    return rc;
}

/* ------------------------------------------------------------------ ledger */

static void ledger_from_info(const struct bundle_info *info, int outgoing, struct ledger_entry *e)
{
    memset(e, 0, sizeof(*e));
    memcpy(e->bundle_id, info->hdr.bundle_id, 16);
    memcpy(e->bundle_hash, info->file_hash, 32);
    snprintf(e->federation, sizeof(e->federation), "%s", info->hdr.federation);
    snprintf(e->peer, sizeof(e->peer), "%s", outgoing ? info->hdr.recipients[0] : info->hdr.sender);
    e->sequence = info->hdr.sequence;
    e->cycle = info->hdr.cycle;
    e->hop = info->hdr.hop;
    e->kind = info->hdr.kind;
    e->outgoing = (uint8_t)outgoing;
    e->time = cwt_now();
}

int bundle_accept(struct store *st, const struct bundle_info *info)
{
    struct ledger_entry e;

    ledger_from_info(info, 0, &e);
    return ledger_record(st, &e);
}

int bundle_record_sent(struct store *st, const struct bundle_info *info)
{
    struct ledger_entry e;

    ledger_from_info(info, 1, &e);
    return ledger_record(st, &e);
}

int bundle_hash_file(const char *path, uint8_t out[32], char *err, size_t errlen)
{
    struct stat sb;
    char sub[CWT_ERRLEN];
    int fd, rc;

    if ((rc = open_bundle_fd(path, &fd, err, errlen)) != 0)
        return rc;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot stat: %s", path, strerror(errno));
    }
    rc = hash_stream(fd, (uint64_t)sb.st_size, out, sub, sizeof(sub));
    close(fd);
    if (rc != 0)
        cwt_seterr(err, errlen, rc, "%s: %s", path, sub);
    return rc;
}

/* ------------------------------------------------------------------ printing */

static void print_metric(FILE *f, const char *name, double v)
{
    if (isnan(v))
        fprintf(f, "  %-16s -\n", name);
    else
        fprintf(f, "  %-16s %.6g\n", name, v);
}

static const char *site_of_key(const struct cwt_roster *roster, const uint8_t *kid)
{
    int i = roster ? roster_find_key_id(roster, kid) : -1;

    return i >= 0 ? roster->sites[i].id : NULL;
}

/* Sets o[key] to v; a NULL v (out of memory) or a failed set marks *bad, so that one check at
 * the end covers every member. */
static void jput(json_t *o, const char *key, json_t *v, int *bad)
{
    if (v == NULL || json_object_set_new(o, key, v) != 0)
        *bad = 1;
}

static json_t *jhex(const uint8_t *bytes, size_t n)
{
    char hex[65];

    cwt_hex(bytes, n, hex);
    return json_string(hex);
}

/* A metric, or null where it is not finite (JSON has no NaN). */
static json_t *jmetric(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *recipients_json(const struct bundle_info *info, int *bad)
{
    json_t *a = json_array();

    if (a == NULL) {
        *bad = 1;
        return NULL;
    }
    for (uint32_t i = 0; i < info->hdr.n_recipients; i++) {
        json_t *r = json_object();
        char kid[17] = "";
        if (r == NULL || json_array_append_new(a, r) != 0) {
            *bad = 1;
            break;
        }
        if (i < info->n_entries)
            key_id_hex(info->entry_key_ids[i], kid);
        jput(r, "site", cwt_json_str(info->hdr.recipients[i]), bad);
        jput(r, "key_id", json_string(kid), bad);
    }
    return a;
}

static json_t *summary_json(const struct bundle_summary *s, int *bad)
{
    json_t *o = json_object();

    if (o == NULL) {
        *bad = 1;
        return NULL;
    }
    jput(o, "local_epochs", jmetric(s->local_epochs), bad);
    jput(o, "local_steps", json_integer((json_int_t)s->local_steps), bad);
    jput(o, "train_samples", json_integer((json_int_t)s->train_samples), bad);
    jput(o, "val_samples", json_integer((json_int_t)s->val_samples), bad);
    jput(o, "train_loss", jmetric(s->train_loss), bad);
    jput(o, "train_accuracy", jmetric(s->train_accuracy), bad);
    jput(o, "val_loss", jmetric(s->val_loss), bad);
    jput(o, "val_accuracy", jmetric(s->val_accuracy), bad);
    jput(o, "val_auc", jmetric(s->val_auc), bad);
    return o;
}

json_t *bundle_json(const struct bundle_info *info, const struct cwt_roster *roster)
{
    const struct bundle_header *h = &info->hdr;
    const char *signer = site_of_key(roster, info->signer_key_id);
    json_t *o = json_object();
    char when[32];
    int bad = 0;

    if (o == NULL)
        return NULL;
    /* Ids are validated to [A-Za-z0-9._-] on decode; they pass through the UTF-8 cleaner all
     * the same, so no peer's bytes reach a document unchecked should that rule ever widen. */
    jput(o, "bundle_id", jhex(h->bundle_id, 16), &bad);
    jput(o, "version", json_integer(info->version), &bad);
    jput(o, "flags", json_integer(info->flags), &bad);
    jput(o, "file_size", json_integer((json_int_t)info->file_size), &bad);
    jput(o, "federation", cwt_json_str(h->federation), &bad);
    jput(o, "roster_fingerprint", jhex(h->roster_fp, 32), &bad);
    jput(o, "sender", cwt_json_str(h->sender), &bad);
    jput(o, "recipients", recipients_json(info, &bad), &bad);
    jput(o, "kind", json_string(bundle_kind_name(h->kind)), &bad);
    jput(o, "sequence", json_integer((json_int_t)h->sequence), &bad);
    jput(o, "cycle", json_integer(h->cycle), &bad);
    jput(o, "hop", json_integer(h->hop), &bad);
    jput(o, "parent", h->has_parent ? jhex(h->parent_hash, 32) : json_null(), &bad);
    jput(o, "model_fingerprint", jhex(h->model_fp, 32), &bad);
    jput(o, "created", json_integer(h->created), &bad);
    jput(o, "created_utc", json_string(fmt_time(h->created, when, sizeof(when))), &bad);
    jput(o, "expires", json_integer(h->expires), &bad);
    jput(o, "expires_utc", json_string(fmt_time(h->expires, when, sizeof(when))), &bad);
    jput(o, "payload_hash", jhex(h->payload_hash, 32), &bad);
    jput(o, "payload_len", json_integer((json_int_t)h->payload_len), &bad);
    jput(o, "chunks", json_integer(info->n_chunks), &bad);
    jput(o, "signer_key_id", jhex(info->signer_key_id, CWT_KEYID_LEN), &bad);
    if (signer != NULL)
        jput(o, "signer_site", cwt_json_str(signer), &bad);
    jput(o, "file_hash", jhex(info->file_hash, 32), &bad);
    jput(o, "summary", summary_json(&h->summary, &bad), &bad);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int bundle_print(FILE *f, const struct bundle_info *info, const struct cwt_roster *roster, int json)
{
    const struct bundle_header *h = &info->hdr;
    const struct bundle_summary *s = &h->summary;
    char hex[65], when[32];
    const char *who;

    if (json) {
        json_t *v = bundle_json(info, roster);
        int rc = v == NULL ? CWT_ENOMEM : 0;
        if (v != NULL && json_dumpf(v, f, JSON_COMPACT) != 0)
            rc = CWT_EIO;
        json_decref(v);
        return rc;
    }
    cwt_hex(h->bundle_id, 16, hex);
    fprintf(f, "bundle id          %s\n", hex);
    fprintf(f, "format             version %u, flags 0x%04x, %llu bytes, %u chunk(s)\n",
            info->version, info->flags, (unsigned long long)info->file_size, info->n_chunks);
    fprintf(f, "federation         %s\n", h->federation);
    cwt_hex(h->roster_fp, 32, hex);
    fprintf(f, "roster fingerprint %s\n", hex);
    fprintf(f, "sender             %s\n", h->sender);
    for (uint32_t i = 0; i < h->n_recipients; i++) {
        char kid[17];
        key_id_hex(info->entry_key_ids[i], kid);
        fprintf(f, "%s %s (key %s)\n", i == 0 ? "recipients        " : "                  ",
                h->recipients[i], kid);
    }
    fprintf(f, "kind               %s\n", bundle_kind_name(h->kind));
    fprintf(f, "sequence           %llu (cycle %u, hop %u)\n", (unsigned long long)h->sequence,
            h->cycle, h->hop);
    if (h->has_parent) {
        cwt_hex(h->parent_hash, 32, hex);
        fprintf(f, "parent             %s\n", hex);
    } else {
        fprintf(f, "parent             none (first bundle of the chain)\n");
    }
    cwt_hex(h->model_fp, 32, hex);
    fprintf(f, "model fingerprint  %s\n", hex);
    fprintf(f, "created            %s\n", fmt_time(h->created, when, sizeof(when)));
    fprintf(f, "expires            %s\n", fmt_time(h->expires, when, sizeof(when)));
    cwt_hex(h->payload_hash, 32, hex);
    fprintf(f, "payload            %llu bytes, BLAKE2b-256 %s\n",
            (unsigned long long)h->payload_len, hex);
    cwt_hex(info->signer_key_id, CWT_KEYID_LEN, hex);
    who = site_of_key(roster, info->signer_key_id);
    fprintf(f, "signer key id      %s%s%s%s\n", hex, who ? " (" : "", who ? who : "",
            who ? ")" : "");
    cwt_hex(info->file_hash, 32, hex);
    fprintf(f, "bundle hash        %s\n", hex);
    fprintf(f, "training summary\n");
    print_metric(f, "local epochs", s->local_epochs);
    fprintf(f, "  %-16s %llu\n", "local steps", (unsigned long long)s->local_steps);
    fprintf(f, "  %-16s %llu\n", "train samples", (unsigned long long)s->train_samples);
    fprintf(f, "  %-16s %llu\n", "val samples", (unsigned long long)s->val_samples);
    print_metric(f, "train loss", s->train_loss);
    print_metric(f, "train accuracy", s->train_accuracy);
    print_metric(f, "val loss", s->val_loss);
    print_metric(f, "val accuracy", s->val_accuracy);
    print_metric(f, "val AUC", s->val_auc);
    return ferror(f) ? CWT_EIO : 0;
}
