/*
 * test_keys.c - site keys: generation and loading round trip, no overwrite, secret files with
 * loose permissions refused, public-only loading, and secret keys that do not match site.pub.
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
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "crypto/keys.h"
#include "storage/store.h"
#include "tests/test_tmp.h"

struct fixture {
    char root[1024];     /* removed by teardown */
    char keys[PATH_MAX]; /* root/keys, generated for site-a */
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    char err[CWT_ERRLEN];

    if (fx == NULL || crypto_init() != 0)
        return -1;
    if (test_tmp_path(fx->root, sizeof(fx->root), "test_keys") != 0) { /* one per test */
        free(fx);
        return -1;
    }
    if (file_join(fx->keys, sizeof(fx->keys), fx->root, "keys") != 0 ||
        file_mkdir_p(fx->root, 0700, err, sizeof(err)) != 0 ||
        keys_generate(fx->keys, "site-a", err, sizeof(err)) != 0) {
        fprintf(stderr, "setup: %s\n", err);
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    int rc;

    rc = test_tmp_remove(fx->root);
    free(fx);
    return rc == 0 ? 0 : -1;
}

static void key_file(const struct fixture *fx, const char *name, char *path)
{
    assert_int_equal(file_join(path, PATH_MAX, fx->keys, name), 0);
}

static mode_t file_mode(const char *path)
{
    struct stat sb;

    assert_int_equal(stat(path, &sb), 0);
    return sb.st_mode & 07777;
}

static void test_generate_load_round_trip(void **state)
{
    struct fixture *fx = *state;
    char err[CWT_ERRLEN], path[PATH_MAX], line[CWT_KEYLINE_MAX + 1];
    uint8_t sig[crypto_sign_BYTES], sealed[crypto_box_SEALBYTES + 5], opened[5], key_id[8];
    uint8_t *text;
    size_t len;
    struct site_keys k;

    key_file(fx, "sign.key", path);
    assert_int_equal(file_mode(path), 0600);
    key_file(fx, "box.key", path);
    assert_int_equal(file_mode(path), 0600);
    key_file(fx, "site.pub", path);
    assert_int_equal(file_mode(path), 0644);

    assert_int_equal(keys_load(fx->keys, &k, err, sizeof(err)), 0);
    assert_string_equal(k.site_id, "site-a");
    assert_non_null(k.sign_sk);
    assert_non_null(k.box_sk);
    /* The loaded keys work as pairs. */
    crypto_sign_detached(sig, NULL, (const uint8_t *)"hello", 5, k.sign_sk);
    assert_int_equal(crypto_sign_verify_detached(sig, (const uint8_t *)"hello", 5, k.sign_pk), 0);
    assert_int_equal(crypto_box_seal(sealed, (const uint8_t *)"hello", 5, k.box_pk), 0);
    assert_int_equal(crypto_box_seal_open(opened, sealed, sizeof(sealed), k.box_pk, k.box_sk), 0);
    assert_memory_equal(opened, "hello", 5);
    /* site.pub holds exactly the key line, and the key id is the key line's. */
    assert_int_equal(keyline_format("site-a", k.sign_pk, k.box_pk, line, sizeof(line), key_id), 0);
    assert_memory_equal(key_id, k.key_id, sizeof(key_id));
    assert_int_equal(file_read_all(path, 1024, &text, &len, err, sizeof(err)), 0);
    assert_int_equal(len, strlen(line) + 1);
    assert_memory_equal(text, line, strlen(line));
    free(text);
    keys_free(&k);
    assert_null(k.sign_sk);
    assert_null(k.box_sk);
    keys_free(&k); /* safe twice */
}

static void test_generate_refuses_overwrite(void **state)
{
    struct fixture *fx = *state;
    char err[CWT_ERRLEN], path[PATH_MAX];
    uint8_t *before, *after;
    size_t blen, alen;

    key_file(fx, "sign.key", path);
    assert_int_equal(file_read_all(path, 1024, &before, &blen, err, sizeof(err)), 0);
    assert_int_equal(keys_generate(fx->keys, "site-a", err, sizeof(err)), CWT_EEXIST);
    assert_non_null(strstr(err, "exists already"));
    assert_int_equal(file_read_all(path, 1024, &after, &alen, err, sizeof(err)), 0);
    assert_int_equal(blen, alen);
    assert_memory_equal(before, after, blen);
    free(before);
    free(after);
    /* Even with only site.pub left, nothing is generated beside it. */
    unlink(path);
    key_file(fx, "box.key", path);
    unlink(path);
    assert_int_equal(keys_generate(fx->keys, "site-a", err, sizeof(err)), CWT_EEXIST);
    assert_int_equal(access(path, F_OK), -1);
    /* A bad site id is refused before anything is written. */
    assert_int_equal(keys_generate(fx->keys, "-bad", err, sizeof(err)), CWT_EINVAL);
}

