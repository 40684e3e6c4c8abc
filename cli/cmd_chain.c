/*
 * cmd_chain.c - `cwtctl chain verify FILE.cwtb...`: that a set of bundles is one provenance
 * chain. Each file must verify on its own (bundle_verify); then, ordered by sequence, each
 * bundle's parent is the previous file's hash, sequences rise by one (no gap), no sequence
 * appears twice (no fork), each sender is the roster's next site and was a recipient of the
 * bundle before, and a final bundle ends the chain. The first file may start mid-chain: its
 * parent then lies outside the files given, and the table says so.
 */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "crypto/bundle.h"
#include "crypto/keys.h"

struct link {
    const char *file;
    struct bundle_info info;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: cwtctl chain verify [--roster FILE] FILE.cwtb... [--json]\n\n"
               "Checks that the bundles form one chain: each verifies against the roster\n"
               "(the site's, or --roster FILE), parents link, sequences rise without gap or\n"
               "fork, and senders follow the roster's cycle order. Prints the chain as a\n"
               "table. Exit 1 if any check fails.\n");
}

static int cmp_seq(const void *a, const void *b)
{
    const struct link *x = a, *y = b;

    if (x->info.hdr.sequence != y->info.hdr.sequence)
        return x->info.hdr.sequence < y->info.hdr.sequence ? -1 : 1;
    return strcmp(x->file, y->file);
}

/* The link rules between consecutive bundles; one sentence in err on failure. */
static int check_links(const struct cwt_roster *r, const struct link *l, size_t n, char *err,
                       size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const struct bundle_header *h = &l[i].info.hdr;
        if (h->kind == BUNDLE_KIND_ENSEMBLE_MEMBER)
            return cwt_seterr(err, errlen, CWT_EB_PARENT,
                              "%s is an ensemble member, which is not part of a chain", l[i].file);
        if (i == 0) {
            if (h->sequence == 0 && h->has_parent)
                return cwt_seterr(err, errlen, CWT_EB_PARENT,
                                  "%s has sequence 0 but names a parent", l[i].file);
            continue;
        }
        const struct bundle_header *p = &l[i - 1].info.hdr;
        if (memcmp(l[i].info.file_hash, l[i - 1].info.file_hash, 32) == 0)
            return cwt_seterr(err, errlen, CWT_EB_REPLAY, "%s and %s are the same bundle",
                              l[i - 1].file, l[i].file);
        if (h->sequence == p->sequence)
            return cwt_seterr(err, errlen, CWT_EB_PARENT,
                              "%s and %s both have sequence %llu (a fork)", l[i - 1].file,
                              l[i].file, (unsigned long long)h->sequence);
        if (h->sequence != p->sequence + 1)
            return cwt_seterr(err, errlen, CWT_EB_PARENT,
                              "gap: sequence %llu (%s) follows %llu (%s)",
                              (unsigned long long)h->sequence, l[i].file,
                              (unsigned long long)p->sequence, l[i - 1].file);
        if (p->kind == BUNDLE_KIND_FINAL)
            return cwt_seterr(err, errlen, CWT_EB_PARENT, "%s follows the final bundle %s",
                              l[i].file, l[i - 1].file);
        if (!h->has_parent || memcmp(h->parent_hash, l[i - 1].info.file_hash, 32) != 0)
            return cwt_seterr(err, errlen, CWT_EB_PARENT,
                              "%s (sequence %llu) does not name %s as its parent", l[i].file,
                              (unsigned long long)h->sequence, l[i - 1].file);
        if ((uint32_t)l[i].info.sender_index != (p->hop + 1) % r->n_sites)
            return cwt_seterr(err, errlen, CWT_EB_SIGNER,
                              "%s comes from %s, but after %s the roster's next site is %s",
                              l[i].file, h->sender, p->sender,
                              r->sites[(p->hop + 1) % r->n_sites].id);
        int was_recipient = 0;
        for (uint32_t k = 0; k < p->n_recipients; k++)
            if (strcmp(p->recipients[k], h->sender) == 0)
                was_recipient = 1;
        if (!was_recipient)
            return cwt_seterr(err, errlen, CWT_EB_RECIPIENT,
                              "%s was sent by %s, which was not a recipient of %s", l[i].file,
                              h->sender, l[i - 1].file);
    }
    return 0;
}

