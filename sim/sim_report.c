/*
 * sim_report.c - the results of `cwtctl simulate`: table, CSV, JSON and two hand-written SVG
 * plots (no plotting dependency).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sim/sim.h"
#include "common/fileio.h"
#include "common/utf8.h"

int sim_curve_add(struct sim_curve *c, uint64_t step, double value)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        uint64_t *s = realloc(c->step, cap * sizeof(*s));
        double *v;
        if (s == NULL)
            return CWT_ENOMEM;
        c->step = s;
        if ((v = realloc(c->value, cap * sizeof(*v))) == NULL)
            return CWT_ENOMEM;
        c->value = v;
        c->cap = cap;
    }
    c->step[c->n] = step;
    c->value[c->n] = value;
    c->n++;
    return 0;
}

void sim_curve_free(struct sim_curve *c)
{
    free(c->step);
    free(c->value);
    memset(c, 0, sizeof(*c));
}

int sim_report_add(struct sim_report *r, struct sim_outcome *o)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 16;
        struct sim_outcome *p = realloc(r->o, cap * sizeof(*p));
        if (p == NULL)
            return CWT_ENOMEM;
        r->o = p;
        r->cap = cap;
    }
    r->o[r->n++] = *o;
    memset(&o->curve, 0, sizeof(o->curve));
    return 0;
}

void sim_report_free(struct sim_report *r)
{
    for (size_t i = 0; i < r->n; i++)
        sim_curve_free(&r->o[i].curve);
    free(r->o);
    free(r->inst_train);
    free(r->inst_val);
    r->o = NULL;
    r->inst_train = r->inst_val = NULL;
    r->n = r->cap = 0;
}

void sim_outcome_label(const struct sim_outcome *o, char *out, size_t len)
{
    if (o->heur == SIM_CWT || o->heur == SIM_CWT_PLUS || o->heur == SIM_FEDAVG ||
        o->heur == SIM_FEDPROX)
        snprintf(out, len, "%s v=%g", sim_heur_name(o->heur), o->visit);
    else if (o->heur == SIM_SINGLE && o->inst >= 0)
        snprintf(out, len, "single inst-%d", o->inst);
    else if (o->heur == SIM_SINGLE)
        snprintf(out, len, "single (mean)");
    else
        snprintf(out, len, "%s", sim_heur_name(o->heur));
}

static int same_row(const struct sim_outcome *a, const struct sim_outcome *b)
{
    return a->heur == b->heur && a->visit == b->visit && a->inst == b->inst;
}

/* Statistics of one table row over the seeds. */
struct row_stats {
    const struct sim_outcome *first;
    uint32_t n;
    double acc_mean, acc_sd, bacc_mean, bacc_sd, auc_mean, auc_sd, wall_mean;
    uint64_t steps_min, steps_max, budget;
};

static void mean_sd(const double *v, uint32_t n, double *mean, double *sd)
{
    double s = 0.0, q = 0.0;
    uint32_t k = 0;

    for (uint32_t i = 0; i < n; i++)
        if (isfinite(v[i])) {
            s += v[i];
            k++;
        }
    *mean = k ? s / k : NAN;
    for (uint32_t i = 0; i < n; i++)
        if (isfinite(v[i]))
            q += (v[i] - *mean) * (v[i] - *mean);
    /* Sample standard deviation (n - 1); undefined for one seed. */
    *sd = k > 1 ? sqrt(q / (k - 1)) : NAN;
}

/* Rows in order of first appearance. Returns the number of rows (at most r->n). */
static size_t collect_rows(const struct sim_report *r, struct row_stats *rows)
{
    size_t nrows = 0;
    double *acc = malloc((r->n ? r->n : 1) * sizeof(double));
    double *bacc = malloc((r->n ? r->n : 1) * sizeof(double));
    double *auc = malloc((r->n ? r->n : 1) * sizeof(double));

    if (acc == NULL || bacc == NULL || auc == NULL) {
        free(acc);
        free(bacc);
        free(auc);
        return 0;
    }
    for (size_t i = 0; i < r->n; i++) {
        struct row_stats *row;
        size_t j;
        for (j = 0; j < nrows; j++)
            if (same_row(rows[j].first, &r->o[i]))
                break;
        if (j < nrows)
            continue;
        row = &rows[nrows++];
        memset(row, 0, sizeof(*row));
        row->first = &r->o[i];
        row->steps_min = UINT64_MAX;
        for (size_t k = i; k < r->n; k++) {
            const struct sim_outcome *o = &r->o[k];
            if (!same_row(o, row->first))
                continue;
            acc[row->n] = o->test_accuracy;
            bacc[row->n] = o->test_balanced_accuracy;
            auc[row->n] = o->test_auc;
            row->wall_mean += o->wall_s;
            row->steps_min = o->steps < row->steps_min ? o->steps : row->steps_min;
            row->steps_max = o->steps > row->steps_max ? o->steps : row->steps_max;
            row->budget = o->budget;
            row->n++;
        }
        mean_sd(acc, row->n, &row->acc_mean, &row->acc_sd);
        mean_sd(bacc, row->n, &row->bacc_mean, &row->bacc_sd);
        mean_sd(auc, row->n, &row->auc_mean, &row->auc_sd);
        row->wall_mean /= row->n;
    }
    free(acc);
    free(bacc);
    free(auc);
    return nrows;
}

