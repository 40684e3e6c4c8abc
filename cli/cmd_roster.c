/*
 * cmd_roster.c - `cwtctl roster`: add a site by its key line, show the roster, check it and
 * print its fingerprint for comparing out of band.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "crypto/keys.h"
#include "storage/store.h"

static void roster_usage(FILE *f)
{
    fprintf(f, "usage: cwtctl roster add 'cwt-site-v1 SITE-ID BASE64'\n"
               "       cwtctl roster replace-key SITE-ID 'cwt-site-v1 SITE-ID BASE64'\n"
               "       cwtctl roster show [--json] [FILE]\n"
               "       cwtctl roster check [--json] [FILE]\n\n"
               "add    appends a site to the cycle order (refuses a known id or key); the\n"
               "       change is recorded in the audit log.\n"
               "replace-key  gives a listed site a new key (after a rotation, or when its key\n"
               "       was stolen: docs/keys.md); the site keeps its place, the fingerprint\n"
               "       changes and bundles signed with the old key are refused from then on.\n"
               "       Audited.\n"
               "show   lists the federation, the sites in order with their key ids, the recipe\n"
               "       and the fingerprint.\n"
               "check  validates the roster (this site's own roster, or FILE) and prints the\n"
               "       fingerprint to compare with the other sites. Exit 1 when a check fails,\n"
               "       2 when the file cannot be read or parsed.\n");
}

/* 16 groups of 4 hex digits need 80 bytes; config.c's roster_fingerprint_text stops one group
 * short with exactly 80 (reported to its owner), so give it room. */
#define GROUPED_LEN 96

static const char *const optimizer_names[] = {"sgd", "adam", "adamw"};
static const char *const schedule_names[] = {"constant", "step", "cosine", "cyclical"};
static const char *const heuristic_names[] = {"cwt", "swt", "ensemble"};
static const char *const visit_names[] = {"epochs", "steps", "proportional"};

static int fingerprint_texts(const struct cwt_roster *r, char hex[65], char grouped[GROUPED_LEN])
{
    uint8_t fp[32];

    if (roster_fingerprint(r, fp) != 0)
        return -1;
    cwt_hex(fp, sizeof(fp), hex);
    roster_fingerprint_text(fp, grouped, GROUPED_LEN);
    return 0;
}

/* Site config if there is one: 1 loaded, 0 none at the default place, CLI_USAGE (after printing)
 * if one was named or exists but cannot be used. */
static int load_optional_site(const struct cli_globals *g, struct cwt_config *cfg)
{
    char err[CWT_ERRLEN];
    int rc = config_load(g->config_path, cfg, err, sizeof(err));

    if (rc == 0)
        return 1;
    if (rc == CWT_ENOENT)
        return 0;
    return cli_error(CLI_USAGE, "%s", err);
}

/* roster_load reports "FILE:LINE: KEY: ..." (config.h); problems under sites.id and sites.key
 * are the checks of `roster check` (a malformed key line, a duplicate id or key), everything
 * else means the file is not a readable roster at all. */
static int roster_load_exit(const char *err)
{
    return strstr(err, ": sites.key: ") != NULL || strstr(err, ": sites.id: ") != NULL ? CLI_FAIL
                                                                                       : CLI_USAGE;
}

