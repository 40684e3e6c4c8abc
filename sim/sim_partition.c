/*
 * sim_partition.c - dividing a split among virtual institutions (docs/simulate.md, "Partitions").
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/sim.h"

/* Stream tag of the label-mix draws, so they never share random numbers with the shuffles. */
#define STREAM_MIX 0x6d69782d64697231ull /* "mix-dir1" */

#define SINKHORN_MAX_ITER 20000
#define MIX_FLOOR         1e-12

int sim_part_rule_parse(const char *text, uint32_t n_inst, struct sim_part_rule *out, char *err,
                        size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (strcmp(text, "iid") == 0) {
        out->kind = SIM_PART_IID;
        return 0;
    }
    if (strncmp(text, "label-skew:", 11) == 0) {
        out->kind = SIM_PART_LABEL_SKEW;
        if (cwt_parse_double(text + 11, 1e-6, 1e6, &out->alpha) != 0)
            return cwt_seterr(err, errlen, CWT_EINVAL,
                              "--partition %s: ALPHA must be a number from 1e-6 to 1e6", text);
        return 0;
    }
    if (strncmp(text, "size-skew:", 10) == 0) {
        const char *p = text + 10;
        out->kind = SIM_PART_SIZE_SKEW;
        while (*p != '\0') {
            char tok[64];
            size_t len = strcspn(p, ",");
            if (out->n_weights >= CWT_MAX_SITES || len == 0 || len >= sizeof(tok))
                return cwt_seterr(err, errlen, CWT_EINVAL,
                                  "--partition %s: expected size-skew:W1,W2,... with one "
                                  "positive weight per site",
                                  text);
            memcpy(tok, p, len);
            tok[len] = '\0';
            if (cwt_parse_double(tok, 1e-9, 1e9, &out->weights[out->n_weights]) != 0)
                return cwt_seterr(err, errlen, CWT_EINVAL,
                                  "--partition %s: weight '%s' is not a positive number", text,
                                  tok);
            out->n_weights++;
            p += len;
            if (*p == ',' && *++p == '\0')
                return cwt_seterr(err, errlen, CWT_EINVAL, "--partition %s: trailing comma", text);
        }
        if (out->n_weights != n_inst)
            return cwt_seterr(err, errlen, CWT_EINVAL,
                              "--partition %s: %u weights for %u sites (give one per site)", text,
                              out->n_weights, n_inst);
        return 0;
    }
    if (strncmp(text, "by-column:", 10) == 0) {
        out->kind = SIM_PART_COLUMN;
        if (!store_imeta_name_ok(text + 10))
            return cwt_seterr(err, errlen, CWT_EINVAL,
                              "--partition %s: expected by-column:NAME with the name of a "
                              "metadata column of the ingest CSV",
                              text);
        snprintf(out->column, sizeof(out->column), "%s", text + 10);
        return 0;
    }
    return cwt_seterr(err, errlen, CWT_EINVAL,
                      "--partition %s: expected iid, label-skew:ALPHA, size-skew:W1,W2,... or "
                      "by-column:NAME",
                      text);
}

void sim_part_rule_format(const struct sim_part_rule *r, char *out, size_t len)
{
    size_t used;

    switch (r->kind) {
    case SIM_PART_LABEL_SKEW:
        snprintf(out, len, "label-skew:%g", r->alpha);
        return;
    case SIM_PART_SIZE_SKEW:
        used = (size_t)snprintf(out, len, "size-skew:");
        for (uint32_t i = 0; i < r->n_weights && used < len; i++)
            used += (size_t)snprintf(out + used, len - used, "%s%g", i ? "," : "", r->weights[i]);
        return;
    case SIM_PART_COLUMN:
        snprintf(out, len, "by-column:%s", r->column);
        return;
    case SIM_PART_IID:
    default:
        snprintf(out, len, "iid");
        return;
    }
}

/* Standard normal by Box-Muller from two uniforms (only the cosine half is used, so every
 * draw consumes exactly two numbers and the stream stays easy to reason about). */
