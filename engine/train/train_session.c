/*
 * train_session.c - a training run: steps with the recipe's schedule, per-epoch validation,
 * checkpoints that resume exactly, the best-validation model kept.
 *
 * The CPU prepares batch n+1 between eng_train_begin and eng_train_end of batch n. The loader
 * cursor therefore runs one batch ahead of the weights; checkpoints store the cursor as it was
 * right after the last trained batch, so a resumed run reads the same batches again.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/train/train.h"
#include "storage/safetensors.h"

#define STATE_VERSION "1"

struct train_session {
    struct eng_model *m;
    struct eng_model_spec spec;
    struct train_loader *loader;
    struct store *st;
    struct cwt_recipe recipe;
    struct train_session_opts o;
    char *ckpt_name, *best_name;
    uint64_t *val_ids;
    size_t n_val;
    uint32_t classes, batch;
    uint64_t spe; /* steps (batches) per epoch */

    /* State saved in checkpoints. */
    uint64_t steps_planned, steps_done;
    double sched_offset, sched_total;
    struct train_cursor cursor; /* after the last trained batch */
    double loss_sum;            /* this epoch: sum of loss * n */
    uint64_t correct, seen, epoch_steps;
    double epoch_compute_s, epoch_seconds;
    double best_val;

    struct train_epoch_result last;
    float *class_weights; /* NULL unless the recipe weights the loss */
    float *x[2];
    uint32_t *labels[2];
};

void train_session_free(struct train_session *s)
{
    if (s == NULL)
        return;
    free(s->ckpt_name);
    free(s->best_name);
    free(s->val_ids);
    free(s->class_weights);
    for (int i = 0; i < 2; i++) {
        free(s->x[i]);
        free(s->labels[i]);
    }
    free(s);
}

/* round(v) for v >= 0, clamped to the step counts a run can have. */
static double round_steps(double v)
{
    v = floor(v + 0.5);
    if (!(v >= 0))
        return 0;
    return v > 1e15 ? 1e15 : v;
}

/* The real-valued steps of one visit of p. */
static double plan_x(const struct train_plan *p, uint64_t spe, size_t n)
{
    switch (p->unit) {
    case CWT_VISIT_STEPS:
        return p->length;
    case CWT_VISIT_PROPORTIONAL:
        return p->length * (double)n / 1000.0;
    case CWT_VISIT_EPOCHS:
    default:
        return p->length * (double)spe;
    }
}

uint64_t train_plan_steps_before(const struct train_plan *p, uint64_t spe, size_t n)
{
    if (p->has_before)
        return p->steps_before;
    return (uint64_t)round_steps((double)p->visit * plan_x(p, spe, n));
}

uint64_t train_plan_steps(const struct train_plan *p, uint64_t spe, size_t n)
{
    /* Both ends rounded on their own (not the carried fraction added up), so the sum over
     * visits telescopes exactly whatever the floating-point error of each product. */
    double want = round_steps((double)(p->visit + 1) * plan_x(p, spe, n));
    double before = (double)train_plan_steps_before(p, spe, n);

    if (!(want > before))
        return 1; /* a visit is at least one step */
    return (uint64_t)(want - before);
}

