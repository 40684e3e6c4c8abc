/*
 * sim_run.c - the heuristics of `cwtctl simulate` on the engine and training driver
 * (docs/simulate.md is the exact definition of what happens here).
 *
 * One device and, per seed, one model object: every heuristic starts from the same saved
 * initial state (weights, buffers, optimizer state, step 0), so they differ only in how the
 * data is visited. Loaders are made once per seed and institution and rewound for each run.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "sim/sim.h"
#include "storage/store.h"

/* Stream tags of the per-seed random choices. */
#define TAG_TRAIN_PART 0x7472616e31ull /* partition of the train split */
#define TAG_VAL_PART   0x76616c7031ull /* partition of the val split */
#define TAG_LOADER     0x6c6f616431ull /* an institution's loader */
#define TAG_POOLED     0x706f6f6c31ull /* the pooled (central) loader */
#define TAG_SUBSET     0x7375627331ull /* --max-train/val/test subsets */

struct pooled {
    uint64_t *ids;
    uint32_t *labels;
    size_t n;
};

struct run_ctx {
    const struct sim_setup *s;
    struct sim_report *rep;
    struct cwt_recipe base; /* the recipe without the cwt+ switches */
    struct eng_model *m;
    struct eng_model_spec spec;
    struct eng_optim_spec optim;
    struct train_norm norm;
    uint8_t *init;
    size_t init_len;
    struct pooled train_all, val_all, test_all;
    uint32_t *train_inst, *val_inst; /* by-column: institution of each pooled image */
    struct sim_part train, val;
    struct train_loader *pooled;
    struct train_loader *local[CWT_MAX_SITES];
    struct train_loader *balanced[CWT_MAX_SITES];
    uint64_t budget;
    uint64_t seed;
    uint32_t seed_index;
    struct sim_fed *fed;
    struct prox *prox;   /* fedprox: the correction after every step; NULL otherwise */
    struct site_bn *sbn; /* cwt --local-bn: the institutions' own batch-norm; NULL otherwise */
    /* Progress line. */
    char label[64];
    uint64_t steps_before;
    uint32_t run_no, runs;   /* 1-based run in progress, runs in all */
    uint64_t run_budget;     /* steps planned for the run in progress */
    uint64_t run_steps;      /* steps done in the run in progress */
    uint64_t steps_finished; /* steps of the runs before it */
    uint64_t steps_total;    /* planned over all runs */
    char *err;
    size_t errlen;
};

static void pooled_free(struct pooled *p)
{
    free(p->ids);
    free(p->labels);
    memset(p, 0, sizeof(*p));
}

struct keyed {
    uint64_t key, id;
    uint32_t label;
};

static int cmp_keyed_key(const void *a, const void *b)
{
    const struct keyed *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key;
}

static int cmp_keyed_id(const void *a, const void *b)
{
    const struct keyed *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Ids and labels of a split, ascending by id; with max > 0 only the max images whose
 * hash(seed, id) is smallest (a fixed random subset, the same for every run seed). */
static int load_split(struct store *st, enum store_split split, uint32_t classes, size_t max,
                      uint64_t subset_seed, struct pooled *out, char *err, size_t errlen)
{
    struct keyed *all = NULL;
    size_t n = 0, cap = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = store_read_begin(st)) != 0)
        return cwt_seterr(err, errlen, rc, "cannot read the store: %s", cwt_strerror(rc));
    for (uint32_t c = 0; c < classes; c++) {
        uint64_t *ids = NULL;
        size_t m = 0;
        if ((rc = store_list_label(st, split, c, &ids, &m)) != 0) {
            store_read_end(st);
            free(all);
            return cwt_seterr(err, errlen, rc, "cannot list the %s split: %s",
                              store_split_name(split), cwt_strerror(rc));
        }
        if (n + m > cap) {
            size_t ncap = (n + m) * 2;
            struct keyed *p = realloc(all, ncap * sizeof(*p));
            if (p == NULL) {
                store_read_end(st);
                free(ids);
                free(all);
                return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory listing images");
            }
            all = p;
            cap = ncap;
        }
        for (size_t j = 0; j < m; j++) {
            all[n].id = ids[j];
            all[n].label = c;
            all[n].key = train_hash3(subset_seed, TAG_SUBSET + (uint64_t)split, ids[j]);
            n++;
        }
        free(ids);
    }
    store_read_end(st);
    if (max > 0 && n > max) {
        qsort(all, n, sizeof(*all), cmp_keyed_key);
        n = max;
    }
    if (n > 0)
        qsort(all, n, sizeof(*all), cmp_keyed_id);
    out->ids = malloc((n ? n : 1) * sizeof(uint64_t));
    out->labels = malloc((n ? n : 1) * sizeof(uint32_t));
    if (out->ids == NULL || out->labels == NULL) {
        free(all);
        pooled_free(out);
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory listing images");
    }
    for (size_t j = 0; j < n; j++) {
        out->ids[j] = all[j].id;
        out->labels[j] = all[j].label;
    }
    out->n = n;
    free(all);
    return 0;
}

static void hash_hex(const uint8_t *buf, size_t len, char out[65])
{
    uint8_t h[32];

    crypto_generichash(h, sizeof(h), buf, len, NULL, 0);
    cwt_hex(h, sizeof(h), out);
}

static int snapshot(struct run_ctx *c, int flags, uint8_t **blob, size_t *len)
{
    return train_state_save(c->m, &c->spec, &c->norm, &c->base, flags, NULL, 0, blob, len, c->err,
                            c->errlen);
}

static int restore(struct run_ctx *c, const uint8_t *blob, size_t len, int flags)
{
    return train_state_load(c->m, blob, len, flags, NULL, c->err, c->errlen);
}

static int evaluate(struct run_ctx *c, const uint64_t *ids, size_t n, double *acc, double *bacc,
                    double *auc, float **probs)
{
    struct train_metrics met;
    int rc;

    rc = train_evaluate(c->m, c->s->st, ids, n, c->spec.classes, &c->norm, c->base.batch_size, &met,
                        probs, c->err, c->errlen);
    if (rc != 0)
        return rc;
    *acc = met.accuracy;
    if (bacc != NULL)
        *bacc = met.balanced_accuracy;
    if (auc != NULL)
        *auc = met.auc;
    train_metrics_free(&met);
    return 0;
}

/* ------------------------------------------------------------ local batch-norm */

/* The batch-norm tensors each institution keeps (--local-bn) in one flat host array: the
 * running statistics, and for "all" the affine parameters and their optimizer tensors.
 * val[i] holds institution i's values once its first visit ended (have[i]); kept[i] the
 * values when the kept model was kept. */
struct site_bn {
    uint32_t n;
    uint32_t *idx; /* engine tensor index */
    size_t *off;   /* offset in a flat array */
    size_t total;  /* floats */
    float *val[CWT_MAX_SITES], *kept[CWT_MAX_SITES], *travel;
    int have[CWT_MAX_SITES], kept_have[CWT_MAX_SITES];
};

static void site_bn_free(struct site_bn *b)
{
    free(b->idx);
    free(b->off);
    for (uint32_t i = 0; i < CWT_MAX_SITES; i++) {
        free(b->val[i]);
        free(b->kept[i]);
    }
    free(b->travel);
    memset(b, 0, sizeof(*b));
}

/* Whether name is "<layer>.<suffix>" for a layer with a "<layer>.running_mean" buffer. */
static int bn_layer_tensor(struct eng_model *m, const char *name, const char *suffix)
{
    size_t nl = strlen(name), sl = strlen(suffix);
    char want[256];
    uint32_t count = eng_model_tensor_count(m);

    if (nl <= sl + 1 || strcmp(name + nl - sl, suffix) != 0 || name[nl - sl - 1] != '.' ||
        nl - sl + 13 >= sizeof(want))
        return 0;
    snprintf(want, sizeof(want), "%.*srunning_mean", (int)(nl - sl), name);
    for (uint32_t i = 0; i < count; i++) {
        struct eng_tensor_info info;
        if (eng_model_tensor_info(m, i, &info) == 0 && info.kind == ENG_T_BUFFER &&
            strcmp(info.name, want) == 0)
            return 1;
    }
    return 0;
}

