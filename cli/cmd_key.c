/*
 * cmd_key.c - `cwtctl key`: this site's public key line and key id, and a check of its key
 * files.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "crypto/keys.h"
#include "storage/store.h"

static void key_usage(FILE *f)
{
    fprintf(f, "usage: cwtctl key show [--json]\n"
               "       cwtctl key check\n"
               "       cwtctl key rotate [--json]\n\n"
               "show   prints the site's public key line (give it to the other sites and the\n"
               "       auditors) and its key id; it reads only keys/site.pub.\n"
               "check  loads the secret keys: refuses files readable by others and checks that\n"
               "       they belong to keys/site.pub. The load is recorded in the audit log.\n"
               "rotate makes a new key pair for this site; the old files stay as *.old. Prints\n"
               "       the new key line: every site (this one too) replaces the old key with\n"
               "       'cwtctl roster replace-key' (docs/keys.md). Audited.\n");
}

static int key_show(const struct cwt_config *cfg, const struct cli_globals *g)
{
    char err[CWT_ERRLEN], line[CWT_KEYLINE_MAX + 1], id[2 * CWT_KEYID_LEN + 1];
    struct site_keys k;

    if (keys_load_public(cfg->keys_dir, &k, err, sizeof(err)) != 0)
        return cli_fail(CLI_FAIL, "no-keys", "%s", err);
    if (keyline_format(k.site_id, k.sign_pk, k.box_pk, line, sizeof(line), NULL) != 0)
        return cli_error(CLI_FAIL, "cannot format the key line of %s", k.site_id);
    keys_id_hex(k.key_id, id);
    if (g->json) {
        json_t *o = cli_json_doc("cwt.key/1", 1);
        if (o != NULL && (cli_json_set_str(o, "site_id", k.site_id) != 0 ||
                          cli_json_set_str(o, "key_line", line) != 0 ||
                          cli_json_set(o, "key_id", json_string(id)) != 0)) {
            json_decref(o);
            o = NULL;
        }
        return cli_json_emit(o, 0);
    } else {
        /* The key line comes first and alone, so `cwtctl key show | head -n 1` pastes it. */
        printf("%s\nkey id: %s\n", line, id);
    }
    return CLI_OK;
}

static int key_check(const struct cwt_config *cfg, const struct cli_globals *g)
{
    char err[CWT_ERRLEN], id[2 * CWT_KEYID_LEN + 1];
    struct store *st = NULL;
    struct site_keys k;
    int rc;

    /* The store first: a key load that cannot be audited does not happen. */
    if (store_open(cfg->store_dir, CLI_STORE_WRITE, cfg->store_max_bytes, &st, err, sizeof(err)) !=
        0)
        return cli_error(CLI_FAIL, "%s", err);
    rc = keys_load(cfg->keys_dir, &k, err, sizeof(err));
    if (rc != 0) {
        (void)audit_append(st, "key-load-refused", "%s", err);
        store_close(st);
        return cli_error(CLI_FAIL, "%s", err);
    }
    rc = keys_audit_load(st, &k, "key check");
    keys_free(&k);
    store_close(st);
    if (rc != 0)
        return cli_error(CLI_FAIL, "the key load could not be written to the audit log: %s",
                         cwt_strerror(rc));
    keys_id_hex(k.key_id, id);
    if (g->json) {
        json_t *o = cli_json_doc("cwt.key-check/1", 1);
        if (o != NULL && (cli_json_set_str(o, "site_id", k.site_id) != 0 ||
                          cli_json_set(o, "key_id", json_string(id)) != 0)) {
            json_decref(o);
            o = NULL;
        }
        return cli_json_emit(o, 0);
    } else {
        printf("keys of %s (key id %s) are in order: secret files private, pairs matching\n",
               k.site_id, id);
    }
    return CLI_OK;
}

