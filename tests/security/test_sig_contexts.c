/*
 * test_sig_contexts.c - issue 18, L7: a site key signs bundles and audit exports, each under
 * its own signature context (crypto/keyops.h), so that a signature obtained for one can never
 * be presented as the other. Also: files of the formats before the contexts (bundle v1, audit
 * export v1, signed over the bare digest) still verify, and relabelling a new file as the old
 * format (a downgrade) breaks its signature.
 */
#include "crypto/keyops.h"
#include "daemon/proto.h"
#include "storage/store_audit.h"
#include "tests/security/sec_fixture.h"

static uint8_t *slurp(const char *path, size_t *len)
{
    uint8_t *buf;
    FILE *f = fopen(path, "rb");

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    *len = (size_t)ftell(f);
    rewind(f);
    buf = malloc(*len);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, *len, f), *len);
    fclose(f);
    return buf;
}

/* Seals a bundle from site-a to site-b into fx->bundle; returns its bytes. */
static uint8_t *seal(struct sec_fixture *fx, size_t *len)
{
    struct bundle_header h;
    uint8_t fp[32];
    char err[CWT_ERRLEN];

    memset(fp, 0x42, 32);
    sec_header(&h, fp);
    sec_write_payload(fx->weights);
    assert_int_equal(
        bundle_seal(&fx->keys[0], &fx->roster, &h, fx->weights, fx->bundle, NULL, err, sizeof(err)),
        0);
    return slurp(fx->bundle, len);
}

/* The signed digest of a bundle image: BLAKE2b-512 of everything before the signature. */
static void bundle_digest(const uint8_t *img, size_t len, uint8_t digest[64])
{
    crypto_generichash(digest, 64, img, len - 64, NULL, 0);
}

static int verify_image(struct sec_fixture *fx, const uint8_t *img, size_t len, char *err,
                        size_t errlen)
{
    assert_int_equal(file_write_atomic(fx->bundle, img, len, 0644, NULL, 0), 0);
    return bundle_verify(&fx->roster, fx->bundle, NULL, err, errlen);
}

static void test_new_bundles_are_version_2_under_the_bundle_context(void **state)
{
    struct sec_fixture *fx = *state;
    uint8_t *img, digest[64];
    size_t len;

    img = seal(fx, &len);
    assert_int_equal(img[4] | img[5] << 8, 2);
    bundle_digest(img, len, digest);
    assert_int_equal(keyops_verify(KEYOPS_CTX_BUNDLE, digest, img + len - 64, fx->keys[0].sign_pk),
                     0);
    assert_int_equal(
        keyops_verify(KEYOPS_CTX_AUDIT_EXPORT, digest, img + len - 64, fx->keys[0].sign_pk),
        CWT_EB_SIGNATURE);
    assert_int_equal(keyops_verify(KEYOPS_CTX_LEGACY, digest, img + len - 64, fx->keys[0].sign_pk),
                     CWT_EB_SIGNATURE);
    free(img);
}

/* An audit-export signature over a bundle's digest (what a site would hand out if it signed
 * anything it was given as an "audit export") does not make the bundle valid. */
static void test_audit_export_signature_is_not_a_bundle_signature(void **state)
{
    struct sec_fixture *fx = *state;
    uint8_t *img, digest[64];
    char err[CWT_ERRLEN];
    size_t len;

    img = seal(fx, &len);
    bundle_digest(img, len, digest);
    assert_int_equal(
        keyops_sign_sk(fx->keys[0].sign_sk, KEYOPS_CTX_AUDIT_EXPORT, digest, img + len - 64), 0);
    assert_int_equal(verify_image(fx, img, len, err, sizeof(err)), CWT_EB_SIGNATURE);
    assert_non_null(strstr(err, "signature does not verify"));
    /* The same digest signed under the bundle context verifies: only the context differs. */
    assert_int_equal(keyops_sign_sk(fx->keys[0].sign_sk, KEYOPS_CTX_BUNDLE, digest, img + len - 64),
                     0);
    assert_int_equal(verify_image(fx, img, len, err, sizeof(err)), 0);
    free(img);
}

