/*
 * sim_report.c - the results of `cwtctl simulate`: table, CSV, JSON and two hand-written SVG
 * plots (no plotting dependency).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "sim/sim.h"
#include "common/fileio.h"

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
    double acc_mean, acc_sd, auc_mean, auc_sd, wall_mean;
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
    double *auc = malloc((r->n ? r->n : 1) * sizeof(double));

    if (acc == NULL || auc == NULL) {
        free(acc);
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
            auc[row->n] = o->test_auc;
            row->wall_mean += o->wall_s;
            row->steps_min = o->steps < row->steps_min ? o->steps : row->steps_min;
            row->steps_max = o->steps > row->steps_max ? o->steps : row->steps_max;
            row->budget = o->budget;
            row->n++;
        }
        mean_sd(acc, row->n, &row->acc_mean, &row->acc_sd);
        mean_sd(auc, row->n, &row->auc_mean, &row->auc_sd);
        row->wall_mean /= row->n;
    }
    free(acc);
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
            "%u seed%s from %llu%s\n",
            r->sites, r->partition, r->model, r->budget_epochs, (unsigned long long)r->budget_steps,
            r->batch, r->n_seeds, r->n_seeds == 1 ? "" : "s", (unsigned long long)r->first_seed,
            r->through_bundles ? ", hand-overs through sealed bundles" : "");
    if (r->prox_mu > 0)
        fprintf(f, "fedprox: mu %g; fedavg/fedprox v = local epochs per round\n", r->prox_mu);
    for (uint32_t i = 0; i < r->n_names; i++)
        fprintf(f, "%sinst-%u = %s%s", i ? ", " : "institutions: ", i, r->names[i],
                i + 1 == r->n_names ? "\n" : "");
    fprintf(f, "images: %llu train, %llu val (both divided among sites), %llu test (pooled)\n",
            (unsigned long long)r->n_train, (unsigned long long)r->n_val,
            (unsigned long long)r->n_test);
    fprintf(f, "%-16s %-19s %-19s %-11s %9s  %s\n", "heuristic", "test accuracy", "test AUC",
            "steps", "wall s", "model kept");
    for (size_t i = 0; i < nrows; i++) {
        char label[64], acc[48], auc[48], steps[48];
        const struct row_stats *row = &rows[i];
        sim_outcome_label(row->first, label, sizeof(label));
        fmt_mean_sd(acc, sizeof(acc), row->acc_mean, row->acc_sd);
        fmt_mean_sd(auc, sizeof(auc), row->auc_mean, row->auc_sd);
        if (row->steps_min == row->steps_max)
            snprintf(steps, sizeof(steps), "%llu", (unsigned long long)row->steps_min);
        else
            snprintf(steps, sizeof(steps), "%llu-%llu", (unsigned long long)row->steps_min,
                     (unsigned long long)row->steps_max);
        /* "±" is two bytes but one column: pad by hand. */
        fprintf(f, "%-16s %-*s %-*s %-11s %9.1f  %s\n", label, 19 + (strstr(acc, "±") ? 1 : 0), acc,
                19 + (strstr(auc, "±") ? 1 : 0), auc, steps, row->wall_mean,
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
    fprintf(f, "label,heuristic,visit,institution,seed,test_accuracy,test_auc,steps,budget,"
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

static void jnum(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.17g", v);
    else
        fputs("null", f);
}

void sim_report_json(const struct sim_report *r, FILE *f)
{
    struct row_stats *rows = calloc(r->n ? r->n : 1, sizeof(*rows));
    size_t nrows = rows ? collect_rows(r, rows) : 0;

    fprintf(f, "{\"sites\":%u,\"partition\":", r->sites);
    cli_json_string(f, r->partition);
    fputs(",\"cwt_plus\":", f);
    cli_json_string(f, r->plus);
    fputs(",\"fedprox_mu\":", f);
    jnum(f, r->prox_mu > 0 ? r->prox_mu : NAN);
    fprintf(f,
            ",\"budget_epochs\":%.17g,\"budget_steps\":%llu,\"batch\":%u,\"seeds\":%u,"
            "\"first_seed\":%llu,\"through_bundles\":%s,\"model\":",
            r->budget_epochs, (unsigned long long)r->budget_steps, r->batch, r->n_seeds,
            (unsigned long long)r->first_seed, r->through_bundles ? "true" : "false");
    cli_json_string(f, r->model);
    fputs(",\"device\":", f);
    cli_json_string(f, r->device);
    fprintf(f, ",\"images\":{\"train\":%llu,\"val\":%llu,\"test\":%llu},\"visits\":[",
            (unsigned long long)r->n_train, (unsigned long long)r->n_val,
            (unsigned long long)r->n_test);
    for (uint32_t i = 0; i < r->n_visits; i++)
        fprintf(f, "%s%.17g", i ? "," : "", r->visits[i]);
    fputs("],\"institution_names\":", f);
    if (r->n_names > 0) {
        fputc('[', f);
        for (uint32_t i = 0; i < r->n_names; i++) {
            if (i)
                fputc(',', f);
            cli_json_string(f, r->names[i]);
        }
        fputc(']', f);
    } else {
        fputs("null", f);
    }
    fputs(",\"institutions\":[", f);
    for (uint32_t s = 0; s < r->n_seeds && r->inst_train != NULL; s++) {
        fprintf(f, "%s{\"seed\":%llu,\"train\":[", s ? "," : "",
                (unsigned long long)(r->first_seed + s));
        for (uint32_t i = 0; i < r->sites; i++)
            fprintf(f, "%s%llu", i ? "," : "",
                    (unsigned long long)r->inst_train[(size_t)s * r->sites + i]);
        fputs("],\"val\":[", f);
        for (uint32_t i = 0; i < r->sites; i++)
            fprintf(f, "%s%llu", i ? "," : "",
                    (unsigned long long)r->inst_val[(size_t)s * r->sites + i]);
        fputs("]}", f);
    }
    fputs("],\"runs\":[", f);
    for (size_t i = 0; i < r->n; i++) {
        const struct sim_outcome *o = &r->o[i];
        char label[64];
        sim_outcome_label(o, label, sizeof(label));
        fputs(i ? ",{\"label\":" : "{\"label\":", f);
        cli_json_string(f, label);
        fprintf(f, ",\"heuristic\":\"%s\",\"visit\":", sim_heur_name(o->heur));
        if (o->visit > 0)
            fprintf(f, "%.17g", o->visit);
        else
            fputs("null", f);
        fputs(",\"institution\":", f);
        if (o->inst >= 0)
            fprintf(f, "%d", o->inst);
        else
            fputs("null", f);
        fprintf(f, ",\"seed\":%llu,\"test_accuracy\":", (unsigned long long)o->seed);
        jnum(f, o->test_accuracy);
        fputs(",\"test_auc\":", f);
        jnum(f, o->test_auc);
        fprintf(f,
                ",\"steps\":%llu,\"budget\":%llu,\"wall_s\":%.3f,\"cycles\":%u,"
                "\"kept_step\":%llu,\"kept_val\":",
                (unsigned long long)o->steps, (unsigned long long)o->budget, o->wall_s, o->cycles,
                (unsigned long long)o->kept_step);
        jnum(f, o->kept_val);
        fputs(",\"selection\":", f);
        cli_json_string(f, sim_selection_text(o->heur));
        fprintf(f, ",\"weights_blake2b\":\"%s\",\"final_blake2b\":\"%s\",\"curve\":[",
                o->weights_hash, o->final_hash);
        for (size_t k = 0; k < o->curve.n; k++) {
            fprintf(f, "%s[%llu,", k ? "," : "", (unsigned long long)o->curve.step[k]);
            jnum(f, o->curve.value[k]);
            fputc(']', f);
        }
        fputs("]}", f);
    }
    fputs("],\"summary\":[", f);
    for (size_t i = 0; i < nrows; i++) {
        const struct row_stats *row = &rows[i];
        char label[64];
        sim_outcome_label(row->first, label, sizeof(label));
        fputs(i ? ",{\"label\":" : "{\"label\":", f);
        cli_json_string(f, label);
        fprintf(f, ",\"heuristic\":\"%s\",\"seeds\":%u,\"test_accuracy_mean\":",
                sim_heur_name(row->first->heur), row->n);
        jnum(f, row->acc_mean);
        fputs(",\"test_accuracy_sd\":", f);
        jnum(f, row->acc_sd);
        fputs(",\"test_auc_mean\":", f);
        jnum(f, row->auc_mean);
        fputs(",\"test_auc_sd\":", f);
        jnum(f, row->auc_sd);
        fprintf(f, ",\"steps_min\":%llu,\"steps_max\":%llu,\"budget\":%llu,\"wall_s_mean\":%.3f}",
                (unsigned long long)row->steps_min, (unsigned long long)row->steps_max,
                (unsigned long long)row->budget, row->wall_mean);
    }
    fputs("]}\n", f);
    free(rows);
}

/* ------------------------------------------------------------ SVG */

#define SVG_W   760
#define SVG_H   440
#define PLOT_X0 70
#define PLOT_Y0 40
#define PLOT_W  470
#define PLOT_H  340

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"};
#define PALETTE_N (sizeof(palette) / sizeof(palette[0]))

static void svg_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else
            fputc(*s, f);
    }
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

static void svg_begin(FILE *f, const char *title, const char *xlabel, const char *ylabel)
{
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
            "<text x=\"%d\" y=\"22\" font-size=\"14\">",
            SVG_W, SVG_H, SVG_W, SVG_H, PLOT_X0);
    svg_text(f, title);
    fprintf(f, "</text>\n<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", PLOT_X0 + PLOT_W / 2,
            SVG_H - 12);
    svg_text(f, xlabel);
    fprintf(f,
            "</text>\n<text x=\"16\" y=\"%d\" text-anchor=\"middle\" "
            "transform=\"rotate(-90 16 %d)\">",
            PLOT_Y0 + PLOT_H / 2, PLOT_Y0 + PLOT_H / 2);
    svg_text(f, ylabel);
    fputs("</text>\n", f);
}

