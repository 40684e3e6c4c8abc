/*
 * cmd_ingest.c - `cwtctl ingest`: load images and labels into the site store.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "cli/cli.h"
#include "cli/ingest.h"

/* The version of `ingest --json`'s summary (docs/ingest.md). */
#define INGEST_SCHEMA "cwt.ingest/1"
/* Conflicts recorded one by one in the audit log; a data set with more has a deeper problem
 * than a list can show, and the rest are counted in the ingest record. */
#define CONFLICTS_AUDITED 10000

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cwtctl ingest [OPTIONS] FILE.csv\n"
            "       cwtctl ingest [OPTIONS] DIR\n"
            "       cwtctl ingest [OPTIONS] IMAGES-idx3-ubyte[.gz] LABELS-idx1-ubyte[.gz]\n\n"
            "  FILE.csv   header 'path,label[,split]', paths relative to the CSV's folder\n"
            "  DIR        one sub-folder per class, named by class name or index\n\n"
            "Options:\n"
            "  --split train|val|test    the split of every image (a CSV's column wins)\n"
            "  --val-fraction F          stratified seeded split: this share of each class\n"
            "  --test-fraction F           to val and test, the rest to train\n"
            "  --seed N                  seed of the stratified split (default: the "
            "recipe's)\n"
            "  --batch N                 images per committed batch (default: a multiple of %d,\n"
            "                            about half a second of work)\n"
            "  --duplicates skip|keep|refuse\n"
            "                            a copy of a stored image with another label or split:\n"
            "                            report and skip it (default), store it too, or stop\n\n"
            "Exit status: 0 all stored or skipped as duplicates, 1 something was rejected "
            "or failed, 2 usage or configuration error.\n",
            INGEST_BATCH_DEFAULT);
}