/* Whether tensor info is one that mode keeps at each institution. */
static int bn_kept(struct eng_model *m, const struct eng_tensor_info *info, enum sim_local_bn mode)
{
    if (info->kind == ENG_T_BUFFER)
        return bn_layer_tensor(m, info->name, "running_mean") ||
               bn_layer_tensor(m, info->name, "running_var");
    if (mode != SIM_BN_ALL)
        return 0;
    if (info->kind == ENG_T_PARAM)
        return bn_layer_tensor(m, info->name, "weight") || bn_layer_tensor(m, info->name, "bias");
    /* Optimizer tensors are named optim.<parameter>.<state> (engine/model.c). */
    if (info->kind == ENG_T_OPTIM && strncmp(info->name, "optim.", 6) == 0) {
        const char *p = info->name + 6, *dot = strrchr(p, '.');
        char param[256];
        if (dot == NULL || (size_t)(dot - p) >= sizeof(param))
            return 0;
        memcpy(param, p, (size_t)(dot - p));
        param[dot - p] = '\0';
        return bn_layer_tensor(m, param, "weight") || bn_layer_tensor(m, param, "bias");
    }
    return 0;
}

static int site_bn_init(struct run_ctx *c, struct site_bn *b, enum sim_local_bn mode)
{
    uint32_t count = eng_model_tensor_count(c->m);

    memset(b, 0, sizeof(*b));
    b->idx = calloc(count ? count : 1, sizeof(*b->idx));
    b->off = calloc(count ? count : 1, sizeof(*b->off));
    if (b->idx == NULL || b->off == NULL)
        goto nomem;
    for (uint32_t i = 0; i < count; i++) {
        struct eng_tensor_info info;
        int rc = eng_model_tensor_info(c->m, i, &info);
        if (rc != 0) {
            site_bn_free(b);
            return cwt_seterr(c->err, c->errlen, rc, "cannot list the model's tensors: %s",
                              cwt_strerror(rc));
        }
        if (!bn_kept(c->m, &info, mode))
            continue;
        if (info.numel > SIZE_MAX / sizeof(float) / CWT_MAX_SITES - b->total)
            goto nomem;
        b->idx[b->n] = i;
        b->off[b->n] = b->total;
        b->total += (size_t)info.numel;
        b->n++;
    }
    if (b->n == 0) {
        site_bn_free(b);
        return cwt_seterr(c->err, c->errlen, CWT_EINVAL,
                          "--local-bn: the model %s has no batch-norm layer", c->spec.arch);
    }
    for (uint32_t i = 0; i < c->s->sites; i++)
        if ((b->val[i] = malloc(b->total * sizeof(float))) == NULL ||
            (b->kept[i] = malloc(b->total * sizeof(float))) == NULL)
            goto nomem;
    if ((b->travel = malloc(b->total * sizeof(float))) == NULL)
        goto nomem;
    return 0;
nomem:
    site_bn_free(b);
    return cwt_seterr(c->err, c->errlen, CWT_ENOMEM, "out of memory for --local-bn");
}

/* Copies the kept tensors from the model to flat (to_model 0) or back (1). */
static int site_bn_copy(struct run_ctx *c, const struct site_bn *b, float *flat, int to_model)
{
    for (uint32_t k = 0; k < b->n; k++) {
        int rc = to_model ? eng_model_write_tensor(c->m, b->idx[k], flat + b->off[k])
                          : eng_model_read_tensor(c->m, b->idx[k], flat + b->off[k]);
        if (rc != 0)
            return cwt_seterr(c->err, c->errlen, rc, "cannot copy the batch-norm tensors: %s",
                              cwt_strerror(rc));
    }
    return 0;
}

/* Evaluates on ids with the batch-norm values own (an institution's, under --local-bn) in
 * place of the travelling ones, which are put back afterwards; own NULL: as the model is. */
static int evaluate_at(struct run_ctx *c, const uint64_t *ids, size_t n, double *acc, double *bacc,
                       double *auc, const float *own)
{
    int rc;

    if (own == NULL)
        return evaluate(c, ids, n, acc, bacc, auc, NULL);
    if ((rc = site_bn_copy(c, c->sbn, c->sbn->travel, 0)) != 0 ||
        (rc = site_bn_copy(c, c->sbn, (float *)own, 1)) != 0)
        return rc;
    rc = evaluate(c, ids, n, acc, bacc, auc, NULL);
    if (rc == 0)
        rc = site_bn_copy(c, c->sbn, c->sbn->travel, 1);
    return rc;
}

/* Unweighted mean over institutions (those with validation images) of the accuracy on their
 * own validation split: the validation available to the decentralised heuristics. Under
 * --local-bn each institution scores with its own batch-norm. */
static int mean_local_val(struct run_ctx *c, double *out)
{
    double sum = 0.0;
    uint32_t k = 0;

    for (uint32_t i = 0; i < c->s->sites; i++) {
        double acc;
        int rc;
        if (sim_part_size(&c->val, i) == 0)
            continue;
        rc = evaluate_at(c, c->val.ids + c->val.start[i], sim_part_size(&c->val, i), &acc, NULL,
                         NULL, c->sbn != NULL && c->sbn->have[i] ? c->sbn->val[i] : NULL);
        if (rc != 0)
            return rc;
        sum += acc;
        k++;
    }
    *out = k ? sum / k : NAN;
    return 0;
}

/* ------------------------------------------------------------ progress */

struct keep;

/* What a session's callbacks get: the run, and the best-model keeper (may be NULL). */
struct session_ctx {
    struct run_ctx *c;
    struct keep *keep;
};

static int prox_step(struct run_ctx *c, uint64_t step);

static void tell(struct run_ctx *c, uint64_t step, double loss, int finished)
{
    struct sim_progress p;

    if (c->s->on_progress == NULL)
        return;
    p.run = c->run_no;
    p.runs = c->runs;
    p.label = c->label;
    p.seed_index = c->seed_index;
    p.step = step;
    p.steps = c->run_budget;
    p.done = c->steps_finished + step;
    p.total = c->steps_total;
    /* A run may end a few steps off its budget (whole visits); the line never says done early. */
    if (p.done >= p.total)
        p.done = p.total > 0 ? p.total - 1 : 0;
    p.loss = loss;
    p.finished = finished;
    c->s->on_progress(&p, c->s->progress_ctx);
}

/* Starts the count of a new run (after c->label is set). */
static void begin_run(struct run_ctx *c, uint64_t budget)
{
    c->steps_finished += c->run_steps;
    c->run_steps = 0;
    c->run_no++;
    c->run_budget = budget;
    c->steps_before = 0;
}

static int on_progress(const struct train_progress *p, void *ctx)
{
    struct run_ctx *c = ((struct session_ctx *)ctx)->c;

    /* The session calls this after eng_train_end and before the next step begins, so the
     * model is at rest and the step's parameters and momentum can be corrected in place. */
    if (c->prox != NULL && prox_step(c, p->step) != 0)
        return 1;
    c->run_steps = c->steps_before + p->step;
    tell(c, c->run_steps, p->loss, 0);
    return 0;
}

static void report_done(struct run_ctx *c, const struct sim_outcome *o)
{
    char label[64];

    tell(c, c->run_steps, NAN, 1);
    if (!c->s->verbose)
        return;
    sim_outcome_label(o, label, sizeof(label));
    fprintf(stderr, "seed %u/%u  %-16s test acc %.4f  AUC %.4f  steps %llu  %.1f s\n",
            c->seed_index + 1, c->s->n_seeds, label, o->test_accuracy, o->test_auc,
            (unsigned long long)o->steps, o->wall_s);
}

/* ------------------------------------------------------------ training runs */

/* Best-validation keeping for sessions that validate after every epoch. */
struct keep {
    struct run_ctx *c;
    struct sim_curve *curve;
    uint64_t step_base;
    int flags;
    uint8_t *best;
    size_t best_len;
    uint64_t kept_step;
    double kept_val;
    int rc;
};

static void keep_free(struct keep *k)
{
    free(k->best);
    k->best = NULL;
    k->best_len = 0;
}

static int keep_now(struct keep *k, uint64_t step, double val)
{
    uint8_t *blob = NULL;
    size_t len = 0;
    int rc = snapshot(k->c, k->flags, &blob, &len);

    if (rc != 0)
        return rc;
    free(k->best);
    k->best = blob;
    k->best_len = len;
    k->kept_step = step;
    k->kept_val = val;
    return 0;
}

