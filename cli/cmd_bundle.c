/*
 * cmd_bundle.c - `cwtctl bundle seal|open|inspect|verify`: weight bundles by hand, for admins
 * moving files and for auditors who hold only the roster (DESIGN section 4).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "engine/train/train.h"
#include "crypto/bundle.h"
#include "cycle/cycle.h"
#include "crypto/keys.h"
#include "storage/safetensors.h"
#include "storage/store.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cwtctl bundle seal --to SITE[,SITE...] --weights FILE.safetensors\n"
            "                          [--parent BUNDLE] [--kind cycle|final|ensemble-member]\n"
            "                          [--cycle N] [--hop N] [--model-fp HEX] -o OUT.cwtb\n"
            "       cwtctl bundle open FILE.cwtb -o OUT.safetensors [--model-fp HEX]\n"
            "       cwtctl bundle inspect FILE.cwtb [--json]\n"
            "       cwtctl bundle verify [--roster FILE] FILE.cwtb... [--json]\n\n"
            "seal     encrypts the weights for the recipients and signs them with this site's\n"
            "         key; the model fingerprint comes from the weights' metadata\n"
            "         (\"fingerprint\") unless --model-fp gives it. --parent names the bundle the\n"
            "         weights were trained from; the cycle then defaults to the next visit.\n"
            "open     checks every acceptance rule, writes the weights and records the bundle\n"
            "         in the ledger; the weights must be the roster's model (its fingerprint,\n"
            "         `cwtctl model fingerprint`), or the model --model-fp names.\n"
            "inspect  prints every header field without checking any signature.\n"
            "verify   checks framing, roster fingerprint, signer and signature with public keys\n"
            "         only (the site's roster, or --roster FILE). Exit 1 if any file fails.\n");
}

/* Both the roster and the bundle info are large; keep them off the stack. */
struct bundle_ctx {
    struct cwt_config cfg;
    struct cwt_roster roster;
    struct bundle_info info;
    struct bundle_info parent;
};

static int parse_fp(const char *hex, uint8_t out[32])
{
    return strlen(hex) == 64 && cwt_unhex(hex, out, 32) == 0 ? 0 : CWT_EINVAL;
}

/* The "fingerprint" metadata of a safetensors file (as cwt's trainer writes it). */
static int weights_fingerprint(const char *path, uint8_t out[32], char *err, size_t errlen)
{
    struct st_file f;
    struct stat sb;
    uint8_t lenbuf[8], *json = NULL;
    uint64_t hlen = 0;
    int fd, rc = CWT_ENOENT;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0 || sb.st_size < 8 || pread(fd, lenbuf, 8, 0) != 8) {
        close(fd);
        return cwt_seterr(err, errlen, CWT_EFORMAT, "%s: not a safetensors file", path);
    }
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | lenbuf[i];
    if (hlen > ST_MAX_HEADER || hlen > (uint64_t)sb.st_size - 8 ||
        (json = malloc(hlen ? hlen : 1)) == NULL || pread(fd, json, hlen, 8) != (ssize_t)hlen) {
        free(json);
        close(fd);
        return cwt_seterr(err, errlen, CWT_EFORMAT, "%s: not a safetensors file", path);
    }
    close(fd);
    if (st_parse_header(json, hlen, (uint64_t)sb.st_size - 8 - hlen, &f, err, errlen) != 0) {
        free(json);
        return CWT_EFORMAT;
    }
    for (uint32_t i = 0; i < f.n_meta; i++)
        if (strcmp(f.meta[i].key, "fingerprint") == 0)
            rc = parse_fp(f.meta[i].value, out) == 0 ? 0 : CWT_EFORMAT;
    st_free(&f);
    free(json);
    if (rc != 0)
        return cwt_seterr(err, errlen, rc,
                          "%s: the weights carry no valid \"fingerprint\" metadata; give "
                          "--model-fp HEX",
                          path);
    return 0;
}

static int split_recipients(char *list, struct bundle_header *h)
{
    char *save = NULL;

    for (char *tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        if (h->n_recipients == CWT_MAX_SITES || !cwt_valid_id(tok))
            return CWT_EINVAL;
        snprintf(h->recipients[h->n_recipients++], CWT_ID_MAX + 1, "%s", tok);
    }
    return h->n_recipients > 0 ? 0 : CWT_EINVAL;
}