static int roster_add(int argc, char **argv, const struct cli_globals *g)
{
    char err[CWT_ERRLEN], why[CWT_ERRLEN], id_hex[2 * CWT_KEYID_LEN + 1];
    char hex[65], grouped[GROUPED_LEN];
    struct cwt_roster_site site;
    struct cwt_roster *r = NULL;
    struct cwt_config cfg;
    struct store *st = NULL;
    int rc;

    if (argc != 3)
        return cli_error(CLI_USAGE, "roster add needs one quoted key line: cwtctl roster add "
                                    "'cwt-site-v1 SITE-ID BASE64'");
    if (keyline_parse(argv[2], &site, why, sizeof(why)) != 0)
        return cli_error(CLI_USAGE, "not a valid key line: %s", why);
    if ((r = calloc(1, sizeof(*r))) == NULL)
        return cli_error(CLI_FAIL, "out of memory");
    if ((rc = cli_load_site(g, &cfg, r)) != 0)
        goto out;
    for (uint32_t i = 0; i < r->n_sites; i++) {
        if (strcmp(r->sites[i].id, site.id) == 0) {
            rc = cli_error(CLI_FAIL,
                           "site %s is in the roster already (position %u); remove it "
                           "by editing %s if its key changed",
                           site.id, i + 1, cfg.roster_path);
            goto out;
        }
        if (memcmp(r->sites[i].sign_pk, site.sign_pk, sizeof(site.sign_pk)) == 0 ||
            memcmp(r->sites[i].box_pk, site.box_pk, sizeof(site.box_pk)) == 0) {
            rc = cli_error(CLI_FAIL,
                           "this key is in the roster already, as site %s; refusing "
                           "to add it as %s",
                           r->sites[i].id, site.id);
            goto out;
        }
    }
    if (r->n_sites >= CWT_MAX_SITES) {
        rc = cli_error(CLI_FAIL, "the roster holds %d sites already, the most it can",
                       CWT_MAX_SITES);
        goto out;
    }
    /* Open the store before changing anything, so the change can be audited. */
    if (store_open(cfg.store_dir, CLI_STORE_WRITE, cfg.store_max_bytes, &st, err, sizeof(err)) !=
        0) {
        rc = cli_error(CLI_FAIL, "%s", err);
        goto out;
    }
    r->sites[r->n_sites++] = site;
    if (roster_save(cfg.roster_path, r, err, sizeof(err)) != 0) {
        rc = cli_error(CLI_FAIL, "%s", err);
        goto out;
    }
    keys_id_hex(site.key_id, id_hex);
    if (fingerprint_texts(r, hex, grouped) != 0) {
        rc = cli_error(CLI_FAIL, "cannot compute the roster fingerprint");
        goto out;
    }
    rc = audit_append(st, "config-change",
                      "roster: added site %s key %s at position %u; "
                      "fingerprint %s",
                      site.id, id_hex, r->n_sites, hex);
    if (rc != 0) {
        rc = cli_error(CLI_FAIL, "the roster was saved but the audit log could not record it: %s",
                       cwt_strerror(rc));
        goto out;
    }
    if (g->json) {
        json_t *o = cli_json_doc("cwt.roster-add/1", 1);
        if (o != NULL && (cli_json_set_str(o, "added", site.id) != 0 ||
                          cli_json_set(o, "position", json_integer(r->n_sites)) != 0 ||
                          cli_json_set(o, "key_id", json_string(id_hex)) != 0 ||
                          cli_json_set(o, "fingerprint", json_string(hex)) != 0)) {
            json_decref(o);
            o = NULL;
        }
        if (cli_json_emit(o, 0) != 0) {
            rc = CLI_FAIL;
            goto out;
        }
    } else {
        printf("added %s (key id %s) as site %u of %u\nroster fingerprint: %s\n", site.id, id_hex,
               r->n_sites, r->n_sites, grouped);
    }
    rc = CLI_OK;
out:
    store_close(st);
    free(r);
    return rc;
}

/* Replaces the key of a listed site. Refuses a line that names another site (exit 1: the
 * wrong line was pasted), a malformed line (exit 2), a site that is not listed and a key that
 * is listed already (exit 1), and writes nothing on failure. */
