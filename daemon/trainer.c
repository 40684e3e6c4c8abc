/*
 * trainer.c - the trainer supervisor and the trainer.
 *
 * The supervisor is forked by main() before the monitor loads any secret key, so neither it
 * nor the trainers it forks ever had one in memory. It only forks, waits and reports: when a
 * trainer dies it sends PROTO_DIED on the shared SOCK_SEQPACKET socket (messages are atomic,
 * so a trainer killed mid-send cannot corrupt the framing) and starts a new one after a pause
 * that grows with repeated failures.
 *
 * The trainer owns the Vulkan device and the data loader. It receives jobs with the input
 * weights as a sealed memfd holding a safetensors image (plain tensors, never a bundle), trains
 * one visit with checkpoints in the store, evaluates on the local validation split and answers
 * with the new weights in another memfd. It is the only writer of the checkpoint environment
 * (STORE_TRAINER): it also clears the checkpoints of other visits (store_visit_begin).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/daemon.h"
#include "daemon/proto.h"
#include "sandbox/sandbox.h"
#include "engine/engine.h"
#include "engine/train/train.h"
#include "storage/safetensors.h"
#include "storage/store.h"

struct trainer {
    const struct cwt_config *cfg;
    const struct cwt_roster *roster;
    int sock;
    struct eng_device *dev;
    struct store *st;
    struct eng_model *model;
    struct eng_model_spec spec;
    uint32_t job_id;
    int paused;
};

static void send_result_error(struct trainer *t, int status, const char *msg)
{
    struct proto_msg m;

    memset(&m, 0, sizeof(m));
    m.type = PROTO_RESULT;
    m.job = t->job_id;
    m.fd = -1;
    m.u.result.status = status < 0 ? status : CWT_EIO;
    m.u.result.val_accuracy = NAN;
    m.u.result.val_loss = NAN;
    m.u.result.val_auc = NAN;
    m.u.result.train_loss = NAN;
    m.u.result.train_accuracy = NAN;
    snprintf(m.u.result.message, sizeof(m.u.result.message), "%s", msg);
    for (char *p = m.u.result.message; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    if (proto_send(t->sock, &m) != 0)
        fatal("trainer: cannot send a result");
}

/* Handles a control message arriving while a job runs. Returns 1 to stop training. */
static int handle_inflight(struct trainer *t, const struct proto_msg *m)
{
    if (m->fd >= 0)
        close(m->fd);
    if (m->type == PROTO_PAUSE)
        t->paused = 1;
    else if (m->type == PROTO_RESUME)
        t->paused = 0;
    else
        log_warnx("trainer: ignoring message type %u during a job", (unsigned)m->type);
    return 0;
}

/* Between steps: drain pending control messages; while paused, block until resumed. */
static int poll_control(struct trainer *t)
{
    for (;;) {
        struct proto_msg m;
        char err[CWT_ERRLEN];
        int flags = t->paused ? 0 : MSG_DONTWAIT;
        uint8_t probe;
        ssize_t n;

        n = recv(t->sock, &probe, 1, MSG_PEEK | flags);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fatalx("trainer: the monitor went away");
        if (proto_recv(t->sock, &m, err, sizeof(err)) != 0)
            fatalx("trainer: bad message from the monitor: %s", err);
        handle_inflight(t, &m);
        if (!t->paused)
            return 0;
    }
}

static int on_progress(const struct train_progress *p, void *ctx)
{
    struct trainer *t = ctx;
    struct proto_msg m;

    memset(&m, 0, sizeof(m));
    m.type = PROTO_PROGRESS;
    m.job = t->job_id;
    m.fd = -1;
    m.u.progress.step = p->step;
    m.u.progress.steps = p->steps;
    m.u.progress.epoch = p->epoch;
    m.u.progress.loss = isinf(p->loss) ? NAN : p->loss;
    m.u.progress.images_per_s = isinf(p->images_per_s) ? NAN : p->images_per_s;
    if (proto_send(t->sock, &m) != 0)
        fatalx("trainer: the monitor went away");
    return poll_control(t);
}

/* swt's early stop, kept in the store beside the visit's checkpoint so that a trainer killed
 * mid-visit stops after the same epoch as an undisturbed one. The record (models[<ckpt>.plateau],
 * text "epoch=E before=B,S after=B,S") holds the best validation accuracy B and the epochs
 * since it S before and after epoch E. The session calls on_epoch before it checkpoints the
 * epoch, so after a crash epoch E may run again: it then starts from `before`, and epoch E+1
 * from `after`. Training is deterministic, so a re-run epoch gives the same numbers. */
