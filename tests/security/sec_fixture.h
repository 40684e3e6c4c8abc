/*
 * sec_fixture.h - in-memory sites for the C-level security tests: site-a, site-b in a roster,
 * keys in memory, site-b's store (ledger) in a scratch folder, and a safetensors writer.
 */
#ifndef CWT_SEC_FIXTURE_H
#define CWT_SEC_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <time.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "crypto/bundle.h"
#include "crypto/keys.h"
#include "storage/safetensors.h"
#include "storage/store.h"
#include "tests/test_tmp.h"

struct sec_fixture {
    char dir[512];
    struct site_keys keys[2]; /* site-a, site-b */
    struct cwt_roster roster;
    struct store *st; /* site-b's ledger */
    char weights[600], out[600], bundle[600];
};

static inline void sec_make_keys(struct site_keys *k, const char *id)
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

static inline int sec_setup(void **state)
{
    struct sec_fixture *fx = calloc(1, sizeof(*fx));
    static const char *const ids[] = {"site-a", "site-b"};
    char err[CWT_ERRLEN], sdir[600];

    assert_non_null(fx);
    assert_int_equal(crypto_init(), 0);
    assert_int_equal(test_tmp_path(fx->dir, sizeof(fx->dir), "sec_fixture"), 0);
    assert_int_equal(file_mkdir_p(fx->dir, 0700, err, sizeof(err)), 0);
    snprintf(fx->roster.federation, sizeof(fx->roster.federation), "fed-test");
    recipe_defaults(&fx->roster.recipe);
    for (int i = 0; i < 2; i++) {
        struct cwt_roster_site *s = &fx->roster.sites[fx->roster.n_sites++];
        sec_make_keys(&fx->keys[i], ids[i]);
        snprintf(s->id, sizeof(s->id), "%s", ids[i]);
        memcpy(s->sign_pk, fx->keys[i].sign_pk, 32);
        memcpy(s->box_pk, fx->keys[i].box_pk, 32);
        assert_int_equal(keyline_format(ids[i], s->sign_pk, s->box_pk, s->key_line,
                                        sizeof(s->key_line), s->key_id),
                         0);
    }
    snprintf(fx->weights, sizeof(fx->weights), "%s/w.safetensors", fx->dir);
    snprintf(fx->out, sizeof(fx->out), "%s/out.safetensors", fx->dir);
    snprintf(fx->bundle, sizeof(fx->bundle), "%s/b.cwtb", fx->dir);
    snprintf(sdir, sizeof(sdir), "%s/store", fx->dir);
    assert_int_equal(store_open(sdir, STORE_CREATE, 1ull << 26, &fx->st, err, sizeof(err)), 0);
    *state = fx;
    return 0;
}

static inline int sec_teardown(void **state)
{
    struct sec_fixture *fx = *state;

    store_close(fx->st);
    for (int i = 0; i < 2; i++)
        keys_free(&fx->keys[i]);
    assert_int_equal(test_tmp_remove(fx->dir), 0);
    free(fx);
    return 0;
}

/* A header from site-a (hop 0, cycle 0) to site-b with model fingerprint fp. */
static inline void sec_header(struct bundle_header *h, const uint8_t fp[32])
{
    memset(h, 0, sizeof(*h));
    h->kind = BUNDLE_KIND_CYCLE;
    h->n_recipients = 1;
    snprintf(h->recipients[0], sizeof(h->recipients[0]), "site-b");
    memcpy(h->model_fp, fp, 32);
    h->summary.train_loss = NAN;
    h->summary.train_accuracy = NAN;
    h->summary.val_loss = NAN;
    h->summary.val_accuracy = NAN;
    h->summary.val_auc = NAN;
}

static inline size_t sec_ledger_count(struct sec_fixture *fx)
{
    struct ledger_entry *all;
    size_t n;

    assert_int_equal(ledger_list(fx->st, &all, &n), 0);
    free(all);
    return n;
}

static inline int sec_exists(const char *path)
{
    struct stat sb;

    return stat(path, &sb) == 0;
}

/* Writes a one-tensor safetensors payload ("w", 4 floats) to path, mode 0600. */
static inline void sec_write_payload(const char *path)
{
    struct st_writer *w;
    float f[4] = {1, 2, 3, 4};
    uint64_t shape[1] = {4};
    uint8_t *buf;
    size_t len;

    assert_int_equal(st_writer_new(&w), 0);
    assert_int_equal(st_writer_add(w, "w", ST_F32, 1, shape, f), 0);
    assert_int_equal(st_writer_finish(w, &buf, &len), 0);
    st_writer_free(w);
    assert_int_equal(file_write_atomic(path, buf, len, 0600, NULL, 0), 0);
    free(buf);
}

#endif
