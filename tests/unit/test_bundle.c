/*
 * test_bundle.c - the weight bundle: round trip, and every tampered variant of issue 3 item 7
 * refused with its own rule, with nothing written (no payload file, ledger unchanged).
 *
 * Sites live in memory: site-a, site-b and site-c are in the roster, site-x is an outsider.
 * Bundles whose chunks are dropped, reordered or duplicated, or whose payload hash or tensors
 * are wrong, are built by craft() below, an independent writer of the format that signs with
 * a test key, so that the signature is valid and the rule under test is what fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/fileio.h"
#include "crypto/bundle.h"
#include "crypto/keyops.h"
#include "crypto/keys.h"
#include "storage/safetensors.h"
#include "storage/store.h"
#include "tests/test_tmp.h"

#define MIB         (1u << 20)
#define N_SITES     3
#define PAYLOAD_LEN (2 * MIB + MIB / 2) /* three chunks, the last a half */

struct fixture {
    char dir[512];
    struct site_keys keys[N_SITES + 1]; /* a, b, c, then the outsider x */
    struct cwt_roster roster;
    struct store *st; /* site-b's ledger */
    char weights[600], out[600], bundle[600];
};

static void make_keys(struct site_keys *k, const char *id)
{
    uint8_t both[64], digest[32];

    memset(k, 0, sizeof(*k));
    snprintf(k->site_id, sizeof(k->site_id), "%s", id);
    k->sign_sk = sodium_malloc(64);
    k->box_sk = sodium_malloc(32);
    assert_non_null(k->sign_sk);
    assert_non_null(k->box_sk);
    crypto_sign_keypair(k->sign_pk, k->sign_sk);
    crypto_box_keypair(k->box_pk, k->box_sk);
    memcpy(both, k->sign_pk, 32);
    memcpy(both + 32, k->box_pk, 32);
    crypto_generichash(digest, 32, both, 64, NULL, 0);
    memcpy(k->key_id, digest, CWT_KEYID_LEN);
}

static void roster_add(struct cwt_roster *r, const struct site_keys *k)
{
    struct cwt_roster_site *s = &r->sites[r->n_sites++];

    snprintf(s->id, sizeof(s->id), "%s", k->site_id);
    memcpy(s->sign_pk, k->sign_pk, 32);
    memcpy(s->box_pk, k->box_pk, 32);
    assert_int_equal(keyline_format(k->site_id, k->sign_pk, k->box_pk, s->key_line,
                                    sizeof(s->key_line), s->key_id),
                     0);
    assert_memory_equal(s->key_id, k->key_id, CWT_KEYID_LEN);
}

/* A safetensors file of exactly `len` bytes: one F32 tensor plus a U8 tensor whose size is
 * adjusted until the total lands on len. poison > 0 puts a NaN in, < 0 an Inf. */
