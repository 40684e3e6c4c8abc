/*
 * gen_corpus.c - writes the seed corpus of the fuzz harnesses (tests/fuzz/corpus/<harness>/):
 * small valid bundles sealed under the fixed roster of fuzz_common.h, safetensors files of
 * several dtypes, and the roster itself. Run by `tests/fuzz/run.sh corpus`; the output is
 * kept in the repository.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "crypto/bundle.h"
#include "fuzz_common.h"
#include "storage/safetensors.h"

static int write_st(const char *path, int variant)
{
    struct st_writer *w;
    float f[6] = {0.5f, -1.0f, 2.0f, 0.0f, 3.5f, 1e-3f};
    uint16_t h[2] = {0x3c00, 0xc000};
    int64_t i64[1] = {42};
    uint64_t s2[2] = {2, 3}, s1[1] = {2}, s0[1] = {1};
    uint8_t *buf;
    size_t len;
    int rc;

    if (st_writer_new(&w) != 0)
        return -1;
    if (variant >= 1)
        st_writer_add(w, "layer.weight", ST_F32, 2, s2, f);
    if (variant >= 2) {
        st_writer_add(w, "layer.bias", ST_F16, 1, s1, h);
        st_writer_add(w, "step", ST_I64, 1, s0, i64);
        st_writer_meta(w, "fingerprint",
                       "abababababababababababababababababababababababababababababababab");
    }
    rc = st_writer_finish(w, &buf, &len);
    st_writer_free(w);
    if (rc != 0)
        return -1;
    rc = file_write_atomic(path, buf, len, 0644, NULL, 0);
    free(buf);
    return rc;
}

int main(int argc, char **argv)
{
    static struct site_keys keys[FUZZ_SITES];
    struct cwt_roster *r = calloc(1, sizeof(*r));
    struct bundle_info *parent = calloc(1, sizeof(*parent));
    struct bundle_header h;
    char path[4096], weights[4096], err[CWT_ERRLEN];
    const char *dir;

    if (argc != 2 || r == NULL || parent == NULL) {
        fprintf(stderr, "usage: gen_corpus DIR\n");
        return 2;
    }
    dir = argv[1];
    if (crypto_init() != 0 || fuzz_roster(r, keys) != 0)
        return 1;
    for (int v = 0; v < 3; v++) {
        snprintf(path, sizeof(path), "%s/safetensors/seed-%d.safetensors", dir, v);
        if (write_st(path, v) != 0)
            return 1;
    }
    snprintf(path, sizeof(path), "%s/roster/roster.conf", dir);
    if (roster_save(path, r, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    snprintf(weights, sizeof(weights), "%s/safetensors/seed-2.safetensors", dir);
    /* sequence 0 a -> b; sequence 1 b -> c with parent; an ensemble member to two sites. */
    memset(&h, 0, sizeof(h));
    h.kind = BUNDLE_KIND_CYCLE;
    h.n_recipients = 1;
    snprintf(h.recipients[0], sizeof(h.recipients[0]), "site-b");
    memset(h.model_fp, 0xab, 32);
    h.summary.local_epochs = 1;
    h.summary.val_accuracy = 0.5;
    h.summary.train_loss = h.summary.train_accuracy = h.summary.val_loss = NAN;
    h.summary.val_auc = NAN;
    snprintf(path, sizeof(path), "%s/bundle/seq0.cwtb", dir);
    if (bundle_seal(&keys[0], r, &h, weights, path, parent, err, sizeof(err)) != 0)
        goto fail;
    h.hop = 1;
    snprintf(h.recipients[0], sizeof(h.recipients[0]), "site-c");
    h.has_parent = 1;
    memcpy(h.parent_hash, parent->file_hash, 32);
    snprintf(path, sizeof(path), "%s/bundle/seq1.cwtb", dir);
    if (bundle_seal(&keys[1], r, &h, weights, path, NULL, err, sizeof(err)) != 0)
        goto fail;
    h.hop = 2;
    h.kind = BUNDLE_KIND_ENSEMBLE_MEMBER;
    h.has_parent = 0;
    h.n_recipients = 2;
    snprintf(h.recipients[0], sizeof(h.recipients[0]), "site-a");
    snprintf(h.recipients[1], sizeof(h.recipients[1]), "site-b");
    snprintf(path, sizeof(path), "%s/bundle/ensemble.cwtb", dir);
    if (bundle_seal(&keys[2], r, &h, weights, path, NULL, err, sizeof(err)) != 0)
        goto fail;
    for (int i = 0; i < FUZZ_SITES; i++)
        keys_free(&keys[i]);
    free(r);
    free(parent);
    return 0;
fail:
    fprintf(stderr, "gen_corpus: %s\n", err);
    return 1;
}