struct plateau {
    struct trainer *t;
    uint32_t patience;
    char name[96];
    uint64_t epoch; /* of the record read or written last; 0 = none */
    double before_best, after_best;
    uint32_t before_since, after_since;
};

static void plateau_name(const char *ckpt, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s.plateau", ckpt);
}

static void plateau_read(struct plateau *pl)
{
    uint8_t *blob = NULL;
    size_t len = 0;
    char text[160];
    unsigned long long epoch;
    int used = 0;

    pl->epoch = 0;
    if (store_model_get(pl->t->st, pl->name, &blob, &len) != 0)
        return;
    if (len < sizeof(text)) {
        memcpy(text, blob, len);
        text[len] = '\0';
        if (sscanf(text, "epoch=%llu before=%lf,%u after=%lf,%u%n", &epoch, &pl->before_best,
                   &pl->before_since, &pl->after_best, &pl->after_since, &used) == 5 &&
            text[used] == '\0' && isfinite(pl->before_best) && isfinite(pl->after_best))
            pl->epoch = epoch;
    }
    free(blob);
}

/* The record's stop decision after its epoch. */
static int plateau_stopped(const struct plateau *pl)
{
    return pl->epoch > 0 && pl->after_since >= (pl->patience > 0 ? pl->patience : 1);
}

/* swt: stop once validation accuracy has not improved for `patience` epochs. */
static int on_epoch_plateau(const struct train_epoch_result *r, void *ctx)
{
    struct plateau *pl = ctx;
    double best = -1;
    uint32_t since = 0;
    char text[160];
    int n, rc;

    plateau_read(pl);
    if (pl->epoch > 0 && pl->epoch == r->epoch) {
        best = pl->before_best;
        since = pl->before_since;
    } else if (pl->epoch > 0 && pl->epoch + 1 == r->epoch) {
        best = pl->after_best;
        since = pl->after_since;
    }
    pl->before_best = best;
    pl->before_since = since;
    if (!isnan(r->val_accuracy)) {
        if (r->val_accuracy > best) {
            best = r->val_accuracy;
            since = 0;
        } else {
            since++;
        }
    }
    pl->after_best = best;
    pl->after_since = since;
    pl->epoch = r->epoch;
    n = snprintf(text, sizeof(text), "epoch=%llu before=%.17g,%u after=%.17g,%u",
                 (unsigned long long)r->epoch, pl->before_best, pl->before_since, pl->after_best,
                 pl->after_since);
    if (n > 0 && (size_t)n < sizeof(text) &&
        (rc = store_model_put(pl->t->st, pl->name, text, (size_t)n)) != 0)
        log_warnx("trainer: cannot record the plateau state: %s", cwt_strerror(rc));
    return plateau_stopped(pl);
}

static int on_progress_plateau(const struct train_progress *p, void *ctx)
{
    struct plateau *pl = ctx;

    return on_progress(p, pl->t);
}

/* Input weights: from the job's descriptor, or a freshly initialised model (deterministic
 * from the roster seed). input_hash gets the BLAKE2b-256 of the weights the visit starts
 * from: the descriptor's bytes, or the fresh model's saved weights, so that a checkpoint is
 * resumed only by a job with the same input (store_visit_begin). */