static int key_rotate(const struct cwt_config *cfg, const struct cli_globals *g)
{
    char err[CWT_ERRLEN], line[CWT_KEYLINE_MAX + 1], old_id[2 * CWT_KEYID_LEN + 1];
    char new_id[2 * CWT_KEYID_LEN + 1];
    struct site_keys before, after;
    struct store *st = NULL;
    int rc;

    /* The store first: a rotation that cannot be audited does not happen. */
    if (store_open(cfg->store_dir, CLI_STORE_WRITE, cfg->store_max_bytes, &st, err, sizeof(err)) !=
        0)
        return cli_error(CLI_FAIL, "%s", err);
    if (keys_load_public(cfg->keys_dir, &before, err, sizeof(err)) != 0) {
        store_close(st);
        return cli_error(CLI_FAIL, "%s", err);
    }
    if ((rc = keys_rotate(cfg->keys_dir, before.site_id, err, sizeof(err))) != 0) {
        (void)audit_append(st, "key-rotate-refused", "%s", err);
        store_close(st);
        return cli_error(CLI_FAIL, "%s", err);
    }
    if (keys_load_public(cfg->keys_dir, &after, err, sizeof(err)) != 0 ||
        keyline_format(after.site_id, after.sign_pk, after.box_pk, line, sizeof(line), NULL) != 0) {
        store_close(st);
        return cli_error(CLI_FAIL, "the new key was written but cannot be read back: %s", err);
    }
    keys_id_hex(before.key_id, old_id);
    keys_id_hex(after.key_id, new_id);
    rc = audit_append(st, "key-rotate",
                      "site %s: key %s replaces key %s (kept as *.old in %s); the roster still "
                      "lists the old key until 'roster replace-key'",
                      after.site_id, new_id, old_id, cfg->keys_dir);
    store_close(st);
    if (rc != 0)
        return cli_error(CLI_FAIL, "the key was rotated but the audit log could not record it: %s",
                         cwt_strerror(rc));
    if (g->json) {
        json_t *doc = cli_json_doc("cwt.key-rotate/1", 1);
        if (doc != NULL && (cli_json_set_str(doc, "site_id", after.site_id) != 0 ||
                            cli_json_set_str(doc, "key_line", line) != 0 ||
                            cli_json_set(doc, "key_id", json_string(new_id)) != 0 ||
                            cli_json_set(doc, "old_key_id", json_string(old_id)) != 0)) {
            json_decref(doc);
            doc = NULL;
        }
        return cli_json_emit(doc, 0);
    }
    /* The key line first and alone, as `key show` prints it. */
    printf("%s\nkey id: %s (was %s)\n"
           "send this line to the coordinator; every site, this one too, runs\n"
           "  cwtctl roster replace-key %s '<the line>'\n"
           "then compares the new key id and roster fingerprint by phone, and cwtd is\n"
           "restarted here (it still holds the old key until then).\n",
           line, new_id, old_id, after.site_id);
    return CLI_OK;
}

int cmd_key(int argc, char **argv, const struct cli_globals *g)
{
    struct cwt_config cfg;
    int rc;

    if (cli_wants_help(argc, argv, 1)) {
        key_usage(stdout);
        return CLI_OK;
    }
    if (argc != 2 || (strcmp(argv[1], "show") != 0 && strcmp(argv[1], "check") != 0 &&
                      strcmp(argv[1], "rotate") != 0)) {
        key_usage(stderr);
        return CLI_USAGE;
    }
    if ((rc = cli_load_site(g, &cfg, NULL)) != 0)
        return rc;
    if (strcmp(argv[1], "check") == 0 || strcmp(argv[1], "rotate") == 0) {
        char msg[2 * CWT_ERRLEN];

        if (cli_site_id_mismatch(&cfg, msg, sizeof(msg)) != 0)
            return cli_error(CLI_USAGE, "%s", msg);
    }
    if (strcmp(argv[1], "rotate") == 0)
        return key_rotate(&cfg, g);
    return strcmp(argv[1], "show") == 0 ? key_show(&cfg, g) : key_check(&cfg, g);
}