static void svg_axes(FILE *f, const struct axes *a, const double *xticks, size_t nx)
{
    fprintf(f,
            "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
            "stroke=\"#444\"/>\n",
            PLOT_X0, PLOT_Y0, PLOT_W, PLOT_H);
    for (int i = 0; i <= 5; i++) {
        double y = a->y0 + (a->y1 - a->y0) * i / 5.0;
        fprintf(f,
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.3f</text>\n",
                PLOT_X0, py(a, y), PLOT_X0 + PLOT_W, py(a, y), PLOT_X0 - 6, py(a, y) + 4, y);
    }
    for (size_t i = 0; i < nx; i++)
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>"
                "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n",
                px(a, xticks[i]), PLOT_Y0, px(a, xticks[i]), PLOT_Y0 + PLOT_H, px(a, xticks[i]),
                PLOT_Y0 + PLOT_H + 16, xticks[i]);
}

static void svg_legend(FILE *f, size_t i, const char *color, const char *label, int dashed)
{
    double y = PLOT_Y0 + 10 + 18.0 * (double)i;
    fprintf(f,
            "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\" "
            "stroke-width=\"2\"%s/><text x=\"%d\" y=\"%.1f\">",
            PLOT_X0 + PLOT_W + 12, y, PLOT_X0 + PLOT_W + 36, y, color,
            dashed ? " stroke-dasharray=\"5,4\"" : "", PLOT_X0 + PLOT_W + 42, y + 4);
    svg_text(f, label);
    fputs("</text>\n", f);
}

