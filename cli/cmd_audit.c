/*
 * cmd_audit.c - `cwtctl audit`: show and verify the site's hash-chained audit log, export it
 * signed with the site key, and verify such an export with nothing but the public key line.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "common/fileio.h"
#include "crypto/keys.h"
#include "crypto/keyops.h"
#include "storage/store.h"
#include "storage/store_audit.h"

static void audit_usage(FILE *f)
{
    fprintf(f, "usage: cwtctl audit show [--json]\n"
               "       cwtctl audit verify [--json]\n"
               "       cwtctl audit export [--json] FILE\n"
               "       cwtctl audit verify [--json] --export FILE [--key 'cwt-site-v1 SITE-ID "
               "BASE64']\n\n"
               "show    lists every record: sequence, time (UTC), event, details.\n"
               "verify  recomputes the hash chain; exit 1 names the first bad record.\n"
               "export  writes every record and its chain to FILE, signed with the site key.\n"
               "verify --export  checks an export's signature with the given public key line\n"
               "        (default: this site's own), then its chain. Needs no secret key.\n"
               "--json  prints the records, or the result, as JSON\n");
}

static void format_time(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (gmtime_r(&tt, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "%lld", (long long)t);
}

/* Opens the site's store read-only; *st stays NULL (and 0 is returned) when no store exists
 * yet, which means an empty log. */
static int open_store_rdonly(const struct cwt_config *cfg, struct store **st)
{
    char err[CWT_ERRLEN];
    int rc = store_open(cfg->store_dir, STORE_RDONLY, cfg->store_max_bytes, st, err, sizeof(err));

    if (rc == CWT_ENOENT) {
        *st = NULL;
        return 0;
    }
    return rc == 0 ? 0 : cli_error(CLI_FAIL, "%s", err);
}

static int print_records(const struct audit_record *recs, size_t n, int json)
{
    char when[32];

    if (json) {
        json_t *doc = cli_json_doc("cwt.audit/1", 1), *arr = json_array();
        int e = doc == NULL || arr == NULL ? CWT_ENOMEM : 0;
        for (size_t i = 0; e == 0 && i < n; i++) {
            json_t *o = json_object();
            if (o == NULL || json_array_append_new(arr, o) != 0) {
                e = CWT_ENOMEM;
                break;
            }
            format_time(recs[i].time, when);
            e |= cli_json_set(o, "seq", json_integer((json_int_t)recs[i].seq));
            e |= cli_json_set(o, "time", json_integer((json_int_t)recs[i].time));
            e |= cli_json_set(o, "time_utc", json_string(when));
            e |= cli_json_set_str(o, "event", recs[i].event);
            e |= cli_json_set_str(o, "details", recs[i].details);
            e |= cli_json_set(o, "prev_hash", cli_json_hex(recs[i].prev_hash, 32));
            e |= cli_json_set(o, "hash", cli_json_hex(recs[i].hash, 32));
        }
        return cli_json_emit_list(doc, "records", arr, e);
    }
    if (n == 0) {
        printf("the audit log is empty\n");
        return CLI_OK;
    }
    printf("%6s  %-20s  %-18s  %s\n", "seq", "time (UTC)", "event", "details");
    for (size_t i = 0; i < n; i++) {
        format_time(recs[i].time, when);
        printf("%6llu  %-20s  %-18s  %s\n", (unsigned long long)recs[i].seq, when, recs[i].event,
               recs[i].details);
    }
    return CLI_OK;
}

static int audit_show(const struct cwt_config *cfg, const struct cli_globals *g)
{
    struct audit_record *recs = NULL;
    struct store *st = NULL;
    size_t n = 0;
    int rc;

    if ((rc = open_store_rdonly(cfg, &st)) != 0)
        return rc;
    if (st != NULL) {
        rc = audit_list(st, &recs, &n);
        store_close(st);
        if (rc == CWT_EFORMAT)
            return cli_error(CLI_FAIL, "the audit log holds a malformed record; run 'cwtctl "
                                       "audit verify' to find it");
        if (rc != 0)
            return cli_error(CLI_FAIL, "cannot read the audit log: %s", cwt_strerror(rc));
    }
    rc = print_records(recs, n, g->json);
    free(recs);
    return rc;
}