static int load_input(struct trainer *t, const struct proto_msg *job, struct train_norm *norm,
                      int *has_norm, struct cycle_normsum *ns, uint8_t input_hash[32], char *err,
                      size_t errlen)
{
    struct train_model_meta meta;
    struct st_file f;
    uint8_t *buf;
    size_t len;
    int rc, from_init;

    *has_norm = 0;
    memset(ns, 0, sizeof(*ns));
    if (!job->u.job.has_weights) {
        struct eng_model *fresh;
        rc = train_model_from_recipe(t->dev, &t->roster->recipe, &fresh, err, errlen);
        if (rc != 0)
            return rc;
        eng_model_free(t->model);
        t->model = fresh;
        rc = train_state_save(t->model, &t->spec, NULL, &t->roster->recipe, TRAIN_SAVE_WEIGHTS,
                              NULL, 0, &buf, &len, err, errlen);
        if (rc != 0)
            return rc;
        crypto_generichash(input_hash, 32, buf, len, NULL, 0);
        free(buf);
        return 0;
    }
    if (job->fd < 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "job announces weights but has none");
    rc = proto_weights_from_fd(job->fd, PROTO_MAX_WEIGHTS, &buf, &len, err, errlen);
    if (rc != 0)
        return rc;
    crypto_generichash(input_hash, 32, buf, len, NULL, 0);
    /* The first visit of a federation with recipe.init (cycle 0 at the first site, or any
     * ensemble member) starts from the roster's initial weights: their parameters and
     * batch-norm statistics, a fresh optimizer, and this site's own normalisation (the
     * pretraining data's is not the federation's). Every other input is a visit's result and
     * resumes its optimizer too. */
    from_init = t->roster->recipe.has_init && job->u.job.cycle == 0 &&
                (job->u.job.hop == 0 || t->roster->recipe.heuristic == CWT_H_ENSEMBLE);
    if (from_init) {
        /* A fresh model, so that no optimizer state of an earlier job survives. */
        struct eng_model *fresh;
        rc = train_model_from_recipe(t->dev, &t->roster->recipe, &fresh, err, errlen);
        if (rc != 0) {
            free(buf);
            return rc;
        }
        eng_model_free(t->model);
        t->model = fresh;
    }
    rc = train_state_load(t->model, buf, len, from_init ? TRAIN_SAVE_WEIGHTS : TRAIN_SAVE_ALL,
                          &meta, err, errlen);
    if (rc == 0 && from_init)
        meta.has_norm = 0;
    /* The pooled normalisation statistics, as numbers (the monitor refused a bundle whose
     * text does not parse, so a failure here is a local fault). */
    if (rc == 0 && (rc = st_parse(buf, len, &f, err, errlen)) == 0) {
        for (uint32_t i = 0; rc == 0 && i < f.n_meta; i++)
            if (strcmp(f.meta[i].key, "cwt.normsum") == 0)
                rc = cycle_normsum_parse(f.meta[i].value, t->roster->n_sites, ns, err, errlen);
        st_free(&f);
    }
    free(buf);
    if (rc == 0 && meta.has_norm) {
        *norm = meta.norm;
        *has_norm = 1;
    }
    return rc;
}

/* Federation-wide normalisation (docs/daemon.md, "Normalisation"), cwt only: in cycle 0 the
 * visit trains with the normalisation it received (the first site's own) and adds this site's
 * training-split sums to the statistics after those of the hops before it; from cycle 1 on,
 * with every site's sums present, it trains with the pooled mean and std. A chain whose
 * statistics are missing or incomplete (a visit trained without them) keeps the normalisation
 * the weights carry. *out is what the visit's result carries (sites == 0: nothing). */
static int federation_norm(struct trainer *t, const struct proto_msg *job,
                           const struct cycle_normsum *in, const uint64_t *ids, size_t n,
                           struct train_norm *norm, struct cycle_normsum *out, char *err,
                           size_t errlen)
{
    struct train_norm_sums s;
    int rc;

    memset(out, 0, sizeof(*out));
    if (t->roster->recipe.heuristic != CWT_H_CWT)
        return 0;
    if (job->u.job.cycle == 0) {
        struct cycle_normsum mine;
        if (in->sites != job->u.job.hop) {
            log_warnx("trainer: the input carries the pixel statistics of %u sites before hop "
                      "%u; the federation keeps the first site's normalisation",
                      in->sites, job->u.job.hop);
            return 0;
        }
        rc = train_norm_sums(t->st, ids, n, &s);
        if (rc != 0)
            return cwt_seterr(err, errlen, rc, "cannot sum the training split's pixels: %s",
                              cwt_strerror(rc));
        memset(&mine, 0, sizeof(mine));
        mine.channels = s.channels;
        mine.pixels = s.pixels;
        for (uint32_t k = 0; k < s.channels && k < CWTD_NORMSUM_CHANNELS; k++) {
            mine.sum[k] = s.sum[k];
            mine.sumsq[k] = s.sumsq[k];
        }
        *out = *in;
        rc = cycle_normsum_add(out, &mine);
        if (rc != 0)
            return cwt_seterr(err, errlen, rc,
                              "this site's pixel statistics do not add to the federation's");
        return 0;
    }
    if (in->sites != t->roster->n_sites)
        return 0;
    memset(&s, 0, sizeof(s));
    s.channels = in->channels;
    s.pixels = in->pixels;
    for (uint32_t k = 0; k < in->channels && k < TRAIN_MAX_CHANNELS; k++) {
        s.sum[k] = in->sum[k];
        s.sumsq[k] = in->sumsq[k];
    }
    if (s.channels != norm->channels || train_norm_from_sums(&s, norm) != 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "the federation's pixel statistics have %u channels, the model %u",
                          s.channels, norm->channels);
    {
        char mean[128], std[128];
        train_norm_format(norm, mean, std, sizeof(mean));
        log_info("trainer: cycle %u trains with the normalisation pooled over %u sites: "
                 "mean %s std %s",
                 job->u.job.cycle, in->sites, mean, std);
    }
    *out = *in;
    return 0;
}