static void expect_mode_refused(struct fixture *fx, const char *name, mode_t mode,
                                const char *words)
{
    char err[CWT_ERRLEN], path[PATH_MAX], expect[64];
    struct site_keys k;

    key_file(fx, name, path);
    assert_int_equal(chmod(path, mode), 0);
    memset(&k, 0xa5, sizeof(k));
    assert_int_equal(keys_load(fx->keys, &k, err, sizeof(err)), CWT_EPERM);
    assert_null(k.sign_sk);
    assert_null(k.box_sk);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, words));
    snprintf(expect, sizeof(expect), "(mode %04o)", (unsigned)mode);
    assert_non_null(strstr(err, expect));
    assert_non_null(strstr(err, "run chmod 600"));
    assert_int_equal(chmod(path, 0600), 0);
}

static void test_loose_secret_file_refused(void **state)
{
    struct fixture *fx = *state;
    char err[CWT_ERRLEN];
    struct site_keys k;

    expect_mode_refused(fx, "sign.key", 0644, "readable by group and others");
    expect_mode_refused(fx, "sign.key", 0640, "readable by its group");
    expect_mode_refused(fx, "sign.key", 0604, "readable by others");
    expect_mode_refused(fx, "sign.key", 0602, "writable by others");
    expect_mode_refused(fx, "box.key", 0644, "readable by group and others");
    expect_mode_refused(fx, "box.key", 0620, "writable by its group");
    /* Back to 0600, both load again. */
    assert_int_equal(keys_load(fx->keys, &k, err, sizeof(err)), 0);
    keys_free(&k);
}

static void test_foreign_owner_refused(void **state)
{
    struct fixture *fx = *state;
    char err[CWT_ERRLEN], path[PATH_MAX];
    struct site_keys k;

    /* Only root can give a file away; as another user the check cannot be set up here. */
    if (geteuid() != 0) {
        print_message("not root: skipping the foreign-owner case\n");
        return;
    }
    key_file(fx, "sign.key", path);
    assert_int_equal(chown(path, 4242, (gid_t)-1), 0);
    assert_int_equal(keys_load(fx->keys, &k, err, sizeof(err)), CWT_EPERM);
    assert_non_null(strstr(err, "owned by uid 4242"));
}

static void test_public_only_load(void **state)
{
    struct fixture *fx = *state;
    char err[CWT_ERRLEN], path[PATH_MAX];
    struct site_keys pub, full;

    assert_int_equal(keys_load(fx->keys, &full, err, sizeof(err)), 0);
    /* Without any secret file, and with a secret file nobody may read, the public part loads. */
    key_file(fx, "sign.key", path);
    assert_int_equal(unlink(path), 0);
    key_file(fx, "box.key", path);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(keys_load_public(fx->keys, &pub, err, sizeof(err)), 0);
    assert_null(pub.sign_sk);
    assert_null(pub.box_sk);
    assert_string_equal(pub.site_id, "site-a");
    assert_memory_equal(pub.sign_pk, full.sign_pk, 32);
    assert_memory_equal(pub.box_pk, full.box_pk, 32);
    assert_memory_equal(pub.key_id, full.key_id, CWT_KEYID_LEN);
    keys_free(&pub);
    keys_free(&full);
    assert_int_equal(keys_load(fx->keys, &full, err, sizeof(err)), CWT_ENOENT);
    assert_non_null(strstr(err, "sign.key"));

    /* A damaged site.pub is named. */
    key_file(fx, "site.pub", path);
    assert_int_equal(
        file_write_atomic(path, "cwt-site-v1 site-a AAAA\n", 24, 0644, err, sizeof(err)), 0);
    assert_int_equal(keys_load_public(fx->keys, &pub, err, sizeof(err)), CWT_EFORMAT);
    assert_non_null(strstr(err, "site.pub"));
}

/* Copies NAME from one folder to another, replacing it (mode 0600). */
static void copy_key(const char *from_dir, const char *to_dir, const char *name)
{
    char err[CWT_ERRLEN], src[PATH_MAX], dst[PATH_MAX];

    assert_int_equal(file_join(src, sizeof(src), from_dir, name), 0);
    assert_int_equal(file_join(dst, sizeof(dst), to_dir, name), 0);
    assert_int_equal(file_copy_atomic(src, dst, 0600, err, sizeof(err)), 0);
}

