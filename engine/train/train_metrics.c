/*
 * train_metrics.c - classification metrics: accuracy, balanced accuracy, per-class recall,
 * confusion matrix, one-vs-rest ROC AUC (Mann-Whitney U with average ranks for ties).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/train/train.h"

struct scored {
    float score;
    uint8_t positive;
};

static int cmp_scored(const void *a, const void *b)
{
    float x = ((const struct scored *)a)->score;
    float y = ((const struct scored *)b)->score;

    /* NaN sorts below every number so that qsort sees a total order. */
    if (isnan(x) || isnan(y))
        return (isnan(y) != 0) - (isnan(x) != 0);
    return (x > y) - (x < y);
}

double train_auc(const float *scores, size_t stride, const uint8_t *positive, size_t n)
{
    struct scored *v;
    size_t n_pos = 0, n_neg;
    double rank_sum = 0.0;

    for (size_t i = 0; i < n; i++)
        n_pos += positive[i] != 0;
    n_neg = n - n_pos;
    if (n_pos == 0 || n_neg == 0)
        return NAN;
    v = calloc(n, sizeof(*v));
    if (v == NULL)
        return NAN;
    for (size_t i = 0; i < n; i++) {
        v[i].score = scores[i * stride];
        v[i].positive = positive[i] != 0;
    }
    qsort(v, n, sizeof(*v), cmp_scored);
    /* Ranks are 1-based; a run of equal scores from i to j-1 shares the mean rank. */
    for (size_t i = 0; i < n;) {
        size_t j = i + 1, pos_in_run = v[i].positive;
        while (j < n && cmp_scored(&v[j], &v[i]) == 0) {
            pos_in_run += v[j].positive;
            j++;
        }
        rank_sum += (double)pos_in_run * ((double)(i + 1) + (double)j) / 2.0;
        i = j;
    }
    free(v);
    return (rank_sum - (double)n_pos * ((double)n_pos + 1.0) / 2.0) /
           ((double)n_pos * (double)n_neg);
}

void train_metrics_free(struct train_metrics *m)
{
    if (m == NULL)
        return;
    free(m->recall);
    free(m->class_auc);
    free(m->confusion);
    m->recall = NULL;
    m->class_auc = NULL;
    m->confusion = NULL;
}

static uint32_t argmax(const float *p, uint32_t k)
{
    uint32_t best = 0;

    for (uint32_t j = 1; j < k; j++)
        if (p[j] > p[best])
            best = j;
    return best;
}

int train_metrics_compute(const float *probs, const uint32_t *labels, size_t n, uint32_t classes,
                          struct train_metrics *out)
{
    uint64_t *row_total = NULL;
    uint8_t *positive = NULL;
    size_t cells;
    uint64_t correct = 0;
    double loss_sum = 0.0, recall_sum = 0.0, auc_sum = 0.0;
    uint32_t recall_count = 0, auc_count = 0;

    memset(out, 0, sizeof(*out));
    if (classes == 0 || classes > CWT_MAX_CLASSES || (n > 0 && (probs == NULL || labels == NULL)))
        return CWT_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (labels[i] >= classes)
            return CWT_EINVAL;
    cells = (size_t)classes * classes;
    out->classes = classes;
    out->n = n;
    out->recall = calloc(classes, sizeof(double));
    out->class_auc = calloc(classes, sizeof(double));
    out->confusion = calloc(cells, sizeof(uint64_t));
    row_total = calloc(classes, sizeof(uint64_t));
    positive = calloc(n > 0 ? n : 1, 1);
    if (out->recall == NULL || out->class_auc == NULL || out->confusion == NULL ||
        row_total == NULL || positive == NULL) {
        free(row_total);
        free(positive);
        train_metrics_free(out);
        return CWT_ENOMEM;
    }

    for (size_t i = 0; i < n; i++) {
        const float *p = probs + i * classes;
        uint32_t pred = argmax(p, classes);
        double pl = p[labels[i]];
        out->confusion[(size_t)labels[i] * classes + pred]++;
        row_total[labels[i]]++;
        correct += pred == labels[i];
        loss_sum -= log(pl > 1e-12 ? pl : 1e-12);
    }

    for (uint32_t k = 0; k < classes; k++) {
        if (row_total[k] == 0) {
            out->recall[k] = NAN;
        } else {
            out->recall[k] = (double)out->confusion[(size_t)k * classes + k] / (double)row_total[k];
            recall_sum += out->recall[k];
            recall_count++;
        }
        for (size_t i = 0; i < n; i++)
            positive[i] = labels[i] == k;
        /* For two classes p0 = 1 - p1, so class 0's AUC equals class 1's; skip the work. */
        if (classes == 2 && k == 0) {
            out->class_auc[0] = NAN;
            continue;
        }
        out->class_auc[k] = train_auc(probs + k, classes, positive, n);
        if (!isnan(out->class_auc[k])) {
            auc_sum += out->class_auc[k];
            auc_count++;
        }
    }
    if (classes == 2)
        out->class_auc[0] = out->class_auc[1];

    out->loss = n > 0 ? loss_sum / (double)n : NAN;
    out->accuracy = n > 0 ? (double)correct / (double)n : NAN;
    out->balanced_accuracy = recall_count > 0 ? recall_sum / recall_count : NAN;
    out->auc = auc_count > 0 ? auc_sum / auc_count : NAN;
    out->sensitivity = classes == 2 ? out->recall[1] : NAN;
    out->specificity = classes == 2 ? out->recall[0] : NAN;
    free(row_total);
    free(positive);
    return 0;
}