static double normal_draw(struct train_rng *rng)
{
    double u1 = 1.0 - train_rng_unit(rng); /* (0, 1] so the log is finite */
    double u2 = train_rng_unit(rng);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double sim_log_gamma_draw(struct train_rng *rng, double shape)
{
    double boost = 0.0, d, c;

    if (shape < 1.0) {
        boost = log(1.0 - train_rng_unit(rng)) / shape;
        shape += 1.0;
    }
    d = shape - 1.0 / 3.0;
    c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = normal_draw(rng), v = 1.0 + c * x, u;
        if (v <= 0.0)
            continue;
        v = v * v * v;
        u = 1.0 - train_rng_unit(rng);
        if (u < 1.0 - 0.0331 * x * x * x * x || log(u) < 0.5 * x * x + d * (1.0 - v + log(v)))
            return log(d) + log(v) + boost;
    }
}

void sim_dirichlet_draw(struct train_rng *rng, double alpha, uint32_t k, double *out)
{
    double top = -INFINITY, sum = 0.0;

    for (uint32_t i = 0; i < k; i++) {
        out[i] = sim_log_gamma_draw(rng, alpha);
        if (out[i] > top)
            top = out[i];
    }
    /* Normalising in logs: exp(log g - max) keeps the largest component at 1. */
    for (uint32_t i = 0; i < k; i++) {
        out[i] = exp(out[i] - top);
        sum += out[i];
    }
    for (uint32_t i = 0; i < k; i++)
        out[i] /= sum;
    sum = 0.0;
    for (uint32_t i = 0; i < k; i++) {
        if (out[i] < MIX_FLOOR)
            out[i] = MIX_FLOOR;
        sum += out[i];
    }
    for (uint32_t i = 0; i < k; i++)
        out[i] /= sum;
}

void sim_label_mix(const struct sim_part_rule *r, uint32_t n_inst, uint32_t classes, uint64_t seed,
                   double *mix)
{
    struct train_rng rng;

    if (r->kind != SIM_PART_LABEL_SKEW) {
        for (size_t i = 0; i < (size_t)n_inst * classes; i++)
            mix[i] = 1.0;
        return;
    }
    train_rng_seed(&rng, train_hash3(seed, STREAM_MIX, 0));
    for (uint32_t i = 0; i < n_inst; i++)
        sim_dirichlet_draw(&rng, r->alpha, classes, mix + (size_t)i * classes);
}

int sim_partition_targets(const struct sim_part_rule *r, uint32_t n_inst, uint32_t classes,
                          const double *mix, const uint64_t *class_counts, double *target)
{
    double share[CWT_MAX_SITES], wsum = 0.0, total = 0.0;

    if (n_inst == 0 || n_inst > CWT_MAX_SITES || classes == 0)
        return CWT_EINVAL;
    for (uint32_t i = 0; i < n_inst; i++) {
        share[i] = r->kind == SIM_PART_SIZE_SKEW ? r->weights[i] : 1.0;
        wsum += share[i];
    }
    for (uint32_t c = 0; c < classes; c++)
        total += (double)class_counts[c];
    for (uint32_t i = 0; i < n_inst; i++)
        share[i] = total * share[i] / wsum; /* the row sums wanted */
    for (uint32_t i = 0; i < n_inst; i++)
        for (uint32_t c = 0; c < classes; c++)
            target[(size_t)i * classes + c] =
                class_counts[c] > 0 ? mix[(size_t)i * classes + c] : 0.0;
    if (total == 0.0)
        return 0;

    /* Sinkhorn: alternately scale rows and columns to their sums. With a positive mix it
     * converges to the unique diag(a) * mix * diag(b) with those sums; with a constant mix
     * (iid, size-skew) one round is exact. */
    for (int iter = 0; iter < SINKHORN_MAX_ITER; iter++) {
        double worst = 0.0;
        for (uint32_t i = 0; i < n_inst; i++) {
            double s = 0.0;
            for (uint32_t c = 0; c < classes; c++)
                s += target[(size_t)i * classes + c];
            if (!(s > 0.0))
                return CWT_EINVAL;
            for (uint32_t c = 0; c < classes; c++)
                target[(size_t)i * classes + c] *= share[i] / s;
        }
        for (uint32_t c = 0; c < classes; c++) {
            double s = 0.0;
            if (class_counts[c] == 0)
                continue;
            for (uint32_t i = 0; i < n_inst; i++)
                s += target[(size_t)i * classes + c];
            if (!(s > 0.0))
                return CWT_EINVAL;
            for (uint32_t i = 0; i < n_inst; i++)
                target[(size_t)i * classes + c] *= (double)class_counts[c] / s;
        }
        for (uint32_t i = 0; i < n_inst; i++) {
            double s = 0.0;
            for (uint32_t c = 0; c < classes; c++)
                s += target[(size_t)i * classes + c];
            if (fabs(s - share[i]) > worst)
                worst = fabs(s - share[i]);
        }
        if (worst < 1e-9 * (total > 1.0 ? total : 1.0))
            break;
    }
    return 0;
}

