/*
 * cmd_simulate.c - `cwtctl simulate`: the CWT experiment with virtual institutions built from
 * this site's store (docs/simulate.md).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "sim/sim.h"
#include "common/fileio.h"
#include "storage/store.h"

#define DEFAULT_OUT "simulate-out"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cwtctl simulate [-c SITE/cwtd.conf] [--sites N] [--partition P]\n"
            "                       [--heuristics LIST] [--visits LIST] [--budget E]\n"
            "                       [--seeds S] [--through-bundles] [--out DIR] [--json]\n"
            "                       [--plus MODS] [--max-train N] [--max-val N] [--max-test N]\n"
            "                       [--augment LIST] [--freeze N] [--backbone-lr S]\n"
            "                       [--local-bn none|stats|all]\n"
            "\n"
            "Divides the store's train and val splits among N virtual institutions and trains\n"
            "the roster's model with each heuristic on the same budget; test stays pooled.\n"
            "\n"
            "  --sites N          virtual institutions (1-%d); by-column: the column's values\n"
            "  --partition P      iid (default), label-skew:ALPHA, size-skew:W1,...,WN,\n"
            "                     by-column:NAME (one institution per value of a metadata\n"
            "                     column of the ingest CSV)\n"
            "  --heuristics LIST  of central,single,ensemble,swt,cwt,cwt+,fedavg,fedprox:MU\n"
            "                     (default: the first six)\n"
            "  --visits LIST      cwt/cwt+ visit lengths, fedavg/fedprox local epochs per\n"
            "                     round, in local epochs (default 1)\n"
            "  --budget E         epochs of the pooled training data (default: recipe epochs);\n"
            "                     every heuristic gets round(E * ceil(N_train / batch)) steps\n"
            "  --seeds S          repetitions with seeds recipe.seed .. recipe.seed+S-1\n"
            "  --through-bundles  every swt/cwt hand-over is a sealed, verified, opened .cwtb\n"
            "  --out DIR          results.csv, results.json, table.txt, *.svg (default %s)\n"
            "  --plus MODS        cwt+ modifications: all, or a list of\n"
            "                     proportional,loss,sampling,clr (default\n"
            "                     proportional,sampling,clr)\n"
            "  --max-train N      use a fixed random subset of at most N images of a split\n"
            "  --max-val N, --max-test N\n"
            "  --augment LIST     replaces the recipe's augmentation: none, or a list of\n"
            "                     crop[:SMIN], pad:N, hflip, vflip, rot:DEG, jitter:X,\n"
            "                     brightness:X, contrast:X\n"
            "  --freeze N         resnet: freeze the stem (stage 0) and the next N-1 stages\n"
            "  --backbone-lr S    lr multiplier of every parameter but the classifier\n"
            "  --local-bn stats   cwt/cwt+ keep batch-norm statistics at each site (SiloBN);\n"
            "                     all: also its affine parameters (FedBN); default none\n",
            CWT_MAX_SITES, DEFAULT_OUT);
}

static int parse_count(const char *opt, const char *arg, int64_t lo, int64_t hi, int64_t *out)
{
    if (cwt_parse_i64(arg, lo, hi, out) != 0)
        return cli_error(CLI_USAGE, "%s %s: expected a whole number from %lld to %lld", opt, arg,
                         (long long)lo, (long long)hi);
    return 0;
}

/* Appends word to out (capacity len, used *n), single-quoted when a shell would split or
 * expand it, so the line can be pasted back. Stops (with "...") when full. */
static void append_word(char *out, size_t len, size_t *n, const char *word)
{
    int plain = word[0] != '\0';
    size_t need;

    for (const char *p = word; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("_./:=,+-@%", *p) != NULL))
            plain = 0;
    need = strlen(word) + (plain ? 1 : 3);
    if (*n + need + 4 >= len) {
        if (*n + 4 < len)
            *n += (size_t)snprintf(out + *n, len - *n, " ...");
        return;
    }
    if (*n > 0)
        out[(*n)++] = ' ';
    if (!plain)
        out[(*n)++] = '\'';
    for (const char *p = word; *p; p++) {
        /* A single quote inside single quotes: close, escaped quote, reopen. */
        if (*p == '\'') {
            if (*n + 8 >= len)
                break;
            memcpy(out + *n, "'\\''", 4);
            *n += 4;
        } else if (*n + 4 < len) {
            out[(*n)++] = *p;
        }
    }
    if (!plain)
        out[(*n)++] = '\'';
    out[*n] = '\0';
}