int train_session_new(struct eng_model *m, const struct eng_model_spec *spec,
                      struct train_loader *loader, struct store *st,
                      const struct train_session_opts *o, struct train_session **out, char *err,
                      size_t errlen)
{
    struct train_session *s;
    uint32_t h, w, c;
    size_t bytes;

    *out = NULL;
    if (o->recipe == NULL || !(o->plan.length > 0))
        return cwt_seterr(err, errlen, CWT_EINVAL, "a training run needs a recipe and a length");
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
    s->m = m;
    s->spec = *spec;
    s->loader = loader;
    s->st = st;
    s->recipe = *o->recipe;
    s->o = *o;
    s->o.recipe = &s->recipe;
    s->classes = spec->classes;
    s->batch = train_loader_opts(loader)->batch_size;
    s->spe = train_loader_batches_per_epoch(loader);
    s->best_val = -1.0;
    s->cursor = train_loader_get_cursor(loader);
    s->steps_planned = train_plan_steps(&o->plan, s->spe, train_loader_size(loader));
    s->sched_offset = o->sched_offset;
    s->sched_total = o->sched_total > 0 ? o->sched_total : (double)s->steps_planned / s->spe;
    train_loader_shape(loader, &h, &w, &c);
    if (h != spec->in_h || w != spec->in_w || c != spec->in_c) {
        train_session_free(s);
        return cwt_seterr(err, errlen, CWT_EINVAL,
                          "the store's images are %ux%ux%u, the model takes %ux%ux%u", h, w, c,
                          spec->in_h, spec->in_w, spec->in_c);
    }
    if ((o->ckpt_name != NULL && (s->ckpt_name = strdup(o->ckpt_name)) == NULL) ||
        (o->best_name != NULL && (s->best_name = strdup(o->best_name)) == NULL))
        goto nomem;
    s->o.ckpt_name = s->ckpt_name;
    s->o.best_name = s->best_name;
    if (o->n_val > 0) {
        if ((s->val_ids = malloc(o->n_val * sizeof(uint64_t))) == NULL)
            goto nomem;
        memcpy(s->val_ids, o->val_ids, o->n_val * sizeof(uint64_t));
        s->n_val = o->n_val;
    }
    s->o.val_ids = s->val_ids;
    if (s->recipe.class_weighted_loss) {
        if ((s->class_weights = malloc(s->classes * sizeof(float))) == NULL)
            goto nomem;
        train_class_weights(train_loader_class_counts(loader), s->classes, s->class_weights);
    }
    if (cwt_mul_size((size_t)h * w * c * sizeof(float), s->batch, &bytes) != 0)
        goto nomem;
    for (int i = 0; i < 2; i++) {
        s->x[i] = malloc(bytes);
        s->labels[i] = malloc(s->batch * sizeof(uint32_t));
        if (s->x[i] == NULL || s->labels[i] == NULL)
            goto nomem;
    }
    *out = s;
    return 0;
nomem:
    train_session_free(s);
    return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory for the training session");
}

/* ---------------------------------------------------------------- checkpoints */

struct state_text {
    char v[40][32];
    struct train_kv kv[40];
    size_t n;
};