static void fmt_mean_sd(char *out, size_t len, double mean, double sd)
{
    if (!isfinite(mean))
        snprintf(out, len, "-");
    else if (!isfinite(sd))
        snprintf(out, len, "%.4f", mean);
    else
        snprintf(out, len, "%.4f ± %.4f", mean, sd);
}

void sim_report_table(const struct sim_report *r, FILE *f)
{
    struct row_stats *rows = calloc(r->n ? r->n : 1, sizeof(*rows));
    size_t nrows;

    if (rows == NULL)
        return;
    nrows = collect_rows(r, rows);
    fprintf(f,
            "simulate: %u sites, partition %s, %s, budget %g epochs = %llu steps of %u, "
            "%u seed%s from %llu%s%s\n",
            r->sites, r->partition, r->model, r->budget_epochs, (unsigned long long)r->budget_steps,
            r->batch, r->n_seeds, r->n_seeds == 1 ? "" : "s", (unsigned long long)r->first_seed,
            r->through_bundles ? ", hand-overs through sealed bundles" : "",
            r->local_bn == SIM_BN_STATS ? ", cwt keeps batch-norm statistics at each site"
            : r->local_bn == SIM_BN_ALL ? ", cwt keeps batch-norm layers at each site"
                                        : "");
    if (r->prox_mu > 0)
        fprintf(f, "fedprox: mu %g; fedavg/fedprox v = local epochs per round\n", r->prox_mu);
    for (uint32_t i = 0; i < r->n_names; i++)
        fprintf(f, "%sinst-%u = %s%s", i ? ", " : "institutions: ", i, r->names[i],
                i + 1 == r->n_names ? "\n" : "");
    fprintf(f, "images: %llu train, %llu val (both divided among sites), %llu test (pooled)\n",
            (unsigned long long)r->n_train, (unsigned long long)r->n_val,
            (unsigned long long)r->n_test);
    fprintf(f, "%-16s %-19s %-19s %-19s %-11s %9s  %s\n", "heuristic", "test accuracy",
            "test balanced acc.", "test AUC", "steps", "wall s", "model kept");
    for (size_t i = 0; i < nrows; i++) {
        char label[64], acc[48], bacc[48], auc[48], steps[48];
        const struct row_stats *row = &rows[i];
        sim_outcome_label(row->first, label, sizeof(label));
        fmt_mean_sd(acc, sizeof(acc), row->acc_mean, row->acc_sd);
        fmt_mean_sd(bacc, sizeof(bacc), row->bacc_mean, row->bacc_sd);
        fmt_mean_sd(auc, sizeof(auc), row->auc_mean, row->auc_sd);
        if (row->steps_min == row->steps_max)
            snprintf(steps, sizeof(steps), "%llu", (unsigned long long)row->steps_min);
        else
            snprintf(steps, sizeof(steps), "%llu-%llu", (unsigned long long)row->steps_min,
                     (unsigned long long)row->steps_max);
        /* "±" is two bytes but one column: pad by hand. */
        fprintf(f, "%-16s %-*s %-*s %-*s %-11s %9.1f  %s\n", label, 19 + (strstr(acc, "±") ? 1 : 0),
                acc, 19 + (strstr(bacc, "±") ? 1 : 0), bacc, 19 + (strstr(auc, "±") ? 1 : 0), auc,
                steps, row->wall_mean,
                row->first->heur == SIM_SINGLE && row->first->inst >= 0
                    ? "best own local val accuracy"
                    : sim_selection_text(row->first->heur));
    }
    if (r->n_seeds > 1)
        fprintf(f, "(mean ± sample standard deviation over %u seeds; wall time is the mean)\n",
                r->n_seeds);
    free(rows);
}

static void csv_field(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.17g", v);
}

void sim_report_csv(const struct sim_report *r, FILE *f)
{
    fprintf(f, "label,heuristic,visit,institution,seed,test_accuracy,test_balanced_accuracy,"
               "test_auc,steps,budget,"
               "wall_s,cycles,kept_step,kept_val,selection,weights_blake2b\n");
    for (size_t i = 0; i < r->n; i++) {
        const struct sim_outcome *o = &r->o[i];
        char label[64];
        sim_outcome_label(o, label, sizeof(label));
        csv_field(f, label);
        fprintf(f, ",%s,", sim_heur_name(o->heur));
        if (o->visit > 0)
            fprintf(f, "%g", o->visit);
        fputc(',', f);
        if (o->inst >= 0)
            fprintf(f, "%d", o->inst);
        fprintf(f, ",%llu,", (unsigned long long)o->seed);
        num(f, o->test_accuracy);
        fputc(',', f);
        num(f, o->test_balanced_accuracy);
        fputc(',', f);
        num(f, o->test_auc);
        fprintf(f, ",%llu,%llu,%.3f,%u,%llu,", (unsigned long long)o->steps,
                (unsigned long long)o->budget, o->wall_s, o->cycles,
                (unsigned long long)o->kept_step);
        num(f, o->kept_val);
        fputc(',', f);
        csv_field(f, sim_selection_text(o->heur));
        fprintf(f, ",%s\n", o->weights_hash);
    }
}