static void summary_unmeasured(struct bundle_summary *s)
{
    memset(s, 0, sizeof(*s));
    s->local_epochs = s->train_loss = s->train_accuracy = NAN;
    s->val_loss = s->val_accuracy = s->val_auc = NAN;
}

/* cwt.bundle/1: what inspect, seal and open print under --json. op names the command. */
static int emit_bundle(const char *op, const char *file, const struct bundle_info *info,
                       const struct cwt_roster *roster)
{
    json_t *o = cli_json_doc("cwt.bundle/1", 1);

    if (o != NULL && (cli_json_set(o, "command", json_string(op)) != 0 ||
                      cli_json_set_str(o, "file", file) != 0 ||
                      cli_json_set(o, "bundle", bundle_json(info, roster)) != 0)) {
        json_decref(o);
        o = NULL;
    }
    return cli_json_emit(o, 0);
}

static int bundle_seal_cmd(int argc, char **argv, const struct cli_globals *g)
{
    static const struct option opts[] = {
        {"to", required_argument, NULL, 't'},       {"weights", required_argument, NULL, 'w'},
        {"parent", required_argument, NULL, 'p'},   {"kind", required_argument, NULL, 'k'},
        {"cycle", required_argument, NULL, 'C'},    {"hop", required_argument, NULL, 'H'},
        {"model-fp", required_argument, NULL, 'm'}, {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
    const char *weights = NULL, *parent = NULL, *outp = NULL, *fp_hex = NULL;
    char *to = NULL, err[CWT_ERRLEN], id[33], hash[65];
    int64_t cycle = -1, hop = -1;
    struct bundle_ctx *c;
    struct bundle_header *h;
    struct site_keys keys;
    struct store *st = NULL;
    int opt, me, rc = CLI_FAIL;

    c = calloc(1, sizeof(*c));
    h = calloc(1, sizeof(*h));
    if (c == NULL || h == NULL) {
        free(c);
        free(h);
        return cli_error(CLI_FAIL, "out of memory");
    }
    memset(&keys, 0, sizeof(keys));
    h->kind = BUNDLE_KIND_CYCLE;
    optind = 0;
    while ((opt = cli_getopt(argc, argv, "o:h", opts, "bundle seal")) != -1) {
        switch (opt) {
        case 't':
            to = optarg;
            break;
        case 'w':
            weights = optarg;
            break;
        case 'p':
            parent = optarg;
            break;
        case 'o':
            outp = optarg;
            break;
        case 'm':
            fp_hex = optarg;
            break;
        case 'k':
            if (bundle_kind_parse(optarg, &h->kind) != 0) {
                rc = cli_error(CLI_USAGE, "--kind must be cycle, final or ensemble-member");
                goto out;
            }
            break;
        case 'C':
        case 'H':
            if (cwt_parse_i64(optarg, 0, UINT32_MAX, opt == 'C' ? &cycle : &hop) != 0) {
                rc = cli_error(CLI_USAGE, "--%s must be a whole number >= 0",
                               opt == 'C' ? "cycle" : "hop");
                goto out;
            }
            break;
        case 'h':
            usage(stdout);
            rc = CLI_OK;
            goto out;
        default:
            rc = CLI_USAGE;
            goto out;
        }
    }
    if (to == NULL || weights == NULL || outp == NULL || optind != argc) {
        usage(stderr);
        rc = CLI_USAGE;
        goto out;
    }
    if (split_recipients(to, h) != 0) {
        rc = cli_error(CLI_USAGE, "--to needs a comma-separated list of 1..%d site ids",
                       CWT_MAX_SITES);
        goto out;
    }
    if (fp_hex != NULL && parse_fp(fp_hex, h->model_fp) != 0) {
        rc = cli_error(CLI_USAGE, "--model-fp needs 64 hex digits");
        goto out;
    }
    if ((rc = cli_load_site(g, &c->cfg, &c->roster)) != 0)
        goto out;
    rc = CLI_FAIL;
    me = roster_find_site(&c->roster, c->cfg.site_id);
    if (me < 0) {
        rc = cli_error(CLI_USAGE,
                       "this site (%s) is not in the roster; add it with 'cwtctl "
                       "roster add'",
                       c->cfg.site_id);
        goto out;
    }
    if (hop >= 0 && hop != me) {
        rc = cli_error(CLI_USAGE, "--hop must be this site's place in the roster (%d)", me);
        goto out;
    }
    h->hop = (uint32_t)me;
    if (fp_hex == NULL && weights_fingerprint(weights, h->model_fp, err, sizeof(err)) != 0) {
        rc = cli_error(CLI_FAIL, "%s", err);
        goto out;
    }
    if (parent != NULL) {
        if (bundle_verify(&c->roster, parent, &c->parent, err, sizeof(err)) != 0) {
            rc = cli_error(CLI_FAIL, "the parent bundle does not verify: %s", err);
            goto out;
        }
        h->has_parent = 1;
        memcpy(h->parent_hash, c->parent.file_hash, 32);
        if (cycle < 0) {
            /* The next visit of this site after the parent (cycle/cycle.h, as cwtd). */
            uint32_t next;
            if (cycle_after(c->roster.n_sites, (uint32_t)me, c->parent.hdr.sequence, &next) != 0) {
                rc = cli_error(CLI_FAIL, "the parent's sequence leaves no next cycle");
                goto out;
            }
            cycle = next;
        }
    }
    h->cycle = cycle < 0 ? 0 : (uint32_t)cycle;
    if (parent != NULL && h->kind != BUNDLE_KIND_ENSEMBLE_MEMBER &&
        cycle_sequence(c->roster.n_sites, h->cycle, h->hop) != c->parent.hdr.sequence + 1) {
        rc = cli_error(CLI_USAGE,
                       "the parent has sequence %llu, so this bundle needs %llu, but cycle %u "
                       "hop %u gives %llu",
                       (unsigned long long)c->parent.hdr.sequence,
                       (unsigned long long)c->parent.hdr.sequence + 1, h->cycle, h->hop,
                       (unsigned long long)cycle_sequence(c->roster.n_sites, h->cycle, h->hop));
        goto out;
    }
    summary_unmeasured(&h->summary);
    if (store_open(c->cfg.store_dir, CLI_STORE_WRITE, c->cfg.store_max_bytes, &st, err,
                   sizeof(err)) != 0) {
        rc = cli_error(CLI_FAIL, "%s", err);
        goto out;
    }
    if (keys_load(c->cfg.keys_dir, &keys, err, sizeof(err)) != 0) {
        (void)audit_append(st, "key-load-refused", "%s", err);
        rc = cli_error(CLI_FAIL, "%s", err);
        goto out;
    }
    (void)keys_audit_load(st, &keys, "bundle seal");
    if ((rc = bundle_seal(&keys, &c->roster, h, weights, outp, &c->info, err, sizeof(err))) != 0) {
        rc = cli_error(rc == CWT_EINVAL ? CLI_USAGE : CLI_FAIL, "%s", err);
        goto out;
    }
    rc = CLI_FAIL;
    cwt_hex(c->info.hdr.bundle_id, 16, id);
    cwt_hex(c->info.file_hash, 32, hash);
    if (bundle_record_sent(st, &c->info) != 0 ||
        audit_append(st, "bundle-sealed", "id=%s seq=%llu kind=%s to=%s hash=%s file=%s", id,
                     (unsigned long long)c->info.hdr.sequence, bundle_kind_name(c->info.hdr.kind),
                     to, hash, outp) != 0) {
        rc = cli_error(CLI_FAIL,
                       "%s was sealed but the ledger or audit log could not be "
                       "written; do not send it",
                       outp);
        goto out;
    }
    if (g->json) {
        rc = emit_bundle("seal", outp, &c->info, &c->roster);
        goto out;
    } else {
        printf("sealed %s: bundle %s, sequence %llu (cycle %u, hop %u), %s, for %s\n"
               "bundle hash %s\n",
               outp, id, (unsigned long long)c->info.hdr.sequence, c->info.hdr.cycle,
               c->info.hdr.hop, bundle_kind_name(c->info.hdr.kind), to, hash);
    }
    rc = CLI_OK;
out:
    keys_free(&keys);
    if (st != NULL)
        store_close(st);
    free(c);
    free(h);
    return rc;
}

/* The roster model's tensor table (names, dtypes, shapes, "fingerprint" metadata) as the
 * trainer saves it with `flags`, and its fingerprint: what an opened payload must match.
 * *blob backs *layout (free both). */
static int roster_layout(const struct cwt_recipe *recipe, const char *device, int flags,
                         uint8_t fp[32], uint8_t **blob, struct st_file *layout, char *err,
                         size_t errlen)
{
    struct cwt_recipe one = *recipe;
    struct eng_device *dev = NULL;
    struct eng_model *m = NULL;
    struct eng_model_spec spec;
    struct eng_optim_spec os;
    size_t len = 0;
    int rc;

    *blob = NULL;
    one.batch_size = 1; /* the layout does not depend on it; keep the arena small */
    if ((rc = train_specs_from_recipe(&one, &spec, &os, err, errlen)) != 0)
        return rc;
    if ((rc = eng_device_open(device, 0, &dev, err, errlen)) != 0)
        return rc;
    rc = train_model_from_recipe(dev, &one, &m, err, errlen);
    if (rc == 0) {
        eng_model_fingerprint(m, fp);
        rc = train_state_save(m, &spec, NULL, &one, flags, NULL, 0, blob, &len, err, errlen);
    }
    if (rc == 0)
        rc = st_parse(*blob, len, layout, err, errlen);
    eng_model_free(m);
    eng_device_close(dev);
    if (rc != 0) {
        free(*blob);
        *blob = NULL;
    }
    return rc;
}

static int bundle_open_cmd(int argc, char **argv, const struct cli_globals *g)
{
    static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                         {"model-fp", required_argument, NULL, 'm'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *outp = NULL, *file, *fp_hex = NULL;
    uint8_t fp[32];
    char err[CWT_ERRLEN], id[33], hash[65];
    struct bundle_ctx *c;
    struct site_keys keys;
    struct store *st = NULL;
    struct st_file layout, layout_all;
    struct bundle_expect ex = {NULL, NULL, NULL};
    uint8_t *layout_blob = NULL, *all_blob = NULL;
    int opt, rc, fd;

    optind = 0;
    while ((opt = cli_getopt(argc, argv, "o:h", opts, "bundle open")) != -1) {
        switch (opt) {
        case 'o':
            outp = optarg;
            break;
        case 'm':
            fp_hex = optarg;
            break;
        case 'h':
            usage(stdout);
            return CLI_OK;
        default:
            return CLI_USAGE;
        }
    }
    if (outp == NULL || optind != argc - 1) {
        usage(stderr);
        return CLI_USAGE;
    }
    file = argv[optind];
    if (fp_hex != NULL && parse_fp(fp_hex, fp) != 0)
        return cli_error(CLI_USAGE, "--model-fp needs 64 hex digits");
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return cli_error(CLI_FAIL, "out of memory");
    memset(&keys, 0, sizeof(keys));
    if ((rc = cli_load_site(g, &c->cfg, &c->roster)) != 0)
        goto out;
    rc = CLI_FAIL;
    if (store_open(c->cfg.store_dir, CLI_STORE_WRITE, c->cfg.store_max_bytes, &st, err,
                   sizeof(err)) != 0) {
        rc = cli_error(CLI_FAIL, "%s", err);
        goto out;
    }
    if (keys_load(c->cfg.keys_dir, &keys, err, sizeof(err)) != 0) {
        (void)audit_append(st, "key-load-refused", "%s", err);
        rc = cli_error(CLI_FAIL, "%s", err);
        goto out;
    }
    (void)keys_audit_load(st, &keys, "bundle open");
    /* Without --model-fp the roster's own model is the rule (DESIGN section 4): its
     * fingerprint and its tensors (names, dtypes, shapes). */
    if (fp_hex == NULL) {
        /* The weights alone (an exported model), or with the optimizer state (what cwtd
         * seals). */
        if (roster_layout(&c->roster.recipe, c->cfg.gpu_device, TRAIN_SAVE_WEIGHTS, fp,
                          &layout_blob, &layout, err, sizeof(err)) != 0 ||
            roster_layout(&c->roster.recipe, c->cfg.gpu_device, TRAIN_SAVE_ALL, fp, &all_blob,
                          &layout_all, err, sizeof(err)) != 0) {
            rc = cli_error(CLI_FAIL, "cannot build the roster's model: %s", err);
            goto out;
        }
        ex.layout = &layout;
        ex.layout_alt = &layout_all;
    }
    ex.model_fp = fp;
    fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = cli_error(CLI_FAIL, "%s: cannot open: %s", file, strerror(errno));
        goto out;
    }
    rc = bundle_open_fd(&keys, &c->roster, st, fd, file, outp, &ex, &c->info, err, sizeof(err));
    close(fd);
    if (rc == 0) {
        rc = bundle_accept(st, &c->info);
        if (rc != 0) {
            /* Lost a race with another opener: the bundle counts as seen, keep nothing. */
            unlink(outp);
            snprintf(err, sizeof(err), "%s: cannot record the bundle in the ledger: %s", file,
                     cwt_strerror(rc));
        }
    }
    if (rc != 0) {
        (void)audit_append(st, "bundle-rejected", "file=%s reason=%s", file, err);
        rc = cli_error(CLI_FAIL, "%s", err);
        goto out;
    }
    cwt_hex(c->info.hdr.bundle_id, 16, id);
    cwt_hex(c->info.file_hash, 32, hash);
    if (audit_append(st, "bundle-opened", "id=%s seq=%llu kind=%s from=%s hash=%s out=%s", id,
                     (unsigned long long)c->info.hdr.sequence, bundle_kind_name(c->info.hdr.kind),
                     c->info.hdr.sender, hash, outp) != 0) {
        rc = cli_error(CLI_FAIL, "the bundle was opened but the audit log could not be written");
        goto out;
    }
    if (g->json) {
        rc = emit_bundle("open", file, &c->info, &c->roster);
        goto out;
    } else {
        printf("opened %s: bundle %s from %s, sequence %llu (cycle %u, hop %u), %s\n"
               "weights written to %s (%llu bytes)\n",
               file, id, c->info.hdr.sender, (unsigned long long)c->info.hdr.sequence,
               c->info.hdr.cycle, c->info.hdr.hop, bundle_kind_name(c->info.hdr.kind), outp,
               (unsigned long long)c->info.hdr.payload_len);
    }
    rc = CLI_OK;
out:
    if (layout_blob != NULL) {
        st_free(&layout);
        free(layout_blob);
    }
    if (all_blob != NULL) {
        st_free(&layout_all);
        free(all_blob);
    }
    keys_free(&keys);
    if (st != NULL)
        store_close(st);
    free(c);
    return rc;
}

static int bundle_inspect_cmd(int argc, char **argv, const struct cli_globals *g)
{
    struct bundle_info *info;
    char err[CWT_ERRLEN];
    int rc;

    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return CLI_OK;
    }
    if (argc != 2 || argv[1][0] == '-') {
        usage(stderr);
        return CLI_USAGE;
    }
    info = calloc(1, sizeof(*info));
    if (info == NULL)
        return cli_error(CLI_FAIL, "out of memory");
    rc = bundle_inspect(argv[1], info, err, sizeof(err));
    if (rc != 0) {
        free(info);
        return cli_error(CLI_FAIL, "%s", err);
    }
    if (g->json) {
        rc = emit_bundle("inspect", argv[1], info, NULL);
        free(info);
        return rc;
    }
    rc = bundle_print(stdout, info, NULL, 0);
    free(info);
    if (rc != 0)
        return cli_error(CLI_FAIL, "cannot print the header: %s", cwt_strerror(rc));
    printf("(header as written: 'cwtctl bundle verify' checks the signature)\n");
    return CLI_OK;
}

static int bundle_verify_cmd(int argc, char **argv, const struct cli_globals *g)
{
    static const struct option opts[] = {{"roster", required_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *roster_path = NULL;
    char err[CWT_ERRLEN];
    struct bundle_ctx *c;
    json_t *results = NULL;
    int opt, rc, failed = 0;

    optind = 0;
    while ((opt = cli_getopt(argc, argv, "h", opts, "bundle verify")) != -1) {
        switch (opt) {
        case 'r':
            roster_path = optarg;
            break;
        case 'h':
            usage(stdout);
            return CLI_OK;
        default:
            return CLI_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return CLI_USAGE;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return cli_error(CLI_FAIL, "out of memory");
    if (roster_path != NULL) {
        if (roster_load(roster_path, &c->roster, err, sizeof(err)) != 0) {
            free(c);
            return cli_error(CLI_USAGE, "%s", err);
        }
    } else if (access(g->config_path, F_OK) != 0 && errno == ENOENT) {
        /* An auditor has the federation's roster, not a site: point there, not to 'init'. */
        free(c);
        return cli_error(CLI_USAGE,
                         "bundle verify needs the federation's roster: pass --roster FILE "
                         "(no site configuration at %s)",
                         g->config_path);
    } else if ((rc = cli_load_site(g, &c->cfg, &c->roster)) != 0) {
        free(c);
        return rc;
    }
    if (g->json && (results = json_array()) == NULL) {
        free(c);
        return cli_error(CLI_FAIL, "out of memory");
    }
    for (int i = optind; i < argc; i++) {
        rc = bundle_verify(&c->roster, argv[i], &c->info, err, sizeof(err));
        if (rc != 0)
            failed++;
        if (g->json) {
            json_t *r = json_object();
            int jrc = json_array_append_new(results, r) != 0 || r == NULL ? CWT_ENOMEM : 0;
            jrc |= r == NULL ? CWT_ENOMEM : cli_json_set_str(r, "file", argv[i]);
            if (r != NULL && rc == 0) {
                jrc |= cli_json_set(r, "ok", json_true());
                jrc |= cli_json_set(r, "bundle", bundle_json(&c->info, &c->roster));
            } else if (r != NULL) {
                /* A stable name, never the internal number (docs/json.md). */
                jrc |= cli_json_set(r, "ok", json_false());
                jrc |= cli_json_set(r, "error", json_string(cwt_errname(rc)));
                jrc |= cli_json_set_str(r, "rule", cwt_strerror(rc));
                jrc |= cli_json_set_str(r, "message", err);
            }
            if (jrc != 0) {
                json_decref(results);
                free(c);
                return cli_error(CLI_FAIL, "out of memory");
            }
        } else if (rc == 0) {
            char id[33];
            cwt_hex(c->info.hdr.bundle_id, 16, id);
            printf("OK    %s: bundle %s, %s, sequence %llu, from %s, signature valid\n", argv[i],
                   id, bundle_kind_name(c->info.hdr.kind), (unsigned long long)c->info.hdr.sequence,
                   c->info.hdr.sender);
        } else {
            printf("FAIL  %s\n", err);
        }
    }
    if (g->json) {
        json_t *doc = cli_json_doc("cwt.bundle-verify/1", failed == 0);
        if (doc == NULL || cli_json_set(doc, "files", json_integer(argc - optind)) != 0 ||
            cli_json_set(doc, "failed", json_integer(failed)) != 0 ||
            cli_json_set(doc, "results", results) != 0) {
            json_decref(doc);
            doc = NULL;
        }
        if (cli_json_emit(doc, 0) != 0) {
            free(c);
            return CLI_FAIL;
        }
    }
    free(c);
    if (failed > 0)
        return cli_error(CLI_FAIL, "%d of %d bundle(s) failed verification", failed, argc - optind);
    return CLI_OK;
}

int cmd_bundle(int argc, char **argv, const struct cli_globals *g)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (crypto_init() != 0)
        return cli_error(CLI_FAIL, "cannot initialise libsodium");
    if (strcmp(argv[1], "seal") == 0)
        return bundle_seal_cmd(argc - 1, argv + 1, g);
    if (strcmp(argv[1], "open") == 0)
        return bundle_open_cmd(argc - 1, argv + 1, g);
    if (strcmp(argv[1], "inspect") == 0)
        return bundle_inspect_cmd(argc - 1, argv + 1, g);
    if (strcmp(argv[1], "verify") == 0)
        return bundle_verify_cmd(argc - 1, argv + 1, g);
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return CLI_OK;
    }
    usage(stderr);
    return cli_error(CLI_USAGE, "unknown bundle command '%s'", argv[1]);
}