static void print_table(const struct link *l, size_t n)
{
    printf("%-5s %-5s %-4s %-8s %-14s %-14s %-20s %-8s %-16s %s\n", "SEQ", "CYCLE", "HOP", "KIND",
           "SENDER", "TO", "CREATED", "VAL_ACC", "HASH", "FILE");
    for (size_t i = 0; i < n; i++) {
        const struct bundle_header *h = &l[i].info.hdr;
        char hash[65], when[32], acc[16];
        time_t t = (time_t)h->created;
        struct tm tm;
        cwt_hex(l[i].info.file_hash, 32, hash);
        hash[16] = '\0';
        if (gmtime_r(&t, &tm) == NULL ||
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
            snprintf(when, sizeof(when), "%lld", (long long)h->created);
        if (isnan(h->summary.val_accuracy))
            snprintf(acc, sizeof(acc), "-");
        else
            snprintf(acc, sizeof(acc), "%.4f", h->summary.val_accuracy);
        printf("%-5llu %-5u %-4u %-8s %-14s %-14s %-20s %-8s %-16s %s\n",
               (unsigned long long)h->sequence, h->cycle, h->hop, bundle_kind_name(h->kind),
               h->sender, h->n_recipients > 1 ? "(several)" : h->recipients[0], when, acc, hash,
               l[i].file);
    }
}

/* cwt.chain-verify/1: the bundles in sequence order; on failure ok false with error (a stable
 * name) and message. Returns 0 or CLI_FAIL. */
static int print_json(const struct cwt_roster *r, const struct link *l, size_t n, int ok,
                      const char *errcode, const char *err)
{
    json_t *doc = cli_json_doc("cwt.chain-verify/1", ok), *arr = json_array();
    int rc = doc == NULL ? CWT_ENOMEM : 0;

    if (doc != NULL && !ok) {
        rc |= cli_json_set(doc, "error", json_string(errcode));
        rc |= cli_json_set_str(doc, "message", err);
    }
    for (size_t i = 0; arr != NULL && i < n; i++) {
        json_t *b = json_object();
        if (b == NULL || json_array_append_new(arr, b) != 0) {
            rc = CWT_ENOMEM;
            break;
        }
        rc |= cli_json_set_str(b, "file", l[i].file);
        rc |= cli_json_set(b, "bundle", bundle_json(&l[i].info, r));
    }
    return cli_json_emit_list(doc, "bundles", arr, rc);
}

static int chain_verify(int argc, char **argv, const struct cli_globals *g)
{
    static const struct option opts[] = {{"roster", required_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *roster_path = NULL;
    char err[CWT_ERRLEN];
    struct cwt_roster *r;
    struct cwt_config *cfg;
    struct link *l;
    size_t n;
    int opt, rc;

    optind = 0;
    while ((opt = cli_getopt(argc, argv, "h", opts, "chain verify")) != -1) {
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
    if (crypto_init() != 0)
        return cli_error(CLI_FAIL, "cannot initialise libsodium");
    n = (size_t)(argc - optind);
    r = calloc(1, sizeof(*r));
    cfg = calloc(1, sizeof(*cfg));
    l = calloc(n, sizeof(*l));
    if (r == NULL || cfg == NULL || l == NULL) {
        rc = cli_error(CLI_FAIL, "out of memory");
        goto out;
    }
    if (roster_path != NULL) {
        if (roster_load(roster_path, r, err, sizeof(err)) != 0) {
            rc = cli_error(CLI_USAGE, "%s", err);
            goto out;
        }
    } else if ((rc = cli_load_site(g, cfg, r)) != 0) {
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        l[i].file = argv[optind + (int)i];
        if ((rc = bundle_verify(r, l[i].file, &l[i].info, err, sizeof(err))) != 0) {
            if (g->json)
                print_json(r, l, 0, 0, cwt_errname(rc), err);
            rc = cli_error(CLI_FAIL, "%s", err);
            goto out;
        }
    }
    qsort(l, n, sizeof(*l), cmp_seq);
    if (check_links(r, l, n, err, sizeof(err)) != 0) {
        if (g->json)
            print_json(r, l, n, 0, "chain-broken", err);
        else
            print_table(l, n);
        rc = cli_error(CLI_FAIL, "not one chain: %s", err);
        goto out;
    }
    if (g->json) {
        if (print_json(r, l, n, 1, NULL, NULL) != 0) {
            rc = CLI_FAIL;
            goto out;
        }
    } else {
        print_table(l, n);
        printf("chain of %zu bundle(s), sequence %llu to %llu: intact%s\n", n,
               (unsigned long long)l[0].info.hdr.sequence,
               (unsigned long long)l[n - 1].info.hdr.sequence,
               l[0].info.hdr.has_parent ? " (its first parent is not among the files)" : "");
    }
    rc = CLI_OK;
out:
    free(r);
    free(cfg);
    free(l);
    return rc;
}

int cmd_chain(int argc, char **argv, const struct cli_globals *g)
{
    if (argc >= 2 && strcmp(argv[1], "verify") == 0)
        return chain_verify(argc - 1, argv + 1, g);
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return CLI_OK;
    }
    usage(stderr);
    return CLI_USAGE;
}