/* Sets key to v in o; a NULL v (out of memory, or a non-finite real) marks the object failed
 * so one check at the end covers every field. */
static void put(json_t *o, const char *key, json_t *v, int *bad)
{
    if (v == NULL || json_object_set_new(o, key, v) != 0)
        *bad = 1;
}

static void add(json_t *a, json_t *v, int *bad)
{
    if (v == NULL || json_array_append_new(a, v) != 0)
        *bad = 1;
}

/* A real, or null where it is not finite (JSON has no NaN). */
static json_t *jreal(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *jint(uint64_t v)
{
    /* Counts here are steps, images and seeds: far below 2^63. */
    return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

static json_t *recipe_json(const struct cwt_recipe *rc, const char *text, int *bad)
{
    static const char *const opt[] = {"sgd", "adam", "adamw"};
    json_t *o = json_object(), *in = json_array();

    if (o == NULL || in == NULL) {
        json_decref(o);
        json_decref(in);
        *bad = 1;
        return NULL;
    }
    put(o, "text", cwt_json_str(text), bad);
    if (rc != NULL) {
        put(o, "model", cwt_json_str(rc->model), bad);
        add(in, json_integer(rc->input_h), bad);
        add(in, json_integer(rc->input_w), bad);
        add(in, json_integer(rc->input_c), bad);
        put(o, "input", json_incref(in), bad);
        put(o, "classes", json_integer(rc->classes), bad);
        put(o, "optimizer",
            cwt_json_str((unsigned)rc->optimizer < 3 ? opt[rc->optimizer] : "unknown"), bad);
        put(o, "lr", jreal(rc->lr), bad);
        put(o, "momentum", jreal(rc->momentum), bad);
        put(o, "weight_decay", jreal(rc->weight_decay), bad);
        put(o, "batch", json_integer(rc->batch_size), bad);
        put(o, "epochs", json_integer(rc->epochs), bad);
        put(o, "seed", jint(rc->seed), bad);
    }
    json_decref(in);
    return o;
}

static json_t *curve_json(const struct sim_curve *c, int *bad)
{
    json_t *a = json_array();

    if (a == NULL) {
        *bad = 1;
        return NULL;
    }
    for (size_t k = 0; k < c->n; k++) {
        json_t *p = json_array();
        if (p == NULL) {
            *bad = 1;
            break;
        }
        add(p, jint(c->step[k]), bad);
        add(p, jreal(c->value[k]), bad);
        add(a, p, bad);
    }
    return a;
}

char *sim_report_json_text(const struct sim_report *r)
{
    struct row_stats *rows = calloc(r->n ? r->n : 1, sizeof(*rows));
    size_t nrows = rows ? collect_rows(r, rows) : 0;
    json_t *o = json_object(), *a;
    int bad = rows == NULL || o == NULL;
    char *text = NULL;

    if (bad)
        goto out;
    put(o, "schema", cwt_json_str(SIM_RESULTS_SCHEMA), &bad);
    put(o, "ok", json_true(), &bad); /* as in every cwtctl --json document (docs/json.md) */
    put(o, "version", cwt_json_str(CWT_VERSION), &bad);
    put(o, "commit", cwt_json_str(sim_build_commit()), &bad);
    put(o, "command", cwt_json_str(r->command), &bad);
    put(o, "recipe", recipe_json(r->recipe, r->recipe_text, &bad), &bad);
    put(o, "heuristics_asked", cwt_json_str(r->heuristics), &bad);
    a = json_array();
    for (size_t i = 0; a != NULL && i < nrows; i++) {
        /* Rows come in run order, one per heuristic and visit: each name once. */
        const char *name = sim_heur_name(rows[i].first->heur);
        int seen = 0;
        for (size_t k = 0; k < json_array_size(a); k++)
            seen |= strcmp(json_string_value(json_array_get(a, k)), name) == 0;
        if (!seen)
            add(a, cwt_json_str(name), &bad);
    }
    put(o, "heuristics", a, &bad);
    put(o, "sites", json_integer(r->sites), &bad);
    put(o, "partition", cwt_json_str(r->partition), &bad);
    put(o, "cwt_plus", cwt_json_str(r->plus), &bad);
    put(o, "fedprox_mu", r->prox_mu > 0 ? json_real(r->prox_mu) : json_null(), &bad);
    put(o, "budget_epochs", jreal(r->budget_epochs), &bad);
    put(o, "budget_steps", jint(r->budget_steps), &bad);
    put(o, "batch", json_integer(r->batch), &bad);
    put(o, "seeds", json_integer(r->n_seeds), &bad);
    put(o, "first_seed", jint(r->first_seed), &bad);
    a = json_array();
    for (uint32_t s = 0; a != NULL && s < r->n_seeds; s++)
        add(a, jint(r->first_seed + s), &bad);
    put(o, "seed_values", a, &bad);
    put(o, "through_bundles", json_boolean(r->through_bundles), &bad);
    put(o, "model", cwt_json_str(r->model), &bad);
    put(o, "device", cwt_json_str(r->device), &bad);
    put(o, "images",
        json_pack("{s:I,s:I,s:I}", "train", (json_int_t)r->n_train, "val", (json_int_t)r->n_val,
                  "test", (json_int_t)r->n_test),
        &bad);
    a = json_array();
    for (uint32_t i = 0; a != NULL && i < r->n_visits; i++)
        add(a, json_real(r->visits[i]), &bad);
    put(o, "visits", a, &bad);
    if (r->n_names > 0) {
        a = json_array();
        for (uint32_t i = 0; a != NULL && i < r->n_names; i++)
            add(a, cwt_json_str(r->names[i]), &bad);
        put(o, "institution_names", a, &bad);
    } else {
        put(o, "institution_names", json_null(), &bad);
    }
    a = json_array();
    for (uint32_t s = 0; a != NULL && s < r->n_seeds && r->inst_train != NULL; s++) {
        json_t *e = json_object(), *tr = json_array(), *va = json_array();
        for (uint32_t i = 0; tr != NULL && va != NULL && i < r->sites; i++) {
            add(tr, jint(r->inst_train[(size_t)s * r->sites + i]), &bad);
            add(va, jint(r->inst_val[(size_t)s * r->sites + i]), &bad);
        }
        if (e == NULL) {
            json_decref(tr);
            json_decref(va);
            bad = 1;
            continue;
        }
        put(e, "seed", jint(r->first_seed + s), &bad);
        put(e, "train", tr, &bad);
        put(e, "val", va, &bad);
        add(a, e, &bad);
    }
    put(o, "institutions", a, &bad);
    a = json_array();
    for (size_t i = 0; a != NULL && i < r->n; i++) {
        const struct sim_outcome *x = &r->o[i];
        json_t *e = json_object();
        char label[64];
        if (e == NULL) {
            bad = 1;
            break;
        }
        sim_outcome_label(x, label, sizeof(label));
        put(e, "label", cwt_json_str(label), &bad);
        put(e, "heuristic", cwt_json_str(sim_heur_name(x->heur)), &bad);
        put(e, "visit", x->visit > 0 ? json_real(x->visit) : json_null(), &bad);
        put(e, "institution", x->inst >= 0 ? json_integer(x->inst) : json_null(), &bad);
        put(e, "seed", jint(x->seed), &bad);
        put(e, "test_accuracy", jreal(x->test_accuracy), &bad);
        put(e, "test_balanced_accuracy", jreal(x->test_balanced_accuracy), &bad);
        put(e, "test_auc", jreal(x->test_auc), &bad);
        put(e, "steps", jint(x->steps), &bad);
        put(e, "budget", jint(x->budget), &bad);
        put(e, "wall_s", jreal(round(x->wall_s * 1000.0) / 1000.0), &bad);
        put(e, "cycles", json_integer(x->cycles), &bad);
        put(e, "kept_step", jint(x->kept_step), &bad);
        put(e, "kept_val", jreal(x->kept_val), &bad);
        put(e, "selection", cwt_json_str(sim_selection_text(x->heur)), &bad);
        put(e, "weights_blake2b", cwt_json_str(x->weights_hash), &bad);
        put(e, "final_blake2b", cwt_json_str(x->final_hash), &bad);
        put(e, "curve", curve_json(&x->curve, &bad), &bad);
        add(a, e, &bad);
    }
    put(o, "runs", a, &bad);
    a = json_array();
    for (size_t i = 0; a != NULL && i < nrows; i++) {
        const struct row_stats *row = &rows[i];
        json_t *e = json_object();
        char label[64];
        if (e == NULL) {
            bad = 1;
            break;
        }
        sim_outcome_label(row->first, label, sizeof(label));
        put(e, "label", cwt_json_str(label), &bad);
        put(e, "heuristic", cwt_json_str(sim_heur_name(row->first->heur)), &bad);
        put(e, "seeds", json_integer(row->n), &bad);
        put(e, "test_accuracy_mean", jreal(row->acc_mean), &bad);
        put(e, "test_accuracy_sd", jreal(row->acc_sd), &bad);
        put(e, "test_balanced_accuracy_mean", jreal(row->bacc_mean), &bad);
        put(e, "test_balanced_accuracy_sd", jreal(row->bacc_sd), &bad);
        put(e, "test_auc_mean", jreal(row->auc_mean), &bad);
        put(e, "test_auc_sd", jreal(row->auc_sd), &bad);
        put(e, "steps_min", jint(row->steps_min), &bad);
        put(e, "steps_max", jint(row->steps_max), &bad);
        put(e, "budget", jint(row->budget), &bad);
        put(e, "wall_s_mean", jreal(round(row->wall_mean * 1000.0) / 1000.0), &bad);
        add(a, e, &bad);
    }
    put(o, "summary", a, &bad);
    if (!bad)
        text = json_dumps(o, JSON_COMPACT);
out:
    json_decref(o);
    free(rows);
    return text;
}

int sim_report_json(const struct sim_report *r, FILE *f)
{
    char *text = sim_report_json_text(r);

    if (text == NULL)
        return CWT_ENOMEM;
    fputs(text, f);
    fputc('\n', f);
    free(text);
    return ferror(f) ? CWT_EIO : 0;
}

/* ------------------------------------------------------------ SVG */

#define SVG_W   760
#define SVG_H   480
#define PLOT_X0 70
#define PLOT_Y0 40
#define PLOT_W  470
#define PLOT_H  340
#define DODGE   5.0 /* px: cwt's error bars left of the visit, cwt+'s right, so both show */

#ifndef CWT_GIT_COMMIT
#define CWT_GIT_COMMIT "unknown"
#endif

const char *sim_build_commit(void)
{
    return CWT_GIT_COMMIT;
}

/* Okabe-Ito: distinguishable with every common colour-vision deficiency. Yellow, faint on
 * white, comes last. Series also differ in dash and marker, so that a grey-scale print
 * still tells them apart. */
static const char *const palette[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                      "#E69F00", "#56B4E9", "#000000", "#F0E442"};
#define PALETTE_N (sizeof(palette) / sizeof(palette[0]))
static const char *const dashes[] = {"none", "8,4", "2,3", "8,3,2,3", "14,4"};
#define DASHES_N (sizeof(dashes) / sizeof(dashes[0]))
enum marker { MK_CIRCLE = 0, MK_SQUARE, MK_TRIANGLE, MK_DIAMOND, MK_CROSS, MK_N };
static const char *const marker_names[] = {"circle", "square", "triangle", "diamond", "cross"};

struct style {
    const char *color, *dash;
    enum marker marker;
};

/* Series i: the colour cycles through the palette; dash and marker together never repeat in
 * the first DASHES_N * MK_N (25) series (the marker moves on by one each time the dashes
 * start over), so a grey-scale print tells those apart too. */
static struct style series_style(size_t i)
{
    struct style st = {palette[i % PALETTE_N], dashes[i % DASHES_N],
                       (enum marker)((i + i / DASHES_N) % MK_N)};
    return st;
}

/* Text content of the SVG: markup characters escaped; a byte that starts no well-formed UTF-8
 * sequence, or a control character (not allowed in XML 1.0), becomes U+FFFD, since the file
 * declares UTF-8 and a viewer refuses the whole plot otherwise. */
static void svg_text(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p != '\0') {
        size_t n = cwt_utf8_len(p);
        if (*p == '<')
            fputs("&lt;", f);
        else if (*p == '>')
            fputs("&gt;", f);
        else if (*p == '&')
            fputs("&amp;", f);
        else if (*p == '"')
            fputs("&quot;", f);
        else if (n == 0 || (*p < 0x20 && *p != '\t' && *p != '\n') || *p == 0x7f)
            fputs("\xef\xbf\xbd", f);
        else
            fwrite(p, 1, n, f);
        p += n == 0 ? 1 : n;
    }
}

/* At most max bytes of s, cut at a UTF-8 boundary, with "..." when cut. */
static void svg_text_cut(FILE *f, const char *s, size_t max)
{
    char buf[256];
    size_t n = strlen(s);

    if (max >= sizeof(buf) - 4)
        max = sizeof(buf) - 4;
    if (n <= max) {
        svg_text(f, s);
        return;
    }
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    memcpy(buf, s, n);
    memcpy(buf + n, "...", 4);
    svg_text(f, buf);
}

size_t sim_nice_ticks(double lo, double hi, size_t max_ticks, int integer_steps, double *ticks,
                      double *lo_out, double *hi_out)
{
    static const double mult[] = {1.0, 2.0, 5.0};
    double span, mag, step = 1.0, a, b;
    size_t n = 2;

    if (max_ticks < 2)
        max_ticks = 2;
    if (max_ticks > 64)
        max_ticks = 64;
    if (!isfinite(lo) || !isfinite(hi) || hi < lo) {
        lo = 0.0;
        hi = 1.0;
    }
    span = hi - lo;
    if (span <= 0.0)
        span = lo != 0.0 ? fabs(lo) * 0.1 : 1.0;
    mag = pow(10.0, floor(log10(span / (double)(max_ticks - 1))));
    /* 1, 2, 5, 10, 20, 50, ... times mag: the first that fits (the rounding out to whole
     * steps can add a tick, so a larger magnitude may be needed). */
    for (int i = 0; i < 3 * 40; i++) {
        step = mult[i % 3] * mag * pow(10.0, (double)(i / 3));
        if (integer_steps && step < 1.0)
            step = 1.0;
        a = floor(lo / step + 1e-9);
        b = ceil(hi / step - 1e-9);
        if (b <= a)
            b = a + 1.0;
        if (b - a + 1.0 <= (double)max_ticks)
            break;
    }
    n = (size_t)(b - a) + 1;
    if (n > max_ticks)
        n = max_ticks;
    for (size_t k = 0; k < n; k++) {
        /* The tick as a multiple of the step rounded to the step's digits: 0.3, not
         * 0.30000000000000004. */
        double t = (a + (double)k) * step;
        double q = step < 1.0 ? pow(10.0, ceil(-log10(step)) + 1.0) : 1.0;
        ticks[k] = round(t * q) / q + 0.0;
    }
    *lo_out = ticks[0];
    *hi_out = ticks[n - 1];
    return n;
}

struct axes {
    double x0, x1, y0, y1;
    int xlog;
};

static double px(const struct axes *a, double x)
{
    double t = a->xlog ? (log10(x) - log10(a->x0)) / (log10(a->x1) - log10(a->x0))
                       : (x - a->x0) / (a->x1 - a->x0);
    return PLOT_X0 + t * PLOT_W;
}

static double py(const struct axes *a, double y)
{
    return PLOT_Y0 + PLOT_H - (y - a->y0) / (a->y1 - a->y0) * PLOT_H;
}

static void svg_marker(FILE *f, enum marker m, double x, double y, const char *color)
{
    switch (m) {
    case MK_SQUARE:
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"6\" height=\"6\" fill=\"%s\"/>\n", x - 3,
                y - 3, color);
        break;
    case MK_TRIANGLE:
        fprintf(f, "<polygon points=\"%.1f,%.1f %.1f,%.1f %.1f,%.1f\" fill=\"%s\"/>\n", x, y - 4,
                x - 4, y + 3, x + 4, y + 3, color);
        break;
    case MK_DIAMOND:
        fprintf(f, "<polygon points=\"%.1f,%.1f %.1f,%.1f %.1f,%.1f %.1f,%.1f\" fill=\"%s\"/>\n", x,
                y - 4, x + 4, y, x, y + 4, x - 4, y, color);
        break;
    case MK_CROSS:
        fprintf(f,
                "<path d=\"M%.1f %.1fL%.1f %.1fM%.1f %.1fL%.1f %.1f\" stroke=\"%s\" "
                "stroke-width=\"2\"/>\n",
                x - 4, y - 4, x + 4, y + 4, x - 4, y + 4, x + 4, y - 4, color);
        break;
    default:
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", x, y, color);
        break;
    }
}