static int audit_verify_local(const struct cwt_config *cfg, const struct cli_globals *g)
{
    char err[CWT_ERRLEN], head[65] = "";
    struct audit_record *recs = NULL;
    struct store *st = NULL;
    size_t n = 0;
    int rc;

    if ((rc = open_store_rdonly(cfg, &st)) != 0)
        return rc;
    if (st != NULL) {
        rc = audit_verify(st, err, sizeof(err));
        if (rc == 0)
            rc = audit_list(st, &recs, &n);
        store_close(st);
        if (rc != 0) {
            free(recs);
            return cli_fail(CLI_FAIL, "audit-broken", "audit log is broken: %s", err);
        }
    }
    if (n > 0)
        cwt_hex(recs[n - 1].hash, 32, head);
    free(recs);
    if (g->json) {
        json_t *o = cli_json_doc("cwt.audit-verify/1", 1);
        if (o != NULL && (cli_json_set(o, "records", json_integer((json_int_t)n)) != 0 ||
                          cli_json_set(o, "head", json_string(head)) != 0)) {
            json_decref(o);
            o = NULL;
        }
        return cli_json_emit(o, 0);
    } else if (n == 0)
        printf("audit log intact: no records yet\n");
    else
        printf("audit log intact: %zu records, head %s\n", n, head);
    return CLI_OK;
}

static int audit_verify_export(const char *file, const char *key_line, const struct cli_globals *g)
{
    char err[CWT_ERRLEN], head[65], when[32], id[2 * CWT_KEYID_LEN + 1];
    struct cwt_roster_site signer, named;
    struct audit_export_info info;
    struct cwt_config cfg;
    struct site_keys own;
    uint8_t *buf = NULL;
    size_t len;
    int rc;

    if (key_line != NULL) {
        if (keyline_parse(key_line, &signer, err, sizeof(err)) != 0)
            return cli_error(CLI_USAGE, "--key: not a valid key line: %s", err);
    } else {
        /* No key given: this site checks its own export with its own public key. */
        if (config_load(g->config_path, &cfg, err, sizeof(err)) != 0)
            return cli_error(CLI_USAGE,
                             "give the signer's key with --key 'cwt-site-v1 ...' "
                             "(no site configuration to take it from: %s)",
                             err);
        if (keys_load_public(cfg.keys_dir, &own, err, sizeof(err)) != 0)
            return cli_error(CLI_FAIL, "%s", err);
        memset(&signer, 0, sizeof(signer));
        memcpy(signer.id, own.site_id, sizeof(signer.id));
        memcpy(signer.sign_pk, own.sign_pk, sizeof(signer.sign_pk));
        memcpy(signer.box_pk, own.box_pk, sizeof(signer.box_pk));
        memcpy(signer.key_id, own.key_id, sizeof(signer.key_id));
    }
    rc = file_read_all(file, AUDIT_EXPORT_MAX, &buf, &len, err, sizeof(err));
    if (rc != 0)
        return cli_error(rc == CWT_ENOENT || rc == CWT_EIO ? CLI_USAGE : CLI_FAIL, "%s", err);
    rc = audit_export_verify(buf, len, signer.sign_pk, &info, NULL, NULL, err, sizeof(err));
    free(buf);
    keys_id_hex(signer.key_id, id);
    if (rc != 0)
        return cli_error(CLI_FAIL, "%s: %s (key %s of %s)", file, err, id, signer.id);
    /* The signature covers the key line written in the file; it must name the same key. */
    if (keyline_parse(info.key_line, &named, err, sizeof(err)) != 0 ||
        memcmp(named.sign_pk, signer.sign_pk, sizeof(named.sign_pk)) != 0 ||
        strcmp(named.id, signer.id) != 0)
        return cli_error(CLI_FAIL,
                         "%s: signed by key %s of %s, but it names another key or "
                         "site (%s)",
                         file, id, signer.id, info.key_line);
    cwt_hex(info.head_hash, 32, head);
    format_time(info.created, when);
    if (g->json) {
        json_t *o = cli_json_doc("cwt.audit-export-verify/1", 1);
        if (o != NULL &&
            (cli_json_set_str(o, "site_id", signer.id) != 0 ||
             cli_json_set(o, "key_id", json_string(id)) != 0 ||
             cli_json_set(o, "records", json_integer((json_int_t)info.n_records)) != 0 ||
             cli_json_set(o, "created", json_integer((json_int_t)info.created)) != 0 ||
             cli_json_set(o, "head", json_string(head)) != 0)) {
            json_decref(o);
            o = NULL;
        }
        return cli_json_emit(o, 0);
    } else {
        printf("audit export verified: signed by %s (key id %s), %llu records, intact chain\n"
               "created %s, head %s\n",
               signer.id, id, (unsigned long long)info.n_records, when, head);
    }
    return CLI_OK;
}

