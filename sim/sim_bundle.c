/*
 * sim_bundle.c - `simulate --through-bundles`: every hand-over between virtual institutions
 * goes through a sealed, verified and opened .cwtb file, as between real sites.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim/sim.h"
#include "common/fileio.h"
#include "crypto/keys.h"

#define FED_ID            "simulate"
#define PAYLOAD_MAX_BYTES (4ull << 30)

struct sim_fed {
    char dir[2048];
    uint32_t n;
    struct cwt_roster *roster; /* large (class names): on the heap */
    struct site_keys keys[CWT_MAX_SITES];
    int have_parent;
    uint8_t parent[32];
};

static int inst_path(char *out, size_t len, const char *dir, uint32_t i, const char *rest)
{
    int n = snprintf(out, len, "%s/inst-%u%s%s", dir, i, rest[0] ? "/" : "", rest);
    return n < 0 || (size_t)n >= len ? CWT_ETOOBIG : 0;
}

void sim_fed_close(struct sim_fed *f)
{
    if (f == NULL)
        return;
    for (uint32_t i = 0; i < f->n; i++)
        keys_free(&f->keys[i]);
    free(f->roster);
    free(f);
}

int sim_fed_open(const char *dir, uint32_t n_inst, const struct cwt_recipe *recipe,
                 struct sim_fed **out, char *err, size_t errlen)
{
    struct sim_fed *f;
    char path[4096];
    int rc;