/* The command as run, for the results' provenance: the site's configuration file, the global
 * options, and simulate's own arguments. */
static void command_line(int argc, char **argv, const struct cli_globals *g, char *out, size_t len)
{
    size_t n = 0;

    out[0] = '\0';
    append_word(out, len, &n, "cwtctl");
    if (g->config_path != NULL) {
        append_word(out, len, &n, "-c");
        append_word(out, len, &n, g->config_path);
    }
    if (g->json)
        append_word(out, len, &n, "--json");
    if (g->verbose)
        append_word(out, len, &n, "-v");
    for (int i = 0; i < argc; i++)
        append_word(out, len, &n, argv[i]);
}

/* "run k/N <heuristic>, step s/S, ETA mm:ss": the ETA is over all runs, from the steps done. */
static void show_progress(const struct sim_progress *p, void *ctx)
{
    struct progress *prog = ctx;

    if (p->finished) {
        progress_clear(prog);
        return;
    }
    progress_draw(prog, 0, p->done, p->total, "run %u/%u %s, step %llu/%llu", p->run, p->runs,
                  p->label, (unsigned long long)p->step, (unsigned long long)p->steps);
}

/* Applies --augment, --freeze and --backbone-lr (absent: NULL, -1, -1) to the recipe, with
 * the limits the roster has (config.c). Returns 0 or the exit code of a usage error. */
static int finetune_overrides(struct cwt_recipe *r, const char *augment, int64_t freeze,
                              double backbone_lr)
{
    char err[CWT_ERRLEN];
    uint32_t stages = strcmp(r->model, "resnet") != 0 ? 0 : r->resnet_depth == 8 ? 4 : 5;

    if (augment != NULL && sim_augment_parse(augment, r, err, sizeof(err)) != 0)
        return cli_error(CLI_USAGE, "%s", err);
    if (freeze > (int64_t)stages)
        return cli_error(CLI_USAGE,
                         "--freeze %lld: the recipe's model has %u stages (stem = stage 0; "
                         "freezing needs a resnet)",
                         (long long)freeze, stages);
    if (freeze >= 0)
        r->freeze_stages = (uint32_t)freeze;
    if (backbone_lr >= 0.0)
        r->backbone_lr_scale = backbone_lr;
    return 0;
}