/* y range over the values shown, padded, within [0, 1]. */
static void y_range(double lo, double hi, struct axes *a)
{
    double pad;

    if (!(lo <= hi)) {
        lo = 0.0;
        hi = 1.0;
    }
    pad = (hi - lo) * 0.08 + 0.01;
    a->y0 = lo - pad < 0.0 ? 0.0 : lo - pad;
    a->y1 = hi + pad > 1.0 ? 1.0 : hi + pad;
    if (a->y1 - a->y0 < 1e-6)
        a->y1 = a->y0 + 0.01;
}

void sim_svg_curves(const struct sim_report *r, FILE *f)
{
    struct axes a = {0};
    double lo = INFINITY, hi = -INFINITY, xt[6];
    uint64_t xmax = 1;
    size_t shown = 0;
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
    a.x0 = 0;
    a.x1 = (double)xmax;
    y_range(lo, hi, &a);
    for (int i = 0; i < 6; i++)
        xt[i] = floor(a.x1 * i / 5.0);
    snprintf(title, sizeof(title), "Validation accuracy, %u sites, %s (seed %llu)", r->sites,
             r->partition, (unsigned long long)r->first_seed);
    svg_begin(f, title, "cumulative optimizer steps",
              "validation accuracy used for model selection");
    svg_axes(f, &a, xt, 6);
    for (size_t i = 0; i < r->n; i++) {
        const struct sim_outcome *o = &r->o[i];
        const char *color = palette[shown % PALETTE_N];
        char label[64];
        if (o->seed_index != 0 || o->inst >= 0 || o->curve.n == 0)
            continue;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
        for (size_t k = 0; k < o->curve.n; k++)
            if (isfinite(o->curve.value[k]))
                fprintf(f, "%.1f,%.1f ", px(&a, (double)o->curve.step[k]),
                        py(&a, o->curve.value[k]));
        fputs("\"/>\n", f);
        for (size_t k = 0; k < o->curve.n; k++)
            if (isfinite(o->curve.value[k]))
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n",
                        px(&a, (double)o->curve.step[k]), py(&a, o->curve.value[k]), color);
        sim_outcome_label(o, label, sizeof(label));
        svg_legend(f, shown, color, label, 0);
        shown++;
    }
    fputs("</svg>\n", f);
}

