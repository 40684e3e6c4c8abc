/*
 * cmd_eval.c - `cwtctl eval`: metrics of the site's model on one split of the store.
 *
 * Opens the store read-only, so it works while cwtd runs.
 */
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/ensemble.h"
#include "engine/train/train.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: cwtctl eval [--split val|test|train] [--json]\n\n"
               "Evaluates the site's model (see 'cwtctl train') on a split (default val):\n"
               "accuracy, balanced accuracy, per-class recall, macro one-vs-rest AUC,\n"
               "confusion matrix; for two classes also sensitivity and specificity.\n"
               "When the roster's heuristic is ensemble, the model is the mean of the class\n"
               "probabilities of every member cwtd has received (listed in the output).\n");
}

static json_t *json_num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* cwt.eval/1 (docs/json.md). Returns 0 or CLI_FAIL. */
static int print_json(const char *split, const struct train_metrics *m,
                      const struct ensemble_members *e)
{
    json_t *doc = cli_json_doc("cwt.eval/1", 1), *recall = json_array(), *auc = json_array();
    json_t *conf = json_array(), *members = e != NULL ? json_array() : NULL;
    int rc = doc == NULL || recall == NULL || auc == NULL || conf == NULL ||
                     (e != NULL && members == NULL)
                 ? CWT_ENOMEM
                 : 0;

    for (uint32_t i = 0; rc == 0 && e != NULL && i < e->n; i++)
        rc |= json_array_append_new(members, cli_json_str(e->site[i])) != 0;
    for (uint32_t k = 0; rc == 0 && k < m->classes; k++) {
        json_t *row = json_array();
        rc |= json_array_append_new(recall, json_num(m->recall[k])) != 0;
        rc |= json_array_append_new(auc, json_num(m->class_auc[k])) != 0;
        rc |= row == NULL || json_array_append_new(conf, row) != 0;
        for (uint32_t j = 0; rc == 0 && j < m->classes; j++)
            rc |= json_array_append_new(
                      row, json_integer((json_int_t)m->confusion[(size_t)k * m->classes + j])) != 0;
    }
    if (rc == 0) {
        rc |= cli_json_set(doc, "split", json_string(split));
        if (e != NULL)
            rc |= cli_json_set(doc, "members", json_incref(members));
        rc |= cli_json_set(doc, "n", json_integer((json_int_t)m->n));
        rc |= cli_json_set(doc, "accuracy", json_num(m->accuracy));
        rc |= cli_json_set(doc, "balanced_accuracy", json_num(m->balanced_accuracy));
        rc |= cli_json_set(doc, "auc", json_num(m->auc));
        rc |= cli_json_set(doc, "loss", json_num(m->loss));
        if (m->classes == 2) {
            rc |= cli_json_set(doc, "sensitivity", json_num(m->sensitivity));
            rc |= cli_json_set(doc, "specificity", json_num(m->specificity));
        }
        rc |= cli_json_set(doc, "per_class_recall", json_incref(recall));
        rc |= cli_json_set(doc, "per_class_auc", json_incref(auc));
        rc |= cli_json_set(doc, "confusion", json_incref(conf));
    }
    json_decref(members);
    json_decref(recall);
    json_decref(auc);
    json_decref(conf);
    if (rc != 0) {
        json_decref(doc);
        doc = NULL;
    }
    return cli_json_emit(doc, 0);
}

static const char *class_name(const struct cwt_recipe *r, uint32_t k, char *buf, size_t len)
{
    if (r->n_class_names == r->classes && k < r->n_class_names)
        return r->class_names[k];
    snprintf(buf, len, "%u", k);
    return buf;
}

static void print_text(const char *split, const struct train_metrics *m, const struct cwt_recipe *r)
{
    char buf[16];

    printf("split %s: %llu images\n", split, (unsigned long long)m->n);
    printf("  accuracy           %.4f\n", m->accuracy);
    printf("  balanced accuracy  %.4f\n", m->balanced_accuracy);
    printf("  AUC (macro OvR)    %.4f\n", m->auc);
    if (m->classes == 2) {
        printf("  sensitivity        %.4f  (class %s)\n", m->sensitivity,
               class_name(r, 1, buf, sizeof(buf)));
        printf("  specificity        %.4f  (class %s)\n", m->specificity,
               class_name(r, 0, buf, sizeof(buf)));
    }
    printf("  %-20s %8s %8s\n", "class", "recall", "AUC");
    for (uint32_t k = 0; k < m->classes; k++)
        printf("  %-20s %8.4f %8.4f\n", class_name(r, k, buf, sizeof(buf)), m->recall[k],
               m->class_auc[k]);
    printf("confusion (rows: true class, columns: predicted)\n");
    for (uint32_t i = 0; i < m->classes; i++) {
        printf("  %-20s", class_name(r, i, buf, sizeof(buf)));
        for (uint32_t j = 0; j < m->classes; j++)
            printf(" %6llu", (unsigned long long)m->confusion[(size_t)i * m->classes + j]);
        putchar('\n');
    }
}

struct eval_run {
    struct cwt_config cfg;
    struct cwt_roster roster;
    struct store *st;
    struct eng_device *dev;
    struct eng_model *model;
    uint64_t *ids;
    size_t n;
};

/* ensemble_run_fn of eval: one member's probabilities over the split. */
static int eval_member(struct eng_model *m, const struct eng_model_spec *spec,
                       const struct train_norm *norm, float *probs, void *ctx, char *err,
                       size_t errlen)
{
    struct eval_run *r = ctx;
    const struct cwt_recipe *rec = &r->roster.recipe;
    struct train_metrics mm;
    float *p = NULL;
    int rc;

    (void)spec;
    rc = train_evaluate(m, r->st, r->ids, r->n, rec->classes, norm, rec->batch_size, &mm, &p, err,
                        errlen);
    if (rc != 0)
        return rc;
    train_metrics_free(&mm);
    memcpy(probs, p, r->n * rec->classes * sizeof(*probs));
    free(p);
    return 0;
}