static int on_epoch(const struct train_epoch_result *r, void *ctx)
{
    struct keep *k = ((struct session_ctx *)ctx)->keep;

    if (k->curve != NULL && isfinite(r->val_accuracy) &&
        sim_curve_add(k->curve, k->step_base + r->step, r->val_accuracy) != 0) {
        k->rc = CWT_ENOMEM;
        return 1;
    }
    if (r->best && (k->rc = keep_now(k, k->step_base + r->step, r->val_accuracy)) != 0)
        return 1;
    return 0;
}

/* Trains `steps` optimizer steps on loader l (continuing from its cursor). */
static int train_steps(struct run_ctx *c, struct train_loader *l, uint64_t steps,
                       const struct cwt_recipe *recipe, double sched_offset, double sched_total,
                       const uint64_t *val_ids, size_t n_val, struct keep *keep,
                       struct train_epoch_result *last)
{
    struct train_session_opts o;
    struct train_session *ts = NULL;
    struct session_ctx sc = {c, keep};
    int rc;

    memset(&o, 0, sizeof(o));
    o.recipe = recipe;
    o.plan.unit = CWT_VISIT_STEPS;
    o.plan.length = (double)steps;
    o.sched_offset = sched_offset;
    o.sched_total = sched_total;
    o.val_ids = val_ids;
    o.n_val = n_val;
    o.on_progress = on_progress;
    o.on_epoch = keep != NULL ? on_epoch : NULL;
    o.ctx = &sc;
    rc = train_session_new(c->m, &c->spec, l, c->s->st, &o, &ts, c->err, c->errlen);
    if (rc != 0)
        return rc;
    rc = train_session_run(ts, c->err, c->errlen);
    if (keep != NULL && keep->rc != 0)
        rc = cwt_seterr(c->err, c->errlen, keep->rc, "cannot keep the best model: %s",
                        cwt_strerror(keep->rc));
    if (rc == 0 && train_session_steps_done(ts) != steps)
        rc =
            cwt_seterr(c->err, c->errlen, CWT_ESTATE, "a run took %llu steps instead of %llu",
                       (unsigned long long)train_session_steps_done(ts), (unsigned long long)steps);
    if (rc == 0 && last != NULL)
        train_session_last_epoch(ts, last);
    train_session_free(ts);
    c->steps_before += steps;
    return rc;
}

static void rewind_loader(struct train_loader *l)
{
    struct train_cursor start = {0, 0};
    train_loader_set_cursor(l, start);
}

/* Test metrics under --local-bn: the pooled test split scored with each institution's own
 * batch-norm (as kept with the kept model when kept, else the last), the unweighted mean over
 * the institutions that have one: the model as every site would deploy it. */
static int local_bn_test(struct run_ctx *c, struct sim_outcome *o, int kept)
{
    double acc_sum = 0.0, bacc_sum = 0.0, auc_sum = 0.0;
    uint32_t k = 0;

    for (uint32_t i = 0; i < c->s->sites; i++) {
        double acc, bacc, auc;
        int rc;
        if (!(kept ? c->sbn->kept_have[i] : c->sbn->have[i]))
            continue;
        rc = evaluate_at(c, c->test_all.ids, c->test_all.n, &acc, &bacc, &auc,
                         kept ? c->sbn->kept[i] : c->sbn->val[i]);
        if (rc != 0)
            return rc;
        acc_sum += acc;
        bacc_sum += bacc;
        auc_sum += auc;
        k++;
    }
    if (k == 0)
        return evaluate(c, c->test_all.ids, c->test_all.n, &o->test_accuracy,
                        &o->test_balanced_accuracy, &o->test_auc, NULL);
    o->test_accuracy = acc_sum / k;
    o->test_balanced_accuracy = bacc_sum / k;
    o->test_auc = auc_sum / k;
    return 0;
}

/* Weights hashes, best model back in place, test metrics (and, if test_probs != NULL, the
 * malloc'd test probabilities). best may be NULL (keep the end). */
static int finish(struct run_ctx *c, struct sim_outcome *o, const uint8_t *best, size_t best_len,
                  int best_flags, float **test_probs)
{
    uint8_t *blob = NULL;
    size_t len = 0;
    int rc;

    if ((rc = snapshot(c, TRAIN_SAVE_WEIGHTS, &blob, &len)) != 0)
        return rc;
    hash_hex(blob, len, o->final_hash);
    free(blob);
    if (best != NULL && (rc = restore(c, best, best_len, best_flags)) != 0)
        return rc;
    if ((rc = snapshot(c, TRAIN_SAVE_WEIGHTS, &blob, &len)) != 0)
        return rc;
    hash_hex(blob, len, o->weights_hash);
    free(blob);
    if (c->sbn != NULL)
        return local_bn_test(c, o, best != NULL);
    return evaluate(c, c->test_all.ids, c->test_all.n, &o->test_accuracy,
                    &o->test_balanced_accuracy, &o->test_auc, test_probs);
}

static void outcome_init(struct run_ctx *c, struct sim_outcome *o, enum sim_heur h, double visit)
{
    memset(o, 0, sizeof(*o));
    o->heur = h;
    o->visit = visit;
    o->inst = -1;
    o->seed = c->seed;
    o->seed_index = c->seed_index;
    o->budget = c->budget;
    o->kept_val = NAN;
    o->test_accuracy = o->test_balanced_accuracy = o->test_auc = NAN;
}

static int add_outcome(struct run_ctx *c, struct sim_outcome *o)
{
    report_done(c, o);
    if (sim_report_add(c->rep, o) != 0) {
        sim_curve_free(&o->curve);
        return cwt_seterr(c->err, c->errlen, CWT_ENOMEM, "out of memory for the results");
    }
    return 0;
}

/* One line a reader of a plot needs to know what was trained: model, optimizer, rate,
 * batch, input and classes. */
static void recipe_text(const struct cwt_recipe *r, char *out, size_t len)
{
    static const char *const opt[] = {"sgd", "adam", "adamw"};
    const char *o = (unsigned)r->optimizer < 3 ? opt[r->optimizer] : "?";

    if (r->optimizer == CWT_OPT_SGD)
        snprintf(out, len, "%s, sgd lr %g momentum %g, batch %u, %ux%ux%u, %u classes", r->model,
                 r->lr, r->momentum, r->batch_size, r->input_h, r->input_w, r->input_c, r->classes);
    else
        snprintf(out, len, "%s, %s lr %g, batch %u, %ux%ux%u, %u classes", r->model, o, r->lr,
                 r->batch_size, r->input_h, r->input_w, r->input_c, r->classes);
}

/* Runs and steps the requested heuristics take over all seeds: single's institutions are one
 * run each and share one budget; every other run has the whole budget. */
static void count_runs(struct run_ctx *c)
{
    const struct sim_setup *s = c->s;
    uint64_t units = 0;
    uint32_t runs = 0;

    if (s->want[SIM_CENTRAL])
        runs++, units++;
    if (s->want[SIM_SINGLE] || s->want[SIM_ENSEMBLE])
        runs += s->sites, units++;
    if (s->want[SIM_SWT])
        runs++, units++;
    for (int h = 0; h < SIM_NHEUR; h++)
        if (s->want[h] &&
            (h == SIM_CWT || h == SIM_CWT_PLUS || h == SIM_FEDAVG || h == SIM_FEDPROX))
            runs += s->n_visits, units += s->n_visits;
    c->runs = runs * s->n_seeds;
    c->steps_total = units * s->n_seeds * c->budget;
}

static uint64_t share_of_budget(const struct run_ctx *c, uint32_t i)
{
    return c->budget / c->s->sites + (i < c->budget % c->s->sites ? 1 : 0);
}

/* central: the pooled training data, pooled validation after every epoch. */
static int run_central(struct run_ctx *c)
{
    struct sim_outcome o;
    struct keep k = {0};
    double t0 = cwt_monotonic();
    int rc;

    outcome_init(c, &o, SIM_CENTRAL, 0);
    snprintf(c->label, sizeof(c->label), "central");
    begin_run(c, c->budget);
    if ((rc = restore(c, c->init, c->init_len, TRAIN_SAVE_ALL)) != 0)
        return rc;
    rewind_loader(c->pooled);
    k.c = c;
    k.curve = &o.curve;
    k.flags = TRAIN_SAVE_WEIGHTS;
    rc = train_steps(c, c->pooled, c->budget, &c->base, 0, 0, c->val_all.ids, c->val_all.n, &k,
                     NULL);
    if (rc == 0)
        rc = finish(c, &o, k.best, k.best_len, TRAIN_SAVE_WEIGHTS, NULL);
    o.kept_step = k.kept_step;
    o.kept_val = c->val_all.n > 0 ? k.kept_val : NAN;
    keep_free(&k);
    o.steps = c->budget;
    o.wall_s = cwt_monotonic() - t0;
    if (rc != 0) {
        sim_curve_free(&o.curve);
        return rc;
    }
    return add_outcome(c, &o);
}