int cmd_simulate(int argc, char **argv, const struct cli_globals *g)
{
    enum {
        OPT_SITES = 256,
        OPT_PARTITION,
        OPT_HEUR,
        OPT_VISITS,
        OPT_BUDGET,
        OPT_SEEDS,
        OPT_BUNDLES,
        OPT_OUT,
        OPT_PLUS,
        OPT_MAX_TRAIN,
        OPT_MAX_VAL,
        OPT_MAX_TEST,
        OPT_AUGMENT,
        OPT_FREEZE,
        OPT_BACKBONE_LR,
        OPT_LOCAL_BN,
        OPT_HELP
    };
    static const struct option opts[] = {
        {"sites", required_argument, NULL, OPT_SITES},
        {"partition", required_argument, NULL, OPT_PARTITION},
        {"heuristics", required_argument, NULL, OPT_HEUR},
        {"visits", required_argument, NULL, OPT_VISITS},
        {"budget", required_argument, NULL, OPT_BUDGET},
        {"seeds", required_argument, NULL, OPT_SEEDS},
        {"through-bundles", no_argument, NULL, OPT_BUNDLES},
        {"out", required_argument, NULL, OPT_OUT},
        {"plus", required_argument, NULL, OPT_PLUS},
        {"max-train", required_argument, NULL, OPT_MAX_TRAIN},
        {"max-val", required_argument, NULL, OPT_MAX_VAL},
        {"max-test", required_argument, NULL, OPT_MAX_TEST},
        {"augment", required_argument, NULL, OPT_AUGMENT},
        {"freeze", required_argument, NULL, OPT_FREEZE},
        {"backbone-lr", required_argument, NULL, OPT_BACKBONE_LR},
        {"local-bn", required_argument, NULL, OPT_LOCAL_BN},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    const char *partition = "iid", *heuristics = "central,single,ensemble,swt,cwt,cwt+";
    const char *visits = "1", *plus = NULL, *augment = NULL;
    int64_t freeze = -1;
    double backbone_lr = -1.0;
    struct sim_setup s;
    struct progress prog;
    struct sim_report rep;
    struct cwt_config *cfg = NULL;
    struct cwt_roster *roster = NULL;
    struct store *st = NULL;
    struct eng_device *dev = NULL;
    char err[CWT_ERRLEN];
    int64_t v;
    int have_budget = 0, rc, opt;

    memset(&s, 0, sizeof(s));
    memset(&rep, 0, sizeof(rep));
    command_line(argc, argv, g, rep.command, sizeof(rep.command));
    s.n_seeds = 1;
    s.out_dir = DEFAULT_OUT;
    optind = 0;
    opterr = 0;
    while ((opt = cli_getopt(argc, argv, "+:", opts, "simulate")) != -1) {
        switch (opt) {
        case OPT_SITES:
            if (parse_count("--sites", optarg, 1, CWT_MAX_SITES, &v) != 0)
                return CLI_USAGE;
            s.sites = (uint32_t)v;
            break;
        case OPT_PARTITION:
            partition = optarg;
            break;
        case OPT_HEUR:
            heuristics = optarg;
            break;
        case OPT_VISITS:
            visits = optarg;
            break;
        case OPT_BUDGET:
            if (cwt_parse_double(optarg, 1e-6, 1e6, &s.budget_epochs) != 0)
                return cli_error(CLI_USAGE,
                                 "--budget %s: expected a positive number of epochs "
                                 "(at most 1e6)",
                                 optarg);
            have_budget = 1;
            break;
        case OPT_SEEDS:
            if (parse_count("--seeds", optarg, 1, 1000, &v) != 0)
                return CLI_USAGE;
            s.n_seeds = (uint32_t)v;
            break;
        case OPT_BUNDLES:
            s.through_bundles = 1;
            break;
        case OPT_OUT:
            if (optarg[0] == '\0')
                return cli_error(CLI_USAGE, "--out needs a folder name");
            s.out_dir = optarg;
            break;
        case OPT_PLUS:
            plus = optarg;
            break;
        case OPT_MAX_TRAIN:
        case OPT_MAX_VAL:
        case OPT_MAX_TEST:
            if (parse_count(opt == OPT_MAX_TRAIN ? "--max-train"
                            : opt == OPT_MAX_VAL ? "--max-val"
                                                 : "--max-test",
                            optarg, 1, INT64_MAX / 2, &v) != 0)
                return CLI_USAGE;
            *(opt == OPT_MAX_TRAIN ? &s.max_train
              : opt == OPT_MAX_VAL ? &s.max_val
                                   : &s.max_test) = (size_t)v;
            break;
        case OPT_AUGMENT:
            augment = optarg;
            break;
        case OPT_FREEZE:
            if (parse_count("--freeze", optarg, 0, 5, &freeze) != 0)
                return CLI_USAGE;
            break;
        case OPT_BACKBONE_LR:
            if (cwt_parse_double(optarg, 0.0, 10.0, &backbone_lr) != 0)
                return cli_error(CLI_USAGE, "--backbone-lr %s: expected a number from 0 to 10",
                                 optarg);
            break;
        case OPT_LOCAL_BN:
            if (sim_local_bn_parse(optarg, &s.local_bn, err, sizeof(err)) != 0)
                return cli_error(CLI_USAGE, "%s", err);
            break;
        case OPT_HELP:
            usage(stdout);
            return CLI_OK;
        default:
            return CLI_USAGE;
        }
    }
    if (optind < argc)
        return cli_error(CLI_USAGE, "simulate: unexpected argument '%s'", argv[optind]);
    if (s.sites == 0 && strncmp(partition, "by-column:", 10) != 0)
        return cli_error(CLI_USAGE, "simulate needs --sites N (see 'cwtctl simulate --help')");
    if (sim_part_rule_parse(partition, s.sites, &s.rule, err, sizeof(err)) != 0 ||
        sim_heur_parse(heuristics, s.want, &s.prox_mu, err, sizeof(err)) != 0 ||
        sim_parse_list(visits, 1000, s.visits, 16, &s.n_visits, err, sizeof(err)) != 0 ||
        (plus != NULL && sim_plus_parse(plus, &s.plus, err, sizeof(err)) != 0))
        return cli_error(CLI_USAGE, "%s", err);
    /* All four modifications correct label imbalance twice (loss and sampling); the best set
     * measured is the default (docs/results.md, "cwt+ one modification at a time"). */
    if (plus == NULL)
        s.plus = SIM_PLUS_DEFAULT;

    cfg = calloc(1, sizeof(*cfg));
    roster = calloc(1, sizeof(*roster));
    if (cfg == NULL || roster == NULL) {
        rc = cli_error(CLI_FAIL, "out of memory");
        goto out;
    }
    if ((rc = cli_load_site(g, cfg, roster)) != 0)
        goto out;
    s.recipe = roster->recipe;
    if ((rc = finetune_overrides(&s.recipe, augment, freeze, backbone_lr)) != 0)
        goto out;
    s.budget_epochs = have_budget ? s.budget_epochs : (double)s.recipe.epochs;
    if (!(s.budget_epochs > 0)) {
        rc = cli_error(CLI_USAGE, "the recipe has no epochs; give --budget E");
        goto out;
    }
    progress_start(&prog, isatty(STDERR_FILENO));
    s.on_progress = show_progress;
    s.progress_ctx = &prog;
    s.verbose = g->verbose;
    if (store_open(cfg->store_dir, STORE_RDONLY, cfg->store_max_bytes, &st, err, sizeof(err)) !=
        0) {
        rc = cli_error(CLI_FAIL, "%s", err);
        goto out;
    }
    s.st = st;
    if (s.rule.kind == SIM_PART_COLUMN) {
        /* Natural sites: the column's values decide the institutions. */
        if ((rc = sim_column_values(st, &s.rule, err, sizeof(err))) != 0) {
            rc = cli_error(rc == CWT_EINVAL ? CLI_USAGE : CLI_FAIL, "%s", err);
            goto out;
        }
        if (s.sites != 0 && s.sites != s.rule.n_values) {
            rc = cli_error(CLI_USAGE,
                           "--sites %u but column '%s' has %u values (leave --sites out with "
                           "by-column)",
                           s.sites, s.rule.column, s.rule.n_values);
            goto out;
        }
        s.sites = s.rule.n_values;
    }
    if (file_mkdir_p(s.out_dir, 0755, err, sizeof(err)) != 0) {
        rc = cli_error(CLI_FAIL, "%s", err);
        goto out;
    }
    if (eng_device_open(cfg->gpu_device, 0, &dev, err, sizeof(err)) != 0) {
        rc = cli_error(CLI_FAIL, "%s", err);
        goto out;
    }
    s.dev = dev;
    rc = sim_run(&s, &rep, err, sizeof(err));
    snprintf(rep.heuristics, sizeof(rep.heuristics), "%s", heuristics);
    progress_clear(&prog);
    if (rc != 0) {
        rc = cli_error(rc == CWT_EINVAL ? CLI_USAGE : CLI_FAIL, "%s", err);
        goto out;
    }
    if (sim_report_write(&rep, s.out_dir, err, sizeof(err)) != 0) {
        rc = cli_error(CLI_FAIL, "%s", err);
        goto out;
    }
    if (g->json) {
        if (sim_report_json(&rep, stdout) != 0) {
            rc =
                cli_fail(CLI_FAIL, "no-memory", "cannot write the results as JSON (out of memory)");
            goto out;
        }
        cli_json_mark_emitted(); /* a later failure prints no second document */
    } else {
        sim_report_table(&rep, stdout);
        printf("results in %s/ (results.csv, results.json, table.txt, val-curves.svg, "
               "cwt-visits.svg)\n",
               s.out_dir);
    }
    rc = fflush(stdout) == 0 ? CLI_OK : cli_error(CLI_FAIL, "cannot write the results");
out:
    sim_report_free(&rep);
    if (dev != NULL)
        eng_device_close(dev);
    if (st != NULL)
        store_close(st);
    free(cfg);
    free(roster);
    return rc;
}