static void run_job(struct trainer *t, const struct proto_msg *job)
{
    const struct cwt_recipe *r = &t->roster->recipe;
    struct train_loader_opts lo;
    struct train_session_opts so;
    struct train_loader *loader = NULL;
    struct train_session *sess = NULL;
    struct train_metrics met;
    struct train_epoch_result last;
    struct plateau pl = {.t = t, .patience = job->u.job.patience};
    struct train_norm norm;
    struct proto_msg res;
    uint64_t *train_ids = NULL, *val_ids = NULL;
    size_t n_train = 0, n_val = 0;
    uint8_t *out = NULL;
    size_t outlen = 0;
    char err[CWT_ERRLEN] = "", history[CWTD_HISTORY_MAX + 1], epochs_text[40], best_name[80];
    int rc, has_norm, fd = -1, last_hop;
    double epochs;
    struct cycle_normsum ns_in, ns_out;
    char normsum[CWTD_NORMSUM_MAX + 1] = "";
    uint8_t input_hash[32];
    int resume = 0;

    memset(&met, 0, sizeof(met));
    memset(&ns_out, 0, sizeof(ns_out));
    t->job_id = job->job;
    t->paused = 0;
    rc = load_input(t, job, &norm, &has_norm, &ns_in, input_hash, err, sizeof(err));
    /* This visit's checkpoints or none: those of other visits go, and this visit's own stay
     * only when they were made from the same input (not an earlier run's). */
    if (rc == 0 && (rc = store_visit_begin(t->st, job->u.job.ckpt, input_hash, &resume)) != 0)
        snprintf(err, sizeof(err), "cannot clear the checkpoints of other visits: %s",
                 cwt_strerror(rc));
    resume = resume && job->u.job.resume;
    if (rc == 0 && !has_norm)
        rc = train_norm_ensure(t->st, &norm, err, sizeof(err));
    if (rc == 0)
        rc = store_list(t->st, STORE_TRAIN, &train_ids, &n_train);
    if (rc == 0)
        rc = store_list(t->st, STORE_VAL, &val_ids, &n_val);
    if (rc == 0 && n_train == 0)
        rc = cwt_seterr(err, sizeof(err), CWT_ENOENT,
                        "no training images in the store; run "
                        "'cwtctl ingest' first");
    if (rc == 0)
        rc = federation_norm(t, job, &ns_in, train_ids, n_train, &norm, &ns_out, err, sizeof(err));
    if (rc == 0 && ns_out.sites > 0 && cycle_normsum_format(&ns_out, normsum, sizeof(normsum)) != 0)
        fatalx("trainer: pixel statistics out of range");
    if (rc != 0)
        goto done;

    memset(&lo, 0, sizeof(lo));
    lo.batch_size = r->batch_size > 0 ? r->batch_size : 1;
    lo.seed = job->u.job.loader_seed;
    lo.shuffle = 1;
    lo.balanced = r->balanced_sampling;
    train_loader_augment_from_recipe(r, &lo);
    lo.norm = norm;
    rc = train_loader_new(t->st, train_ids, n_train, r->classes, &lo, &loader, err, sizeof(err));
    if (rc != 0)
        goto done;

    memset(&so, 0, sizeof(so));
    so.recipe = r;
    so.plan.unit = r->visit_unit;
    so.plan.length = r->visit_length;
    /* A site trains once per cycle: its visit number is the cycle. */
    so.plan.visit = job->u.job.cycle;
    so.plan.has_before = job->u.job.has_before ? 1 : 0;
    so.plan.steps_before = job->u.job.steps_before;
    so.sched_offset = job->u.job.epochs_before;
    so.sched_total = job->u.job.sched_total;
    so.val_ids = val_ids;
    so.n_val = n_val;
    so.ckpt_name = job->u.job.ckpt;
    so.ctx = t;
    so.on_progress = on_progress;
    if (job->u.job.kind == PROTO_JOB_PLATEAU) {
        /* swt: up to the recipe's epochs, stopping early at a validation plateau; the best
         * epoch's weights are the visit's result. */
        so.plan.unit = CWT_VISIT_EPOCHS;
        so.plan.length = r->epochs > 0 ? r->epochs : 1;
        so.plan.visit = 0;
        so.plan.has_before = 0;
        snprintf(best_name, sizeof(best_name), "%s.best", job->u.job.ckpt);
        plateau_name(job->u.job.ckpt, pl.name, sizeof(pl.name));
        so.best_name = best_name;
        so.on_epoch = on_epoch_plateau;
        so.on_progress = on_progress_plateau;
        so.ctx = &pl;
    }
    rc = train_session_new(t->model, &t->spec, loader, t->st, &so, &sess, err, sizeof(err));
    if (rc != 0)
        goto done;
    if (resume) {
        rc = train_session_resume(sess, job->u.job.ckpt, err, sizeof(err));
        if (rc == CWT_ENOENT)
            rc = 0; /* killed before the first checkpoint: start the visit afresh */
        else if (rc == 0)
            log_info("trainer: resumed %s at step %llu", job->u.job.ckpt,
                     (unsigned long long)train_session_steps_done(sess));
        if (rc != 0)
            goto done;
    }
    /* A swt visit whose plateau stop was checkpointed before a crash is over already: the
     * session would otherwise train on towards its planned epochs. */
    if (job->u.job.kind == PROTO_JOB_PLATEAU && resume && train_session_steps_done(sess) > 0 &&
        train_session_steps_done(sess) < train_session_steps_planned(sess)) {
        plateau_read(&pl);
        if (plateau_stopped(&pl) &&
            train_session_steps_done(sess) == pl.epoch * train_loader_batches_per_epoch(loader))
            rc = CWT_ESTATE;
        else
            rc = train_session_run(sess, err, sizeof(err));
    } else {
        rc = train_session_run(sess, err, sizeof(err));
    }
    /* swt keeps its best epoch whether it stopped at a plateau or ran all its epochs (the
     * last epoch may be worse than an earlier one without reaching the patience). */
    if ((rc == CWT_ESTATE || rc == 0) && job->u.job.kind == PROTO_JOB_PLATEAU) {
        uint8_t *best = NULL;
        size_t best_len = 0;
        int stopped = rc == CWT_ESTATE;
        rc = store_model_get(t->st, best_name, &best, &best_len);
        if (rc == CWT_ENOENT && !stopped)
            rc = 0; /* no epoch finished with a best: the last weights stand */
        else if (rc == 0)
            rc = train_state_load(t->model, best, best_len, TRAIN_SAVE_WEIGHTS, NULL, err,
                                  sizeof(err));
        free(best);
    }
    if (rc != 0)
        goto done;
    train_session_last_epoch(sess, &last);
    epochs =
        (double)train_session_steps_done(sess) /
        (double)(train_loader_batches_per_epoch(loader) > 0 ? train_loader_batches_per_epoch(loader)
                                                            : 1);

    /* The visit's validation: explicit, so a resumed visit reports the same numbers. */
    if (n_val > 0) {
        rc = train_evaluate(t->model, t->st, val_ids, n_val, r->classes, &norm, lo.batch_size, &met,
                            NULL, err, sizeof(err));
        if (rc != 0)
            goto done;
    }
    last_hop = job->u.job.hop + 1 == t->roster->n_sites;
    {
        struct cycle_history h;
        /* The roster's selection metric (recipe.cycle.select) is what the history sums; a NaN
         * (no validation set, or an AUC without both classes) counts as no value. */
        double sel = NAN;
        if (n_val > 0)
            sel = r->select == CWT_SEL_BALANCED_ACCURACY ? met.balanced_accuracy
                  : r->select == CWT_SEL_AUC             ? met.auc
                                                         : met.accuracy;
        cycle_history_update(&job->u.job.history, job->u.job.cycle, sel, last_hop, &h);
        if (cycle_history_format(&h, history, sizeof(history)) != 0)
            fatalx("trainer: history out of range");
    }
    snprintf(epochs_text, sizeof(epochs_text), "%.17g", job->u.job.epochs_before + epochs);
    {
        const struct train_kv extra[] = {
            {"cwt.history", history}, {"cwt.epochs", epochs_text}, {"cwt.normsum", normsum}};
        rc = train_state_save(t->model, &t->spec, &norm, r, TRAIN_SAVE_ALL, extra,
                              ns_out.sites > 0 ? 3 : 2, &out, &outlen, err, sizeof(err));
    }
    if (rc == 0 && proto_weights_to_fd(out, outlen, &fd) != 0)
        rc = cwt_seterr(err, sizeof(err), CWT_EIO, "cannot pass the weights: %s", strerror(errno));
    if (rc != 0)
        goto done;

    memset(&res, 0, sizeof(res));
    res.type = PROTO_RESULT;
    res.job = t->job_id;
    res.fd = fd;
    res.u.result.steps = train_session_steps_done(sess);
    res.u.result.steps_total =
        train_plan_steps_before(&so.plan, train_loader_batches_per_epoch(loader),
                                train_loader_size(loader)) +
        res.u.result.steps;
    res.u.result.train_samples = n_train;
    res.u.result.val_samples = n_val;
    res.u.result.epochs = epochs;
    res.u.result.train_loss = last.epoch > 0 ? last.train_loss : NAN;
    res.u.result.train_accuracy = last.epoch > 0 ? last.train_accuracy : NAN;
    res.u.result.val_loss = n_val > 0 ? met.loss : NAN;
    res.u.result.val_accuracy = n_val > 0 ? met.accuracy : NAN;
    res.u.result.val_auc = n_val > 0 ? met.auc : NAN;
    if (isinf(res.u.result.train_loss))
        res.u.result.train_loss = NAN;
    if (isinf(res.u.result.val_loss))
        res.u.result.val_loss = NAN;
    if (proto_send(t->sock, &res) != 0)
        fatalx("trainer: cannot send the result");
    log_info("trainer: visit c%u h%u done: %llu steps, val accuracy %.4f", job->u.job.cycle,
             job->u.job.hop, (unsigned long long)res.u.result.steps, res.u.result.val_accuracy);
done:
    if (rc != 0) {
        log_errorx("trainer: job failed: %s", err[0] ? err : cwt_strerror(rc));
        send_result_error(t, rc, err[0] ? err : cwt_strerror(rc));
    }
    if (fd >= 0)
        close(fd);
    if (met.recall != NULL || met.class_auc != NULL || met.confusion != NULL)
        train_metrics_free(&met);
    free(out);
    train_session_free(sess);
    train_loader_free(loader);
    free(train_ids);
    free(val_ids);
}