void sim_svg_visits(const struct sim_report *r, FILE *f)
{
    struct axes a = {0};
    double lo = INFINITY, hi = -INFINITY, central = NAN, vmin = INFINITY, vmax = -INFINITY;
    struct row_stats *rows = calloc(r->n ? r->n : 1, sizeof(*rows));
    size_t nrows = rows ? collect_rows(r, rows) : 0, legend = 0;
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
    y_range(lo, hi, &a);
    snprintf(title, sizeof(title), "CWT test accuracy vs visit length, %u sites, %s", r->sites,
             r->partition);
    svg_begin(f, title, "visit length (local epochs, log scale)",
              r->n_seeds > 1 ? "test accuracy (mean ± sd over seeds)" : "test accuracy");
    svg_axes(f, &a, r->visits, r->n_visits);
    if (isfinite(central)) {
        fprintf(f,
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#444\" "
                "stroke-width=\"2\" stroke-dasharray=\"5,4\"/>\n",
                PLOT_X0, py(&a, central), PLOT_X0 + PLOT_W, py(&a, central));
        svg_legend(f, legend++, "#444", "central", 1);
    }
    for (int h = SIM_CWT; h <= SIM_CWT_PLUS; h++) {
        const char *color = palette[h == SIM_CWT ? 0 : 1];
        int any = 0;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
        for (uint32_t v = 0; v < r->n_visits; v++)
            for (size_t i = 0; i < nrows; i++)
                if ((int)rows[i].first->heur == h && rows[i].first->visit == r->visits[v] &&
                    isfinite(rows[i].acc_mean)) {
                    fprintf(f, "%.1f,%.1f ", px(&a, r->visits[v]), py(&a, rows[i].acc_mean));
                    any = 1;
                }
        fputs("\"/>\n", f);
        for (size_t i = 0; i < nrows; i++) {
            const struct row_stats *row = &rows[i];
            double x;
            if ((int)row->first->heur != h || !isfinite(row->acc_mean))
                continue;
            x = px(&a, row->first->visit);
            if (isfinite(row->acc_sd))
                fprintf(f,
                        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                        "stroke=\"%s\"/>\n",
                        x, py(&a, row->acc_mean - row->acc_sd), x,
                        py(&a, row->acc_mean + row->acc_sd), color);
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n", x,
                    py(&a, row->acc_mean), color);
        }
        if (any)
            svg_legend(f, legend++, color, sim_heur_name((enum sim_heur)h), 0);
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

int sim_report_write(const struct sim_report *r, const char *dir, char *err, size_t errlen)
{
    int rc;

    if ((rc = file_mkdir_p(dir, 0755, err, errlen)) != 0)
        return rc;
    if ((rc = write_one(r, dir, "results.csv", sim_report_csv, err, errlen)) != 0 ||
        (rc = write_one(r, dir, "results.json", sim_report_json, err, errlen)) != 0 ||
        (rc = write_one(r, dir, "val-curves.svg", sim_svg_curves, err, errlen)) != 0 ||
        (rc = write_one(r, dir, "cwt-visits.svg", sim_svg_visits, err, errlen)) != 0)
        return rc;
    /* The table too, so a results folder is complete on its own. */
    return write_one(r, dir, "table.txt", sim_report_table, err, errlen);
}