static int roster_replace_key(int argc, char **argv, const struct cli_globals *g)
{
    char err[CWT_ERRLEN], why[CWT_ERRLEN], old_hex[2 * CWT_KEYID_LEN + 1];
    char new_hex[2 * CWT_KEYID_LEN + 1], hex[65], grouped[GROUPED_LEN];
    struct cwt_roster_site site;
    struct cwt_roster *r = NULL;
    struct cwt_config cfg;
    struct store *st = NULL;
    int rc, idx = -1;

    if (argc != 4)
        return cli_error(CLI_USAGE, "roster replace-key needs a site id and one quoted key line: "
                                    "cwtctl roster replace-key SITE-ID 'cwt-site-v1 SITE-ID "
                                    "BASE64'");
    if (keyline_parse(argv[3], &site, why, sizeof(why)) != 0)
        return cli_error(CLI_USAGE, "not a valid key line: %s", why);
    if (strcmp(site.id, argv[2]) != 0)
        return cli_error(CLI_FAIL,
                         "the key line is for site %s, not %s; refusing to give %s another "
                         "site's key",
                         site.id, argv[2], argv[2]);
    if ((r = calloc(1, sizeof(*r))) == NULL)
        return cli_error(CLI_FAIL, "out of memory");
    if ((rc = cli_load_site(g, &cfg, r)) != 0)
        goto out;
    for (uint32_t i = 0; i < r->n_sites; i++)
        if (strcmp(r->sites[i].id, site.id) == 0)
            idx = (int)i;
    if (idx < 0) {
        rc = cli_error(CLI_FAIL, "site %s is not in the roster; add it with 'cwtctl roster add'",
                       site.id);
        goto out;
    }
    for (uint32_t i = 0; i < r->n_sites; i++) {
        if (memcmp(r->sites[i].sign_pk, site.sign_pk, sizeof(site.sign_pk)) == 0 ||
            memcmp(r->sites[i].box_pk, site.box_pk, sizeof(site.box_pk)) == 0) {
            rc = cli_error(CLI_FAIL,
                           (int)i == idx ? "site %s has this key already; nothing to replace"
                                         : "this key is in the roster already, as site %s; "
                                           "refusing to give it to another site",
                           r->sites[i].id);
            goto out;
        }
    }
    /* Open the store before changing anything, so the change can be audited. */
    if (store_open(cfg.store_dir, CLI_STORE_WRITE, cfg.store_max_bytes, &st, err, sizeof(err)) !=
        0) {
        rc = cli_error(CLI_FAIL, "%s", err);
        goto out;
    }
    keys_id_hex(r->sites[idx].key_id, old_hex);
    r->sites[idx] = site;
    if (roster_save(cfg.roster_path, r, err, sizeof(err)) != 0) {
        rc = cli_error(CLI_FAIL, "%s", err);
        goto out;
    }
    keys_id_hex(site.key_id, new_hex);
    if (fingerprint_texts(r, hex, grouped) != 0) {
        rc = cli_error(CLI_FAIL, "cannot compute the roster fingerprint");
        goto out;
    }
    rc = audit_append(st, "config-change",
                      "roster: replaced the key of site %s at position %d: key %s replaces "
                      "key %s; fingerprint %s",
                      site.id, idx + 1, new_hex, old_hex, hex);
    if (rc != 0) {
        rc = cli_error(CLI_FAIL, "the roster was saved but the audit log could not record it: %s",
                       cwt_strerror(rc));
        goto out;
    }
    if (g->json) {
        json_t *doc = cli_json_doc("cwt.roster-replace-key/1", 1);
        if (doc != NULL && (cli_json_set_str(doc, "replaced", site.id) != 0 ||
                            cli_json_set(doc, "position", json_integer(idx + 1)) != 0 ||
                            cli_json_set(doc, "old_key_id", json_string(old_hex)) != 0 ||
                            cli_json_set(doc, "key_id", json_string(new_hex)) != 0 ||
                            cli_json_set(doc, "fingerprint", json_string(hex)) != 0)) {
            json_decref(doc);
            doc = NULL;
        }
        rc = cli_json_emit(doc, 0);
        goto out;
    }
    printf("replaced the key of %s (site %d of %u): key id %s, was %s\n"
           "roster fingerprint: %s\n"
           "bundles signed with the old key are refused from now on; compare the new key "
           "id and fingerprint with the other sites (docs/keys.md)\n",
           site.id, idx + 1, r->n_sites, new_hex, old_hex, grouped);
    rc = CLI_OK;
out:
    store_close(st);
    free(r);
    return rc;
}

/* Loads FILE if given, else the site's roster. Prints the error and returns the exit code. */
static int load_roster_arg(const struct cli_globals *g, const char *file, struct cwt_roster *r,
                           struct cwt_config *cfg, int *have_site)
{
    char err[CWT_ERRLEN];
    int rc;

    if (file == NULL) {
        if ((rc = cli_load_site(g, cfg, NULL)) != 0)
            return rc;
        *have_site = 1;
        file = cfg->roster_path;
    } else {
        rc = load_optional_site(g, cfg);
        if (rc != 0 && rc != 1)
            return rc;
        *have_site = rc;
    }
    if (roster_load(file, r, err, sizeof(err)) != 0)
        return cli_error(roster_load_exit(err), "%s", err);
    return 0;
}

static void print_recipe(const struct cwt_recipe *rc)
{
    printf("recipe:\n  model      %s", rc->model);
    if (strcmp(rc->model, "resnet") == 0)
        printf(" (depth %u, width %g)", rc->resnet_depth, rc->width);
    printf("\n  input      %ux%ux%u\n  classes    %u", rc->input_h, rc->input_w, rc->input_c,
           rc->classes);
    for (uint32_t i = 0; i < rc->n_class_names; i++)
        printf("%s%s", i == 0 ? " (" : ", ", rc->class_names[i]);
    printf("%s\n", rc->n_class_names > 0 ? ")" : "");
    printf("  training   %s lr %g, batch %u, schedule %s, seed %llu\n",
           optimizer_names[rc->optimizer], rc->lr, rc->batch_size, schedule_names[rc->schedule],
           (unsigned long long)rc->seed);
    printf("  cycle      %s, visit %g %s, %u cycles, patience %u, bundles expire after %u days\n",
           heuristic_names[rc->heuristic], rc->visit_length, visit_names[rc->visit_unit],
           rc->cycles, rc->patience, rc->bundle_ttl_days);
}