/* single (and ensemble): every institution alone with its share of the budget; the ensemble
 * averages the members' test probabilities. */
static int run_single(struct run_ctx *c, int report_single, int report_ensemble)
{
    const uint32_t n = c->s->sites, classes = c->spec.classes;
    struct sim_outcome mean, ens;
    struct sim_curve curves[CWT_MAX_SITES];
    float *avg = NULL;
    double wall_all = 0.0, t_ens;
    size_t max_points = 0;
    int rc = 0;

    memset(curves, 0, sizeof(curves));
    outcome_init(c, &mean, SIM_SINGLE, 0);
    outcome_init(c, &ens, SIM_ENSEMBLE, 0);
    mean.test_accuracy = mean.test_balanced_accuracy = mean.test_auc = 0.0;
    if (c->test_all.n > 0 && (avg = calloc(c->test_all.n * (size_t)classes, sizeof(float))) == NULL)
        return cwt_seterr(c->err, c->errlen, CWT_ENOMEM, "out of memory for the ensemble");
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        struct sim_outcome o;
        struct keep k = {0};
        float *probs = NULL;
        double t0 = cwt_monotonic();
        const uint64_t *val = c->val.ids + c->val.start[i];
        size_t n_val = sim_part_size(&c->val, i);

        outcome_init(c, &o, SIM_SINGLE, 0);
        o.inst = (int)i;
        o.budget = share_of_budget(c, i);
        snprintf(c->label, sizeof(c->label), "single %u", i);
        begin_run(c, o.budget);
        if ((rc = restore(c, c->init, c->init_len, TRAIN_SAVE_ALL)) != 0)
            break;
        rewind_loader(c->local[i]);
        k.c = c;
        k.curve = &curves[i];
        k.flags = TRAIN_SAVE_WEIGHTS;
        rc = train_steps(c, c->local[i], o.budget, &c->base, 0, 0, val, n_val, &k, NULL);
        if (rc == 0)
            rc = finish(c, &o, k.best, k.best_len, TRAIN_SAVE_WEIGHTS, &probs);
        /* The member's probabilities on the test set, for the ensemble. */
        for (size_t j = 0; rc == 0 && probs != NULL && j < c->test_all.n * (size_t)classes; j++)
            avg[j] += probs[j] / (float)n;
        free(probs);
        o.kept_step = k.kept_step;
        o.kept_val = n_val > 0 ? k.kept_val : NAN;
        o.steps = o.budget;
        keep_free(&k);
        o.wall_s = cwt_monotonic() - t0;
        wall_all += o.wall_s;
        mean.test_accuracy += o.test_accuracy / n;
        mean.test_balanced_accuracy += o.test_balanced_accuracy / n;
        mean.test_auc += o.test_auc / n;
        mean.steps += o.steps;
        max_points = curves[i].n > max_points ? curves[i].n : max_points;
        if (rc == 0 && report_single)
            rc = add_outcome(c, &o);
    }
    /* The mean curve: after local epoch e of every institution (an institution that has
     * finished keeps its last value), x = the steps all institutions have done by then. */
    for (size_t e = 0; rc == 0 && report_single && e < max_points; e++) {
        uint64_t x = 0;
        double y = 0.0;
        uint32_t k = 0;
        for (uint32_t i = 0; i < n; i++) {
            size_t j;
            if (curves[i].n == 0)
                continue;
            j = e < curves[i].n ? e : curves[i].n - 1;
            x += curves[i].step[j];
            y += curves[i].value[j];
            k++;
        }
        if (k > 0 && sim_curve_add(&mean.curve, x, y / k) != 0)
            rc = cwt_seterr(c->err, c->errlen, CWT_ENOMEM, "out of memory for the results");
    }
    for (uint32_t i = 0; i < n; i++)
        sim_curve_free(&curves[i]);
    mean.wall_s = wall_all;
    if (rc == 0 && report_single)
        rc = add_outcome(c, &mean);
    else
        sim_curve_free(&mean.curve);
    if (rc == 0 && report_ensemble) {
        struct train_metrics met;
        t_ens = cwt_monotonic();
        if (c->test_all.n > 0) {
            rc = train_metrics_compute(avg, c->test_all.labels, c->test_all.n, classes, &met);
            if (rc == 0) {
                ens.test_accuracy = met.accuracy;
                ens.test_balanced_accuracy = met.balanced_accuracy;
                ens.test_auc = met.auc;
                train_metrics_free(&met);
            } else {
                cwt_seterr(c->err, c->errlen, rc, "cannot compute the ensemble's metrics");
            }
        }
        ens.steps = mean.steps;
        ens.wall_s = wall_all + (cwt_monotonic() - t_ens);
        if (rc == 0)
            rc = add_outcome(c, &ens);
    }
    free(avg);
    return rc;
}

static void fill_summary(struct run_ctx *c, uint32_t i, uint64_t steps, double local_epochs,
                         const struct train_epoch_result *last, struct bundle_summary *sum)
{
    memset(sum, 0, sizeof(*sum));
    sum->local_epochs = local_epochs;
    sum->local_steps = steps;
    sum->train_samples = sim_part_size(&c->train, i);
    sum->val_samples = sim_part_size(&c->val, i);
    sum->train_loss = isfinite(last->train_loss) ? last->train_loss : NAN;
    sum->train_accuracy = isfinite(last->train_accuracy) ? last->train_accuracy : NAN;
    sum->val_loss = sum->val_accuracy = sum->val_auc = NAN;
}

/* swt: one pass; each institution trains local epochs until its own validation accuracy has
 * not improved for `patience` epochs or its share of the budget is spent, and hands on its
 * best state. */
static int run_swt(struct run_ctx *c)
{
    const uint32_t n = c->s->sites;
    const uint32_t patience = c->base.patience > 0 ? c->base.patience : 1;
    struct sim_outcome o;
    struct keep overall = {0};
    uint64_t used = 0;
    double t0 = cwt_monotonic();
    int rc;

    outcome_init(c, &o, SIM_SWT, 0);
    snprintf(c->label, sizeof(c->label), "swt");
    begin_run(c, c->budget);
    if ((rc = restore(c, c->init, c->init_len, TRAIN_SAVE_ALL)) != 0)
        return rc;
    if (c->fed != NULL)
        sim_fed_new_chain(c->fed);
    overall.c = c;
    overall.flags = TRAIN_SAVE_WEIGHTS;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        struct train_loader *l = c->local[i];
        const uint64_t *val = c->val.ids + c->val.start[i];
        size_t n_val = sim_part_size(&c->val, i);
        uint64_t left = share_of_budget(c, i), spe = train_loader_batches_per_epoch(l);
        uint64_t here = 0;
        struct keep local = {0};
        struct train_epoch_result last;
        double best = -1.0, score;
        uint32_t since = 0;

        memset(&last, 0, sizeof(last));
        local.c = c;
        local.flags = TRAIN_SAVE_ALL;
        rewind_loader(l);
        o.cycles = i + 1;
        while (left > 0 && rc == 0) {
            uint64_t steps = spe < left ? spe : left;
            double acc;
            rc = train_steps(c, l, steps, &c->base, (double)here / (double)spe,
                             (double)share_of_budget(c, i) / (double)spe, NULL, 0, NULL, &last);
            if (rc != 0)
                break;
            left -= steps;
            here += steps;
            used += steps;
            if (n_val == 0)
                continue;
            if ((rc = evaluate(c, val, n_val, &acc, NULL, NULL, NULL)) != 0)
                break;
            if (acc > best) {
                best = acc;
                since = 0;
                rc = keep_now(&local, used, acc);
            } else if (++since >= patience) {
                break;
            }
        }
        if (rc == 0 && local.best != NULL)
            rc = restore(c, local.best, local.best_len, TRAIN_SAVE_ALL);
        keep_free(&local);
        if (rc == 0)
            rc = mean_local_val(c, &score);
        if (rc == 0 && isfinite(score)) {
            if (sim_curve_add(&o.curve, used, score) != 0)
                rc = CWT_ENOMEM;
            else if (score > overall.kept_val || overall.best == NULL)
                rc = keep_now(&overall, used, score);
        }
        if (rc == 0 && c->fed != NULL && i + 1 < n) {
            struct bundle_summary sum;
            fill_summary(c, i, here, (double)here / (double)spe, &last, &sum);
            sum.val_accuracy = best >= 0 ? best : NAN;
            rc = sim_fed_handover(c->fed, c->m, &c->spec, &c->norm, c->init, c->init_len, i, i + 1,
                                  0, &sum, c->err, c->errlen);
        }
    }
    if (rc == CWT_ENOMEM)
        cwt_seterr(c->err, c->errlen, rc, "out of memory for the results");
    if (rc == 0)
        rc = finish(c, &o, overall.best, overall.best_len, TRAIN_SAVE_WEIGHTS, NULL);
    o.kept_step = overall.kept_step;
    o.kept_val = overall.best != NULL ? overall.kept_val : NAN;
    keep_free(&overall);
    o.steps = used;
    o.wall_s = cwt_monotonic() - t0;
    if (rc != 0) {
        sim_curve_free(&o.curve);
        return rc;
    }
    return add_outcome(c, &o);
}