/* Opens a series' polyline; the class and data- attributes name its style for tests and
 * for anyone restyling the file. */
static void series_open(FILE *f, const struct style *st, const char *label)
{
    fputs("<polyline class=\"series\" data-label=\"", f);
    svg_text(f, label);
    fprintf(f,
            "\" data-marker=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" "
            "stroke-dasharray=\"%s\" points=\"",
            marker_names[st->marker], st->color, st->dash);
}

/* The title, axis labels, and the provenance: <title>/<desc> for tools, a two-line footer
 * for readers (version, commit, recipe, budget; the command line). */
static void svg_begin(FILE *f, const struct sim_report *r, const char *title, const char *xlabel,
                      const char *ylabel)
{
    char line[512];

    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n<title>",
            SVG_W, SVG_H, SVG_W, SVG_H);
    svg_text(f, title);
    fprintf(f, "</title>\n<desc>cwt %s, commit %s; recipe: ", CWT_VERSION, sim_build_commit());
    svg_text(f, r->recipe_text);
    fputs("; command: ", f);
    svg_text(f, r->command);
    fprintf(f,
            "</desc>\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
            "<text x=\"%d\" y=\"22\" font-size=\"14\">",
            PLOT_X0);
    svg_text(f, title);
    fprintf(f, "</text>\n<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", PLOT_X0 + PLOT_W / 2,
            PLOT_Y0 + PLOT_H + 34);
    svg_text(f, xlabel);
    fprintf(f,
            "</text>\n<text x=\"16\" y=\"%d\" text-anchor=\"middle\" "
            "transform=\"rotate(-90 16 %d)\">",
            PLOT_Y0 + PLOT_H / 2, PLOT_Y0 + PLOT_H / 2);
    svg_text(f, ylabel);
    snprintf(line, sizeof(line), "cwt %s (%s); %s; budget %.4g epochs = %llu steps; %u seed%s",
             CWT_VERSION, sim_build_commit(), r->recipe_text, r->budget_epochs,
             (unsigned long long)r->budget_steps, r->n_seeds, r->n_seeds == 1 ? "" : "s");
    fprintf(
        f,
        "</text>\n<g class=\"provenance\" font-size=\"10\" fill=\"#444\">\n<text x=\"8\" y=\"%d\">",
        SVG_H - 22);
    svg_text_cut(f, line, 140);
    fprintf(f, "</text>\n<text x=\"8\" y=\"%d\">", SVG_H - 8);
    snprintf(line, sizeof(line), "%s", r->command);
    svg_text_cut(f, line, 140);
    fputs("</text>\n</g>\n", f);
}