/* Appends path to list (at most SANDBOX_MAX_PATHS - 1 entries, NULL-terminated) if it
 * exists; a missing optional path would make Landlock refuse the whole ruleset. access() is
 * the caller's own check: under daemon.trainer_user a shader cache in a folder closed to that
 * user is left out (the driver then compiles without a cache) rather than failing the
 * ruleset. */
static void add_existing(const char **list, const char *path)
{
    int i = 0;

    if (path == NULL || path[0] == '\0' || access(path, F_OK) != 0)
        return;
    while (i < SANDBOX_MAX_PATHS - 1 && list[i] != NULL)
        i++;
    if (i < SANDBOX_MAX_PATHS - 1)
        list[i] = path;
}

/* What the trainer may open once it is confined: the device nodes of GPU drivers (DRM render
 * nodes, NVIDIA's nodes), /dev/null, the Mesa shader cache, and read-only the system folders
 * a driver may still load from. Not the store folder: the store is open already (LMDB keeps
 * its descriptors and maps), so no ledger, audit, state or cwtd-private file can be opened
 * anew; not the keys, the inbox, the outbox or the configuration. The same holds under
 * daemon.trainer_user: the store is opened before the ruleset, by the uid's own rights (the
 * daemon user's group on the main environment, ownership of checkpoints/). */