/* Real-valued steps of one visit at institution i (docs/simulate.md, "cwt" and
 * "proportional"); sim_visit_steps turns the k-th visit into whole steps, carrying the
 * remainder. */
static double visit_length(const struct run_ctx *c, uint32_t i, double visit, int proportional)
{
    double images = proportional ? (double)sim_part_size(&c->train, i)
                                 : (double)c->train.start[c->s->sites] / c->s->sites;
    return visit * images / c->base.batch_size;
}

static int make_balanced_loaders(struct run_ctx *c);

/* cwt / cwt+: visits of `visit` local epochs in roster order, cycling until the budget is
 * spent; the model kept is the best by mean local validation accuracy after each cycle. */
static int run_cwt(struct run_ctx *c, double visit, int plus)
{
    const uint32_t n = c->s->sites;
    const unsigned mods = plus ? c->s->plus : 0;
    struct cwt_recipe recipe = c->base;
    struct train_loader **loaders = c->local;
    struct sim_outcome o;
    struct keep kept = {0};
    struct site_bn sbn;
    uint64_t spe[CWT_MAX_SITES], done = 0;
    double len_of[CWT_MAX_SITES];
    double cycle_epochs = 0.0, total_epochs = 0.0, clock = 0.0, t0 = cwt_monotonic();
    uint32_t cycle = 0;
    int rc;

    outcome_init(c, &o, plus ? SIM_CWT_PLUS : SIM_CWT, visit);
    sim_outcome_label(&o, c->label, sizeof(c->label));
    begin_run(c, c->budget);
    if ((mods & SIM_PLUS_SAMPLING) && (rc = make_balanced_loaders(c)) != 0)
        return rc;
    if (mods & SIM_PLUS_SAMPLING)
        loaders = c->balanced;
    for (uint32_t i = 0; i < n; i++) {
        len_of[i] = visit_length(c, i, visit, (mods & SIM_PLUS_PROPORTIONAL) != 0);
        spe[i] = train_loader_batches_per_epoch(loaders[i]);
        /* At least one step per visit (sim_visit_steps). */
        cycle_epochs += (len_of[i] > 1.0 ? len_of[i] : 1.0) / (double)spe[i];
        rewind_loader(loaders[i]);
    }
    /* The schedule's clock counts local epochs across visits; its length is the whole run. */
    for (uint64_t s = 0, cy = 0; s < c->budget; cy++)
        for (uint32_t i = 0; i < n && s < c->budget; i++) {
            uint64_t want = sim_visit_steps(len_of[i], cy);
            uint64_t k = want < c->budget - s ? want : c->budget - s;
            total_epochs += (double)k / (double)spe[i];
            s += k;
        }
    if (mods & SIM_PLUS_LOSS)
        recipe.class_weighted_loss = 1;
    if (mods & SIM_PLUS_CLR) {
        /* One triangle per CWT cycle: lr_min at every cycle's start and end, lr halfway. */
        recipe.schedule = CWT_LR_CYCLICAL;
        recipe.lr_min =
            c->base.lr_min > 0 && c->base.lr_min < c->base.lr ? c->base.lr_min : c->base.lr / 10.0;
        recipe.cycle_epochs = cycle_epochs / 2.0;
    }
    if ((rc = restore(c, c->init, c->init_len, TRAIN_SAVE_ALL)) != 0)
        return rc;
    if (c->s->local_bn != SIM_BN_TRAVEL) {
        if ((rc = site_bn_init(c, &sbn, c->s->local_bn)) != 0)
            return rc;
        c->sbn = &sbn;
    }
    if (c->fed != NULL)
        sim_fed_new_chain(c->fed);
    kept.c = c;
    kept.flags = TRAIN_SAVE_WEIGHTS;
    while (done < c->budget && rc == 0) {
        double score;
        o.cycles = cycle + 1;
        for (uint32_t i = 0; i < n && done < c->budget && rc == 0; i++) {
            uint64_t want = sim_visit_steps(len_of[i], cycle);
            uint64_t steps = want < c->budget - done ? want : c->budget - done;
            struct train_epoch_result last;
            memset(&last, 0, sizeof(last));
            /* --local-bn: the institution trains with its own batch-norm values from its
             * second visit on (the first starts from those that arrive) and keeps them. */
            if (c->sbn != NULL && sbn.have[i] && (rc = site_bn_copy(c, &sbn, sbn.val[i], 1)) != 0)
                break;
            rc = train_steps(c, loaders[i], steps, &recipe, clock, total_epochs, NULL, 0, NULL,
                             &last);
            if (rc == 0 && c->sbn != NULL && (rc = site_bn_copy(c, &sbn, sbn.val[i], 0)) == 0)
                sbn.have[i] = 1;
            if (rc != 0)
                break;
            clock += (double)steps / (double)spe[i];
            done += steps;
            if (c->fed != NULL && done < c->budget) {
                struct bundle_summary sum;
                fill_summary(c, i, steps, (double)steps / (double)spe[i], &last, &sum);
                rc = sim_fed_handover(c->fed, c->m, &c->spec, &c->norm, c->init, c->init_len, i,
                                      (i + 1) % n, cycle, &sum, c->err, c->errlen);
            }
        }
        if (rc != 0)
            break;
        if ((rc = mean_local_val(c, &score)) != 0)
            break;
        if (isfinite(score)) {
            if (sim_curve_add(&o.curve, done, score) != 0)
                rc = cwt_seterr(c->err, c->errlen, CWT_ENOMEM, "out of memory for the results");
            else if (kept.best == NULL || score > kept.kept_val) {
                rc = keep_now(&kept, done, score);
                for (uint32_t i = 0; rc == 0 && c->sbn != NULL && i < n; i++) {
                    sbn.kept_have[i] = sbn.have[i];
                    memcpy(sbn.kept[i], sbn.val[i], sbn.total * sizeof(float));
                }
            }
        }
        cycle++;
    }
    if (rc == 0)
        rc = finish(c, &o, kept.best, kept.best_len, TRAIN_SAVE_WEIGHTS, NULL);
    if (c->sbn != NULL) {
        c->sbn = NULL;
        site_bn_free(&sbn);
    }
    o.kept_step = kept.kept_step;
    o.kept_val = kept.best != NULL ? kept.kept_val : NAN;
    keep_free(&kept);
    o.steps = done;
    o.wall_s = cwt_monotonic() - t0;
    if (rc != 0) {
        sim_curve_free(&o.curve);
        return rc;
    }
    return add_outcome(c, &o);
}

/* ------------------------------------------------------------ fedavg / fedprox */

/* The tensors FedAvg averages (parameters and batch-norm running statistics, in engine
 * order) laid out in one flat host array, and for FedProx each parameter's momentum tensor. */
struct fed_tensors {
    uint32_t n;
    uint32_t *idx; /* engine tensor index */
    size_t *off;   /* offset in the flat array */
    size_t *numel; /* floats */
    int *is_param; /* ENG_T_PARAM (else ENG_T_BUFFER) */
    int64_t *mom;  /* engine index of optim.<name>.momentum, -1 if none */
    size_t total;  /* floats of all n tensors */
};

static void fed_tensors_free(struct fed_tensors *t)
{
    free(t->idx);
    free(t->off);
    free(t->numel);
    free(t->is_param);
    free(t->mom);
    memset(t, 0, sizeof(*t));
}