/* cwt.roster/1 (docs/json.md). Returns 0 or CLI_FAIL. */
static int print_roster_json(const struct cwt_roster *r, const char *hex)
{
    const struct cwt_recipe *rc = &r->recipe;
    char id[2 * CWT_KEYID_LEN + 1];
    json_t *doc = cli_json_doc("cwt.roster/1", 1), *sites = json_array(), *rec = json_object();
    json_t *input = json_array();
    int e = doc == NULL || sites == NULL || rec == NULL || input == NULL ? CWT_ENOMEM : 0;

    for (uint32_t i = 0; e == 0 && i < r->n_sites; i++) {
        json_t *o = json_object();
        if (o == NULL || json_array_append_new(sites, o) != 0) {
            e = CWT_ENOMEM;
            break;
        }
        keys_id_hex(r->sites[i].key_id, id);
        e |= cli_json_set(o, "position", json_integer(i + 1));
        e |= cli_json_set_str(o, "id", r->sites[i].id);
        e |= cli_json_set(o, "key_id", json_string(id));
        e |= cli_json_set_str(o, "key_line", r->sites[i].key_line);
    }
    if (e == 0) {
        e |= json_array_append_new(input, json_integer(rc->input_h)) != 0;
        e |= json_array_append_new(input, json_integer(rc->input_w)) != 0;
        e |= json_array_append_new(input, json_integer(rc->input_c)) != 0;
        e |= cli_json_set_str(rec, "model", rc->model);
        e |= cli_json_set(rec, "input", json_incref(input));
        e |= cli_json_set(rec, "classes", json_integer(rc->classes));
        e |= cli_json_set(rec, "optimizer", json_string(optimizer_names[rc->optimizer]));
        e |= cli_json_set(rec, "lr", json_real(rc->lr));
        e |= cli_json_set(rec, "batch_size", json_integer(rc->batch_size));
        e |= cli_json_set(rec, "heuristic", json_string(heuristic_names[rc->heuristic]));
        e |= cli_json_set(rec, "visit_unit", json_string(visit_names[rc->visit_unit]));
        e |= cli_json_set(rec, "visit_length", json_real(rc->visit_length));
        e |= cli_json_set(rec, "cycles", json_integer(rc->cycles));
        e |= cli_json_set(rec, "patience", json_integer(rc->patience));
        e |= cli_json_set_str(doc, "federation", r->federation);
        e |= cli_json_set(doc, "fingerprint", json_string(hex));
        e |= cli_json_set(doc, "sites", json_incref(sites));
        e |= cli_json_set(doc, "recipe", json_incref(rec));
    }
    json_decref(input);
    json_decref(sites);
    json_decref(rec);
    if (e != 0) {
        json_decref(doc);
        doc = NULL;
    }
    return cli_json_emit(doc, 0);
}

static int roster_show(const char *file, const struct cli_globals *g)
{
    char hex[65], grouped[GROUPED_LEN], id[2 * CWT_KEYID_LEN + 1];
    struct cwt_roster *r;
    struct cwt_config cfg;
    int have_site = 0, rc;

    if ((r = calloc(1, sizeof(*r))) == NULL)
        return cli_error(CLI_FAIL, "out of memory");
    if ((rc = load_roster_arg(g, file, r, &cfg, &have_site)) != 0)
        goto out;
    if (fingerprint_texts(r, hex, grouped) != 0) {
        rc = cli_error(CLI_FAIL, "cannot compute the roster fingerprint");
        goto out;
    }
    if (g->json) {
        if (print_roster_json(r, hex) != 0) {
            rc = CLI_FAIL;
            goto out;
        }
    } else {
        printf("federation: %s\nsites in cycle order:\n", r->federation);
        if (r->n_sites == 0)
            printf("  (none yet: add them with 'cwtctl roster add')\n");
        for (uint32_t i = 0; i < r->n_sites; i++) {
            keys_id_hex(r->sites[i].key_id, id);
            printf("  %2u  %-24s key id %s%s\n", i + 1, r->sites[i].id, id,
                   have_site && strcmp(r->sites[i].id, cfg.site_id) == 0 ? "  (this site)" : "");
        }
        print_recipe(&r->recipe);
        printf("fingerprint: %s\n", grouped);
    }
    rc = CLI_OK;
out:
    free(r);
    return rc;
}