void trainer_sandbox_paths(const struct cwt_config *cfg, struct sandbox_paths *paths, char *cache,
                           size_t cachelen)
{
    const char *env;

    memset(paths, 0, sizeof(*paths));
    cache[0] = '\0';
    if ((env = getenv("MESA_SHADER_CACHE_DIR")) != NULL)
        snprintf(cache, cachelen, "%s", env);
    else if ((env = getenv("XDG_CACHE_HOME")) != NULL)
        snprintf(cache, cachelen, "%s", env);
    else if ((env = getenv("HOME")) != NULL)
        snprintf(cache, cachelen, "%s/.cache", env);
    (void)cfg;
    add_existing(paths->read_write, "/dev/dri");
    add_existing(paths->read_write, "/dev/null");
    add_existing(paths->read_write, "/dev/nvidiactl");
    add_existing(paths->read_write, "/dev/nvidia-uvm");
    add_existing(paths->read_write, "/dev/nvidia-uvm-tools");
    add_existing(paths->read_write, "/dev/nvidia-modeset");
    for (int i = 0; i < 8; i++) {
        static const char *const gpus[] = {"/dev/nvidia0", "/dev/nvidia1", "/dev/nvidia2",
                                           "/dev/nvidia3", "/dev/nvidia4", "/dev/nvidia5",
                                           "/dev/nvidia6", "/dev/nvidia7"};
        add_existing(paths->read_write, gpus[i]);
    }
    add_existing(paths->read_write, cache);
    add_existing(paths->read_only, "/dev/nvidia-caps");
    add_existing(paths->read_only, "/usr");
    add_existing(paths->read_only, "/proc");
    add_existing(paths->read_only, "/sys");
    add_existing(paths->read_only, "/opt");
}