static int fed_tensors_init(struct run_ctx *c, struct fed_tensors *t)
{
    uint32_t count = eng_model_tensor_count(c->m);

    memset(t, 0, sizeof(*t));
    t->idx = calloc(count ? count : 1, sizeof(*t->idx));
    t->off = calloc(count ? count : 1, sizeof(*t->off));
    t->numel = calloc(count ? count : 1, sizeof(*t->numel));
    t->is_param = calloc(count ? count : 1, sizeof(*t->is_param));
    t->mom = calloc(count ? count : 1, sizeof(*t->mom));
    if (t->idx == NULL || t->off == NULL || t->numel == NULL || t->is_param == NULL ||
        t->mom == NULL) {
        fed_tensors_free(t);
        return cwt_seterr(c->err, c->errlen, CWT_ENOMEM, "out of memory for fedavg");
    }
    for (uint32_t i = 0; i < count; i++) {
        struct eng_tensor_info info;
        int rc = eng_model_tensor_info(c->m, i, &info);
        if (rc != 0) {
            fed_tensors_free(t);
            return cwt_seterr(c->err, c->errlen, rc, "cannot list the model's tensors: %s",
                              cwt_strerror(rc));
        }
        if (info.kind == ENG_T_OPTIM)
            continue;
        if (info.numel > (SIZE_MAX / sizeof(double) - t->total)) {
            fed_tensors_free(t);
            return cwt_seterr(c->err, c->errlen, CWT_ENOMEM, "the model is too large");
        }
        t->idx[t->n] = i;
        t->off[t->n] = t->total;
        t->numel[t->n] = (size_t)info.numel;
        t->is_param[t->n] = info.kind == ENG_T_PARAM;
        t->mom[t->n] = -1;
        t->total += (size_t)info.numel;
        t->n++;
    }
    /* Momentum buffers are named optim.<parameter>.momentum (engine/model.c). */
    for (uint32_t k = 0; k < t->n; k++) {
        struct eng_tensor_info pi;
        char want[256];
        if (!t->is_param[k] || eng_model_tensor_info(c->m, t->idx[k], &pi) != 0)
            continue;
        if ((size_t)snprintf(want, sizeof(want), "optim.%s.momentum", pi.name) >= sizeof(want))
            continue;
        for (uint32_t i = 0; i < count; i++) {
            struct eng_tensor_info info;
            if (eng_model_tensor_info(c->m, i, &info) == 0 && info.kind == ENG_T_OPTIM &&
                strcmp(info.name, want) == 0 && info.numel == pi.numel)
                t->mom[k] = i;
        }
    }
    return 0;
}

/* Copies the averaged tensors between the model and flat (params_only: parameters only). */
static int fed_read(struct run_ctx *c, const struct fed_tensors *t, float *flat, int params_only)
{
    for (uint32_t k = 0; k < t->n; k++) {
        int rc;
        if (params_only && !t->is_param[k])
            continue;
        if ((rc = eng_model_read_tensor(c->m, t->idx[k], flat + t->off[k])) != 0)
            return cwt_seterr(c->err, c->errlen, rc, "cannot read the model's weights: %s",
                              cwt_strerror(rc));
    }
    return 0;
}

static int fed_write(struct run_ctx *c, const struct fed_tensors *t, const float *flat,
                     int params_only)
{
    for (uint32_t k = 0; k < t->n; k++) {
        int rc;
        if (params_only && !t->is_param[k])
            continue;
        if ((rc = eng_model_write_tensor(c->m, t->idx[k], flat + t->off[k])) != 0)
            return cwt_seterr(c->err, c->errlen, rc, "cannot write the model's weights: %s",
                              cwt_strerror(rc));
    }
    return 0;
}

/* FedProx state of one local run: the schedule as the session computes it (so the learning
 * rate of every step is known exactly), the round's global weights, the weights before the
 * step (after the previous correction) and scratch for the momentum buffers. */
struct prox {
    const struct fed_tensors *t;
    const struct cwt_recipe *recipe;
    double offset, total, spe;
    float mu;
    const float *glob;
    float *prev, *cur, *buf;
    int rc;
};

/* After step `step` (1-based) of the session: w and the momentum buffer become those of the
 * SGD step with gradient g + mu (w_prev - w_glob). */
static int prox_step(struct run_ctx *c, uint64_t step)
{
    struct prox *p = c->prox;
    const struct fed_tensors *t = p->t;
    /* The session's own formula for the step's learning rate (train_session.c). */
    float lr = (float)train_lr_at(p->recipe, p->offset + (double)(step - 1) / p->spe, p->total);

    for (uint32_t k = 0; k < t->n; k++) {
        float *w = p->cur + t->off[k], *buf = NULL;
        struct eng_tensor_info info;
        int rc;
        /* The proximal term steps with the parameter's own group rate; frozen ones stay. */
        if (!t->is_param[k] || eng_model_tensor_info(c->m, t->idx[k], &info) != 0 ||
            info.lr_scale == 0.0f)
            continue;
        if ((rc = eng_model_read_tensor(c->m, t->idx[k], w)) != 0)
            goto fail;
        if (t->mom[k] >= 0) {
            buf = p->buf;
            if ((rc = eng_model_read_tensor(c->m, (uint32_t)t->mom[k], buf)) != 0)
                goto fail;
        }
        sim_prox_correct(w, buf, p->prev + t->off[k], p->glob + t->off[k], t->numel[k], p->mu,
                         lr * info.lr_scale, c->optim.momentum, c->optim.nesterov);
        if ((rc = eng_model_write_tensor(c->m, t->idx[k], w)) != 0 ||
            (buf != NULL && (rc = eng_model_write_tensor(c->m, (uint32_t)t->mom[k], buf)) != 0))
            goto fail;
        memcpy(p->prev + t->off[k], w, t->numel[k] * sizeof(float));
        continue;
    fail:
        p->rc = cwt_seterr(c->err, c->errlen, rc, "fedprox: cannot correct a step: %s",
                           cwt_strerror(rc));
        return p->rc;
    }
    return 0;
}

/* fedavg / fedprox: rounds in which every institution trains `visit` local epochs from the
 * same global model (fresh optimizer state), then the global model becomes the sample-weighted
 * mean of their parameters and batch-norm statistics; the model kept is the best global model
 * by mean local validation accuracy after each round. mu > 0: FedProx. */