/* The ensemble's metrics: computed from the mean of the members' probabilities. */
static int eval_ensemble(struct eval_run *r, const struct ensemble_members *e,
                         struct train_metrics *out, char *err, size_t errlen)
{
    const struct cwt_recipe *rec = &r->roster.recipe;
    uint32_t classes = rec->classes;
    struct store_image_hdr hdr;
    const uint8_t *pixels;
    double *sum = NULL;
    float *probs = NULL;
    uint32_t *labels = NULL;
    size_t cells;
    int rc = 0;

    if (classes == 0 || r->n > SIZE_MAX / classes / sizeof(double))
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "the split is too large to evaluate");
    cells = r->n * classes;
    sum = malloc(cells * sizeof(*sum));
    probs = malloc(cells * sizeof(*probs));
    labels = malloc(r->n * sizeof(*labels));
    if (sum == NULL || probs == NULL || labels == NULL) {
        rc = cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = store_read_begin(r->st)) != 0) {
        cwt_seterr(err, errlen, rc, "cannot read the store: %s", cwt_strerror(rc));
        goto done;
    }
    for (size_t i = 0; i < r->n && rc == 0; i++) {
        rc = store_get_image(r->st, r->ids[i], &hdr, &pixels);
        if (rc != 0)
            cwt_seterr(err, errlen, rc, "cannot read image %llu: %s", (unsigned long long)r->ids[i],
                       cwt_strerror(rc));
        else
            labels[i] = hdr.label;
    }
    store_read_end(r->st);
    if (rc == 0)
        rc =
            ensemble_average(r->dev, r->st, rec, e, cells, eval_member, r, sum, probs, err, errlen);
    if (rc == 0) {
        rc = train_metrics_compute(probs, labels, r->n, classes, out);
        if (rc != 0)
            cwt_seterr(err, errlen, rc, "cannot compute the metrics: %s", cwt_strerror(rc));
    }
done:
    free(sum);
    free(probs);
    free(labels);
    return rc;
}

static void eval_cleanup(struct eval_run *r)
{
    eng_model_free(r->model);
    if (r->dev != NULL)
        eng_device_close(r->dev);
    if (r->st != NULL)
        store_close(r->st);
    free(r->ids);
    free(r);
}

int cmd_eval(int argc, char **argv, const struct cli_globals *g)
{
    static const struct option opts[] = {
        {"split", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    enum store_split split = STORE_VAL;
    struct eval_run *r;
    struct train_metrics m;
    struct eng_model_spec spec;
    struct train_norm norm;
    struct ensemble_members members = {0};
    char err[CWT_ERRLEN];
    int ch, rc, ensemble;

    optind = 0;
    while ((ch = cli_getopt(argc, argv, "h", opts, "eval")) != -1) {
        switch (ch) {
        case 's':
            if (store_split_parse(optarg, &split) != 0)
                return cli_error(CLI_USAGE, "unknown split '%s' (val, test or train)", optarg);
            break;
        case 'h':
            usage(stdout);
            return CLI_OK;
        default:
            return CLI_USAGE;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return cli_error(CLI_USAGE, "unexpected argument '%s'", argv[optind]);
    }
    if ((r = calloc(1, sizeof(*r))) == NULL)
        return cli_error(CLI_FAIL, "out of memory");
    if (cli_load_site(g, &r->cfg, &r->roster) != 0) {
        free(r);
        return CLI_USAGE;
    }
    rc = store_open(r->cfg.store_dir, STORE_RDONLY, r->cfg.store_max_bytes, &r->st, err,
                    sizeof(err));
    if (rc == 0 && (rc = store_read_begin(r->st)) == 0) {
        rc = store_list(r->st, split, &r->ids, &r->n);
        store_read_end(r->st);
        if (rc != 0)
            cwt_seterr(err, sizeof(err), rc, "cannot list the %s split: %s",
                       store_split_name(split), cwt_strerror(rc));
    }
    if (rc == 0 && r->n == 0)
        rc = cwt_seterr(err, sizeof(err), CWT_ENOENT, "the %s split is empty",
                        store_split_name(split));
    if (rc == 0)
        rc = eng_device_open(r->cfg.gpu_device, 0, &r->dev, err, sizeof(err));
    ensemble = r->roster.recipe.heuristic == CWT_H_ENSEMBLE;
    if (rc == 0 && ensemble) {
        rc = ensemble_find(r->st, &r->roster, &members, err, sizeof(err));
        if (rc == 0)
            rc = eval_ensemble(r, &members, &m, err, sizeof(err));
    } else if (rc == 0) {
        rc = train_load_named(r->dev, r->st, TRAIN_CKPT_MODEL, &r->roster.recipe, &r->model, &spec,
                              &norm, err, sizeof(err));
        if (rc == 0)
            rc = train_evaluate(r->model, r->st, r->ids, r->n, spec.classes, &norm,
                                r->roster.recipe.batch_size, &m, NULL, err, sizeof(err));
    }
    if (rc != 0) {
        eval_cleanup(r);
        return cli_error(CLI_FAIL, "%s", err);
    }
    if (g->json) {
        rc = print_json(store_split_name(split), &m, ensemble ? &members : NULL);
        train_metrics_free(&m);
        eval_cleanup(r);
        return rc;
    } else {
        if (ensemble)
            ensemble_print(stdout, &members);
        print_text(store_split_name(split), &m, &r->roster.recipe);
    }
    train_metrics_free(&m);
    eval_cleanup(r);
    return CLI_OK;
}