static int audit_export(const struct cwt_config *cfg, const char *file, const struct cli_globals *g)
{
    char err[CWT_ERRLEN], chain_err[CWT_ERRLEN], line[CWT_KEYLINE_MAX + 1], head[65] = "";
    struct audit_record *recs = NULL;
    struct store *st = NULL;
    struct site_keys k;
    struct key_ops ops;
    uint8_t *out = NULL;
    size_t n = 0, len = 0;
    int rc, chain_ok;

    if (store_open(cfg->store_dir, CLI_STORE_WRITE, cfg->store_max_bytes, &st, err, sizeof(err)) !=
        0)
        return cli_error(CLI_FAIL, "%s", err);
    if ((rc = keys_load(cfg->keys_dir, &k, err, sizeof(err))) != 0) {
        (void)audit_append(st, "key-load-refused", "%s", err);
        store_close(st);
        return cli_error(CLI_FAIL, "%s", err);
    }
    if ((rc = keys_audit_load(st, &k, "audit export")) != 0) {
        rc = cli_error(CLI_FAIL, "the key load could not be written to the audit log: %s",
                       cwt_strerror(rc));
        goto out;
    }
    chain_ok = audit_verify(st, chain_err, sizeof(chain_err)) == 0;
    if ((rc = audit_list(st, &recs, &n)) != 0) {
        rc = cli_error(CLI_FAIL, "cannot read the audit log: %s", cwt_strerror(rc));
        goto out;
    }
    keyops_local(&k, &ops);
    if (keyline_format(k.site_id, k.sign_pk, k.box_pk, line, sizeof(line), NULL) != 0 ||
        audit_export_encode(recs, n, line, &ops, cwt_now(), &out, &len, err, sizeof(err)) != 0 ||
        file_write_atomic(file, out, len, 0644, err, sizeof(err)) != 0) {
        rc = cli_error(CLI_FAIL, "audit export failed: %s", err);
        goto out;
    }
    if (n > 0)
        cwt_hex(recs[n - 1].hash, 32, head);
    (void)audit_append(st, "audit-export", "exported records 1-%zu (head %s) to %s", n, head, file);
    if (!chain_ok) {
        /* Exported all the same: the auditor needs the evidence, and will see the break. */
        rc = cli_error(CLI_FAIL, "exported %zu records to %s, but the log is broken: %s", n, file,
                       chain_err);
        goto out;
    }
    if (g->json) {
        json_t *o = cli_json_doc("cwt.audit-export/1", 1);
        if (o != NULL && (cli_json_set_str(o, "file", file) != 0 ||
                          cli_json_set(o, "records", json_integer((json_int_t)n)) != 0 ||
                          cli_json_set(o, "head", json_string(head)) != 0)) {
            json_decref(o);
            o = NULL;
        }
        if (cli_json_emit(o, 0) != 0) {
            rc = CLI_FAIL;
            goto out;
        }
    } else {
        printf("exported %zu audit records to %s, signed by %s\n", n, file, k.site_id);
    }
    rc = CLI_OK;
out:
    free(out);
    free(recs);
    keys_free(&k);
    store_close(st);
    return rc;
}

int cmd_audit(int argc, char **argv, const struct cli_globals *g)
{
    static const struct option opts[] = {{"export", required_argument, NULL, 'e'},
                                         {"key", required_argument, NULL, 'k'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *sub = argc > 1 ? argv[1] : "", *export_file = NULL, *key_line = NULL;
    char name[32];
    struct cwt_config cfg;
    int ch, rc;

    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        audit_usage(stdout);
        return CLI_OK;
    }
    if (strcmp(sub, "show") != 0 && strcmp(sub, "verify") != 0 && strcmp(sub, "export") != 0) {
        audit_usage(stderr);
        return CLI_USAGE;
    }
    optind = 0;
    opterr = 0;
    snprintf(name, sizeof(name), "audit %s", sub);
    while ((ch = cli_getopt(argc - 1, argv + 1, "+h", opts, name)) != -1) {
        switch (ch) {
        case 'e':
            export_file = optarg;
            break;
        case 'k':
            key_line = optarg;
            break;
        case 'h':
            audit_usage(stdout);
            return CLI_OK;
        default:
            return CLI_USAGE;
        }
    }
    optind++; /* getopt ran over argv + 1 */
    if (strcmp(sub, "verify") == 0 && export_file != NULL) {
        if (optind != argc)
            return cli_error(CLI_USAGE, "audit verify --export FILE takes no other argument");
        return audit_verify_export(export_file, key_line, g);
    }
    if (export_file != NULL || key_line != NULL)
        return cli_error(CLI_USAGE, "--export and --key belong to 'audit verify --export'");
    if (strcmp(sub, "export") == 0 ? optind != argc - 1 : optind != argc)
        return cli_error(CLI_USAGE, "%s",
                         strcmp(sub, "export") == 0 ? "audit export needs one FILE to write"
                                                    : "this audit command takes no argument");
    if ((rc = cli_load_site(g, &cfg, NULL)) != 0)
        return rc;
    if (strcmp(sub, "show") == 0)
        return audit_show(&cfg, g);
    if (strcmp(sub, "verify") == 0)
        return audit_verify_local(&cfg, g);
    return audit_export(&cfg, argv[optind], g);
}