static void state_add(struct state_text *t, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void state_add(struct state_text *t, const char *key, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(t->v[t->n], sizeof(t->v[t->n]), fmt, ap);
    va_end(ap);
    t->kv[t->n].key = key;
    t->kv[t->n].value = t->v[t->n];
    t->n++;
}

/* The floating-point fields of struct train_epoch_result, in checkpoint key order. */
static const char *const last_double_keys[] = {
    "state_last_train_loss",   "state_last_train_accuracy",        "state_last_val_loss",
    "state_last_val_accuracy", "state_last_val_balanced_accuracy", "state_last_val_auc",
    "state_last_lr",           "state_last_images_per_s",          "state_last_seconds"};
#define LAST_DOUBLES (sizeof(last_double_keys) / sizeof(last_double_keys[0]))

static double *last_double(struct train_epoch_result *r, size_t i)
{
    double *const fields[LAST_DOUBLES] = {&r->train_loss,   &r->train_accuracy,        &r->val_loss,
                                          &r->val_accuracy, &r->val_balanced_accuracy, &r->val_auc,
                                          &r->lr,           &r->images_per_s,          &r->seconds};
    return fields[i];
}

static int save_checkpoint(struct train_session *s, char *err, size_t errlen)
{
    const struct train_loader_opts *lo = train_loader_opts(s->loader);
    struct state_text t;
    uint8_t *blob = NULL;
    size_t len = 0;
    int rc;

    if (s->ckpt_name == NULL)
        return 0;
    t.n = 0;
    /* %.17g round-trips doubles exactly. */
    state_add(&t, "state_version", "%s", STATE_VERSION);
    state_add(&t, "state_loader_seed", "%llu", (unsigned long long)lo->seed);
    state_add(&t, "state_loader_n", "%zu", train_loader_size(s->loader));
    state_add(&t, "state_epoch", "%llu", (unsigned long long)s->cursor.epoch);
    state_add(&t, "state_pos", "%llu", (unsigned long long)s->cursor.pos);
    state_add(&t, "state_steps_done", "%llu", (unsigned long long)s->steps_done);
    state_add(&t, "state_steps_planned", "%llu", (unsigned long long)s->steps_planned);
    state_add(&t, "state_sched_offset", "%.17g", s->sched_offset);
    state_add(&t, "state_sched_total", "%.17g", s->sched_total);
    state_add(&t, "state_loss_sum", "%.17g", s->loss_sum);
    state_add(&t, "state_correct", "%llu", (unsigned long long)s->correct);
    state_add(&t, "state_seen", "%llu", (unsigned long long)s->seen);
    state_add(&t, "state_epoch_steps", "%llu", (unsigned long long)s->epoch_steps);
    state_add(&t, "state_best_val", "%.17g", s->best_val);
    state_add(&t, "state_epoch_seconds", "%.17g", s->epoch_seconds);
    state_add(&t, "state_epoch_compute", "%.17g", s->epoch_compute_s);
    /* The last finished epoch's result, so that a run resumed from its final checkpoint
     * still reports its metrics. NaN (no validation ids) is written as "nan". */
    state_add(&t, "state_last_epoch", "%llu", (unsigned long long)s->last.epoch);
    state_add(&t, "state_last_step", "%llu", (unsigned long long)s->last.step);
    state_add(&t, "state_last_images", "%llu", (unsigned long long)s->last.images);
    state_add(&t, "state_last_best", "%d", s->last.best);
    for (size_t i = 0; i < LAST_DOUBLES; i++) {
        double v = *last_double(&s->last, i);
        if (isnan(v))
            state_add(&t, last_double_keys[i], "nan");
        else
            state_add(&t, last_double_keys[i], "%.17g", v);
    }
    rc = train_state_save(s->m, &s->spec, &lo->norm, &s->recipe, TRAIN_SAVE_ALL, t.kv, t.n, &blob,
                          &len, err, errlen);
    if (rc != 0)
        return rc;
    rc = store_model_put(s->st, s->ckpt_name, blob, len);
    free(blob);
    if (rc != 0)
        return cwt_seterr(err, errlen, rc, "cannot write checkpoint '%s': %s", s->ckpt_name,
                          cwt_strerror(rc));
    return 0;
}

static const char *find_meta(const struct st_file *f, const char *key)
{
    for (uint32_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0)
            return f->meta[i].value;
    return NULL;
}

/* Unsigned decimal (seeds use all 64 bits, beyond cwt_parse_i64's range). */
static int meta_u64(const struct st_file *f, const char *key, uint64_t *out)
{
    const char *v = find_meta(f, key);
    uint64_t x = 0;

    if (v == NULL || *v == '\0')
        return CWT_EFORMAT;
    for (; *v != '\0'; v++) {
        uint64_t digit = (uint64_t)(*v - '0');
        if (*v < '0' || *v > '9' || x > (UINT64_MAX - digit) / 10)
            return CWT_EFORMAT;
        x = x * 10 + digit;
    }
    *out = x;
    return 0;
}

static int meta_double(const struct st_file *f, const char *key, double *out)
{
    const char *v = find_meta(f, key);

    if (v == NULL || cwt_parse_double(v, -1e300, 1e300, out) != 0)
        return CWT_EFORMAT;
    return 0;
}

int train_session_resume(struct train_session *s, const char *name, char *err, size_t errlen)
{
    const struct train_loader_opts *lo = train_loader_opts(s->loader);
    struct st_file f;
    uint8_t *blob = NULL;
    size_t len = 0;
    uint64_t seed, n, epoch, pos, done, planned, correct, seen, epoch_steps;
    double offset, total, loss_sum, best, seconds, compute;
    struct train_epoch_result last;
    const char *version;
    int rc;

    rc = store_model_get(s->st, name, &blob, &len);
    if (rc == CWT_ENOENT)
        return cwt_seterr(err, errlen, rc, "there is no checkpoint '%s' to resume from", name);
    if (rc != 0)
        return cwt_seterr(err, errlen, rc, "cannot read checkpoint '%s': %s", name,
                          cwt_strerror(rc));
    memset(&f, 0, sizeof(f));
    if ((rc = st_parse(blob, len, &f, err, errlen)) != 0)
        goto done;
    version = find_meta(&f, "state_version");
    if (version == NULL || strcmp(version, STATE_VERSION) != 0 ||
        meta_u64(&f, "state_loader_seed", &seed) != 0 || meta_u64(&f, "state_loader_n", &n) ||
        meta_u64(&f, "state_epoch", &epoch) != 0 || meta_u64(&f, "state_pos", &pos) != 0 ||
        meta_u64(&f, "state_steps_done", &done) != 0 ||
        meta_u64(&f, "state_steps_planned", &planned) != 0 ||
        meta_double(&f, "state_sched_offset", &offset) != 0 ||
        meta_double(&f, "state_sched_total", &total) != 0 ||
        meta_double(&f, "state_loss_sum", &loss_sum) != 0 ||
        meta_u64(&f, "state_correct", &correct) != 0 || meta_u64(&f, "state_seen", &seen) != 0 ||
        meta_u64(&f, "state_epoch_steps", &epoch_steps) != 0 ||
        meta_double(&f, "state_best_val", &best) != 0 ||
        meta_double(&f, "state_epoch_seconds", &seconds) != 0 ||
        meta_double(&f, "state_epoch_compute", &compute) != 0 || done > planned) {
        rc = cwt_seterr(err, errlen, CWT_EFORMAT, "checkpoint '%s' lacks a valid training state",
                        name);
        goto done;
    }
    /* Resuming on other data would not reproduce the interrupted run; say so. */
    if (seed != lo->seed || n != train_loader_size(s->loader)) {
        rc = cwt_seterr(err, errlen, CWT_ESTATE,
                        "checkpoint '%s' was made on other data (%llu images, now %zu); "
                        "start a new run instead",
                        name, (unsigned long long)n, train_loader_size(s->loader));
        goto done;
    }
    /* Optional (checkpoints of older versions lack it): the last finished epoch. */
    memset(&last, 0, sizeof(last));
    if (find_meta(&f, "state_last_epoch") != NULL) {
        uint64_t best_flag;
        if (meta_u64(&f, "state_last_epoch", &last.epoch) != 0 ||
            meta_u64(&f, "state_last_step", &last.step) != 0 ||
            meta_u64(&f, "state_last_images", &last.images) != 0 ||
            meta_u64(&f, "state_last_best", &best_flag) != 0 || best_flag > 1) {
            rc = cwt_seterr(err, errlen, CWT_EFORMAT,
                            "checkpoint '%s' has a malformed last-epoch result", name);
            goto done;
        }
        last.best = (int)best_flag;
        for (size_t i = 0; i < LAST_DOUBLES; i++) {
            const char *v = find_meta(&f, last_double_keys[i]);
            double *dst = last_double(&last, i);
            if (v != NULL && strcmp(v, "nan") == 0) {
                *dst = NAN;
            } else if (meta_double(&f, last_double_keys[i], dst) != 0) {
                rc = cwt_seterr(err, errlen, CWT_EFORMAT, "checkpoint '%s' has a malformed %s",
                                name, last_double_keys[i]);
                goto done;
            }
        }
    }
    if ((rc = train_state_load(s->m, blob, len, TRAIN_SAVE_ALL, NULL, err, errlen)) != 0)
        goto done;
    s->last = last;
    s->cursor.epoch = epoch;
    s->cursor.pos = pos;
    train_loader_set_cursor(s->loader, s->cursor);
    s->steps_done = done;
    s->steps_planned = planned;
    s->sched_offset = offset;
    s->sched_total = total;
    s->loss_sum = loss_sum;
    s->correct = correct;
    s->seen = seen;
    s->epoch_steps = epoch_steps;
    s->best_val = best;
    s->epoch_seconds = seconds;
    s->epoch_compute_s = compute;
done:
    st_free(&f);
    free(blob);
    return rc;
}

/* ---------------------------------------------------------------- the run */

static int finish_epoch(struct train_session *s, float lr, char *err, size_t errlen)
{
    struct train_epoch_result *r = &s->last;
    double t0 = cwt_monotonic();
    int rc;

    memset(r, 0, sizeof(*r));
    r->epoch = s->cursor.epoch + 1;
    r->step = eng_model_step(s->m);
    r->images = s->seen;
    r->train_loss = s->seen ? s->loss_sum / (double)s->seen : NAN;
    r->train_accuracy = s->seen ? (double)s->correct / (double)s->seen : NAN;
    r->val_loss = r->val_accuracy = r->val_balanced_accuracy = r->val_auc = NAN;
    r->lr = lr;
    r->images_per_s = s->epoch_compute_s > 0 ? (double)s->seen / s->epoch_compute_s : 0;
    if (s->n_val > 0) {
        struct train_metrics vm;
        rc = train_evaluate(s->m, s->st, s->val_ids, s->n_val, s->classes,
                            &train_loader_opts(s->loader)->norm, s->batch, &vm, NULL, err, errlen);
        if (rc != 0)
            return rc;
        r->val_loss = vm.loss;
        r->val_accuracy = vm.accuracy;
        r->val_balanced_accuracy = vm.balanced_accuracy;
        r->val_auc = vm.auc;
        train_metrics_free(&vm);
    }
    /* Without validation images every epoch counts as the best, i.e. the latest is kept. */
    if (s->n_val == 0 || r->val_accuracy > s->best_val) {
        r->best = 1;
        s->best_val = s->n_val > 0 ? r->val_accuracy : s->best_val;
        if (s->best_name != NULL) {
            uint8_t *blob = NULL;
            size_t len = 0;
            rc = train_state_save(s->m, &s->spec, &train_loader_opts(s->loader)->norm, &s->recipe,
                                  TRAIN_SAVE_WEIGHTS, NULL, 0, &blob, &len, err, errlen);
            if (rc != 0)
                return rc;
            rc = store_model_put(s->st, s->best_name, blob, len);
            free(blob);
            if (rc != 0)
                return cwt_seterr(err, errlen, rc, "cannot store model '%s': %s", s->best_name,
                                  cwt_strerror(rc));
        }
    }
    r->seconds = s->epoch_seconds + (cwt_monotonic() - t0);
    s->loss_sum = 0;
    s->correct = s->seen = s->epoch_steps = 0;
    s->epoch_compute_s = s->epoch_seconds = 0;
    return 0;
}

int train_session_run(struct train_session *s, char *err, size_t errlen)
{
    uint32_t n_cur = 0, n_next = 0;
    int end_cur = 0, end_next = 0, cur = 0, stop = 0;
    uint64_t run_steps = 0, run_images = 0;
    double run_start = cwt_monotonic(), step_start;
    float lr = 0;
    int rc;

    if (s->steps_done >= s->steps_planned)
        return 0;
    /* A new run replaces the previous run's checkpoint at once, so that a resume after an
     * early crash restarts this run instead of continuing an older one. */
    if (s->steps_done == 0 && (rc = save_checkpoint(s, err, errlen)) != 0)
        return rc;
    train_loader_set_cursor(s->loader, s->cursor);
    if ((rc = train_loader_next(s->loader, s->x[cur], s->labels[cur], NULL, &n_cur, &end_cur)) != 0)
        return cwt_seterr(err, errlen, rc, "cannot read a batch: %s", cwt_strerror(rc));
    step_start = cwt_monotonic();
    while (s->steps_done < s->steps_planned) {
        float loss = 0;
        uint32_t correct = 0;
        int more = s->steps_done + 1 < s->steps_planned;
        struct train_cursor after_cur = train_loader_get_cursor(s->loader);
        double now;

        lr = (float)train_lr_at(
            &s->recipe, s->sched_offset + (double)s->steps_done / (double)s->spe, s->sched_total);
        rc = eng_train_begin(s->m, s->x[cur], s->labels[cur], n_cur, s->class_weights, lr);
        if (rc != 0)
            return cwt_seterr(err, errlen, rc, "training step failed: %s", cwt_strerror(rc));
        if (more) {
            rc = train_loader_next(s->loader, s->x[1 - cur], s->labels[1 - cur], NULL, &n_next,
                                   &end_next);
            if (rc != 0) {
                eng_train_end(s->m, NULL, NULL);
                return cwt_seterr(err, errlen, rc, "cannot read a batch: %s", cwt_strerror(rc));
            }
        }
        if ((rc = eng_train_end(s->m, &loss, &correct)) != 0)
            return cwt_seterr(err, errlen, rc, "training step failed: %s", cwt_strerror(rc));
        if (!isfinite(loss))
            return cwt_seterr(err, errlen, CWT_ENUMERIC,
                              "the training loss became %f at step %llu; lower the learning "
                              "rate",
                              (double)loss, (unsigned long long)eng_model_step(s->m));
        now = cwt_monotonic();
        s->steps_done++;
        s->epoch_steps++;
        s->loss_sum += (double)loss * n_cur;
        s->correct += correct;
        s->seen += n_cur;
        s->epoch_compute_s += now - step_start;
        s->epoch_seconds += now - step_start;
        s->cursor = after_cur;
        run_steps++;
        run_images += n_cur;

        if (s->o.on_progress != NULL) {
            struct train_progress p;
            double elapsed = now - run_start;
            p.epoch = s->cursor.epoch + 1;
            p.step = s->steps_done;
            p.steps = s->steps_planned;
            p.loss = s->seen ? s->loss_sum / (double)s->seen : NAN;
            p.images_per_s = elapsed > 0 ? (double)run_images / elapsed : 0;
            p.eta_s = (double)(s->steps_planned - s->steps_done) * elapsed / (double)run_steps;
            stop = s->o.on_progress(&p, s->o.ctx) != 0;
        }
        if (end_cur || !more) {
            if ((rc = finish_epoch(s, lr, err, errlen)) != 0)
                return rc;
            if (s->o.on_epoch != NULL && s->o.on_epoch(&s->last, s->o.ctx) != 0)
                stop = 1;
            if ((rc = save_checkpoint(s, err, errlen)) != 0)
                return rc;
        } else if (stop ||
                   (s->o.ckpt_every_steps > 0 && s->steps_done % s->o.ckpt_every_steps == 0)) {
            if ((rc = save_checkpoint(s, err, errlen)) != 0)
                return rc;
        }
        if (stop && s->steps_done < s->steps_planned)
            return cwt_seterr(err, errlen, CWT_ESTATE, "training stopped at step %llu of %llu",
                              (unsigned long long)s->steps_done,
                              (unsigned long long)s->steps_planned);
        cur = 1 - cur;
        n_cur = n_next;
        end_cur = end_next;
        step_start = cwt_monotonic();
    }
    return 0;
}

uint64_t train_session_steps_planned(const struct train_session *s)
{
    return s->steps_planned;
}

uint64_t train_session_steps_done(const struct train_session *s)
{
    return s->steps_done;
}

void train_session_last_epoch(const struct train_session *s, struct train_epoch_result *out)
{
    *out = s->last;
}

double train_session_best_val(const struct train_session *s)
{
    return s->best_val;
}
