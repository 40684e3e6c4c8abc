/*
 * test_l7_revocation.c - issue 18, L7: site-a's key is stolen; the federation gives site-a a
 * new key in every roster (cwtctl roster replace-key). From then on nothing signed with the
 * old key is accepted, whatever the thief puts in the file:
 *   - a bundle made before the replacement names the old roster fingerprint (CWT_EB_ROSTER);
 *   - a new bundle under the new roster, trailer naming the old key: the signer is not in
 *     the roster (CWT_EB_SIGNER);
 *   - the same naming the new key: the signature does not verify (CWT_EB_SIGNATURE);
 * while a bundle signed with the new key opens.
 */
#include "crypto/keyops.h"
#include "tests/security/sec_fixture.h"

/* What `roster replace-key site-a LINE` does to the roster. */
static void replace_key(struct cwt_roster *r, const struct site_keys *k)
{
    struct cwt_roster_site *s = &r->sites[0];

    memcpy(s->sign_pk, k->sign_pk, 32);
    memcpy(s->box_pk, k->box_pk, 32);
    assert_int_equal(
        keyline_format(s->id, s->sign_pk, s->box_pk, s->key_line, sizeof(s->key_line), s->key_id),
        0);
}

/* Seals fx->weights from site-a to site-b: signature by signer, header and trailer by
 * named (whose public keys and key id the file carries). */
static int seal_as(struct sec_fixture *fx, const struct site_keys *signer,
                   const struct site_keys *named, const char *path)
{
    struct bundle_header h;
    struct key_ops ops;
    uint8_t fp[32];
    char err[CWT_ERRLEN];

    memset(fp, 0x42, 32);
    sec_header(&h, fp);
    keyops_local(signer, &ops);
    return bundle_seal_ops(&ops, named, &fx->roster, &h, fx->weights, path, NULL, err, sizeof(err));
}

static void test_old_key_is_refused_after_replace_key(void **state)
{
    struct sec_fixture *fx = *state;
    struct site_keys stolen = fx->keys[0], fresh;
    struct bundle_info info;
    char before[700], err[CWT_ERRLEN];
    uint8_t fp[32];

    memset(fp, 0x42, 32);
    sec_write_payload(fx->weights);
    snprintf(before, sizeof(before), "%s/before.cwtb", fx->dir);
    assert_int_equal(seal_as(fx, &stolen, &stolen, before), 0);
    assert_int_equal(bundle_verify(&fx->roster, before, NULL, err, sizeof(err)), 0);

    sec_make_keys(&fresh, "site-a");
    replace_key(&fx->roster, &fresh);

    /* Made before the replacement: another roster. */
    assert_int_equal(bundle_verify(&fx->roster, before, NULL, err, sizeof(err)), CWT_EB_ROSTER);

    /* The thief seals under the new roster. The sealing code would refuse a key that is not
     * the roster's, so the file is made as a thief would: header of the new roster, content
     * key sealed to site-b, signature by the stolen key. Naming the old key: */
    assert_int_equal(seal_as(fx, &stolen, &stolen, fx->bundle), CWT_ECONFIG);
    {
        /* bundle_seal_ops checks the named key against the roster; name the new one, then
         * put the old key id in the trailer by hand (re-signing with the stolen key). */
        uint8_t *img, digest[64];
        FILE *f;
        long len;

        assert_int_equal(seal_as(fx, &stolen, &fresh, fx->bundle), 0);
        assert_int_equal(bundle_verify(&fx->roster, fx->bundle, NULL, err, sizeof(err)),
                         CWT_EB_SIGNATURE);
        f = fopen(fx->bundle, "r+b");
        assert_non_null(f);
        assert_int_equal(fseek(f, 0, SEEK_END), 0);
        len = ftell(f);
        img = malloc((size_t)len);
        assert_non_null(img);
        rewind(f);
        assert_int_equal(fread(img, 1, (size_t)len, f), (size_t)len);
        memcpy(img + len - 72, stolen.key_id, CWT_KEYID_LEN);
        crypto_generichash(digest, 64, img, (size_t)len - 64, NULL, 0);
        assert_int_equal(keyops_sign_sk(stolen.sign_sk, KEYOPS_CTX_BUNDLE, digest, img + len - 64),
                         0);
        rewind(f);
        assert_int_equal(fwrite(img, 1, (size_t)len, f), (size_t)len);
        fclose(f);
        free(img);
        assert_int_equal(bundle_verify(&fx->roster, fx->bundle, NULL, err, sizeof(err)),
                         CWT_EB_SIGNER);
        assert_non_null(strstr(err, "not in the roster"));
    }

    /* The new key: accepted and opened. */
    assert_int_equal(seal_as(fx, &fresh, &fresh, fx->bundle), 0);
    assert_int_equal(bundle_open(&fx->keys[1], &fx->roster, fx->st, fx->bundle, fx->out, fp, &info,
                                 err, sizeof(err)),
                     0);
    keys_free(&fresh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_old_key_is_refused_after_replace_key, sec_setup,
                                        sec_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