/* The trainer process: device, store, sandbox, then jobs until the monitor goes away. */
static void __attribute__((noreturn))
trainer_main(const struct cwt_config *cfg, const struct cwt_roster *roster, int sock)
{
    struct trainer t;
    struct eng_device_info info;
    struct eng_optim_spec os;
    struct proto_msg m;
    char err[CWT_ERRLEN];
    int rc;

    memset(&t, 0, sizeof(t));
    t.cfg = cfg;
    t.roster = roster;
    t.sock = sock;
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        fatal("trainer: prctl");
    if (getppid() == 1)
        _exit(0); /* the supervisor is gone already */
    rc = eng_device_open(cfg->gpu_device, 0, &t.dev, err, sizeof(err));
    if (rc != 0)
        fatalx("trainer: %s", err);
    eng_device_get_info(t.dev, &info);
    /* The images read-only, the checkpoints read-write (storage/store.h, STORE_TRAINER). */
    rc = store_open(cfg->store_dir, STORE_TRAINER, cfg->store_max_bytes, &t.st, err, sizeof(err));
    if (rc != 0)
        fatalx("trainer: %s", err);
    rc = train_specs_from_recipe(&roster->recipe, &t.spec, &os, err, sizeof(err));
    if (rc == 0)
        rc = train_model_from_recipe(t.dev, &roster->recipe, &t.model, err, sizeof(err));
    if (rc != 0)
        fatalx("trainer: %s", err);
    /* The model's tensor table (names, dtypes, shapes and fingerprint, in the form every
     * bundle of cwtd carries: weights and optimizer state) for the monitor, which holds every
     * incoming payload against it before the bundle is recorded (the values are the seed's,
     * not trained ones). */
    {
        uint8_t *img = NULL;
        size_t imglen = 0;
        rc = train_state_save(t.model, &t.spec, NULL, &roster->recipe, TRAIN_SAVE_ALL, NULL, 0,
                              &img, &imglen, err, sizeof(err));
        if (rc == 0)
            rc = store_model_put(t.st, CWTD_MODEL_LAYOUT, img, imglen);
        free(img);
        if (rc != 0)
            fatalx("trainer: cannot store the model layout: %s",
                   err[0] != '\0' ? err : cwt_strerror(rc));
    }
    /* Everything that reads driver files or compiles pipelines is done: confine. */
    {
        struct sandbox_paths paths;
        char cache[PATH_MAX];
        trainer_sandbox_paths(cfg, &paths, cache, sizeof(cache));
        rc =
            sandbox_apply(SANDBOX_TRAINER, &paths,
                          cfg->allow_no_landlock ? SANDBOX_ALLOW_NO_LANDLOCK : 0, err, sizeof(err));
    }
    if (rc != 0)
        fatalx("trainer: %s", err);

    memset(&m, 0, sizeof(m));
    m.type = PROTO_HELLO;
    m.fd = -1;
    m.u.hello.pid = (uint32_t)getpid();
    eng_model_fingerprint(t.model, m.u.hello.model_fp);
    snprintf(m.u.hello.device, sizeof(m.u.hello.device), "%s (%s, %s)", info.name, info.type,
             info.driver);
    for (char *p = m.u.hello.device; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    if (proto_send(sock, &m) != 0)
        fatalx("trainer: cannot greet the monitor");
    log_info("trainer: ready on %s", m.u.hello.device);

    for (;;) {
        rc = proto_recv(sock, &m, err, sizeof(err));
        if (rc == CWT_ENOENT)
            _exit(0);
        if (rc != 0)
            fatalx("trainer: bad message from the monitor: %s", rc == CWT_EIO ? "recv" : err);
        if (m.type == PROTO_JOB)
            run_job(&t, &m);
        else if (m.type != PROTO_PAUSE && m.type != PROTO_RESUME)
            log_errorx("trainer: unexpected message type %u", (unsigned)m.type);
        if (m.fd >= 0)
            close(m.fd);
    }
}

/* Waits for the trainer pid to end, and ends it itself when the monitor's end of sock closes
 * first: a trainer stuck in a driver call never reads the closed socket, and under
 * daemon.trainer_user or daemon.trainer_socket the monitor cannot signal it. poll() with no
 * events asked reports the hang-up alone and leaves the trainer's messages queued. Returns
 * waitpid's result; exits when the monitor is gone. */
static pid_t wait_trainer(pid_t pid, int sock, int *status)
{
    for (;;) {
        struct pollfd p = {.fd = sock, .events = 0, .revents = 0};
        pid_t got = waitpid(pid, status, WNOHANG);

        if (got != 0 && !(got < 0 && errno == EINTR))
            return got;
        if (poll(&p, 1, 200) > 0 && (p.revents & (POLLHUP | POLLERR)) != 0) {
            log_info("trainer supervisor: the monitor is gone; ending trainer %d", (int)pid);
            (void)kill(pid, SIGKILL);
            while (waitpid(pid, status, 0) < 0 && errno == EINTR)
                ;
            _exit(0);
        }
    }
}

void trainer_supervisor_main(const struct cwt_config *cfg, const struct cwt_roster *roster,
                             int sock)
{
    /* The monitor when cwtd forked this process; the service manager when it started it for
     * daemon.trainer_socket, where the closed socket alone says the monitor is gone. */
    const pid_t parent = getppid();
    unsigned failures = 0;

    /* Under daemon.trainer_user the kernel does not deliver this signal: it checks it as if
     * the dying monitor, another uid, had sent it. There the monitor's closed socket ends the
     * trainer, and this process exits when it cannot report that death. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        fatal("trainer supervisor: prctl");
    if (prctl(PR_SET_NAME, "cwtd-trainer") != 0)
        log_warn("trainer supervisor: cannot set the process name");
    /* The supervisor only forks and reaps; it needs no capability (its trainers drop theirs
     * again in sandbox_apply). Seccomp cannot narrow it as the monitor is narrowed: filters
     * are inherited across fork, and the trainer needs executable memory. */
    {
        char err[CWT_ERRLEN];
        if (sandbox_drop_capabilities(err, sizeof(err)) != 0)
            fatalx("trainer supervisor: %s", err);
    }
    for (;;) {
        double started = cwt_monotonic();
        int status;
        pid_t pid, got;

        if (getppid() != parent)
            _exit(0);
        pid = fork();
        if (pid < 0) {
            log_error("trainer supervisor: fork");
            sleep(5);
            continue;
        }
        if (pid == 0)
            trainer_main(cfg, roster, sock);
        got = wait_trainer(pid, sock, &status);
        if (got < 0)
            fatal("trainer supervisor: waitpid");
        {
            struct proto_msg m;
            memset(&m, 0, sizeof(m));
            m.type = PROTO_DIED;
            m.fd = -1;
            m.u.died.wait_status = status;
            m.u.died.pid = (uint32_t)pid;
            if (proto_send(sock, &m) != 0)
                _exit(0); /* the monitor is gone: so are we */
        }
        /* A trainer that ran a while gets restarted at once; one that keeps failing at start
         * (no device, store locked) is retried more and more slowly, up to a minute. */
        failures = cwt_monotonic() - started > 60 ? 0 : failures + 1;
        if (failures > 0) {
            unsigned pause = failures > 6 ? 60 : 1u << (failures - 1);
            sleep(pause);
        }
    }
}