static void write_weights(const char *path, size_t len, int poison)
{
    size_t floats = (len - 256) / 4, pad = 0, got = 0;
    uint8_t *buf = NULL, *zeros = calloc(len, 1);
    float *f = calloc(floats, sizeof(float));

    assert_non_null(f);
    assert_non_null(zeros);
    for (size_t i = 0; i < floats; i++)
        f[i] = (float)i * 0.001f;
    if (poison)
        f[floats / 2] = poison > 0 ? NAN : INFINITY;
    for (int tries = 0; tries < 16; tries++) {
        struct st_writer *w;
        uint64_t shape_w[1] = {floats}, shape_x[1] = {pad};
        free(buf);
        assert_int_equal(st_writer_new(&w), 0);
        assert_int_equal(st_writer_add(w, "w", ST_F32, 1, shape_w, f), 0);
        assert_int_equal(st_writer_add(w, "x", ST_U8, 1, shape_x, zeros), 0);
        assert_int_equal(st_writer_meta(w, "fingerprint", "ab"), 0);
        assert_int_equal(st_writer_finish(w, &buf, &got), 0);
        st_writer_free(w);
        if (got == len)
            break;
        if (got < len)
            pad += len - got;
        else
            pad -= got - len < pad ? got - len : pad;
    }
    assert_int_equal(got, len);
    assert_int_equal(file_write_atomic(path, buf, got, 0600, NULL, 0), 0);
    free(buf);
    free(zeros);
    free(f);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    static const char *const ids[] = {"site-a", "site-b", "site-c", "site-x"};
    char err[CWT_ERRLEN], sdir[600];

    assert_non_null(fx);
    assert_int_equal(crypto_init(), 0);
    assert_int_equal(test_tmp_path(fx->dir, sizeof(fx->dir), "test_bundle"), 0);
    assert_int_equal(file_mkdir_p(fx->dir, 0700, err, sizeof(err)), 0);
    for (int i = 0; i < N_SITES + 1; i++)
        make_keys(&fx->keys[i], ids[i]);
    snprintf(fx->roster.federation, sizeof(fx->roster.federation), "fed-test");
    recipe_defaults(&fx->roster.recipe);
    for (int i = 0; i < N_SITES; i++)
        roster_add(&fx->roster, &fx->keys[i]);
    snprintf(fx->weights, sizeof(fx->weights), "%s/w.safetensors", fx->dir);
    snprintf(fx->out, sizeof(fx->out), "%s/out.safetensors", fx->dir);
    snprintf(fx->bundle, sizeof(fx->bundle), "%s/b.cwtb", fx->dir);
    write_weights(fx->weights, PAYLOAD_LEN, 0);
    snprintf(sdir, sizeof(sdir), "%s/store", fx->dir);
    assert_int_equal(store_open(sdir, STORE_CREATE, 1ull << 26, &fx->st, err, sizeof(err)), 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;

    store_close(fx->st);
    for (int i = 0; i < N_SITES + 1; i++)
        keys_free(&fx->keys[i]);
    assert_int_equal(test_tmp_remove(fx->dir), 0);
    free(fx);
    return 0;
}

static void base_header(struct bundle_header *h, uint32_t cycle, uint32_t hop, const char *to)
{
    memset(h, 0, sizeof(*h));
    h->kind = BUNDLE_KIND_CYCLE;
    h->cycle = cycle;
    h->hop = hop;
    h->n_recipients = 1;
    snprintf(h->recipients[0], sizeof(h->recipients[0]), "%s", to);
    memset(h->model_fp, 0x42, 32);
    h->summary.local_epochs = 1.5;
    h->summary.local_steps = 100;
    h->summary.val_accuracy = 0.75;
    h->summary.train_loss = NAN;
    h->summary.train_accuracy = NAN;
    h->summary.val_loss = NAN;
    h->summary.val_auc = NAN;
}

/* Seals the fixture's weights from site-a (hop 0) to site-b and site-c. */
static void seal_ab(struct fixture *fx, struct bundle_info *info)
{
    struct bundle_header h;
    char err[CWT_ERRLEN];

    base_header(&h, 0, 0, "site-b");
    h.n_recipients = 2;
    snprintf(h.recipients[1], sizeof(h.recipients[1]), "site-c");
    assert_int_equal(
        bundle_seal(&fx->keys[0], &fx->roster, &h, fx->weights, fx->bundle, info, err, sizeof(err)),
        0);
}

static size_t ledger_count(struct fixture *fx)
{
    struct ledger_entry *all;
    size_t n;

    assert_int_equal(ledger_list(fx->st, &all, &n), 0);
    free(all);
    return n;
}

static int exists(const char *path)
{
    struct stat sb;

    return stat(path, &sb) == 0;
}

/* Opens path as site-b and requires rule `want` with `needle` in the message, no output file
 * and an unchanged ledger. */
static void expect_open_fails(struct fixture *fx, const char *path, int want, const char *needle)
{
    struct bundle_info info;
    char err[CWT_ERRLEN];
    size_t before = ledger_count(fx);
    int rc = bundle_open(&fx->keys[1], &fx->roster, fx->st, path, fx->out, NULL, &info, err,
                         sizeof(err));

    if (rc != want || (needle != NULL && strstr(err, needle) == NULL))
        fail_msg("want %d (%s) with \"%s\", got %d: %s", want, cwt_strerror(want),
                 needle ? needle : "", rc, err);
    assert_false(exists(fx->out));
    assert_int_equal(ledger_count(fx), before);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    uint8_t *buf;

    assert_int_equal(file_read_all(path, 1u << 30, &buf, len, NULL, 0), 0);
    return buf;
}

static void spit(const char *path, const uint8_t *buf, size_t len)
{
    assert_int_equal(file_write_atomic(path, buf, len, 0644, NULL, 0), 0);
}

/* Re-signs a (modified, version 2) image in place with signer under the bundle context: new
 * key id and signature. */
static void resign(uint8_t *buf, size_t len, const struct site_keys *signer)
{
    uint8_t digest[64];

    memcpy(buf + len - 72, signer->key_id, 8);
    crypto_generichash(digest, 64, buf, len - 64, NULL, 0);
    assert_int_equal(keyops_sign_sk(signer->sign_sk, KEYOPS_CTX_BUNDLE, digest, buf + len - 64), 0);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Offsets of the parts of a file image. */
struct layout {
    uint32_t hlen;
    size_t entries, payload, chunk[8], n_chunks, trailer;
};

static void layout_of(const uint8_t *buf, size_t len, uint64_t payload_len, struct layout *l)
{
    uint16_t n;

    l->hlen = (uint32_t)buf[8] | (uint32_t)buf[9] << 8 | (uint32_t)buf[10] << 16 |
              (uint32_t)buf[11] << 24;
    n = (uint16_t)(buf[12 + l->hlen] | buf[13 + l->hlen] << 8);
    l->entries = 12 + l->hlen + 2;
    l->payload = l->entries + (size_t)n * 88;
    l->n_chunks = payload_len == 0 ? 1 : (payload_len + MIB - 1) / MIB;
    for (size_t i = 0; i < l->n_chunks; i++)
        l->chunk[i] = l->payload + 24 + i * (MIB + 17);
    l->trailer = len - 72;
}

/* ------------------------------------------------------------------ independent writer */

/* Writes a bundle the way docs/bundle-format.md says, from a fully filled header, encrypting
 * `enc_len` bytes of payload as chunks and then emitting the chunks listed in order[]. */
static void craft(const char *path, const struct bundle_header *h, const uint8_t *payload,
                  size_t enc_len, const int *order, size_t n_order, const struct cwt_roster *r,
                  const struct site_keys *signer)
{
    crypto_secretstream_xchacha20poly1305_state ss;
    uint8_t key[32], hdr[BUNDLE_HEADER_MAX], *chunks[16], *img;
    size_t chunk_len[16], hlen, k = enc_len == 0 ? 1 : (enc_len + MIB - 1) / MIB, pos = 0;
    size_t total;

    assert_true(k <= 16);
    assert_int_equal(bundle_header_encode(h, hdr, sizeof(hdr), &hlen), 0);
    crypto_secretstream_xchacha20poly1305_keygen(key);
    total = 12 + hlen + 2 + h->n_recipients * 88 + 24 + n_order * (MIB + 17) + 72;
    img = malloc(total);
    assert_non_null(img);
    memcpy(img, "CWTB", 4);
    put16(img + 4, 2); /* version 2: signed under the bundle context */
    put16(img + 6, 0);
    put32(img + 8, (uint32_t)hlen);
    memcpy(img + 12, hdr, hlen);
    pos = 12 + hlen;
    put16(img + pos, (uint16_t)h->n_recipients);
    pos += 2;
    for (uint32_t i = 0; i < h->n_recipients; i++) {
        const struct cwt_roster_site *s = &r->sites[roster_find_site(r, h->recipients[i])];
        memcpy(img + pos, s->key_id, 8);
        assert_int_equal(crypto_box_seal(img + pos + 8, key, 32, s->box_pk), 0);
        pos += 88;
    }
    crypto_secretstream_xchacha20poly1305_init_push(&ss, img + pos, key);
    pos += 24;
    for (size_t i = 0; i < k; i++) {
        size_t n = enc_len - i * MIB < MIB ? enc_len - i * MIB : MIB;
        chunks[i] = malloc(n + 17);
        chunk_len[i] = n + 17;
        crypto_secretstream_xchacha20poly1305_push(
            &ss, chunks[i], NULL, payload + i * MIB, n, hdr, hlen,
            i + 1 == k ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0);
    }
    for (size_t i = 0; i < n_order; i++) {
        memcpy(img + pos, chunks[order[i]], chunk_len[order[i]]);
        pos += chunk_len[order[i]];
    }
    total = pos + 72;
    resign(img, total, signer);
    spit(path, img, total);
    for (size_t i = 0; i < k; i++)
        free(chunks[i]);
    free(img);
}

/* A header for craft(): everything seal would fill, for payload p of len bytes. */
static void craft_header(struct fixture *fx, struct bundle_header *h, const uint8_t *p, size_t len)
{
    base_header(h, 0, 0, "site-b");
    randombytes_buf(h->bundle_id, 16);
    snprintf(h->federation, sizeof(h->federation), "%s", fx->roster.federation);
    assert_int_equal(roster_fingerprint(&fx->roster, h->roster_fp), 0);
    snprintf(h->sender, sizeof(h->sender), "site-a");
    h->created = cwt_now();
    h->expires = h->created + 3600;
    h->payload_len = len;
    crypto_generichash(h->payload_hash, 32, p, len, NULL, 0);
}

/* ------------------------------------------------------------------ tests */

static void test_round_trip(void **state)
{
    struct fixture *fx = *state;
    struct bundle_info sealed, opened, ver;
    char err[CWT_ERRLEN];
    uint8_t *a, *b, fh[32];
    size_t alen, blen;

    seal_ab(fx, &sealed);
    assert_int_equal(sealed.n_chunks, 3);
    assert_int_equal(bundle_verify(&fx->roster, fx->bundle, &ver, err, sizeof(err)), 0);
    assert_memory_equal(ver.file_hash, sealed.file_hash, 32);
    assert_int_equal(bundle_hash_file(fx->bundle, fh, err, sizeof(err)), 0);
    assert_memory_equal(fh, sealed.file_hash, 32);
    assert_int_equal(ver.sender_index, 0);
    assert_string_equal(ver.hdr.recipients[1], "site-c");
    assert_true(isnan(ver.hdr.summary.val_auc));
    assert_true(ver.hdr.summary.val_accuracy == 0.75);
    assert_int_equal(bundle_open(&fx->keys[1], &fx->roster, fx->st, fx->bundle, fx->out,
                                 sealed.hdr.model_fp, &opened, err, sizeof(err)),
                     0);
    a = slurp(fx->weights, &alen);
    b = slurp(fx->out, &blen);
    assert_int_equal(alen, blen);
    assert_memory_equal(a, b, alen);
    free(a);
    free(b);
    assert_int_equal(bundle_accept(fx->st, &opened), 0);
    assert_int_equal(ledger_count(fx), 1);
    unlink(fx->out);
    /* site-c, the second recipient, can open it too (with no ledger). */
    assert_int_equal(bundle_open(&fx->keys[2], &fx->roster, NULL, fx->bundle, fx->out, NULL,
                                 &opened, err, sizeof(err)),
                     0);
    unlink(fx->out);
    expect_open_fails(fx, fx->bundle, CWT_EB_REPLAY, "replay");
}

static void test_seal_refuses(void **state)
{
    struct fixture *fx = *state;
    struct bundle_header h;
    char err[CWT_ERRLEN], nan_path[700];

    base_header(&h, 0, 1, "site-b");
    assert_int_equal(
        bundle_seal(&fx->keys[0], &fx->roster, &h, fx->weights, fx->bundle, NULL, err, sizeof(err)),
        CWT_EINVAL); /* hop is not site-a's place */
    base_header(&h, 1, 0, "site-b");
    assert_int_equal(
        bundle_seal(&fx->keys[0], &fx->roster, &h, fx->weights, fx->bundle, NULL, err, sizeof(err)),
        CWT_EINVAL); /* sequence 3 without a parent */
    base_header(&h, 0, 0, "site-q");
    assert_int_equal(
        bundle_seal(&fx->keys[0], &fx->roster, &h, fx->weights, fx->bundle, NULL, err, sizeof(err)),
        CWT_EINVAL);
    snprintf(nan_path, sizeof(nan_path), "%s/nan.safetensors", fx->dir);
    write_weights(nan_path, 4096, 1);
    base_header(&h, 0, 0, "site-b");
    assert_int_equal(
        bundle_seal(&fx->keys[0], &fx->roster, &h, nan_path, fx->bundle, NULL, err, sizeof(err)),
        CWT_ENUMERIC);
    assert_false(exists(fx->bundle));
}

static void test_bit_flips(void **state)
{
    struct fixture *fx = *state;
    struct bundle_info info;
    struct layout l;
    char path[700];
    uint8_t *img;
    size_t len;

    seal_ab(fx, &info);
    img = slurp(fx->bundle, &len);
    layout_of(img, len, info.hdr.payload_len, &l);
    snprintf(path, sizeof(path), "%s/t.cwtb", fx->dir);
    /* Header: a TLV tag byte (syntax), the roster fingerprint, a value byte. */
    img[12] ^= 0x10;
    spit(path, img, len);
    expect_open_fails(fx, path, CWT_EB_HEADER, "tag");
    img[12] ^= 0x10;
    img[12 + 4 + 16 + 4 + 4 + 8 + 4] ^= 0x01; /* inside the roster fingerprint value */
    spit(path, img, len);
    expect_open_fails(fx, path, CWT_EB_ROSTER, "roster");
    img[12 + 4 + 16 + 4 + 4 + 8 + 4] ^= 0x01;
    img[12 + 4 + 3] ^= 0x01; /* inside the bundle id */
    spit(path, img, len);
    expect_open_fails(fx, path, CWT_EB_SIGNATURE, "signature");
    img[12 + 4 + 3] ^= 0x01;
    /* Each recipient entry: key id and sealed key. */
    for (int e = 0; e < 2; e++) {
        for (size_t off = 0; off < 88; off += 40) {
            img[l.entries + (size_t)e * 88 + off] ^= 0x80;
            spit(path, img, len);
            expect_open_fails(fx, path, CWT_EB_SIGNATURE, "signature");
            img[l.entries + (size_t)e * 88 + off] ^= 0x80;
        }
    }
    /* The secretstream header and each chunk, signed as they are... */
    img[l.payload + 3] ^= 1;
    spit(path, img, len);
    expect_open_fails(fx, path, CWT_EB_SIGNATURE, NULL);
    img[l.payload + 3] ^= 1;
    for (size_t c = 0; c < l.n_chunks; c++) {
        img[l.chunk[c] + 1000] ^= 4;
        spit(path, img, len);
        expect_open_fails(fx, path, CWT_EB_SIGNATURE, "signature");
        /* ...and re-signed, so that the chunk's own authentication is what fails. */
        resign(img, len, &fx->keys[0]);
        spit(path, img, len);
        {
            char want[32];
            snprintf(want, sizeof(want), "chunk %zu ", c);
            expect_open_fails(fx, path, CWT_EB_DECRYPT, want);
        }
        img[l.chunk[c] + 1000] ^= 4;
        resign(img, len, &fx->keys[0]);
    }
    /* The signature itself, and the signer key id. */
    img[len - 5] ^= 0x20;
    spit(path, img, len);
    expect_open_fails(fx, path, CWT_EB_SIGNATURE, "signature");
    img[len - 5] ^= 0x20;
    img[l.trailer] ^= 0x20;
    spit(path, img, len);
    expect_open_fails(fx, path, CWT_EB_SIGNER, "not in the roster");
    img[l.trailer] ^= 0x20;
    /* Unchanged, it still opens. */
    spit(path, img, len);
    assert_int_equal(
        bundle_open(&fx->keys[1], &fx->roster, fx->st, path, fx->out, NULL, &info, NULL, 0), 0);
    free(img);
}

static void test_truncation_and_lengths(void **state)
{
    struct fixture *fx = *state;
    struct bundle_info info;
    struct layout l;
    char path[700];
    uint8_t *img, *big;
    size_t len, cuts[64], n = 0;
    unsigned seed = (unsigned)time(NULL);

    seal_ab(fx, &info);
    img = slurp(fx->bundle, &len);
    layout_of(img, len, info.hdr.payload_len, &l);
    snprintf(path, sizeof(path), "%s/t.cwtb", fx->dir);
    /* Every structural boundary, a byte either side where it makes sense. */
    size_t marks[] = {0,
                      4,
                      6,
                      8,
                      12,
                      12 + l.hlen / 2,
                      12 + l.hlen,
                      l.entries,
                      l.entries + 88,
                      l.payload,
                      l.payload + 24,
                      l.chunk[1],
                      l.chunk[2],
                      l.trailer,
                      l.trailer + 8,
                      len - 1};
    for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
        cuts[n++] = marks[i];
    print_message("random truncation offsets from seed %u\n", seed);
    srand(seed);
    for (int i = 0; i < 16; i++)
        cuts[n++] = (size_t)rand() % len;
    for (size_t i = 0; i < n; i++) {
        spit(path, img, cuts[i]);
        expect_open_fails(fx, path, CWT_EB_FRAMING, cuts[i] < BUNDLE_MIN_SIZE ? "shorter" : NULL);
    }
    /* Appended bytes. */
    big = malloc(len + 1);
    memcpy(big, img, len);
    big[len] = 0;
    spit(path, big, len + 1);
    expect_open_fails(fx, path, CWT_EB_FRAMING, "declares");
    free(big);
    /* Length fields larger than the file: header length, recipient count, payload length. */
    img[10] = 0x7f;
    spit(path, img, len);
    expect_open_fails(fx, path, CWT_EB_FRAMING, "header length");
    img[10] = 0;
    img[l.entries - 2] = 9;
    spit(path, img, len);
    expect_open_fails(fx, path, CWT_EB_FRAMING, "recipient");
    img[l.entries - 2] = 2;
    /* Payload length (tag 15): its value's 5th byte. */
    {
        uint8_t *p = img + 12;
        size_t pos = 0;
        while (pos < l.hlen && !(p[pos] == 15 && p[pos + 1] == 0))
            pos += 4 + (size_t)(p[pos + 2] | p[pos + 3] << 8);
        assert_true(pos < l.hlen);
        p[pos + 4 + 4] ^= 1;
        spit(path, img, len);
        expect_open_fails(fx, path, CWT_EB_FRAMING, "declares");
        p[pos + 4 + 4] ^= 1;
    }
    free(img);
}

/* Rebuilds the file with its header replaced by hdr (of hlen bytes). */
static void with_header(const char *path, const uint8_t *img, size_t len, uint32_t old_hlen,
                        const uint8_t *hdr, size_t hlen)
{
    size_t rest = len - 12 - old_hlen, total = 12 + hlen + rest;
    uint8_t *out = malloc(total);

    memcpy(out, img, 12);
    put32(out + 8, (uint32_t)hlen);
    memcpy(out + 12, hdr, hlen);
    memcpy(out + 12 + hlen, img + 12 + old_hlen, rest);
    spit(path, out, total);
    free(out);
}

static void test_header_syntax(void **state)
{
    struct fixture *fx = *state;
    struct bundle_info info;
    struct layout l;
    char path[700];
    uint8_t *img, hdr[BUNDLE_HEADER_MAX];
    size_t len;

    seal_ab(fx, &info);
    img = slurp(fx->bundle, &len);
    layout_of(img, len, info.hdr.payload_len, &l);
    snprintf(path, sizeof(path), "%s/t.cwtb", fx->dir);
    /* Unknown tag appended. */
    memcpy(hdr, img + 12, l.hlen);
    put16(hdr + l.hlen, 17);
    put16(hdr + l.hlen + 2, 1);
    hdr[l.hlen + 4] = 0;
    with_header(path, img, len, l.hlen, hdr, l.hlen + 5);
    expect_open_fails(fx, path, CWT_EB_HEADER, "unknown tag 17");
    /* Duplicated tag: the summary (16, the last) twice. */
    memcpy(hdr + l.hlen, hdr + l.hlen - 76, 76);
    with_header(path, img, len, l.hlen, hdr, l.hlen + 76);
    expect_open_fails(fx, path, CWT_EB_HEADER, "appears twice");
    /* Missing required tag: drop the summary. */
    with_header(path, img, len, l.hlen, hdr, l.hlen - 76);
    expect_open_fails(fx, path, CWT_EB_HEADER, "missing");
    /* Wrong magic, version, flags. */
    img[0] = 'X';
    spit(path, img, len);
    expect_open_fails(fx, path, CWT_EB_MAGIC, "not a cwt bundle");
    img[0] = 'C';
    img[4] = 3;
    spit(path, img, len);
    expect_open_fails(fx, path, CWT_EB_MAGIC, "version 3");
    img[4] = 0;
    spit(path, img, len);
    expect_open_fails(fx, path, CWT_EB_MAGIC, "version 0");
    img[4] = BUNDLE_VERSION;
    img[6] = 1;
    spit(path, img, len);
    expect_open_fails(fx, path, CWT_EB_MAGIC, "flags");
    free(img);
}

static void test_signers_and_roster(void **state)
{
    struct fixture *fx = *state;
    struct bundle_info info;
    struct cwt_roster *other;
    char path[700], err[CWT_ERRLEN];
    uint8_t *img;
    size_t len;

    seal_ab(fx, &info);
    img = slurp(fx->bundle, &len);
    snprintf(path, sizeof(path), "%s/t.cwtb", fx->dir);
    resign(img, len, &fx->keys[3]); /* the outsider */
    spit(path, img, len);
    expect_open_fails(fx, path, CWT_EB_SIGNER, "not in the roster");
    resign(img, len, &fx->keys[2]); /* site-c, a member, but the header names site-a */
    spit(path, img, len);
    expect_open_fails(fx, path, CWT_EB_SIGNER, "names site-a as its sender");
    free(img);
    /* Another roster: one more site changes the fingerprint. */
    other = malloc(sizeof(*other));
    *other = fx->roster;
    roster_add(other, &fx->keys[3]);
    assert_int_equal(bundle_verify(other, fx->bundle, &info, err, sizeof(err)), CWT_EB_ROSTER);
    other->recipe.classes = 3;
    other->n_sites = N_SITES;
    assert_int_equal(bundle_verify(other, fx->bundle, &info, err, sizeof(err)), CWT_EB_ROSTER);
    free(other);
    /* This site not a recipient: sealed for site-b only, opened by site-c. */
    {
        struct bundle_header h;
        base_header(&h, 0, 0, "site-b");
        assert_int_equal(
            bundle_seal(&fx->keys[0], &fx->roster, &h, fx->weights, path, NULL, err, sizeof(err)),
            0);
        assert_int_equal(bundle_open(&fx->keys[2], &fx->roster, NULL, path, fx->out, NULL, &info,
                                     err, sizeof(err)),
                         CWT_EB_RECIPIENT);
        assert_false(exists(fx->out));
    }
}

static void test_time_and_ledger_rules(void **state)
{
    struct fixture *fx = *state;
    struct bundle_header h;
    struct bundle_info info, b1;
    char err[CWT_ERRLEN], p0[700], p1[700], p2[700], pf[700];

    snprintf(p0, sizeof(p0), "%s/s0.cwtb", fx->dir);
    snprintf(p1, sizeof(p1), "%s/s1.cwtb", fx->dir);
    snprintf(p2, sizeof(p2), "%s/s2.cwtb", fx->dir);
    snprintf(pf, sizeof(pf), "%s/fork.cwtb", fx->dir);
    /* Expired. */
    base_header(&h, 0, 0, "site-b");
    h.created = cwt_now() - 7200;
    h.expires = cwt_now() - 3600;
    assert_int_equal(
        bundle_seal(&fx->keys[0], &fx->roster, &h, fx->weights, p0, NULL, err, sizeof(err)), 0);
    expect_open_fails(fx, p0, CWT_EB_EXPIRED, "expired");
    /* Sequence 0 from a, then sequence 3 (cycle 1) from a with 0 as parent: a gap that the
     * parent rule sees, since b knows nothing at sequence 2 it cannot judge... */
    base_header(&h, 0, 0, "site-b");
    assert_int_equal(
        bundle_seal(&fx->keys[0], &fx->roster, &h, fx->weights, p0, &info, err, sizeof(err)), 0);
    /* b opens sequence 0, then seals sequence 1 (b is hop 1) with 0 as parent. */
    assert_int_equal(
        bundle_open(&fx->keys[1], &fx->roster, fx->st, p0, fx->out, NULL, &info, err, sizeof(err)),
        0);
    assert_int_equal(bundle_accept(fx->st, &info), 0);
    unlink(fx->out);
    base_header(&h, 0, 1, "site-c");
    h.has_parent = 1;
    memcpy(h.parent_hash, info.file_hash, 32);
    assert_int_equal(
        bundle_seal(&fx->keys[1], &fx->roster, &h, fx->weights, p1, &b1, err, sizeof(err)), 0);
    assert_int_equal(bundle_record_sent(fx->st, &b1), 0);
    /* c seals sequence 2 from b's bundle, to b (as if a were skipped: still a valid link). */
    base_header(&h, 0, 2, "site-b");
    h.has_parent = 1;
    memcpy(h.parent_hash, b1.file_hash, 32);
    assert_int_equal(
        bundle_seal(&fx->keys[2], &fx->roster, &h, fx->weights, p2, &info, err, sizeof(err)), 0);
    /* A fork: c seals another sequence 2 whose parent is not what b sent at sequence 1. */
    memset(h.parent_hash, 0x11, 32);
    assert_int_equal(
        bundle_seal(&fx->keys[2], &fx->roster, &h, fx->weights, pf, NULL, err, sizeof(err)), 0);
    expect_open_fails(fx, pf, CWT_EB_PARENT, "fork");
    /* The good sequence 2 opens; afterwards the old sequence 0 is a replay and a fresh
     * sequence-0 bundle is a rollback. */
    assert_int_equal(
        bundle_open(&fx->keys[1], &fx->roster, fx->st, p2, fx->out, NULL, &info, err, sizeof(err)),
        0);
    assert_int_equal(bundle_accept(fx->st, &info), 0);
    assert_int_equal(bundle_accept(fx->st, &info), CWT_EB_REPLAY);
    unlink(fx->out);
    expect_open_fails(fx, p0, CWT_EB_REPLAY, "replay");
    base_header(&h, 0, 0, "site-b");
    assert_int_equal(
        bundle_seal(&fx->keys[0], &fx->roster, &h, fx->weights, p0, NULL, err, sizeof(err)), 0);
    expect_open_fails(fx, p0, CWT_EB_ROLLBACK, "not newer");
    {
        uint64_t last;
        uint8_t head[32];
        assert_int_equal(ledger_last(fx->st, "fed-test", &last, head), 0);
        assert_int_equal(last, 2);
        assert_memory_equal(head, info.file_hash, 32);
    }
    /* Model fingerprint mismatch (rule after the payload hash). */
    base_header(&h, 1, 0, "site-b");
    h.has_parent = 1;
    memcpy(h.parent_hash, info.file_hash, 32);
    assert_int_equal(
        bundle_seal(&fx->keys[0], &fx->roster, &h, fx->weights, p0, NULL, err, sizeof(err)), 0);
    {
        uint8_t want[32];
        size_t before = ledger_count(fx);
        memset(want, 0x43, 32);
        assert_int_equal(bundle_open(&fx->keys[1], &fx->roster, fx->st, p0, fx->out, want, &info,
                                     err, sizeof(err)),
                         CWT_EB_MODEL);
        assert_false(exists(fx->out));
        assert_int_equal(ledger_count(fx), before);
    }
}

static void test_chunks_and_payload(void **state)
{
    struct fixture *fx = *state;
    struct bundle_header h;
    char path[700], nan_path[700];
    uint8_t *p;
    size_t plen;
    static const int all[] = {0, 1, 2}, dropped[] = {0, 2}, reordered[] = {1, 0, 2},
                     duplicated[] = {0, 0, 2}, no_final[] = {0, 1};

    /* Exactly three full chunks, so that chunk lists of any order keep the framing. */
    snprintf(nan_path, sizeof(nan_path), "%s/w3.safetensors", fx->dir);
    write_weights(nan_path, 3 * MIB, 0);
    p = slurp(nan_path, &plen);
    assert_int_equal(plen, 3 * MIB);
    snprintf(path, sizeof(path), "%s/c.cwtb", fx->dir);

    craft_header(fx, &h, p, plen);
    craft(path, &h, p, plen, all, 3, &fx->roster, &fx->keys[0]);
    {
        struct bundle_info info;
        char err[CWT_ERRLEN];
        /* The independent writer agrees with the reader: the crafted bundle opens. */
        assert_int_equal(bundle_open(&fx->keys[1], &fx->roster, NULL, path, fx->out, NULL, &info,
                                     err, sizeof(err)),
                         0);
        unlink(fx->out);
    }
    craft_header(fx, &h, p, plen);
    h.payload_len = 2 * MIB; /* framing of two chunks */
    craft(path, &h, p, plen, dropped, 2, &fx->roster, &fx->keys[0]);
    expect_open_fails(fx, path, CWT_EB_DECRYPT, "chunk 1 ");
    craft_header(fx, &h, p, plen);
    craft(path, &h, p, plen, reordered, 3, &fx->roster, &fx->keys[0]);
    expect_open_fails(fx, path, CWT_EB_DECRYPT, "chunk 0 ");
    craft(path, &h, p, plen, duplicated, 3, &fx->roster, &fx->keys[0]);
    expect_open_fails(fx, path, CWT_EB_DECRYPT, "chunk 1 ");
    craft_header(fx, &h, p, plen);
    h.payload_len = 2 * MIB;
    craft(path, &h, p, plen, no_final, 2, &fx->roster, &fx->keys[0]);
    expect_open_fails(fx, path, CWT_EB_DECRYPT, "not tagged final");
    /* Payload hash mismatch. */
    craft_header(fx, &h, p, plen);
    h.payload_hash[0] ^= 1;
    craft(path, &h, p, plen, all, 3, &fx->roster, &fx->keys[0]);
    expect_open_fails(fx, path, CWT_EB_PAYLOAD, "hashes to");
    free(p);
    /* NaN and Inf in the tensors, and a payload that is not safetensors at all. */
    for (int poison = -1; poison <= 1; poison += 2) {
        write_weights(nan_path, 4096, poison);
        p = slurp(nan_path, &plen);
        craft_header(fx, &h, p, plen);
        craft(path, &h, p, plen, all, 1, &fx->roster, &fx->keys[0]);
        expect_open_fails(fx, path, CWT_EB_TENSORS, "NaN or Inf");
        free(p);
    }
    p = calloc(1, 5000);
    craft_header(fx, &h, p, 5000);
    craft(path, &h, p, 5000, all, 1, &fx->roster, &fx->keys[0]);
    expect_open_fails(fx, path, CWT_EB_TENSORS, "safetensors");
    free(p);
}

/* bundle_json: every member of docs/schemas/bundle-header.json, a non-finite metric as null,
 * and the header's strings UTF-8-clean even if decoding ever let other bytes through; the JSON
 * mode of bundle_print is the same object on one line. */
static void test_json(void **state)
{
    struct bundle_info *info = calloc(1, sizeof(*info));
    char *text = NULL;
    size_t len = 0;
    json_t *o, *back, *sum;
    FILE *f;

    (void)state;
    assert_non_null(info);
    snprintf(info->hdr.federation, sizeof(info->hdr.federation), "fed");
    snprintf(info->hdr.sender, sizeof(info->hdr.sender), "caf\xe9");
    info->hdr.n_recipients = 2;
    snprintf(info->hdr.recipients[0], sizeof(info->hdr.recipients[0]), "b");
    snprintf(info->hdr.recipients[1], sizeof(info->hdr.recipients[1]), "c");
    info->n_entries = 1; /* the second recipient has no entry: key_id "" */
    info->hdr.sequence = 7;
    info->hdr.summary.val_loss = NAN;
    info->hdr.summary.val_auc = INFINITY;
    info->hdr.summary.val_accuracy = 0.5;
    info->version = 2;

    o = bundle_json(info, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "sender")), "caf\xef\xbf\xbd");
    assert_int_equal(json_array_size(json_object_get(o, "recipients")), 2);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(o, "recipients"), 1), "key_id")),
                        "");
    assert_true(json_is_null(json_object_get(o, "parent")));
    assert_null(json_object_get(o, "signer_site")); /* no roster: no name for the key */
    assert_int_equal(json_integer_value(json_object_get(o, "sequence")), 7);
    sum = json_object_get(o, "summary");
    assert_true(json_is_null(json_object_get(sum, "val_loss")));
    assert_true(json_is_null(json_object_get(sum, "val_auc")));
    assert_true(json_real_value(json_object_get(sum, "val_accuracy")) == 0.5);

    f = open_memstream(&text, &len);
    assert_non_null(f);
    assert_int_equal(bundle_print(f, info, NULL, 1), 0);
    assert_int_equal(fclose(f), 0);
    assert_null(strchr(text, '\n'));
    back = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(back);
    assert_true(json_equal(o, back));
    json_decref(back);
    json_decref(o);
    free(text);
    free(info);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seal_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bit_flips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncation_and_lengths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_syntax, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signers_and_roster, setup, teardown),
        cmocka_unit_test_setup_teardown(test_time_and_ledger_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunks_and_payload, setup, teardown),
        cmocka_unit_test(test_json),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