/* The export text of a made-up log, without its signature line. */
static char *export_text(const char *magic, size_t *len)
{
    struct audit_record r;
    char *text = NULL, prev[65], hash[65];

    memset(&r, 0, sizeof(r));
    r.seq = 1;
    r.time = 1700000000;
    snprintf(r.event, sizeof(r.event), "key-load");
    snprintf(r.details, sizeof(r.details), "forged");
    assert_int_equal(audit_record_hash(&r, r.hash), 0);
    cwt_hex(r.prev_hash, 32, prev);
    cwt_hex(r.hash, 32, hash);
    assert_true(asprintf(&text,
                         "%s\nkey cwt-site-v1 site-a AAAA\ncreated 1700000001\nrecords 1\n"
                         "record 1 1700000000 key-load %s %s forged\n",
                         magic, prev, hash) > 0);
    *len = strlen(text);
    return text;
}

/* Appends the signature line for sig; returns the whole export. */
static uint8_t *with_signature(const char *text, size_t len, const uint8_t sig[64], size_t *total)
{
    char hex[129];
    uint8_t *buf = malloc(len + 139 + 1);

    assert_non_null(buf);
    cwt_hex(sig, 64, hex);
    memcpy(buf, text, len);
    snprintf((char *)buf + len, 140, "signature %s\n", hex);
    *total = len + 139;
    return buf;
}

/* A bundle signature over an export's digest (what a compromised monitor gets from the key
 * process when it passes a forged export off as a bundle) does not make the export valid. */
static void test_bundle_signature_is_not_an_audit_export_signature(void **state)
{
    struct sec_fixture *fx = *state;
    struct audit_export_info info;
    uint8_t digest[64], sig[64], *buf;
    char err[CWT_ERRLEN];
    size_t len, total;
    char *text = export_text(AUDIT_EXPORT_MAGIC, &len);

    crypto_generichash(digest, 64, (const uint8_t *)text, len, NULL, 0);
    assert_int_equal(keyops_sign_sk(fx->keys[0].sign_sk, KEYOPS_CTX_BUNDLE, digest, sig), 0);
    buf = with_signature(text, len, sig, &total);
    assert_int_equal(
        audit_export_verify(buf, total, fx->keys[0].sign_pk, &info, NULL, NULL, err, sizeof(err)),
        CWT_EB_SIGNATURE);
    free(buf);
    assert_int_equal(keyops_sign_sk(fx->keys[0].sign_sk, KEYOPS_CTX_AUDIT_EXPORT, digest, sig), 0);
    buf = with_signature(text, len, sig, &total);
    assert_int_equal(
        audit_export_verify(buf, total, fx->keys[0].sign_pk, &info, NULL, NULL, err, sizeof(err)),
        0);
    free(buf);
    free(text);
}

/* A version 1 bundle (signed over the bare digest, as before the contexts) still verifies and
 * opens; a version 2 bundle relabelled as version 1 does not. */
static void test_version_1_bundle_still_opens_and_downgrade_fails(void **state)
{
    struct sec_fixture *fx = *state;
    uint8_t *img, digest[64], fp[32];
    struct bundle_info info;
    char err[CWT_ERRLEN];
    size_t len;

    memset(fp, 0x42, 32);
    img = seal(fx, &len);
    img[4] = 1;
    assert_int_equal(verify_image(fx, img, len, err, sizeof(err)), CWT_EB_SIGNATURE);
    bundle_digest(img, len, digest);
    crypto_sign_detached(img + len - 64, NULL, digest, 64, fx->keys[0].sign_sk);
    assert_int_equal(verify_image(fx, img, len, err, sizeof(err)), 0);
    assert_int_equal(bundle_open(&fx->keys[1], &fx->roster, fx->st, fx->bundle, fx->out, fp, &info,
                                 err, sizeof(err)),
                     0);
    assert_int_equal(info.version, 1);
    assert_true(sec_exists(fx->out));
    free(img);
}