static void svg_axes(FILE *f, const struct axes *a, const double *xticks, size_t nx,
                     const double *yticks, size_t ny)
{
    fprintf(f,
            "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
            "stroke=\"#444\"/>\n",
            PLOT_X0, PLOT_Y0, PLOT_W, PLOT_H);
    for (size_t i = 0; i < ny; i++)
        fprintf(f,
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text class=\"ytick\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                PLOT_X0, py(a, yticks[i]), PLOT_X0 + PLOT_W, py(a, yticks[i]), PLOT_X0 - 6,
                py(a, yticks[i]) + 4, yticks[i]);
    for (size_t i = 0; i < nx; i++)
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>"
                "<text class=\"xtick\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n",
                px(a, xticks[i]), PLOT_Y0, px(a, xticks[i]), PLOT_Y0 + PLOT_H, px(a, xticks[i]),
                PLOT_Y0 + PLOT_H + 16, xticks[i]);
}

static void svg_legend(FILE *f, size_t i, const struct style *st, const char *label, int marker)
{
    double y = PLOT_Y0 + 10 + 18.0 * (double)i;
    fprintf(f,
            "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\" "
            "stroke-width=\"2\" stroke-dasharray=\"%s\"/>",
            PLOT_X0 + PLOT_W + 12, y, PLOT_X0 + PLOT_W + 40, y, st->color, st->dash);
    if (marker)
        svg_marker(f, st->marker, PLOT_X0 + PLOT_W + 26, y, st->color);
    fprintf(f, "<text x=\"%d\" y=\"%.1f\">", PLOT_X0 + PLOT_W + 46, y + 4);
    svg_text(f, label);
    fputs("</text>\n", f);
}