static int run_fed(struct run_ctx *c, double visit, enum sim_heur heur, double mu)
{
    const uint32_t n = c->s->sites;
    struct fed_tensors t;
    struct prox px;
    struct sim_outcome o;
    struct keep kept = {0};
    uint64_t full[CWT_MAX_SITES], spe[CWT_MAX_SITES], steps[CWT_MAX_SITES], done = 0;
    double len_of[CWT_MAX_SITES], clock[CWT_MAX_SITES], total[CWT_MAX_SITES];
    double t0 = cwt_monotonic();
    float *glob = NULL, *cur = NULL, *prev = NULL, *buf = NULL;
    double *acc = NULL;
    size_t max_numel = 1;
    uint32_t round = 0;
    int rc;

    outcome_init(c, &o, heur, visit);
    sim_outcome_label(&o, c->label, sizeof(c->label));
    begin_run(c, c->budget);
    memset(&px, 0, sizeof(px));
    if ((rc = restore(c, c->init, c->init_len, TRAIN_SAVE_ALL)) != 0)
        return rc;
    if ((rc = fed_tensors_init(c, &t)) != 0)
        return rc;
    for (uint32_t k = 0; k < t.n; k++) {
        max_numel = t.numel[k] > max_numel ? t.numel[k] : max_numel;
        /* Without its momentum buffer the correction of a momentum step would not be exact. */
        if (mu > 0 && t.is_param[k] && t.mom[k] < 0 && c->optim.momentum != 0.0f) {
            rc = cwt_seterr(c->err, c->errlen, CWT_ESTATE,
                            "fedprox: the engine shows no momentum buffer for parameter %u",
                            t.idx[k]);
            goto out;
        }
    }
    glob = malloc((t.total ? t.total : 1) * sizeof(float));
    cur = malloc((t.total ? t.total : 1) * sizeof(float));
    prev = malloc((t.total ? t.total : 1) * sizeof(float));
    buf = malloc(max_numel * sizeof(float));
    acc = malloc((t.total ? t.total : 1) * sizeof(double));
    if (glob == NULL || cur == NULL || prev == NULL || buf == NULL || acc == NULL) {
        rc = cwt_seterr(c->err, c->errlen, CWT_ENOMEM, "out of memory for %s", sim_heur_name(heur));
        goto out;
    }
    /* v local epochs at every institution per round (McMahan et al.'s E), and each
     * institution's schedule clock runs over its own local epochs across rounds. */
    for (uint32_t i = 0; i < n; i++) {
        len_of[i] = visit_length(c, i, visit, 1);
        spe[i] = train_loader_batches_per_epoch(c->local[i]);
        clock[i] = total[i] = 0.0;
        rewind_loader(c->local[i]);
    }
    for (uint64_t s = 0, r = 0; s < c->budget; r++) {
        for (uint32_t i = 0; i < n; i++)
            full[i] = sim_visit_steps(len_of[i], r);
        sim_round_steps(full, n, c->budget - s, steps);
        for (uint32_t i = 0; i < n; i++) {
            total[i] += (double)steps[i] / (double)spe[i];
            s += steps[i];
        }
    }
    if ((rc = fed_read(c, &t, glob, 0)) != 0)
        goto out;
    kept.c = c;
    kept.flags = TRAIN_SAVE_WEIGHTS;
    px.t = &t;
    px.recipe = &c->base;
    px.mu = (float)mu;
    px.glob = glob;
    px.prev = prev;
    px.cur = cur;
    px.buf = buf;
    while (done < c->budget && rc == 0) {
        double wsum = 0.0, score;
        o.cycles = round + 1;
        for (uint32_t i = 0; i < n; i++)
            full[i] = sim_visit_steps(len_of[i], round);
        sim_round_steps(full, n, c->budget - done, steps);
        memset(acc, 0, t.total * sizeof(double));
        for (uint32_t i = 0; i < n && rc == 0; i++) {
            double weight = (double)sim_part_size(&c->train, i);
            if (steps[i] == 0)
                continue;
            /* Every institution starts the round from the global model with the initial
             * optimizer state (zero momentum / moments, step 0). */
            if ((rc = restore(c, c->init, c->init_len, TRAIN_SAVE_ALL)) != 0 ||
                (rc = fed_write(c, &t, glob, 0)) != 0)
                break;
            if (mu > 0) {
                memcpy(prev, glob, t.total * sizeof(float));
                px.offset = clock[i];
                px.total = total[i];
                px.spe = (double)spe[i];
                px.rc = 0;
                c->prox = &px;
            }
            rc = train_steps(c, c->local[i], steps[i], &c->base, clock[i], total[i], NULL, 0, NULL,
                             NULL);
            c->prox = NULL;
            if (px.rc != 0)
                rc = cwt_seterr(c->err, c->errlen, px.rc, "fedprox: cannot correct a step: %s",
                                cwt_strerror(px.rc));
            if (rc != 0)
                break;
            clock[i] += (double)steps[i] / (double)spe[i];
            done += steps[i];
            if ((rc = fed_read(c, &t, cur, 0)) != 0)
                break;
            sim_avg_add(acc, cur, t.total, weight);
            wsum += weight;
        }
        if (rc != 0)
            break;
        if (sim_avg_finish(acc, t.total, wsum, glob) != 0) {
            rc = cwt_seterr(c->err, c->errlen, CWT_ESTATE, "a %s round trained nothing",
                            sim_heur_name(heur));
            break;
        }
        if ((rc = fed_write(c, &t, glob, 0)) != 0 || (rc = mean_local_val(c, &score)) != 0)
            break;
        if (isfinite(score)) {
            if (sim_curve_add(&o.curve, done, score) != 0)
                rc = cwt_seterr(c->err, c->errlen, CWT_ENOMEM, "out of memory for the results");
            else if (kept.best == NULL || score > kept.kept_val)
                rc = keep_now(&kept, done, score);
        }
        round++;
    }
    if (rc == 0)
        rc = finish(c, &o, kept.best, kept.best_len, TRAIN_SAVE_WEIGHTS, NULL);
    o.kept_step = kept.kept_step;
    o.kept_val = kept.best != NULL ? kept.kept_val : NAN;
    o.steps = done;
    o.wall_s = cwt_monotonic() - t0;
out:
    c->prox = NULL;
    keep_free(&kept);
    fed_tensors_free(&t);
    free(glob);
    free(cur);
    free(prev);
    free(buf);
    free(acc);
    if (rc != 0) {
        sim_curve_free(&o.curve);
        return rc;
    }
    return add_outcome(c, &o);
}

/* ------------------------------------------------------------ per seed */

static int new_loader(struct run_ctx *c, const uint64_t *ids, size_t n, uint64_t seed, int balanced,
                      struct train_loader **out)
{
    struct train_loader_opts o;

    memset(&o, 0, sizeof(o));
    o.batch_size = c->base.batch_size;
    o.seed = seed;
    o.shuffle = 1;
    o.balanced = balanced;
    train_loader_augment_from_recipe(&c->base, &o);
    o.norm = c->norm;
    return train_loader_new(c->s->st, ids, n, c->spec.classes, &o, out, c->err, c->errlen);
}