/* A v1 audit export (bare-digest signature) still verifies; a v2 one relabelled v1 does not. */
static void test_version_1_audit_export_still_verifies_and_downgrade_fails(void **state)
{
    struct sec_fixture *fx = *state;
    struct audit_export_info info;
    uint8_t digest[64], sig[64], *buf;
    char err[CWT_ERRLEN];
    size_t len, total;
    char *text = export_text(AUDIT_EXPORT_MAGIC_V1, &len);

    crypto_generichash(digest, 64, (const uint8_t *)text, len, NULL, 0);
    crypto_sign_detached(sig, NULL, digest, 64, fx->keys[0].sign_sk);
    buf = with_signature(text, len, sig, &total);
    assert_int_equal(
        audit_export_verify(buf, total, fx->keys[0].sign_pk, &info, NULL, NULL, err, sizeof(err)),
        0);
    assert_int_equal(info.n_records, 1);
    free(buf);
    /* The v1 label over a context signature: the legacy check refuses it. */
    assert_int_equal(keyops_sign_sk(fx->keys[0].sign_sk, KEYOPS_CTX_AUDIT_EXPORT, digest, sig), 0);
    buf = with_signature(text, len, sig, &total);
    assert_int_equal(
        audit_export_verify(buf, total, fx->keys[0].sign_pk, &info, NULL, NULL, err, sizeof(err)),
        CWT_EB_SIGNATURE);
    free(buf);
    free(text);
}

/* Nothing signs without a context: not the in-process signer, not the key process's protocol
 * (a request for context 0 or an unknown one does not even decode). */
static void test_no_context_free_signatures(void **state)
{
    struct sec_fixture *fx = *state;
    struct proto_msg m;
    uint8_t digest[64] = {1}, sig[64], buf[PROTO_MAX_MSG];
    char err[CWT_ERRLEN];
    int n;

    assert_int_equal(keyops_sign_sk(fx->keys[0].sign_sk, KEYOPS_CTX_LEGACY, digest, sig),
                     CWT_EINVAL);
    assert_int_equal(keyops_sign_sk(fx->keys[0].sign_sk, KEYOPS_CTX_MAX + 1, digest, sig),
                     CWT_EINVAL);
    for (uint32_t ctx = 0; ctx < 4; ctx++) {
        memset(&m, 0, sizeof(m));
        m.type = PROTO_KEY_SIGN;
        m.u.key_sign.context = ctx;
        n = proto_encode(&m, buf, sizeof(buf));
        assert_true(n > 0);
        if (ctx == KEYOPS_CTX_BUNDLE || ctx == KEYOPS_CTX_AUDIT_EXPORT)
            assert_int_equal(proto_decode(buf, (size_t)n, &m, err, sizeof(err)), 0);
        else
            assert_int_equal(proto_decode(buf, (size_t)n, &m, err, sizeof(err)), CWT_EFORMAT);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_bundles_are_version_2_under_the_bundle_context,
                                        sec_setup, sec_teardown),
        cmocka_unit_test_setup_teardown(test_audit_export_signature_is_not_a_bundle_signature,
                                        sec_setup, sec_teardown),
        cmocka_unit_test_setup_teardown(test_bundle_signature_is_not_an_audit_export_signature,
                                        sec_setup, sec_teardown),
        cmocka_unit_test_setup_teardown(test_version_1_bundle_still_opens_and_downgrade_fails,
                                        sec_setup, sec_teardown),
        cmocka_unit_test_setup_teardown(
            test_version_1_audit_export_still_verifies_and_downgrade_fails, sec_setup,
            sec_teardown),
        cmocka_unit_test_setup_teardown(test_no_context_free_signatures, sec_setup, sec_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