/* Replaces what would break an audit record's one line. */
static void one_line(char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

/* Prints the summary; under --json the cwt.ingest/1 document (docs/schemas/ingest.json), with
 * "ok" false and the failure's error code and message when rc (ingest_run's result) is not 0 or
 * something was rejected. */
static void print_summary(const struct ingest_summary *s, int rc, const char *err,
                          const struct cli_globals *g)
{
    double rate = s->seconds > 0 ? (double)s->ingested / s->seconds : 0.0;

    if (g->json) {
        json_t *o = cli_json_doc(INGEST_SCHEMA, rc == 0 && s->rejected == 0), *reasons;
        int bad = o == NULL;
        if (bad) {
            cli_json_emit(NULL, 0);
            return;
        }
        bad |= cli_json_set(o, "items", json_integer((json_int_t)s->items));
        bad |= cli_json_set(o, "ingested", json_integer((json_int_t)s->ingested));
        bad |= cli_json_set(o, "duplicates", json_integer((json_int_t)s->duplicates));
        bad |= cli_json_set(o, "conflicts", json_integer((json_int_t)s->conflicts));
        bad |= cli_json_set(o, "rejected", json_integer((json_int_t)s->rejected));
        bad |= cli_json_set(o, "reasons", reasons = json_object());
        for (int r = 0; bad == 0 && r < INGEST_NREASONS; r++)
            if (s->reasons[r] > 0)
                bad |= cli_json_set(reasons, ingest_reason_text((enum ingest_reason)r),
                                    json_integer((json_int_t)s->reasons[r]));
        bad |= cli_json_set(o, "seconds", json_real(round(s->seconds * 1000.0) / 1000.0));
        if (rc != 0) {
            bad |= cli_json_set_str(o, "error", cwt_errname(rc));
            bad |= cli_json_set_str(o, "message", err);
        }
        if (bad) {
            json_decref(o);
            o = NULL;
        }
        cli_json_emit(o, 0);
        return;
    }
    printf("ingested %llu, skipped as duplicate %llu, rejected %llu (%llu items in %.1f s, "
           "%.0f images/s)\n",
           (unsigned long long)s->ingested, (unsigned long long)s->duplicates,
           (unsigned long long)s->rejected, (unsigned long long)s->items, s->seconds, rate);
    if (s->conflicts > 0)
        printf("  duplicates with another label or split: %llu (listed above; "
               "'cwtctl data' counts them)\n",
               (unsigned long long)s->conflicts);
    for (int r = 0; r < INGEST_NREASONS; r++)
        if (s->reasons[r] > 0)
            printf("  rejected: %llu %s\n", (unsigned long long)s->reasons[r],
                   ingest_reason_text((enum ingest_reason)r));
}

/* Conflicts to record in the audit log once the ingest's batches are committed (an audit
 * record is a write transaction of its own and cannot happen inside a batch). */
struct conflicts {
    char **line;
    size_t n, cap;
    int oom;
};

/* "differs=label+split hash=HEX new_label=L new_split=S stored_label=L stored_split=S
 * new=PATH stored=PATH": differs first, since `cwtctl data` counts by it; paths last, since
 * a long one is cut at the record's 511 bytes. */
static void collect_conflict(const struct ingest_conflict *c, void *ctx)
{
    struct conflicts *cs = ctx;
    char hex[65], *line = NULL;
    int dl = c->label != c->stored_label, ds = c->split != c->stored_split;

    if (cs->n == CONFLICTS_AUDITED)
        return;
    if (cs->n == cs->cap) {
        size_t cap = cs->cap ? 2 * cs->cap : 16;
        char **grown = realloc(cs->line, cap * sizeof(*grown));
        if (grown == NULL) {
            cs->oom = 1;
            return;
        }
        cs->line = grown;
        cs->cap = cap;
    }
    sodium_bin2hex(hex, sizeof(hex), c->hash, 32);
    if (asprintf(&line,
                 "differs=%s hash=%s new_label=%u new_split=%s stored_label=%u "
                 "stored_split=%s kept=%s new=%s stored=%s",
                 dl && ds ? "label+split"
                 : dl     ? "label"
                          : "split",
                 hex, c->label, store_split_name((enum store_split)c->split), c->stored_label,
                 store_split_name((enum store_split)c->stored_split), c->kept ? "yes" : "no",
                 c->where, c->stored_where != NULL ? c->stored_where : "(earlier ingest)") < 0) {
        cs->oom = 1;
        return;
    }
    one_line(line);
    cs->line[cs->n++] = line;
}

int cmd_ingest(int argc, char **argv, const struct cli_globals *g)
{
    static const struct option longopts[] = {
        {"split", required_argument, NULL, 's'},
        {"val-fraction", required_argument, NULL, 'V'},
        {"test-fraction", required_argument, NULL, 'T'},
        {"seed", required_argument, NULL, 'S'},
        {"batch", required_argument, NULL, 'b'},
        {"duplicates", required_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct ingest_options opt = {0};
    struct ingest_summary sum;
    struct conflicts cs = {0};
    struct cwt_config cfg;
    struct cwt_roster *roster = NULL;
    struct store *st = NULL;
    char err[CWT_ERRLEN], source[256];
    int have_split = 0, have_frac = 0, have_seed = 0, ch, rc, code;
    int64_t num;

    optind = 0;
    opterr = 0;
    while ((ch = cli_getopt(argc, argv, "h", longopts, "ingest")) != -1) {
        switch (ch) {
        case 's':
            if (store_split_parse(optarg, &opt.split) != 0)
                return cli_error(CLI_USAGE, "--split must be train, val or test, not '%s'", optarg);
            have_split = 1;
            break;
        case 'V':
        case 'T':
            if (cwt_parse_double(optarg, 0.0, 0.999999,
                                 ch == 'V' ? &opt.val_fraction : &opt.test_fraction) != 0)
                return cli_error(CLI_USAGE, "--%s must be a number in [0, 1), not '%s'",
                                 ch == 'V' ? "val-fraction" : "test-fraction", optarg);
            have_frac = 1;
            break;
        case 'S':
            if (cwt_parse_i64(optarg, 0, INT64_MAX, &num) != 0)
                return cli_error(CLI_USAGE, "--seed must be a non-negative integer, not '%s'",
                                 optarg);
            opt.seed = (uint64_t)num;
            have_seed = 1;
            break;
        case 'b':
            if (cwt_parse_i64(optarg, 1, 1000000, &num) != 0)
                return cli_error(CLI_USAGE, "--batch must be an integer in 1..1000000");
            opt.batch_images = (uint32_t)num;
            break;
        case 'D':
            if (strcmp(optarg, "skip") == 0)
                opt.duplicates = INGEST_DUP_SKIP;
            else if (strcmp(optarg, "keep") == 0)
                opt.duplicates = INGEST_DUP_KEEP;
            else if (strcmp(optarg, "refuse") == 0)
                opt.duplicates = INGEST_DUP_REFUSE;
            else
                return cli_error(CLI_USAGE, "--duplicates must be skip, keep or refuse, not '%s'",
                                 optarg);
            break;
        case 'h':
            usage(stdout);
            return CLI_OK;
        default:
            return CLI_USAGE;
        }
    }
    if (have_split && have_frac)
        return cli_error(CLI_USAGE, "use either --split or --val-fraction/--test-fraction");
    if (have_seed && !have_frac)
        return cli_error(CLI_USAGE, "--seed needs --val-fraction or --test-fraction");
    if (opt.val_fraction + opt.test_fraction >= 1.0)
        return cli_error(CLI_USAGE, "--val-fraction and --test-fraction must sum to less "
                                    "than 1");
    if (argc - optind < 1 || argc - optind > 2) {
        usage(stderr);
        return CLI_USAGE;
    }

    roster = malloc(sizeof(*roster));
    if (roster == NULL)
        return cli_error(CLI_FAIL, "out of memory");
    rc = cli_load_site(g, &cfg, roster);
    if (rc != 0) {
        free(roster);
        return rc;
    }
    if (have_frac) {
        opt.split_mode = INGEST_SPLIT_STRATIFIED;
        if (!have_seed)
            opt.seed = roster->recipe.seed;
    } else if (have_split) {
        opt.split_mode = INGEST_SPLIT_FIXED;
    }
    opt.progress = isatty(STDERR_FILENO);
    opt.report = stderr;
    opt.on_conflict = collect_conflict;
    opt.conflict_ctx = &cs;

    rc = store_open(cfg.store_dir, CLI_STORE_WRITE, cfg.store_max_bytes, &st, err, sizeof(err));
    if (rc != 0) {
        free(roster);
        return cli_error(CLI_FAIL, "%s", err);
    }
    rc =
        store_set_shape(st, roster->recipe.input_h, roster->recipe.input_w, roster->recipe.input_c);
    if (rc != 0) {
        uint32_t h = 0, w = 0, c = 0;
        (void)store_get_shape(st, &h, &w, &c);
        code = rc == CWT_ESTATE
                   ? cli_error(CLI_USAGE,
                               "the store holds %ux%ux%u images but the roster's recipe says "
                               "%ux%ux%u",
                               h, w, c, roster->recipe.input_h, roster->recipe.input_w,
                               roster->recipe.input_c)
                   : cli_error(CLI_USAGE, "the recipe's input %ux%ux%u cannot be stored: %s",
                               roster->recipe.input_h, roster->recipe.input_w,
                               roster->recipe.input_c, cwt_strerror(rc));
        goto out;
    }

    rc = ingest_run(st, &roster->recipe, (const char *const *)argv + optind, argc - optind, &opt,
                    &sum, err, sizeof(err));
    if (rc == CWT_EINVAL) {
        code = cli_error(CLI_USAGE, "%s", err);
        goto out;
    }
    print_summary(&sum, rc, err, g);
    snprintf(source, sizeof(source), "%s%s%s", argv[optind], argc - optind == 2 ? " " : "",
             argc - optind == 2 ? argv[optind + 1] : "");
    one_line(source);
    for (size_t i = 0; i < cs.n; i++)
        if (audit_append(st, INGEST_CONFLICT_EVENT, "%s", cs.line[i]) != 0) {
            fprintf(stderr, "cwtctl: warning: a conflicting duplicate could not be recorded in "
                            "the audit log\n");
            break;
        }
    if (cs.oom || sum.conflicts > cs.n)
        fprintf(stderr,
                "cwtctl: warning: %llu of %llu conflicting duplicates are recorded one by one "
                "in the audit log\n",
                (unsigned long long)cs.n, (unsigned long long)sum.conflicts);
    if (audit_append(st, "ingest",
                     "source=%s ingested=%llu duplicates=%llu conflicts=%llu rejected=%llu%s",
                     source, (unsigned long long)sum.ingested, (unsigned long long)sum.duplicates,
                     (unsigned long long)sum.conflicts, (unsigned long long)sum.rejected,
                     rc != 0 ? " incomplete" : "") != 0)
        fprintf(stderr, "cwtctl: warning: the ingest could not be recorded in the audit log\n");
    if (rc != 0)
        code = cli_error(CLI_FAIL, "%s", err);
    else
        code = sum.rejected > 0 ? CLI_FAIL : CLI_OK;
out:
    for (size_t i = 0; i < cs.n; i++)
        free(cs.line[i]);
    free(cs.line);
    store_close(st);
    free(roster);
    return code;
}