static void test_mismatched_pair_detected(void **state)
{
    struct fixture *fx = *state;
    char err[CWT_ERRLEN], other[PATH_MAX], saved[PATH_MAX], path[PATH_MAX], b64[200], text[256];
    uint8_t foreign_pk[32], foreign_sk[64], sk[64];
    struct site_keys k;

    assert_int_equal(file_join(other, sizeof(other), fx->root, "other"), 0);
    assert_int_equal(keys_generate(other, "site-b", err, sizeof(err)), 0);
    assert_int_equal(file_join(saved, sizeof(saved), fx->root, "saved"), 0);
    assert_int_equal(file_mkdir_p(saved, 0700, err, sizeof(err)), 0);
    copy_key(fx->keys, saved, "sign.key");
    copy_key(fx->keys, saved, "box.key");

    /* Another site's signing key beside our site.pub. */
    copy_key(other, fx->keys, "sign.key");
    assert_int_equal(keys_load(fx->keys, &k, err, sizeof(err)), CWT_ECRYPTO);
    assert_non_null(strstr(err, "sign.key does not belong"));
    assert_null(k.sign_sk);
    copy_key(saved, fx->keys, "sign.key");

    /* Another site's encryption key. */
    copy_key(other, fx->keys, "box.key");
    assert_int_equal(keys_load(fx->keys, &k, err, sizeof(err)), CWT_ECRYPTO);
    assert_non_null(strstr(err, "box.key does not belong"));
    assert_null(k.box_sk);
    copy_key(saved, fx->keys, "box.key");

    /* An Ed25519 secret key is seed || public key: a foreign seed carrying our public key
     * must not pass as ours. */
    assert_int_equal(keys_load(fx->keys, &k, err, sizeof(err)), 0);
    crypto_sign_keypair(foreign_pk, foreign_sk);
    memcpy(sk, foreign_sk, 32);
    memcpy(sk + 32, k.sign_pk, 32);
    keys_free(&k);
    sodium_bin2base64(b64, sizeof(b64), sk, sizeof(sk), sodium_base64_VARIANT_ORIGINAL);
    snprintf(text, sizeof(text), "cwt-sign-v1\n%s\n", b64);
    key_file(fx, "sign.key", path);
    assert_int_equal(file_write_atomic(path, text, strlen(text), 0600, err, sizeof(err)), 0);
    assert_int_equal(keys_load(fx->keys, &k, err, sizeof(err)), CWT_ECRYPTO);
    assert_non_null(strstr(err, "sign.key does not belong"));
}

static void test_malformed_secret_files(void **state)
{
    struct fixture *fx = *state;
    static const char *const bad[] = {
        "",
        "cwt-box-v1\nAAAA\n",  /* wrong magic for sign.key */
        "cwt-sign-v1\nAAAA\n", /* too short */
        "cwt-sign-v1\n%%%%\n", /* not base64 */
        "cwt-sign-v1",         /* no key line */
    };
    char err[CWT_ERRLEN], path[PATH_MAX], big[1024];
    struct site_keys k;

    key_file(fx, "sign.key", path);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(file_write_atomic(path, bad[i], strlen(bad[i]), 0600, err, sizeof(err)),
                         0);
        assert_int_equal(keys_load(fx->keys, &k, err, sizeof(err)), CWT_EFORMAT);
        assert_non_null(strstr(err, "sign.key"));
    }
    memset(big, 'A', sizeof(big));
    assert_int_equal(file_write_atomic(path, big, sizeof(big), 0600, err, sizeof(err)), 0);
    assert_int_equal(keys_load(fx->keys, &k, err, sizeof(err)), CWT_EFORMAT);
    assert_non_null(strstr(err, "too large"));
}

static void test_key_load_audited(void **state)
{
    struct fixture *fx = *state;
    char err[CWT_ERRLEN], store_dir[PATH_MAX], id[2 * CWT_KEYID_LEN + 1];
    struct audit_record *recs;
    struct store *st;
    struct site_keys k;
    size_t n;

    assert_int_equal(file_join(store_dir, sizeof(store_dir), fx->root, "store"), 0);
    assert_int_equal(store_open(store_dir, STORE_CREATE, 64u << 20, &st, err, sizeof(err)), 0);
    assert_int_equal(keys_load(fx->keys, &k, err, sizeof(err)), 0);
    assert_int_equal(keys_audit_load(st, &k, "unit test"), 0);
    keys_id_hex(k.key_id, id);
    keys_free(&k);
    assert_int_equal(audit_list(st, &recs, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(recs[0].event, "key-load");
    assert_non_null(strstr(recs[0].details, id));
    assert_non_null(strstr(recs[0].details, "site-a"));
    assert_non_null(strstr(recs[0].details, "unit test"));
    free(recs);
    store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_generate_load_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generate_refuses_overwrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loose_secret_file_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_owner_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_public_only_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mismatched_pair_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_secret_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_load_audited, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