/* y axis over the values shown, padded, on round ticks within [0, 1]. */
static size_t y_axis(double lo, double hi, struct axes *a, double *ticks)
{
    double pad;

    if (!(lo <= hi)) {
        lo = 0.0;
        hi = 1.0;
    }
    pad = (hi - lo) * 0.05 + 0.005;
    lo = lo - pad < 0.0 ? 0.0 : lo - pad;
    hi = hi + pad > 1.0 ? 1.0 : hi + pad;
    return sim_nice_ticks(lo, hi, 7, 0, ticks, &a->y0, &a->y1);
}

void sim_svg_curves(const struct sim_report *r, FILE *f)
{
    struct axes a = {0};
    double lo = INFINITY, hi = -INFINITY, xt[16], yt[16];
    uint64_t xmax = 1;
    size_t shown = 0, nx, ny;
    char title[160];

    for (size_t i = 0; i < r->n; i++) {
        const struct sim_outcome *o = &r->o[i];
        if (o->seed_index != 0 || o->inst >= 0)
            continue;
        for (size_t k = 0; k < o->curve.n; k++) {
            if (!isfinite(o->curve.value[k]))
                continue;
            lo = o->curve.value[k] < lo ? o->curve.value[k] : lo;
            hi = o->curve.value[k] > hi ? o->curve.value[k] : hi;
            xmax = o->curve.step[k] > xmax ? o->curve.step[k] : xmax;
        }
    }
    nx = sim_nice_ticks(0.0, (double)xmax, 7, 1, xt, &a.x0, &a.x1);
    ny = y_axis(lo, hi, &a, yt);
    snprintf(title, sizeof(title), "Validation accuracy, %u sites, %s (seed %llu)", r->sites,
             r->partition, (unsigned long long)r->first_seed);
    svg_begin(f, r, title, "cumulative optimizer steps",
              "validation accuracy used for model selection");
    svg_axes(f, &a, xt, nx, yt, ny);
    for (size_t i = 0; i < r->n; i++) {
        const struct sim_outcome *o = &r->o[i];
        struct style st = series_style(shown);
        char label[64];
        if (o->seed_index != 0 || o->inst >= 0 || o->curve.n == 0)
            continue;
        sim_outcome_label(o, label, sizeof(label));
        series_open(f, &st, label);
        for (size_t k = 0; k < o->curve.n; k++)
            if (isfinite(o->curve.value[k]))
                fprintf(f, "%.1f,%.1f ", px(&a, (double)o->curve.step[k]),
                        py(&a, o->curve.value[k]));
        fputs("\"/>\n", f);
        for (size_t k = 0; k < o->curve.n; k++)
            if (isfinite(o->curve.value[k]))
                svg_marker(f, st.marker, px(&a, (double)o->curve.step[k]),
                           py(&a, o->curve.value[k]), st.color);
        svg_legend(f, shown, &st, label, 1);
        shown++;
    }
    fputs("</svg>\n", f);
}