int sim_column_values(struct store *st, struct sim_part_rule *r, char *err, size_t errlen)
{
    struct store_imeta *m = malloc(sizeof(*m));
    int rc;

    if (m == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
    r->n_values = 0;
    if ((rc = store_read_begin(st)) != 0) {
        free(m);
        return cwt_seterr(err, errlen, rc, "cannot read the store: %s", cwt_strerror(rc));
    }
    /* The test split stays pooled, so only train and val images need an institution. */
    for (int split = STORE_TRAIN; split <= STORE_VAL && rc == 0; split++) {
        uint64_t *ids = NULL;
        size_t n = 0;
        if ((rc = store_list(st, (enum store_split)split, &ids, &n)) != 0) {
            cwt_seterr(err, errlen, rc, "cannot list the %s split: %s",
                       store_split_name((enum store_split)split), cwt_strerror(rc));
            break;
        }
        for (size_t j = 0; j < n && rc == 0; j++) {
            const char *v;
            uint32_t at = 0;
            if ((rc = store_get_image_meta(st, ids[j], m)) != 0) {
                cwt_seterr(err, errlen, rc, "cannot read the metadata of image %llu: %s",
                           (unsigned long long)ids[j], cwt_strerror(rc));
                break;
            }
            if ((v = store_imeta_get(m, r->column)) == NULL) {
                rc = cwt_seterr(err, errlen, CWT_EINVAL,
                                "image %llu (%s split) has no value in column '%s'; "
                                "--partition by-column:%s needs one for every train and val "
                                "image (see 'cwtctl data')",
                                (unsigned long long)ids[j],
                                store_split_name((enum store_split)split), r->column, r->column);
                break;
            }
            while (at < r->n_values && strcmp(r->values[at], v) < 0)
                at++;
            if (at < r->n_values && strcmp(r->values[at], v) == 0)
                continue;
            if (r->n_values == CWT_MAX_SITES) {
                rc = cwt_seterr(err, errlen, CWT_EINVAL,
                                "column '%s' has more than %d values; by-column makes one "
                                "institution per value, at most %d",
                                r->column, CWT_MAX_SITES, CWT_MAX_SITES);
                break;
            }
            memmove(r->values[at + 1], r->values[at], (r->n_values - at) * sizeof(r->values[0]));
            snprintf(r->values[at], sizeof(r->values[at]), "%s", v);
            r->n_values++;
        }
        free(ids);
    }
    store_read_end(st);
    free(m);
    if (rc == 0 && r->n_values == 0)
        rc = cwt_seterr(err, errlen, CWT_ENOENT,
                        "the store has no train or val images to divide by column '%s'", r->column);
    if (rc == 0 && r->n_values == 1)
        rc = cwt_seterr(err, errlen, CWT_EINVAL,
                        "column '%s' has only one value ('%s'); by-column needs at least two "
                        "institutions",
                        r->column, r->values[0]);
    return rc;
}

int sim_column_inst(struct store *st, const struct sim_part_rule *r, const uint64_t *ids, size_t n,
                    uint32_t *inst, char *err, size_t errlen)
{
    struct store_imeta *m = malloc(sizeof(*m));
    int rc = 0;

    if (m == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
    for (size_t j = 0; j < n && rc == 0; j++) {
        const char *v;
        uint32_t lo = 0, hi = r->n_values;
        if ((rc = store_get_image_meta(st, ids[j], m)) != 0) {
            cwt_seterr(err, errlen, rc, "cannot read the metadata of image %llu: %s",
                       (unsigned long long)ids[j], cwt_strerror(rc));
            break;
        }
        if ((v = store_imeta_get(m, r->column)) == NULL) {
            rc = cwt_seterr(err, errlen, CWT_EINVAL, "image %llu has no value in column '%s'",
                            (unsigned long long)ids[j], r->column);
            break;
        }
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (strcmp(r->values[mid], v) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == r->n_values || strcmp(r->values[lo], v) != 0)
            rc = cwt_seterr(err, errlen, CWT_EINVAL,
                            "image %llu has value '%s' in column '%s', which was not there when "
                            "the institutions were made",
                            (unsigned long long)ids[j], v, r->column);
        inst[j] = lo;
    }
    free(m);
    return rc;
}

int sim_partition_fixed(uint32_t n_inst, const uint64_t *ids, const uint32_t *labels,
                        const uint32_t *inst, size_t n, struct sim_part *out, char *err,
                        size_t errlen)
{
    size_t *pos;

    memset(out, 0, sizeof(*out));
    out->n_inst = n_inst;
    out->start = calloc((size_t)n_inst + 1, sizeof(*out->start));
    out->ids = calloc(n > 0 ? n : 1, sizeof(*out->ids));
    out->labels = calloc(n > 0 ? n : 1, sizeof(*out->labels));
    pos = calloc(n_inst > 0 ? n_inst : 1, sizeof(*pos));
    if (out->start == NULL || out->ids == NULL || out->labels == NULL || pos == NULL) {
        free(pos);
        sim_part_free(out);
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory for the partition");
    }
    for (size_t j = 0; j < n; j++) {
        if (inst[j] >= n_inst) {
            free(pos);
            sim_part_free(out);
            return cwt_seterr(err, errlen, CWT_EINVAL, "image %llu has no institution",
                              (unsigned long long)ids[j]);
        }
        out->start[inst[j] + 1]++;
    }
    for (uint32_t i = 0; i < n_inst; i++) {
        out->start[i + 1] += out->start[i];
        pos[i] = out->start[i];
    }
    for (size_t j = 0; j < n; j++) {
        out->ids[pos[inst[j]]] = ids[j];
        out->labels[pos[inst[j]]++] = labels[j];
    }
    free(pos);
    return 0;
}

size_t sim_part_size(const struct sim_part *p, uint32_t i)
{
    return p->start[i + 1] - p->start[i];
}

void sim_part_free(struct sim_part *p)
{
    if (p == NULL)
        return;
    free(p->start);
    free(p->ids);
    free(p->labels);
    memset(p, 0, sizeof(*p));
}

struct id_label {
    uint64_t id;
    uint32_t label;
};

static int cmp_id_label(const void *a, const void *b)
{
    const struct id_label *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Rounds target to whole images: every column keeps its exact total (each entry becomes its
 * floor or ceiling), and the leftover images of a class go to the institutions furthest behind
 * their running target, so each row stays within one image of its real-valued sum. */
static void round_targets(const double *target, const uint64_t *class_counts, uint32_t n_inst,
                          uint32_t classes, uint64_t *count)
{
    double want[CWT_MAX_SITES] = {0};
    uint64_t have[CWT_MAX_SITES] = {0};

    for (uint32_t c = 0; c < classes; c++) {
        uint64_t placed = 0;
        uint8_t bumped[CWT_MAX_SITES] = {0};
        for (uint32_t i = 0; i < n_inst; i++) {
            double t = target[(size_t)i * classes + c];
            uint64_t f = t > 0.0 ? (uint64_t)floor(t) : 0;
            if (placed + f > class_counts[c]) /* guards rounding error only */
                f = class_counts[c] - placed;
            count[(size_t)i * classes + c] = f;
            placed += f;
            want[i] += t;
            have[i] += f;
        }
        while (placed < class_counts[c]) {
            int best = -1;
            double best_gap = -INFINITY;
            /* First pass: only entries still below their ceiling; second: anyone. */
            for (int pass = 0; pass < 2 && best < 0; pass++)
                for (uint32_t i = 0; i < n_inst; i++) {
                    double t = target[(size_t)i * classes + c];
                    double gap = want[i] - (double)have[i];
                    if (pass == 0 && (bumped[i] || t - floor(t) <= 0.0))
                        continue;
                    if (gap > best_gap) {
                        best_gap = gap;
                        best = (int)i;
                    }
                }
            count[(size_t)best * classes + c]++;
            bumped[best] = 1;
            have[best]++;
            placed++;
        }
    }
}

int sim_partition(const struct sim_part_rule *r, uint32_t n_inst, uint32_t classes,
                  const double *mix, const uint64_t *ids, const uint32_t *labels, size_t n,
                  uint64_t seed, uint64_t stream, struct sim_part *out, char *err, size_t errlen)
{
    uint64_t *class_counts = NULL, *count = NULL;
    size_t *class_start = NULL, *class_pos = NULL, *fill = NULL, cells;
    struct id_label *by_class = NULL, *dealt = NULL;
    double *target = NULL;
    struct train_rng rng;
    int rc = CWT_ENOMEM;

    memset(out, 0, sizeof(*out));
    if (n_inst == 0 || n_inst > CWT_MAX_SITES || classes == 0 || classes > CWT_MAX_CLASSES)
        return cwt_seterr(err, errlen, CWT_EINVAL, "bad partition arguments");
    cells = (size_t)n_inst * classes;
    class_counts = calloc(classes, sizeof(*class_counts));
    class_start = calloc((size_t)classes + 1, sizeof(*class_start));
    class_pos = calloc(classes, sizeof(*class_pos));
    count = calloc(cells, sizeof(*count));
    target = calloc(cells, sizeof(*target));
    fill = calloc(n_inst, sizeof(*fill));
    by_class = calloc(n > 0 ? n : 1, sizeof(*by_class));
    dealt = calloc(n > 0 ? n : 1, sizeof(*dealt));
    out->n_inst = n_inst;
    out->start = calloc((size_t)n_inst + 1, sizeof(*out->start));
    out->ids = calloc(n > 0 ? n : 1, sizeof(*out->ids));
    out->labels = calloc(n > 0 ? n : 1, sizeof(*out->labels));
    if (class_counts == NULL || class_start == NULL || class_pos == NULL || count == NULL ||
        target == NULL || fill == NULL || by_class == NULL || dealt == NULL || out->start == NULL ||
        out->ids == NULL || out->labels == NULL) {
        cwt_seterr(err, errlen, rc, "out of memory for the partition");
        goto fail;
    }
    for (size_t j = 0; j < n; j++) {
        if (labels[j] >= classes) {
            rc = cwt_seterr(err, errlen, CWT_EFORMAT, "image %llu has label %u of %u classes",
                            (unsigned long long)ids[j], labels[j], classes);
            goto fail;
        }
        class_counts[labels[j]]++;
    }
    for (uint32_t c = 0; c < classes; c++) {
        class_start[c + 1] = class_start[c] + class_counts[c];
        class_pos[c] = class_start[c];
    }
    for (size_t j = 0; j < n; j++) {
        uint32_t c = labels[j];
        by_class[class_pos[c]].id = ids[j];
        by_class[class_pos[c]].label = c;
        class_pos[c]++;
    }
    if (sim_partition_targets(r, n_inst, classes, mix, class_counts, target) != 0) {
        rc = cwt_seterr(err, errlen, CWT_EINVAL, "the label mix leaves a class with no place");
        goto fail;
    }
    round_targets(target, class_counts, n_inst, classes, count);

    /* Row starts from the rounded counts. */
    for (uint32_t i = 0; i < n_inst; i++) {
        size_t s = 0;
        for (uint32_t c = 0; c < classes; c++)
            s += count[(size_t)i * classes + c];
        out->start[i + 1] = out->start[i] + s;
        fill[i] = out->start[i];
    }
    /* Each class: shuffle its images (Fisher-Yates), then deal runs in institution order.
     * The input order is sorted first so the result depends on the set, not the order. */
    train_rng_seed(&rng, train_hash3(seed, stream, 0x6465616c31ull /* "deal1" */));
    for (uint32_t c = 0; c < classes; c++) {
        struct id_label *cls = by_class + class_start[c];
        size_t m = class_counts[c], next = 0;
        qsort(cls, m, sizeof(*cls), cmp_id_label);
        for (size_t j = m; j > 1; j--) {
            size_t k = (size_t)train_rng_below(&rng, j);
            struct id_label t = cls[j - 1];
            cls[j - 1] = cls[k];
            cls[k] = t;
        }
        for (uint32_t i = 0; i < n_inst; i++)
            for (uint64_t t = 0; t < count[(size_t)i * classes + c]; t++)
                dealt[fill[i]++] = cls[next++];
    }
    for (uint32_t i = 0; i < n_inst; i++) {
        size_t b = out->start[i], m = out->start[i + 1] - b;
        qsort(dealt + b, m, sizeof(*dealt), cmp_id_label);
        for (size_t j = b; j < b + m; j++) {
            out->ids[j] = dealt[j].id;
            out->labels[j] = dealt[j].label;
        }
    }
    rc = 0;
fail:
    if (rc != 0)
        sim_part_free(out);
    free(class_counts);
    free(class_start);
    free(class_pos);
    free(count);
    free(target);
    free(fill);
    free(by_class);
    free(dealt);
    return rc;
}