static int make_balanced_loaders(struct run_ctx *c)
{
    for (uint32_t i = 0; i < c->s->sites; i++) {
        int rc;
        if (c->balanced[i] != NULL)
            continue;
        /* The same seed as the plain loader: only the sampling rule differs. */
        rc = new_loader(c, c->train.ids + c->train.start[i], sim_part_size(&c->train, i),
                        train_hash3(c->seed, TAG_LOADER, i), 1, &c->balanced[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void free_seed(struct run_ctx *c)
{
    for (uint32_t i = 0; i < CWT_MAX_SITES; i++) {
        train_loader_free(c->local[i]);
        train_loader_free(c->balanced[i]);
        c->local[i] = c->balanced[i] = NULL;
    }
    train_loader_free(c->pooled);
    c->pooled = NULL;
    sim_part_free(&c->train);
    sim_part_free(&c->val);
    if (c->init != NULL) {
        free(c->init);
        c->init = NULL;
    }
    if (c->m != NULL) {
        eng_model_free(c->m);
        c->m = NULL;
    }
}

static int run_seed(struct run_ctx *c)
{
    const struct sim_setup *s = c->s;
    const uint32_t n = s->sites, classes = c->spec.classes;
    double *mix = NULL;
    int rc;

    if ((mix = calloc((size_t)n * classes, sizeof(double))) == NULL)
        return cwt_seterr(c->err, c->errlen, CWT_ENOMEM, "out of memory");
    sim_label_mix(&s->rule, n, classes, c->seed, mix);
    if (s->rule.kind == SIM_PART_COLUMN) {
        rc = sim_partition_fixed(n, c->train_all.ids, c->train_all.labels, c->train_inst,
                                 c->train_all.n, &c->train, c->err, c->errlen);
        if (rc == 0)
            rc = sim_partition_fixed(n, c->val_all.ids, c->val_all.labels, c->val_inst,
                                     c->val_all.n, &c->val, c->err, c->errlen);
    } else {
        rc = sim_partition(&s->rule, n, classes, mix, c->train_all.ids, c->train_all.labels,
                           c->train_all.n, c->seed, TAG_TRAIN_PART, &c->train, c->err, c->errlen);
        if (rc == 0)
            rc = sim_partition(&s->rule, n, classes, mix, c->val_all.ids, c->val_all.labels,
                               c->val_all.n, c->seed, TAG_VAL_PART, &c->val, c->err, c->errlen);
    }
    free(mix);
    if (rc != 0)
        return rc;
    for (uint32_t i = 0; i < n; i++) {
        c->rep->inst_train[(size_t)c->seed_index * n + i] = sim_part_size(&c->train, i);
        c->rep->inst_val[(size_t)c->seed_index * n + i] = sim_part_size(&c->val, i);
        if (sim_part_size(&c->train, i) == 0)
            return cwt_seterr(c->err, c->errlen, CWT_EINVAL,
                              "with partition %s and seed %llu, institution %u gets no training "
                              "images; use fewer sites, a milder skew or more data",
                              c->rep->partition, (unsigned long long)c->seed, i);
    }

    c->spec.seed = c->seed;
    rc =
        eng_model_create(s->dev, &c->spec, &c->optim, c->base.batch_size, &c->m, c->err, c->errlen);
    if (rc == 0)
        rc = train_model_finetune(c->m, &c->base, c->err, c->errlen);
    if (rc != 0)
        return rc;
    if ((rc = snapshot(c, TRAIN_SAVE_ALL, &c->init, &c->init_len)) != 0)
        return rc;
    for (uint32_t i = 0; i < n; i++) {
        rc = new_loader(c, c->train.ids + c->train.start[i], sim_part_size(&c->train, i),
                        train_hash3(c->seed, TAG_LOADER, i), 0, &c->local[i]);
        if (rc != 0)
            return rc;
    }
    if (s->want[SIM_CENTRAL] &&
        (rc = new_loader(c, c->train_all.ids, c->train_all.n, train_hash3(c->seed, TAG_POOLED, 0),
                         0, &c->pooled)) != 0)
        return rc;

    if (s->want[SIM_CENTRAL] && (rc = run_central(c)) != 0)
        return rc;
    if ((s->want[SIM_SINGLE] || s->want[SIM_ENSEMBLE]) &&
        (rc = run_single(c, s->want[SIM_SINGLE], s->want[SIM_ENSEMBLE])) != 0)
        return rc;
    if (s->want[SIM_SWT] && (rc = run_swt(c)) != 0)
        return rc;
    for (int plus = 0; plus <= 1; plus++) {
        if (!s->want[plus ? SIM_CWT_PLUS : SIM_CWT])
            continue;
        for (uint32_t v = 0; v < s->n_visits; v++)
            if ((rc = run_cwt(c, s->visits[v], plus)) != 0)
                return rc;
    }
    for (uint32_t v = 0; s->want[SIM_FEDAVG] && v < s->n_visits; v++)
        if ((rc = run_fed(c, s->visits[v], SIM_FEDAVG, 0.0)) != 0)
            return rc;
    for (uint32_t v = 0; s->want[SIM_FEDPROX] && v < s->n_visits; v++)
        if ((rc = run_fed(c, s->visits[v], SIM_FEDPROX, s->prox_mu)) != 0)
            return rc;
    return 0;
}

int sim_run(const struct sim_setup *s, struct sim_report *rep, char *err, size_t errlen)
{
    struct run_ctx *c;
    struct eng_device_info info;
    uint64_t spe;
    double b;
    int rc;

    if ((c = calloc(1, sizeof(*c))) == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
    c->s = s;
    c->rep = rep;
    c->err = err;
    c->errlen = errlen;
    c->base = s->recipe;
    /* The cwt+ switches are off for every other heuristic, so they differ only in those. */
    c->base.class_weighted_loss = 0;
    c->base.balanced_sampling = 0;
    if (c->base.batch_size == 0)
        c->base.batch_size = 1;
    if ((rc = train_specs_from_recipe(&c->base, &c->spec, &c->optim, err, errlen)) != 0)
        goto out;
    /* fedprox corrects SGD steps exactly (sim_prox_correct); Adam's update is not linear in
     * the gradient, so a correction after the step cannot be exact. */
    if (s->want[SIM_FEDPROX] && c->optim.kind != ENG_SGD) {
        rc = cwt_seterr(err, errlen, CWT_EINVAL,
                        "fedprox needs a recipe with optimizer \"sgd\" (this one has %s); use "
                        "fedavg or an SGD recipe",
                        c->optim.kind == ENG_ADAM ? "adam" : "adamw");
        goto out;
    }
    if ((rc = load_split(s->st, STORE_TRAIN, c->spec.classes, s->max_train, s->recipe.seed,
                         &c->train_all, err, errlen)) != 0 ||
        (rc = load_split(s->st, STORE_VAL, c->spec.classes, s->max_val, s->recipe.seed, &c->val_all,
                         err, errlen)) != 0 ||
        (rc = load_split(s->st, STORE_TEST, c->spec.classes, s->max_test, s->recipe.seed,
                         &c->test_all, err, errlen)) != 0)
        goto out;
    if (s->rule.kind == SIM_PART_COLUMN) {
        c->train_inst = calloc(c->train_all.n ? c->train_all.n : 1, sizeof(uint32_t));
        c->val_inst = calloc(c->val_all.n ? c->val_all.n : 1, sizeof(uint32_t));
        if (c->train_inst == NULL || c->val_inst == NULL) {
            rc = cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
            goto out;
        }
        if ((rc = store_read_begin(s->st)) != 0) {
            cwt_seterr(err, errlen, rc, "cannot read the store: %s", cwt_strerror(rc));
            goto out;
        }
        rc = sim_column_inst(s->st, &s->rule, c->train_all.ids, c->train_all.n, c->train_inst, err,
                             errlen);
        if (rc == 0)
            rc = sim_column_inst(s->st, &s->rule, c->val_all.ids, c->val_all.n, c->val_inst, err,
                                 errlen);
        store_read_end(s->st);
        if (rc != 0)
            goto out;
        rep->n_names = s->rule.n_values;
        memcpy(rep->names, s->rule.values, sizeof(rep->names));
    }
    if (c->train_all.n == 0 || c->test_all.n == 0) {
        rc = cwt_seterr(err, errlen, CWT_ENOENT,
                        "the store has no %s images; ingest a train and a test split first",
                        c->train_all.n == 0 ? "training" : "test");
        goto out;
    }
    /* One normalisation for every heuristic (pooled training statistics), so that only the
     * way the data is visited differs between them. */
    if ((rc = train_norm_compute(s->st, c->train_all.ids, c->train_all.n, &c->norm)) != 0) {
        cwt_seterr(err, errlen, rc, "cannot compute the normalisation: %s", cwt_strerror(rc));
        goto out;
    }
    spe = (c->train_all.n + c->base.batch_size - 1) / c->base.batch_size;
    b = floor(s->budget_epochs * (double)spe + 0.5);
    c->budget = b >= 1.0 ? (uint64_t)b : 1;
    /* single, ensemble and swt divide the budget among the institutions: each share must be
     * at least one step, or an institution would have a run of length 0. */
    if ((s->want[SIM_SINGLE] || s->want[SIM_ENSEMBLE] || s->want[SIM_SWT]) &&
        c->budget < s->sites) {
        rc = cwt_seterr(err, errlen, CWT_EINVAL,
                        "--budget %g is %llu optimizer steps, fewer than the %u institutions "
                        "that single, ensemble and swt share it among (each needs at least one "
                        "step); give a larger --budget or fewer --sites",
                        s->budget_epochs, (unsigned long long)c->budget, s->sites);
        goto out;
    }
    count_runs(c);

    eng_device_get_info(s->dev, &info);
    snprintf(rep->device, sizeof(rep->device), "%s (%s)", info.name, info.driver);
    snprintf(rep->model, sizeof(rep->model), "%s", s->recipe.model);
    recipe_text(&s->recipe, rep->recipe_text, sizeof(rep->recipe_text));
    rep->recipe = &s->recipe;
    sim_part_rule_format(&s->rule, rep->partition, sizeof(rep->partition));
    sim_plus_format(s->plus, rep->plus, sizeof(rep->plus));
    rep->local_bn = s->local_bn;
    rep->prox_mu = s->want[SIM_FEDPROX] ? s->prox_mu : 0.0;
    rep->sites = s->sites;
    rep->budget_epochs = s->budget_epochs;
    rep->budget_steps = c->budget;
    rep->batch = c->base.batch_size;
    rep->n_seeds = s->n_seeds;
    rep->first_seed = s->recipe.seed;
    rep->through_bundles = s->through_bundles;
    rep->n_train = c->train_all.n;
    rep->n_val = c->val_all.n;
    rep->n_test = c->test_all.n;
    rep->n_visits = s->n_visits;
    memcpy(rep->visits, s->visits, sizeof(rep->visits));
    rep->inst_train = calloc((size_t)s->n_seeds * s->sites, sizeof(uint64_t));
    rep->inst_val = calloc((size_t)s->n_seeds * s->sites, sizeof(uint64_t));
    if (rep->inst_train == NULL || rep->inst_val == NULL) {
        rc = cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
        goto out;
    }
    if (s->through_bundles &&
        (rc = sim_fed_open(s->out_dir, s->sites, &s->recipe, &c->fed, err, errlen)) != 0)
        goto out;

    for (uint32_t i = 0; i < s->n_seeds && rc == 0; i++) {
        c->seed_index = i;
        c->seed = s->recipe.seed + i;
        rc = run_seed(c);
        free_seed(c);
    }
out:
    sim_fed_close(c->fed);
    pooled_free(&c->train_all);
    pooled_free(&c->val_all);
    pooled_free(&c->test_all);
    free(c->train_inst);
    free(c->val_inst);
    free(c);
    return rc;
}