void sim_svg_visits(const struct sim_report *r, FILE *f)
{
    struct axes a = {0};
    double lo = INFINITY, hi = -INFINITY, central = NAN, vmin = INFINITY, vmax = -INFINITY;
    double yt[16];
    struct row_stats *rows = calloc(r->n ? r->n : 1, sizeof(*rows));
    size_t nrows = rows ? collect_rows(r, rows) : 0, legend = 0, ny;
    const struct style central_style = {"#555555", "4,4", MK_CIRCLE};
    char title[160];

    for (size_t i = 0; i < nrows; i++) {
        const struct sim_outcome *o = rows[i].first;
        if (o->heur == SIM_CENTRAL)
            central = rows[i].acc_mean;
        if (o->heur != SIM_CWT && o->heur != SIM_CWT_PLUS && o->heur != SIM_CENTRAL)
            continue;
        if (isfinite(rows[i].acc_mean)) {
            double sd = isfinite(rows[i].acc_sd) ? rows[i].acc_sd : 0.0;
            lo = rows[i].acc_mean - sd < lo ? rows[i].acc_mean - sd : lo;
            hi = rows[i].acc_mean + sd > hi ? rows[i].acc_mean + sd : hi;
        }
        if (o->visit > 0) {
            vmin = o->visit < vmin ? o->visit : vmin;
            vmax = o->visit > vmax ? o->visit : vmax;
        }
    }
    if (!(vmin <= vmax))
        vmin = vmax = 1.0;
    a.xlog = 1;
    a.x0 = vmin / 2.0;
    a.x1 = vmax * 2.0;
    ny = y_axis(lo, hi, &a, yt);
    snprintf(title, sizeof(title), "CWT test accuracy vs visit length, %u sites, %s", r->sites,
             r->partition);
    svg_begin(f, r, title, "visit length (local epochs, log scale)",
              r->n_seeds > 1 ? "test accuracy (mean ± sd over seeds)" : "test accuracy");
    /* The x ticks are the visit lengths run: the values a reader asked for. */
    svg_axes(f, &a, r->visits, r->n_visits, yt, ny);
    if (isfinite(central)) {
        fprintf(f,
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\" "
                "stroke-width=\"2\" stroke-dasharray=\"%s\"/>\n",
                PLOT_X0, py(&a, central), PLOT_X0 + PLOT_W, py(&a, central), central_style.color,
                central_style.dash);
        svg_legend(f, legend++, &central_style, "central", 0);
    }
    for (int h = SIM_CWT; h <= SIM_CWT_PLUS; h++) {
        struct style st = series_style(h == SIM_CWT ? 0 : 1);
        double dx = h == SIM_CWT ? -DODGE : DODGE;
        int any = 0;
        series_open(f, &st, sim_heur_name((enum sim_heur)h));
        for (uint32_t v = 0; v < r->n_visits; v++)
            for (size_t i = 0; i < nrows; i++)
                if ((int)rows[i].first->heur == h && rows[i].first->visit == r->visits[v] &&
                    isfinite(rows[i].acc_mean)) {
                    fprintf(f, "%.1f,%.1f ", px(&a, r->visits[v]) + dx, py(&a, rows[i].acc_mean));
                    any = 1;
                }
        fputs("\"/>\n", f);
        for (size_t i = 0; i < nrows; i++) {
            const struct row_stats *row = &rows[i];
            double x;
            if ((int)row->first->heur != h || !isfinite(row->acc_mean))
                continue;
            x = px(&a, row->first->visit) + dx;
            /* mean +- sd can pass the axis (accuracy is at most 1): the bar stops at it. */
            if (isfinite(row->acc_sd)) {
                double b0 = row->acc_mean - row->acc_sd, b1 = row->acc_mean + row->acc_sd;
                b0 = b0 < a.y0 ? a.y0 : b0;
                b1 = b1 > a.y1 ? a.y1 : b1;
                fprintf(f,
                        "<path class=\"errorbar\" d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f "
                        "%.1fH%.1f\" stroke=\"%s\" stroke-width=\"1.5\"/>\n",
                        x, py(&a, b0), py(&a, b1), x - 3, py(&a, b0), x + 3, x - 3, py(&a, b1),
                        x + 3, st.color);
            }
            svg_marker(f, st.marker, x, py(&a, row->acc_mean), st.color);
        }
        if (any)
            svg_legend(f, legend++, &st, sim_heur_name((enum sim_heur)h), 1);
    }
    fputs("</svg>\n", f);
    free(rows);
}