/* The checks beyond what roster_load enforces. Each failure is printed; returns how many. */
static int roster_problems(const struct cwt_roster *r, const struct cwt_config *cfg, int have_site,
                           const struct cli_globals *g)
{
    char err[CWT_ERRLEN], msg[2 * CWT_ERRLEN];
    struct site_keys own;
    int problems = 0, at;

    if (r->n_sites == 0) {
        cli_note("%s lists no sites", r->path);
        problems++;
    }
    if (!have_site)
        return problems;
    /* A configuration that names the site wrongly is the fault to report, not the roster. */
    if (cli_site_id_mismatch(cfg, msg, sizeof(msg)) != 0) {
        cli_note("%s", msg);
        return problems + 1;
    }
    at = roster_find_site(r, cfg->site_id);
    if (at < 0) {
        cli_note("this site (%s) is not in %s; add it with 'cwtctl roster add' and "
                 "its 'cwtctl key show' line",
                 cfg->site_id, r->path);
        return problems + 1;
    }
    /* The roster's key for this site must be this site's key, or bundles to it cannot open. */
    if (keys_load_public(cfg->keys_dir, &own, err, sizeof(err)) != 0) {
        if (!g->json)
            fprintf(stderr, "cwtctl: note: cannot compare with this site's key: %s\n", err);
        return problems;
    }
    if (memcmp(own.sign_pk, r->sites[at].sign_pk, sizeof(own.sign_pk)) != 0 ||
        memcmp(own.box_pk, r->sites[at].box_pk, sizeof(own.box_pk)) != 0) {
        cli_note("the roster's key for %s differs from this site's own key (%s/site.pub)",
                 cfg->site_id, cfg->keys_dir);
        problems++;
    }
    return problems;
}

static int roster_check(const char *file, const struct cli_globals *g)
{
    char hex[65], grouped[GROUPED_LEN];
    struct cwt_roster *r;
    struct cwt_config cfg;
    int have_site = 0, problems, rc;

    if ((r = calloc(1, sizeof(*r))) == NULL)
        return cli_error(CLI_FAIL, "out of memory");
    if ((rc = load_roster_arg(g, file, r, &cfg, &have_site)) != 0)
        goto out;
    if (fingerprint_texts(r, hex, grouped) != 0) {
        rc = cli_error(CLI_FAIL, "cannot compute the roster fingerprint");
        goto out;
    }
    problems = roster_problems(r, &cfg, have_site, g);
    if (g->json) {
        json_t *o = cli_json_doc("cwt.roster-check/1", problems == 0);
        if (o != NULL && (cli_json_set(o, "problems", json_integer(problems)) != 0 ||
                          cli_json_set_str(o, "federation", r->federation) != 0 ||
                          cli_json_set(o, "sites", json_integer(r->n_sites)) != 0 ||
                          cli_json_set(o, "this_site",
                                       have_site ? cli_json_str(cfg.site_id) : json_null()) != 0 ||
                          cli_json_set(o, "fingerprint", json_string(hex)) != 0)) {
            json_decref(o);
            o = NULL;
        }
        if (cli_json_emit(o, 0) != 0)
            problems++;
    } else {
        printf("roster %s: federation %s, %u sites%s\nfingerprint: %s\n",
               problems ? "has problems" : "ok", r->federation, r->n_sites,
               have_site ? "" : " (checked alone: no site configuration)", grouped);
    }
    rc = problems ? CLI_FAIL : CLI_OK;
out:
    free(r);
    return rc;
}

int cmd_roster(int argc, char **argv, const struct cli_globals *g)
{
    const char *sub = argc > 1 ? argv[1] : "";

    if (cli_wants_help(argc, argv, 1) || strcmp(sub, "help") == 0) {
        roster_usage(stdout);
        return CLI_OK;
    }
    if (strcmp(sub, "add") == 0)
        return roster_add(argc, argv, g);
    if (strcmp(sub, "replace-key") == 0)
        return roster_replace_key(argc, argv, g);
    if ((strcmp(sub, "show") == 0 || strcmp(sub, "check") == 0) && argc <= 3) {
        const char *file = argc == 3 ? argv[2] : NULL;

        if (file != NULL && file[0] == '-')
            return cli_error(CLI_USAGE, "roster %s: unknown option %s", sub, file);
        return strcmp(sub, "show") == 0 ? roster_show(file, g) : roster_check(file, g);
    }
    roster_usage(stderr);
    return CLI_USAGE;
}