    *out = NULL;
    if ((rc = crypto_init()) != 0)
        return cwt_seterr(err, errlen, rc, "libsodium failed to initialise");
    if ((f = calloc(1, sizeof(*f))) == NULL ||
        (f->roster = calloc(1, sizeof(*f->roster))) == NULL) {
        free(f);
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
    }
    if ((size_t)snprintf(f->dir, sizeof(f->dir), "%s", dir) >= sizeof(f->dir)) {
        sim_fed_close(f);
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "output folder name is too long");
    }
    snprintf(f->roster->federation, sizeof(f->roster->federation), "%s", FED_ID);
    f->roster->recipe = *recipe;
    for (uint32_t i = 0; i < n_inst; i++) {
        char id[CWT_ID_MAX + 1], line[CWT_KEYLINE_MAX + 1], pub[4200];
        struct stat sb;
        snprintf(id, sizeof(id), "inst-%u", i);
        f->n = i + 1;
        if (inst_path(path, sizeof(path), dir, i, "keys") != 0) {
            sim_fed_close(f);
            return cwt_seterr(err, errlen, CWT_ETOOBIG, "output folder name is too long");
        }
        if ((rc = file_mkdir_p(path, 0700, err, errlen)) != 0) {
            sim_fed_close(f);
            return rc;
        }
        /* Keys of an earlier run in the same folder are re-used (keys_generate never
         * overwrites). */
        if (file_join(pub, sizeof(pub), path, "site.pub") == 0 && stat(pub, &sb) != 0 &&
            (rc = keys_generate(path, id, err, errlen)) != 0) {
            sim_fed_close(f);
            return rc;
        }
        if ((rc = keys_load(path, &f->keys[i], err, errlen)) != 0) {
            sim_fed_close(f);
            return rc;
        }
        if (strcmp(f->keys[i].site_id, id) != 0) {
            /* the sentence first: it names f's keys, which sim_fed_close() frees */
            rc = cwt_seterr(err, errlen, CWT_ECONFIG, "%s holds keys of '%s', not '%s'", path,
                            f->keys[i].site_id, id);
            sim_fed_close(f);
            return rc;
        }
        if ((rc = keyline_format(id, f->keys[i].sign_pk, f->keys[i].box_pk, line, sizeof(line),
                                 f->roster->sites[i].key_id)) != 0 ||
            (rc = keyline_parse(line, &f->roster->sites[i], err, errlen)) != 0) {
            sim_fed_close(f);
            return cwt_seterr(err, errlen, rc ? rc : CWT_ECONFIG,
                              "cannot build the roster "
                              "entry of %s",
                              id);
        }
        f->roster->n_sites = i + 1;
        if (inst_path(path, sizeof(path), dir, i, "outbox") != 0 ||
            file_mkdir_p(path, 0700, err, errlen) != 0 ||
            inst_path(path, sizeof(path), dir, i, "inbox") != 0 ||
            file_mkdir_p(path, 0700, err, errlen) != 0) {
            sim_fed_close(f);
            return cwt_seterr(err, errlen, CWT_EIO, "cannot create the folders of inst-%u", i);
        }
    }
    if (file_join(f->roster->path, sizeof(f->roster->path), dir, "roster.conf") != 0) {
        sim_fed_close(f);
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "output folder name is too long");
    }
    if ((rc = roster_save(f->roster->path, f->roster, err, errlen)) != 0) {
        sim_fed_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

void sim_fed_new_chain(struct sim_fed *f)
{
    f->have_parent = 0;
}

int sim_fed_handover(struct sim_fed *f, struct eng_model *m, const struct eng_model_spec *spec,
                     const struct train_norm *norm, const uint8_t *reset_state, size_t reset_len,
                     uint32_t from, uint32_t to, uint32_t cycle,
                     const struct bundle_summary *summary, char *err, size_t errlen)
{
    char payload[4096], bundle[4096], opened[4096], name[64];
    struct bundle_header hdr;
    struct bundle_info sealed, verified, info;
    uint8_t *blob = NULL, *back = NULL;
    size_t len = 0, back_len = 0;
    uint8_t model_fp[32];
    int rc;

    if (from >= f->n || to >= f->n)
        return cwt_seterr(err, errlen, CWT_EINVAL, "hand-over between unknown institutions");
    snprintf(name, sizeof(name), "outbox/c%u-h%u%s", cycle, from, BUNDLE_EXT);
    if (inst_path(payload, sizeof(payload), f->dir, from, "outbox/payload.safetensors") != 0 ||
        inst_path(bundle, sizeof(bundle), f->dir, from, name) != 0 ||
        inst_path(opened, sizeof(opened), f->dir, to, "inbox/payload.safetensors") != 0)
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "output folder name is too long");

    /* Sender: the whole training state (weights, buffers, optimizer state and step). */
    rc = train_state_save(m, spec, norm, &f->roster->recipe, TRAIN_SAVE_ALL, NULL, 0, &blob, &len,
                          err, errlen);
    if (rc != 0)
        return rc;
    rc = file_write_atomic(payload, blob, len, 0600, err, errlen);
    free(blob);
    if (rc != 0)
        return rc;
    memset(&hdr, 0, sizeof(hdr));
    hdr.n_recipients = 1;
    snprintf(hdr.recipients[0], sizeof(hdr.recipients[0]), "inst-%u", to);
    hdr.kind = BUNDLE_KIND_CYCLE;
    hdr.cycle = cycle;
    hdr.hop = from;
    hdr.has_parent = (uint8_t)f->have_parent;
    memcpy(hdr.parent_hash, f->parent, sizeof(hdr.parent_hash));
    eng_model_fingerprint(m, model_fp);
    memcpy(hdr.model_fp, model_fp, sizeof(model_fp));
    hdr.summary = *summary;
    rc = bundle_seal(&f->keys[from], f->roster, &hdr, payload, bundle, &sealed, err, errlen);
    unlink(payload);
    if (rc != 0)
        return rc;

    /* On the way: an auditor's check with public keys only. */
    if ((rc = bundle_verify(f->roster, bundle, &verified, err, errlen)) != 0)
        goto out;
    /* Receiver: every acceptance rule except the ledger's (no store per institution). */
    rc = bundle_open(&f->keys[to], f->roster, NULL, bundle, opened, model_fp, &info, err, errlen);
    if (rc != 0)
        goto out;
    memcpy(f->parent, info.file_hash, sizeof(f->parent));
    f->have_parent = 1;
    rc = file_read_all(opened, PAYLOAD_MAX_BYTES, &back, &back_len, err, errlen);
    unlink(opened);
    if (rc != 0)
        goto out;
    /* Wipe what the sender left in the shared model object first, so the next institution
     * continues from the bundle's values only. */
    rc = train_state_load(m, reset_state, reset_len, TRAIN_SAVE_ALL, NULL, err, errlen);
    if (rc == 0)
        rc = train_state_load(m, back, back_len, TRAIN_SAVE_ALL, NULL, err, errlen);
    free(back);
out:
    unlink(bundle);
    return rc;
}