/* Renders one file into memory, then writes it atomically. */
static int write_one(const struct sim_report *r, const char *dir, const char *name,
                     void (*render)(const struct sim_report *, FILE *), char *err, size_t errlen)
{
    char path[4096];
    char *buf = NULL;
    size_t len = 0;
    FILE *f;
    int rc;

    if (file_join(path, sizeof(path), dir, name) != 0)
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "output folder name is too long");
    if ((f = open_memstream(&buf, &len)) == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory for %s", name);
    render(r, f);
    if (fclose(f) != 0) {
        free(buf);
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory for %s", name);
    }
    rc = file_write_atomic(path, buf, len, 0644, err, errlen);
    free(buf);
    return rc;
}

static int write_json(const struct sim_report *r, const char *dir, char *err, size_t errlen)
{
    char path[4096];
    char *text;
    int rc;

    if (file_join(path, sizeof(path), dir, "results.json") != 0)
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "output folder name is too long");
    if ((text = sim_report_json_text(r)) == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory for results.json");
    /* The same bytes as `--json` prints: the text and a newline. */
    {
        size_t n = strlen(text);
        char *line = realloc(text, n + 2);
        if (line == NULL) {
            free(text);
            return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory for results.json");
        }
        line[n] = '\n';
        line[n + 1] = '\0';
        rc = file_write_atomic(path, line, n + 1, 0644, err, errlen);
        free(line);
    }
    return rc;
}

int sim_report_write(const struct sim_report *r, const char *dir, char *err, size_t errlen)
{
    int rc;

    if ((rc = file_mkdir_p(dir, 0755, err, errlen)) != 0)
        return rc;
    if ((rc = write_one(r, dir, "results.csv", sim_report_csv, err, errlen)) != 0 ||
        (rc = write_json(r, dir, err, errlen)) != 0 ||
        (rc = write_one(r, dir, "val-curves.svg", sim_svg_curves, err, errlen)) != 0 ||
        (rc = write_one(r, dir, "cwt-visits.svg", sim_svg_visits, err, errlen)) != 0)
        return rc;
    /* The table too, so a results folder is complete on its own. */
    return write_one(r, dir, "table.txt", sim_report_table, err, errlen);
}
