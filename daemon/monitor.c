/*
 * monitor.c - the monitor process: store, inbox, outbox, bundles, control socket, and
 * supervision of the trainer, in one event loop (epoll over signalfd, inotify, timerfd, the
 * control socket and the trainer socket). It holds no secret key: signatures and content keys
 * come from the key process (daemon/keyproc.h) through m->kops.
 *
 * Crash safety (DESIGN section 7) rests on the order of commits:
 *   incoming: payload -> models[cwtd.input], then the state (training, in_bundle = its id),
 *             then the ledger (bundle_accept), then the inbox file is removed. A restart that
 *             finds the file again recognises it by id and only finishes the last steps.
 *   training: the trainer checkpoints into models[cwtd.visit.cC.hH] of the checkpoint
 *             environment, which the monitor holds read-only (STORE_MONITOR), and a resumed
 *             visit gives bit-identical weights. The trainer alone clears stale checkpoints.
 *   outgoing: result -> models[cwtd.result] and state (sealing), then seal into the private
 *             folder and record it as sent, then the state (waiting, out_name), then the copy
 *             into the outbox (retried until it works). What has left the site is never
 *             sealed twice; a crash before the state commit reseals a bundle nobody saw.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/log.h"
#include "crypto/bundle.h"
#include "crypto/keys.h"
#include "cycle/inbox.h"
#include "daemon/daemon.h"
#include "daemon/keyproc.h"
#include "daemon/proto.h"
#include "sandbox/sandbox.h"
#include "engine/train/train.h"
#include "storage/safetensors.h"
#include "storage/store.h"

#define TICK_SECONDS        1
#define SETTLE_SECONDS      2  /* a file found by rescan must be this old (copy finished) */
#define RETRY_SECONDS       30 /* after a failed training or sealing */
#define CONTROL_TIMEOUT_MS  2000
#define MAX_PAYLOAD_IN_META 65536
#define INBOX_BACKOFF_MAX   60 /* seconds between retries after a local error */
#define REFUSALS_PER_MINUTE 10 /* control-refused records (and log lines) per minute */

#define UNREADABLE_MAX 8

struct monitor {
    const struct cwt_config *cfg;
    const struct cwt_roster *roster;
    uint8_t *init; /* recipe.init's weights, hash checked at start-up (NULL: none) */
    size_t init_len;
    uint32_t n, me;
    uint8_t roster_fp[32];
    struct site_keys keys; /* public keys only (keys_load_public) */
    struct keyproc_client kp;
    struct key_ops kops; /* keyproc_ops(&kp): sign and open_key in the key process */
    struct store *st;
    char private_dir[PATH_MAX];
    char rejected_dir[PATH_MAX];
    /* The inbox and outbox folders cwtd started with: the inotify watch and the Landlock
     * rules hold these inodes, not the paths. */
    dev_t inbox_dev, outbox_dev;
    ino_t inbox_ino, outbox_ino;
    int epfd, sigfd, inofd, timerfd, ctlfd, tsock, notifyfd;
    double watchdog_every, next_watchdog; /* systemd's WatchdogSec=, halved; 0: none */
    pid_t supervisor;           /* -1: started by the service manager (daemon.trainer_socket) */
    int trainer_peer_unchecked; /* the same: the sender of the first message is to check */
    gid_t ctl_gid;
    struct cycle_state cs;
    int stopping;
    double next_rescan, retry_at;
    /* trainer */
    int trainer_ready, have_model_fp;
    uint8_t model_fp[32];
    char device[PROTO_TEXT_MAX + 1];
    uint32_t job_seq, job_id;
    int job_inflight, have_progress;
    struct proto_progress progress;
    uint32_t trainer_restarts;
    /* for status */
    char outbox_error[CWT_ERRLEN];
    char last_error[CWT_ERRLEN];
    char held[CWT_ERRLEN];
    /* A local error (EIO, ENOSPC, EFBIG, EDQUOT...) while handling an inbox file: the file is
     * held and retried with a growing pause; audited once per distinct error. */
    char inbox_error[CWT_ERRLEN];
    /* The control client being served ("uid U pid P"), named in the audit records of what it
     * asks; refusals are audited at most REFUSALS_PER_MINUTE times a minute. */
    char ctl_who[64];
    double refusal_window;
    uint32_t refusals, refusals_dropped;
    int exit_code;
    double inbox_retry_at;
    uint32_t inbox_backoff;
    /* The roster model's tensors (CWTD_MODEL_LAYOUT, from the trainer). */
    int have_layout;
    struct st_file layout;
    uint8_t *layout_blob;
    size_t layout_len;
    /* Inbox files held because this user may not read them: each is logged once, and a
     * mode or owner change on one of them is handled at once. */
    char unreadable[UNREADABLE_MAX][NAME_MAX + 1];
};

/* ------------------------------------------------------------------ state */

static int state_save(struct monitor *m)
{
    char text[CWTD_STATE_MAX];
    int len = cycle_state_encode(&m->cs, text, sizeof(text));
    int rc;

    if (len < 0)
        fatalx("cannot encode the daemon state (%d bytes at most): %s", CWTD_STATE_MAX,
               cwt_strerror(len));
    rc = store_meta_put(m->st, CWTD_META_STATE, text, (size_t)len);
    if (rc != 0)
        log_errorx("cannot save the daemon state: %s", cwt_strerror(rc));
    return rc;
}

static void state_load(struct monitor *m)
{
    char text[CWTD_STATE_MAX], err[CWT_ERRLEN];
    size_t len = 0;
    int rc;

    rc = store_meta_get(m->st, CWTD_META_STATE, text, sizeof(text) - 1, &len);
    if (rc == CWT_ENOENT) {
        memset(&m->cs, 0, sizeof(m->cs));
        cycle_history_init(&m->cs.history);
        m->cs.phase = CWTD_IDLE;
        m->cs.since = cwt_now();
        /* Saved at once: "waiting for a bundle from X since T" keeps its T across restarts. */
        (void)state_save(m);
        return;
    }
    if (rc != 0)
        fatalx("cannot read the daemon state from the store: %s", cwt_strerror(rc));
    text[len] = '\0';
    if (cycle_state_decode(text, len, &m->cs, err, sizeof(err)) != 0)
        fatalx("the daemon state in the store is damaged: %s", err);
}

static const char *site_id(const struct monitor *m, uint32_t i)
{
    return i < m->n ? m->roster->sites[i].id : "?";
}

static uint32_t predecessor(const struct monitor *m)
{
    return (m->me + m->n - 1) % m->n;
}

/* Sets the phase and when it began; the caller saves. */
static void set_phase(struct monitor *m, enum cwtd_phase p)
{
    m->cs.phase = p;
    m->cs.since = cwt_now();
    if (p == CWTD_WAITING && m->roster->recipe.heuristic != CWT_H_ENSEMBLE)
        snprintf(m->cs.waiting_from, sizeof(m->cs.waiting_from), "%s", site_id(m, predecessor(m)));
    else
        m->cs.waiting_from[0] = '\0';
}

static int is_ensemble(const struct monitor *m)
{
    return m->roster->recipe.heuristic == CWT_H_ENSEMBLE;
}

static void mask_set(struct cycle_state *cs, uint32_t i)
{
    if (i < 32)
        cs->ensemble_mask_lo |= 1u << i;
    else if (i < 64)
        cs->ensemble_mask_hi |= 1u << (i - 32);
}

static int mask_full(const struct monitor *m)
{
    for (uint32_t i = 0; i < m->n; i++) {
        uint32_t bit =
            i < 32 ? (m->cs.ensemble_mask_lo >> i) & 1 : (m->cs.ensemble_mask_hi >> (i - 32)) & 1;
        if (!bit)
            return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------ trainer jobs */

static int private_path(const struct monitor *m, const char *name, char *out, size_t outlen)
{
    return file_join(out, outlen, m->private_dir, name);
}

/* Starts the current visit on the trainer when everything is in place. */
static void start_job(struct monitor *m)
{
    const struct cwt_recipe *r = &m->roster->recipe;
    struct proto_msg msg;
    uint8_t *blob = NULL;
    size_t len = 0;
    int fd = -1, rc;

    if (m->cs.phase != CWTD_TRAINING || !m->trainer_ready || m->job_inflight || m->cs.paused ||
        m->stopping || cwt_monotonic() < m->retry_at)
        return;
    memset(&msg, 0, sizeof(msg));
    msg.type = PROTO_JOB;
    msg.job = ++m->job_seq;
    msg.fd = -1;
    msg.u.job.kind = r->heuristic == CWT_H_SWT ? PROTO_JOB_PLATEAU : PROTO_JOB_VISIT;
    msg.u.job.cycle = m->cs.cycle;
    msg.u.job.hop = m->cs.hop;
    /* Checkpoint names are unique per visit, and the trainer resumes one only when it was
     * made from the same input weights (store_visit_begin): this visit's checkpoint or none. */
    msg.u.job.resume = 1;
    msg.u.job.has_weights = m->cs.has_input ? 1 : 0;
    msg.u.job.patience = r->patience;
    msg.u.job.loader_seed = cycle_loader_seed(r->seed, m->cs.cycle, m->cs.hop);
    msg.u.job.epochs_before = m->cs.epochs_before;
    /* The remainder of fractional visits carries from this site's own committed visits when
     * they are the ones before this cycle; otherwise (the state of an older cwtd) the trainer
     * derives the steps before from the cycle. */
    if (m->cs.carry_visits == m->cs.cycle) {
        msg.u.job.has_before = 1;
        msg.u.job.steps_before = m->cs.carry_steps;
    }
    msg.u.job.sched_total = r->visit_unit == CWT_VISIT_EPOCHS && !is_ensemble(m)
                                ? r->visit_length * (double)m->n * (double)r->cycles
                                : 0;
    cycle_ckpt_name(m->cs.cycle, m->cs.hop, msg.u.job.ckpt, sizeof(msg.u.job.ckpt));
    msg.u.job.history = m->cs.history;
    if (m->cs.has_input) {
        rc = store_model_get(m->st, CWTD_CKPT_INPUT, &blob, &len);
        if (rc == 0)
            rc = proto_weights_to_fd(blob, len, &fd);
        free(blob);
        if (rc != 0) {
            snprintf(m->last_error, sizeof(m->last_error),
                     "cannot hand the input weights to "
                     "the trainer: %s",
                     cwt_strerror(rc));
            log_warnx("%s", m->last_error);
            m->retry_at = cwt_monotonic() + RETRY_SECONDS;
            return;
        }
        msg.fd = fd;
    }
    rc = proto_send(m->tsock, &msg);
    if (fd >= 0)
        close(fd);
    if (rc != 0) {
        log_error("cannot send a job to the trainer");
        return;
    }
    m->job_id = msg.job;
    m->job_inflight = 1;
    m->have_progress = 0;
    log_info("training cycle %u, hop %u%s", m->cs.cycle, m->cs.hop,
             !m->cs.has_input ? " from the roster's seed"
             : m->init != NULL && m->cs.cycle == 0 && !m->cs.has_parent
                 ? " from the roster's initial weights"
                 : "");
}

/* Reads a metadata value of a safetensors image into out ("" if absent). */
static void payload_meta(const uint8_t *buf, size_t len, const char *key, char *out, size_t outlen)
{
    struct st_file f;
    char err[CWT_ERRLEN];

    out[0] = '\0';
    if (st_parse(buf, len, &f, err, sizeof(err)) != 0)
        return;
    for (uint32_t i = 0; i < f.n_meta; i++)
        if (strcmp(f.meta[i].key, key) == 0) {
            snprintf(out, outlen, "%s", f.meta[i].value);
            break;
        }
    st_free(&f);
}

/* ------------------------------------------------------------------ outbox */

static void outbox_flush(struct monitor *m)
{
    char src[PATH_MAX], dst[PATH_MAX], err[CWT_ERRLEN];
    int rc;

    if (!m->cs.has_out || m->cs.out_written)
        return;
    if (private_path(m, m->cs.out_name, src, sizeof(src)) != 0 ||
        file_join(dst, sizeof(dst), m->cfg->outbox_dir, m->cs.out_name) != 0)
        fatalx("outbox path too long");
    rc = file_copy_atomic(src, dst, 0644, err, sizeof(err));
    if (rc != 0) {
        if (strcmp(err, m->outbox_error) != 0) {
            log_warnx("cannot write to the outbox: %s (will retry)", err);
            (void)audit_append(m->st, "outbox-error", "%s", err);
        }
        snprintf(m->outbox_error, sizeof(m->outbox_error), "%s", err);
        return;
    }
    m->outbox_error[0] = '\0';
    m->cs.out_written = 1;
    state_save(m);
    log_info("bundle %s is in the outbox", m->cs.out_name);
}

/* A later bundle proved that the last one we sent arrived: the outbox copy can go. */
static void outbox_proven(struct monitor *m, uint64_t seq_seen)
{
    char path[PATH_MAX];

    if (!m->cs.has_out || m->cs.out_kind != BUNDLE_KIND_CYCLE || m->cs.out_seq >= seq_seen ||
        !m->cs.out_written)
        return;
    if (file_join(path, sizeof(path), m->cfg->outbox_dir, m->cs.out_name) == 0 && unlink(path) == 0)
        log_info("removed %s from the outbox: a later bundle proves it arrived", m->cs.out_name);
}

/* ------------------------------------------------------------------ sealing */

static void fill_summary(const struct cycle_state *cs, struct bundle_summary *s)
{
    s->local_epochs = cs->sum_epochs;
    s->local_steps = cs->sum_steps;
    s->train_samples = cs->sum_train_n;
    s->val_samples = cs->sum_val_n;
    s->train_loss = cs->sum_train_loss;
    s->train_accuracy = cs->sum_train_acc;
    s->val_loss = cs->sum_val_loss;
    s->val_accuracy = cs->sum_val_acc;
    s->val_auc = cs->sum_val_auc;
}

static void install_final(struct monitor *m, const uint8_t *blob, size_t len)
{
    int rc = store_model_put(m->st, TRAIN_CKPT_MODEL, blob, len);

    if (rc != 0)
        fatalx("cannot install the final model: %s", cwt_strerror(rc));
    crypto_generichash(m->cs.final_hash, 32, blob, len, NULL, 0);
}

/* The best model rule (docs/daemon.md, "The final model"): the federation keeps the model
 * that ended the cycle with the best mean local validation metric (cwt.history's best and
 * bestc, strictly better only), as `simulate` does. Every cycle ends at the last hop, so the
 * last site of the roster knows each cycle's mean and holds each cycle's closing model: it
 * keeps a copy (CWTD_CKPT_BEST) whenever the cycle it closes becomes the best, and the final
 * bundle it seals carries that copy instead of the last visit's result. Called at the last
 * hop of a cwt federation; on the final hop (stop) *blob may be replaced by the best copy
 * (the caller frees it either way). A copy lost from the store leaves the last visit's model
 * as the final one, with a warning in the log and the audit: a federation that never ends
 * would be worse. */
static void keep_best(struct monitor *m, const struct cycle_history *h, int stop, uint8_t **blob,
                      size_t *len)
{
    uint8_t *best = NULL, hash[32];
    size_t blen = 0;
    char hex[65];
    int rc;

    if (h->best < 0)
        return; /* no validation data: the last model is all there is */
    if (h->bestc == m->cs.cycle) {
        rc = store_model_put(m->st, CWTD_CKPT_BEST, *blob, *len);
        if (rc != 0)
            fatalx("cannot keep the best cycle's model: %s", cwt_strerror(rc));
        crypto_generichash(hash, 32, *blob, *len, NULL, 0);
        cwt_hex(hash, 32, hex);
        (void)audit_append(m->st, "model-best",
                           "cycle %u is the best so far (mean validation %.6f), model %s",
                           m->cs.cycle, h->best, hex);
        return;
    }
    if (!stop)
        return;
    rc = store_model_get(m->st, CWTD_CKPT_BEST, &best, &blen);
    if (rc != 0) {
        log_warnx("the best cycle's model (cycle %u) is missing, the last visit's model is the "
                  "final one: %s",
                  h->bestc, cwt_strerror(rc));
        (void)audit_append(m->st, "model-best-missing", "cycle %u: %s", h->bestc, cwt_strerror(rc));
        return;
    }
    free(*blob);
    *blob = best;
    *len = blen;
    log_info("the final model is cycle %u's (mean validation %.4f), not the last visit's", h->bestc,
             h->best);
    (void)audit_append(m->st, "model-best-final", "the final model is cycle %u's", h->bestc);
}

/* Seals the committed visit result and hands it to the outbox. */
static void do_seal(struct monitor *m)
{
    const struct cwt_recipe *r = &m->roster->recipe;
    struct bundle_header hdr;
    struct bundle_info info;
    char payload[PATH_MAX], out[PATH_MAX], old[PATH_MAX], name[NAME_MAX + 1];
    char err[CWT_ERRLEN], history[CWTD_HISTORY_MAX + 1], prev_name[NAME_MAX + 1];
    uint8_t *blob = NULL;
    size_t len = 0;
    int rc, stop = 0;

    if (m->cs.phase != CWTD_SEALING || cwt_monotonic() < m->retry_at)
        return;
    if (!m->have_model_fp) {
        snprintf(m->held, sizeof(m->held), "sealing waits for the trainer's model fingerprint");
        return;
    }
    rc = store_model_get(m->st, CWTD_CKPT_RESULT, &blob, &len);
    if (rc != 0)
        fatalx("the committed visit result is missing from the store: %s", cwt_strerror(rc));
    if (private_path(m, "out.safetensors", payload, sizeof(payload)) != 0)
        fatalx("private path too long");

    memset(&hdr, 0, sizeof(hdr));
    hdr.cycle = m->cs.cycle;
    hdr.hop = m->me;
    hdr.has_parent = (uint8_t)m->cs.has_parent;
    memcpy(hdr.parent_hash, m->cs.parent_hash, 32);
    memcpy(hdr.model_fp, m->model_fp, 32);
    fill_summary(&m->cs, &hdr.summary);
    if (is_ensemble(m)) {
        hdr.kind = BUNDLE_KIND_ENSEMBLE_MEMBER;
        hdr.has_parent = 0;
    } else {
        int last_hop = m->me + 1 == m->n;
        struct cycle_history h;
        payload_meta(blob, len, "cwt.history", history, sizeof(history));
        /* Our own trainer wrote it; one that does not parse counts as no history. */
        if (cycle_history_parse(history, &h, err, sizeof(err)) != 0)
            log_warnx("the visit result's cwt.history is ignored: %s", err);
        if (r->heuristic == CWT_H_SWT)
            stop = last_hop; /* one pass round the roster */
        else
            stop = last_hop && cycle_should_stop(&h, m->cs.cycle, r->cycles, r->patience);
        hdr.kind = stop ? BUNDLE_KIND_FINAL : BUNDLE_KIND_CYCLE;
        if (last_hop && r->heuristic == CWT_H_CWT)
            keep_best(m, &h, stop, &blob, &len);
    }
    rc = file_write_atomic(payload, blob, len, 0600, err, sizeof(err));
    if (rc != 0)
        goto fail;
    if (hdr.kind == BUNDLE_KIND_CYCLE) {
        hdr.n_recipients = 1;
        snprintf(hdr.recipients[0], sizeof(hdr.recipients[0]), "%s",
                 site_id(m, (m->me + 1) % m->n));
    } else if (m->n == 1) {
        hdr.n_recipients = 1;
        snprintf(hdr.recipients[0], sizeof(hdr.recipients[0]), "%s", site_id(m, 0));
    } else {
        for (uint32_t i = 0; i < m->n; i++)
            if (i != m->me)
                snprintf(hdr.recipients[hdr.n_recipients++], sizeof(hdr.recipients[0]), "%s",
                         site_id(m, i));
    }
    rc = cycle_bundle_name(m->roster->federation, hdr.cycle, hdr.hop, bundle_kind_name(hdr.kind),
                           hdr.kind == BUNDLE_KIND_CYCLE ? hdr.recipients[0] : "all", name,
                           sizeof(name));
    if (rc != 0 || private_path(m, name, out, sizeof(out)) != 0) {
        rc = cwt_seterr(err, sizeof(err), CWT_ETOOBIG, "bundle name too long");
        goto fail;
    }
    rc =
        bundle_seal_ops(&m->kops, &m->keys, m->roster, &hdr, payload, out, &info, err, sizeof(err));
    if (rc != 0)
        goto fail;
    rc = bundle_record_sent(m->st, &info);
    if (rc != 0 && rc != CWT_EB_REPLAY) {
        snprintf(err, sizeof(err), "cannot record the sealed bundle in the ledger: %s",
                 cwt_strerror(rc));
        goto fail;
    }
    {
        char idhex[33];
        cwt_hex(info.hdr.bundle_id, 16, idhex);
        (void)audit_append(m->st, "bundle-sealed",
                           "bundle %s kind %s cycle %u hop %u seq %" PRIu64 " to %s%s file %s",
                           idhex, bundle_kind_name(hdr.kind), hdr.cycle, hdr.hop, info.hdr.sequence,
                           hdr.recipients[0], hdr.n_recipients > 1 ? " and others" : "", name);
    }
    snprintf(prev_name, sizeof(prev_name), "%s", m->cs.has_out ? m->cs.out_name : "");
    m->cs.has_out = 1;
    m->cs.out_seq = info.hdr.sequence;
    m->cs.out_kind = hdr.kind;
    m->cs.out_written = 0;
    snprintf(m->cs.out_name, sizeof(m->cs.out_name), "%s", name);
    if (hdr.kind == BUNDLE_KIND_FINAL) {
        install_final(m, blob, len);
        set_phase(m, CWTD_FINISHED);
        (void)audit_append(m->st, "model-final", "final model installed after cycle %u", hdr.cycle);
    } else if (hdr.kind == BUNDLE_KIND_ENSEMBLE_MEMBER) {
        char member[CWT_ID_MAX + 16];
        snprintf(member, sizeof(member), CWTD_ENSEMBLE_FMT, site_id(m, m->me));
        if ((rc = store_model_put(m->st, member, blob, len)) != 0)
            fatalx("cannot store the ensemble member: %s", cwt_strerror(rc));
        mask_set(&m->cs, m->me);
        set_phase(m, mask_full(m) ? CWTD_FINISHED : CWTD_WAITING);
    } else {
        set_phase(m, CWTD_WAITING);
    }
    state_save(m);
    log_info("sealed %s", name);
    /* Only the latest sealed bundle is kept for resend. */
    if (prev_name[0] != '\0' && strcmp(prev_name, name) != 0 &&
        private_path(m, prev_name, old, sizeof(old)) == 0)
        (void)unlink(old);
    (void)unlink(payload);
    free(blob);
    m->last_error[0] = '\0';
    outbox_flush(m);
    return;
fail:
    free(blob);
    snprintf(m->last_error, sizeof(m->last_error), "sealing failed: %s", err);
    log_warnx("%s (will retry)", m->last_error);
    (void)audit_append(m->st, "seal-failed", "%s", err);
    m->retry_at = cwt_monotonic() + RETRY_SECONDS;
}

/* ------------------------------------------------------------------ trainer messages */

/* Loads the roster model's tensor table that the trainer stored before its greeting; its
 * "fingerprint" must be the one the trainer announced. Without it no bundle is opened. */
static int load_layout(struct monitor *m)
{
    char err[CWT_ERRLEN], want[65];
    const char *fp;
    int rc;

    if (m->have_layout) {
        st_free(&m->layout);
        free(m->layout_blob);
        m->layout_blob = NULL;
        m->have_layout = 0;
    }
    rc = store_model_get(m->st, CWTD_MODEL_LAYOUT, &m->layout_blob, &m->layout_len);
    if (rc == 0)
        rc = st_parse(m->layout_blob, m->layout_len, &m->layout, err, sizeof(err));
    if (rc == 0) {
        m->have_layout = 1;
        cwt_hex(m->model_fp, 32, want);
        fp = st_meta_get(&m->layout, "fingerprint");
        if (fp != NULL && strcmp(fp, want) == 0)
            return 0;
        rc = CWT_EB_MODEL;
    }
    snprintf(m->last_error, sizeof(m->last_error),
             "the trainer's model layout is missing or does not match its fingerprint: %s",
             cwt_strerror(rc));
    log_warnx("%s", m->last_error);
    return rc;
}

static void on_result(struct monitor *m, struct proto_msg *msg)
{
    const struct proto_result *r = &msg->u.result;
    uint8_t *blob = NULL;
    size_t len = 0;
    char err[CWT_ERRLEN];
    int rc;

    if (!m->job_inflight || msg->job != m->job_id) {
        log_warnx("ignoring a result for job %u", msg->job);
        return;
    }
    m->job_inflight = 0;
    m->have_progress = 0;
    if (r->status != 0) {
        snprintf(m->last_error, sizeof(m->last_error), "training failed: %s", r->message);
        log_warnx("%s (will retry in %d s)", m->last_error, RETRY_SECONDS);
        (void)audit_append(m->st, "training-failed", "cycle %u hop %u: %s", m->cs.cycle, m->cs.hop,
                           r->message);
        m->retry_at = cwt_monotonic() + RETRY_SECONDS;
        return;
    }
    if (msg->fd < 0) {
        log_warnx("the trainer's result carries no weights");
        m->retry_at = cwt_monotonic() + RETRY_SECONDS;
        return;
    }
    rc = proto_weights_from_fd(msg->fd, PROTO_MAX_WEIGHTS, &blob, &len, err, sizeof(err));
    if (rc != 0) {
        log_errorx("cannot read the trainer's weights: %s", err);
        m->retry_at = cwt_monotonic() + RETRY_SECONDS;
        return;
    }
    /* The checkpoint that the next bundle depends on: committed before anything is sealed. */
    rc = store_model_put(m->st, CWTD_CKPT_RESULT, blob, len);
    free(blob);
    if (rc != 0) {
        snprintf(m->last_error, sizeof(m->last_error), "cannot store the visit result: %s",
                 cwt_strerror(rc));
        log_warnx("%s", m->last_error);
        m->retry_at = cwt_monotonic() + RETRY_SECONDS;
        return;
    }
    m->cs.sum_steps = r->steps;
    if (m->cs.cycle == UINT32_MAX || r->steps_total < r->steps)
        fatalx("the trainer's result counts %" PRIu64 " steps in all for a visit of %" PRIu64,
               r->steps_total, r->steps);
    m->cs.carry_visits = m->cs.cycle + 1;
    m->cs.carry_steps = r->steps_total;
    m->cs.sum_train_n = r->train_samples;
    m->cs.sum_val_n = r->val_samples;
    m->cs.sum_epochs = r->epochs;
    m->cs.sum_train_loss = r->train_loss;
    m->cs.sum_train_acc = r->train_accuracy;
    m->cs.sum_val_loss = r->val_loss;
    m->cs.sum_val_acc = r->val_accuracy;
    m->cs.sum_val_auc = r->val_auc;
    if (m->cs.n_metrics < CWTD_MAX_METRICS) {
        m->cs.metrics[m->cs.n_metrics].cycle = m->cs.cycle;
        m->cs.metrics[m->cs.n_metrics].val_accuracy = r->val_accuracy;
        m->cs.n_metrics++;
    }
    set_phase(m, CWTD_SEALING);
    if (state_save(m) != 0)
        fatalx("cannot commit the visit result");
    (void)audit_append(m->st, "visit-trained",
                       "cycle %u hop %u steps %" PRIu64 " val_accuracy %.4f", m->cs.cycle,
                       m->cs.hop, r->steps, r->val_accuracy);
    do_seal(m);
}

/* With daemon.trainer_socket the trainer supervisor is whatever the service manager started,
 * so the monitor checks who it is before it hands it a job. The first message carries its
 * sender's credentials (SO_PASSCRED, set by cwtd.c before it connected), read here without
 * taking the message. A sender of the monitor's own uid, or root, could write what the
 * monitor keeps (the main store, ledger, audit, state) and stops cwtd; any other uid is one of
 * its own (inside cwtd.service's user namespace an unmapped uid, cwt-train's, shows as the
 * overflow uid, which is neither). SO_PASSCRED is then turned off, so that later messages
 * carry no record that proto_recv refuses. Nothing queued yet, or a closed socket: left to
 * proto_recv. */
static void check_trainer_peer(struct monitor *m)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(8 * sizeof(int))];
    } control;
    struct ucred cred = {.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
    char byte;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr mh;
    int have = 0, off = 0;
    ssize_t n;

    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control.buf;
    mh.msg_controllen = sizeof(control.buf);
    do
        n = recvmsg(m->tsock, &mh, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0 || (n == 0 && mh.msg_controllen == 0))
        return;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET)
            continue;
        if (cm->cmsg_type == SCM_CREDENTIALS && cm->cmsg_len >= CMSG_LEN(sizeof(cred))) {
            memcpy(&cred, CMSG_DATA(cm), sizeof(cred));
            have = 1;
        } else if (cm->cmsg_type == SCM_RIGHTS) {
            /* A peek hands out copies of passed descriptors; proto_recv gets its own. */
            size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < nfd; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                close(fd);
            }
        }
    }
    if (!have)
        fatalx("the first message on the trainer socket %s carries no credentials",
               m->cfg->trainer_socket);
    if (cred.uid == geteuid() || cred.uid == 0)
        fatalx("the trainer on %s runs as uid %u, %s: it could write what the monitor keeps; "
               "run the unit that serves the socket (cwtd-trainer@.service) as "
               "daemon.trainer_user (%s)",
               m->cfg->trainer_socket, (unsigned)cred.uid,
               cred.uid == 0 ? "root" : "the monitor's own", m->cfg->trainer_user);
    if (setsockopt(m->tsock, SOL_SOCKET, SO_PASSCRED, &off, sizeof(off)) != 0)
        fatal("setsockopt(SO_PASSCRED)");
    m->trainer_peer_unchecked = 0;
    log_info("the trainer on %s runs as uid %u (pid %d)", m->cfg->trainer_socket,
             (unsigned)cred.uid, (int)cred.pid);
}

static void on_trainer_message(struct monitor *m)
{
    struct proto_msg msg;
    char err[CWT_ERRLEN];
    int rc;

    if (m->trainer_peer_unchecked)
        check_trainer_peer(m);
    rc = proto_recv(m->tsock, &msg, err, sizeof(err));
    if (rc == CWT_ENOENT && m->supervisor < 0)
        fatalx("the trainer on %s closed the connection; its reason is in the log of the unit "
               "that serves the socket (journalctl -u 'cwtd-trainer@*')",
               m->cfg->trainer_socket);
    if (rc == CWT_ENOENT)
        fatalx("the trainer supervisor closed its socket");
    if (rc == CWT_EIO && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (rc != 0) {
        log_errorx("bad message from the trainer: %s", rc == CWT_EIO ? strerror(errno) : err);
        return;
    }
    switch (msg.type) {
    case PROTO_HELLO:
        m->trainer_ready = 1;
        snprintf(m->device, sizeof(m->device), "%s", msg.u.hello.device);
        memcpy(m->model_fp, msg.u.hello.model_fp, 32);
        m->have_model_fp = load_layout(m) == 0;
        (void)store_meta_put(m->st, "cwtd.device", m->device, strlen(m->device));
        log_info("trainer %u ready on %s", msg.u.hello.pid, m->device);
        start_job(m);
        do_seal(m);
        /* Files held while the trainer was starting are handled now, not at the next rescan. */
        m->next_rescan = 0;
        break;
    case PROTO_PROGRESS:
        if (m->job_inflight && msg.job == m->job_id) {
            m->progress = msg.u.progress;
            m->have_progress = 1;
        }
        break;
    case PROTO_RESULT:
        on_result(m, &msg);
        break;
    case PROTO_DIED: {
        int st = msg.u.died.wait_status;
        char how[64];
        if (WIFSIGNALED(st))
            snprintf(how, sizeof(how), "killed by signal %d", WTERMSIG(st));
        else
            snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(st));
        log_warnx("trainer %u %s; restarting it%s", msg.u.died.pid, how,
                  m->job_inflight ? " and the visit from its last checkpoint" : "");
        (void)audit_append(m->st, "trainer-died", "pid %u %s during %s", msg.u.died.pid, how,
                           m->job_inflight ? "a visit" : "idle time");
        m->trainer_ready = 0;
        m->job_inflight = 0;
        m->have_progress = 0;
        m->trainer_restarts++;
        break;
    }
    default:
        log_errorx("unexpected message type %u from the trainer", (unsigned)msg.type);
        break;
    }
    if (msg.fd >= 0)
        close(msg.fd);
}

/* ------------------------------------------------------------------ inbox */

/* The slot of name among the held unreadable files, or -1. */
static int unreadable_find(const struct monitor *m, const char *name)
{
    for (int i = 0; i < UNREADABLE_MAX; i++)
        if (m->unreadable[i][0] != '\0' && strcmp(m->unreadable[i], name) == 0)
            return i;
    return -1;
}

/* Records name as held unreadable; returns 1 if it was not recorded before (log it). With
 * every slot taken the oldest gives way, so a ninth file is logged again now and then. */
static int unreadable_add(struct monitor *m, const char *name)
{
    if (unreadable_find(m, name) >= 0)
        return 0;
    memmove(m->unreadable[1], m->unreadable[0], sizeof(m->unreadable[0]) * (UNREADABLE_MAX - 1));
    snprintf(m->unreadable[0], sizeof(m->unreadable[0]), "%s", name);
    return 1;
}

static void unreadable_forget(struct monitor *m, const char *name)
{
    int i = unreadable_find(m, name);

    if (i >= 0)
        m->unreadable[i][0] = '\0';
}

static void reject(struct monitor *m, const char *name, int rc, const char *reason)
{
    char src[PATH_MAX], dst[PATH_MAX], rpath[PATH_MAX + 16], text[CWT_ERRLEN + 256];
    char err[CWT_ERRLEN];
    int n;

    if (file_join(src, sizeof(src), m->cfg->inbox_dir, name) != 0 ||
        file_join(dst, sizeof(dst), m->rejected_dir, name) != 0)
        return;
    log_errorx("rejected %s: %s", name, reason);
    if (file_mkdir_p(m->rejected_dir, 0700, err, sizeof(err)) != 0) {
        log_warnx("%s", err);
        return;
    }
    /* A name already rejected before keeps its first copy; later ones get a suffix. */
    for (int i = 1; i < 1000 && access(dst, F_OK) == 0; i++) {
        n = snprintf(dst, sizeof(dst), "%s/%s.%d", m->rejected_dir, name, i);
        if (n < 0 || (size_t)n >= sizeof(dst))
            return;
    }
    n = snprintf(rpath, sizeof(rpath), "%s.reason", dst);
    if (n < 0 || (size_t)n >= sizeof(rpath))
        return;
    n = snprintf(text, sizeof(text), "file: %s\nrule: %s\nreason: %s\ntime: %" PRId64 "\n", name,
                 cwt_strerror(rc), reason, cwt_now());
    /* The file leaves the inbox before its reason appears: whoever waits for the reason
     * finds the inbox without it. */
    if (rename(src, dst) != 0) {
        log_error("cannot move %s to %s", src, dst);
        (void)unlink(src); /* never process a rejected file twice */
    }
    if (file_write_atomic(rpath, text, (size_t)n, 0644, err, sizeof(err)) != 0)
        log_warnx("%s", err);
    (void)file_fsync_dir(m->cfg->inbox_dir);
    (void)audit_append(m->st, "bundle-rejected", "file %s rule \"%s\": %s", name, cwt_strerror(rc),
                       reason);
}

/* The audit record of an import. Written after the state commit and before the ledger
 * record, and again by finish_accepted when a restart finds the ledger step undone: an import
 * is audited at least once (twice only after a crash in that narrow window), never missed. */
static void audit_opened(struct monitor *m, const struct bundle_info *info, const char *name)
{
    char idhex[33];

    cwt_hex(info->hdr.bundle_id, 16, idhex);
    (void)audit_append(m->st, "bundle-opened",
                       "bundle %s kind %s from %s cycle %u hop %u seq %" PRIu64 " file %s", idhex,
                       bundle_kind_name(info->hdr.kind), info->hdr.sender, info->hdr.cycle,
                       info->hdr.hop, info->hdr.sequence, name);
}

static int local_failure(int rc);
static int hold_local(struct monitor *m, const char *name, const char *why);

/* A file carrying the bundle the current state came from. If a crash came between the state
 * commit and the ledger record, the import is finished quietly; if the ledger has it already,
 * the file is a duplicate (a courier's second copy, or a replay) and is refused like any
 * replay, which changes nothing. */
static void finish_accepted(struct monitor *m, int fd, const char *path, const char *name)
{
    struct bundle_info info;
    struct ledger_entry le;
    char err[CWT_ERRLEN], idhex[33];
    int rc;

    rc = bundle_verify_fd(m->roster, fd, &info, err, sizeof(err));
    if (rc != 0 && local_failure(rc)) {
        (void)hold_local(m, name, err);
        return;
    }
    if (rc != 0) {
        reject(m, name, rc, err);
        return;
    }
    cwt_hex(info.hdr.bundle_id, 16, idhex);
    if (ledger_lookup(m->st, info.hdr.bundle_id, &le) == 0) {
        snprintf(err, sizeof(err),
                 "bundle %s from %s was accepted already (a duplicate; "
                 "nothing changed)",
                 idhex, info.hdr.sender);
        reject(m, name, CWT_EB_REPLAY, err);
        return;
    }
    audit_opened(m, &info, name);
    rc = bundle_accept(m->st, &info);
    if (rc != 0 && rc != CWT_EB_REPLAY) {
        log_errorx("cannot finish the import of %s: %s", name, cwt_strerror(rc));
        return;
    }
    if (unlink(path) == 0)
        (void)file_fsync_dir(m->cfg->inbox_dir);
    log_info("finished the import of %s after a restart", name);
}

/* Whether rc is a local failure (the machine, not the bundle): EIO, ENOSPC, EFBIG, EDQUOT
 * and the like come back as CWT_EIO; memory and the store as CWT_ENOMEM and CWT_ESTORE. Only
 * a bundle rule (CWT_EB_*) or the cycle (CWT_ESTATE) rejects a file. */
static int local_failure(int rc)
{
    return !(rc <= CWT_EB_FRAMING && rc >= CWT_EB_TIME) && rc != CWT_ESTATE;
}

/* A local error while handling name: held, shown in status, audited once per distinct error,
 * retried after a pause that doubles up to INBOX_BACKOFF_MAX. */
static int hold_local(struct monitor *m, const char *name, const char *why)
{
    char text[CWT_ERRLEN];

    m->inbox_backoff = m->inbox_backoff == 0 ? 1 : m->inbox_backoff * 2;
    if (m->inbox_backoff > INBOX_BACKOFF_MAX)
        m->inbox_backoff = INBOX_BACKOFF_MAX;
    m->inbox_retry_at = cwt_monotonic() + m->inbox_backoff;
    snprintf(text, sizeof(text), "%s held: local error: %s (retry in %u s)", name, why,
             m->inbox_backoff);
    snprintf(m->held, sizeof(m->held), "%s", text);
    if (strncmp(m->inbox_error, text, strcspn(text, "(")) != 0) {
        log_warnx("%s", text);
        (void)audit_append(m->st, "inbox-local-error", "file %s held: %s", name, why);
    }
    snprintf(m->inbox_error, sizeof(m->inbox_error), "%s", text);
    return 1;
}

static int inbox_handle_fd(struct monitor *m, int fd, const struct stat *sb, const char *path,
                           const char *name);

/* A check on name failed with rc: a local failure holds the file (hold_local); a file that
 * is shorter than its framing says while it was written to in the last settle_seconds is a
 * copy in progress (a stalled copy once read as truncated: issue 18, L4) and is held too;
 * anything else is the bundle's fault and rejects it. Returns 1 when held. */
static int refuse(struct monitor *m, int fd, const struct stat *sb, const struct bundle_info *info,
                  const char *name, int rc, const char *why)
{
    /* A bundle's preamble: magic, a version this build reads (compared as BUNDLE_VERSION),
     * flags 0. */
    static const uint8_t pre[8] = {'C', 'W', 'T', 'B', BUNDLE_VERSION, 0, 0, 0};
    uint8_t got[8];
    ssize_t n;

    if (local_failure(rc))
        return hold_local(m, name, why);
    n = pread(fd, got, sizeof(got), 0);
    if (n > 4 && got[4] >= BUNDLE_VERSION_MIN && got[4] <= BUNDLE_VERSION)
        got[4] = BUNDLE_VERSION;
    if (rc == CWT_EB_FRAMING && cwt_now() - (int64_t)sb->st_mtime < m->cfg->settle_seconds &&
        n >= 0 && memcmp(got, pre, (size_t)n) == 0 &&
        (info->declared_size == 0 || info->declared_size > (uint64_t)sb->st_size)) {
        snprintf(m->held, sizeof(m->held),
                 "%s held: shorter than its framing says; waiting until it has not grown for "
                 "%u s",
                 name, m->cfg->settle_seconds);
        return 1;
    }
    reject(m, name, rc, why);
    return 0;
}

/* Handles one file in the inbox. Returns 1 when it was held for later.
 *
 * The file is opened once, O_NOFOLLOW|O_NONBLOCK (a FIFO or a symlink swapped in can neither
 * block the monitor nor redirect it), must be a regular file by fstat, and that descriptor is
 * what every check reads: nothing opens the path a second time (issue 18, M1). */
static int inbox_handle(struct monitor *m, const char *name)
{
    struct stat sb;
    char path[PATH_MAX];
    double retry_at;
    int fd, held;

    if (file_join(path, sizeof(path), m->cfg->inbox_dir, name) != 0)
        return 0;
    if (cwt_monotonic() < m->inbox_retry_at) {
        /* After a local error every file waits for the retry time. */
        return 1;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT) {
            unreadable_forget(m, name);
            return 0; /* gone already */
        }
        /* A file this user may not read is not a bad bundle: an admin copied it as root with
         * a private mode, or install(1) has not yet set its mode. Hold it; the chmod or chown
         * that fixes it raises IN_ATTRIB, and the rescan retries anyway. */
        if (e == EACCES || e == EPERM) {
            snprintf(m->held, sizeof(m->held),
                     "%s held: cwtd cannot read it (make it readable by user or group cwt)", name);
            if (unreadable_add(m, name))
                log_warnx("%s", m->held);
            return 1;
        }
        if (e == ELOOP || e == ENXIO || e == EISDIR) {
            if (e != EISDIR)
                reject(m, name, CWT_EB_FRAMING, "not a regular file");
            return 0;
        }
        return hold_local(m, name, strerror(e));
    }
    unreadable_forget(m, name);
    if (fstat(fd, &sb) != 0) {
        held = hold_local(m, name, strerror(errno));
        close(fd);
        return held;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        if (!S_ISDIR(sb.st_mode))
            reject(m, name, CWT_EB_FRAMING, "not a regular file");
        return 0;
    }
    if ((uint64_t)sb.st_size > (uint64_t)m->cfg->max_bundle_mb << 20) {
        close(fd);
        reject(m, name, CWT_EB_FRAMING, "larger than the configured max_bundle_mb");
        return 0;
    }
    retry_at = m->inbox_retry_at;
    held = inbox_handle_fd(m, fd, &sb, path, name);
    close(fd);
    if (m->inbox_retry_at == retry_at) {
        /* Handled without a local error: the next one starts the backoff afresh. */
        m->inbox_backoff = 0;
        m->inbox_error[0] = '\0';
    }
    return held;
}

/* inbox_handle on the file open on fd (a regular file, sb its fstat). */
static int inbox_handle_fd(struct monitor *m, int fd, const struct stat *sb, const char *path,
                           const char *name)
{
    const struct cwt_recipe *r = &m->roster->recipe;
    struct bundle_info info;
    struct bundle_expect ex;
    char payload[PATH_MAX], err[CWT_ERRLEN], idhex[33];
    char history[CWTD_HISTORY_MAX + 1], epochs[64], normsum[CWTD_NORMSUM_MAX + 1];
    struct cycle_history hist;
    struct cycle_normsum ns;
    double epochs_before = 0;
    uint8_t *blob = NULL;
    size_t len = 0;
    uint32_t next_cycle = 0;
    int rc, sender;
    static const uint8_t zero_id[16];

    /* The bundle this site's current state came from, left behind by a crash. */
    if (memcmp(m->cs.in_bundle_id, zero_id, 16) != 0 &&
        bundle_inspect_fd(fd, &info, err, sizeof(err)) == 0 &&
        memcmp(info.hdr.bundle_id, m->cs.in_bundle_id, 16) == 0) {
        finish_accepted(m, fd, path, name);
        return 0;
    }
    if (!m->have_model_fp) {
        /* Without the model's fingerprint a bundle cannot be opened yet, but everything that
         * needs no secret and no model can be refused now. */
        rc = bundle_verify_fd(m->roster, fd, &info, err, sizeof(err));
        if (rc != 0)
            return refuse(m, fd, sb, &info, name, rc, err);
        snprintf(m->held, sizeof(m->held), "%s held: waiting for the trainer to start", name);
        return 1;
    }
    if (m->cs.phase == CWTD_TRAINING || m->cs.phase == CWTD_SEALING) {
        snprintf(m->held, sizeof(m->held), "%s held: this site is busy with cycle %u", name,
                 m->cs.cycle);
        return 1;
    }
    if (private_path(m, "in.safetensors", payload, sizeof(payload)) != 0)
        return 0;
    ex.model_fp = m->model_fp;
    ex.layout = m->have_layout ? &m->layout : NULL;
    ex.layout_alt = NULL;
    rc = bundle_open_fd_ops(&m->kops, &m->keys, m->roster, m->st, fd, name, payload, &ex, &info,
                            err, sizeof(err));
    if (rc != 0)
        return refuse(m, fd, sb, &info, name, rc, err);
    sender =
        info.sender_index >= 0 ? info.sender_index : roster_find_site(m->roster, info.hdr.sender);
    cwt_hex(info.hdr.bundle_id, 16, idhex);
    /* Where this bundle fits in the cycle. */
    if (m->cs.phase == CWTD_FINISHED && info.hdr.kind != BUNDLE_KIND_ENSEMBLE_MEMBER) {
        rc = cwt_seterr(err, sizeof(err), CWT_ESTATE,
                        "the federation has finished at this "
                        "site; bundle %s from %s is not needed",
                        idhex, info.hdr.sender);
    } else if (info.hdr.kind == BUNDLE_KIND_ENSEMBLE_MEMBER) {
        if (!is_ensemble(m))
            rc = cwt_seterr(err, sizeof(err), CWT_ESTATE,
                            "an ensemble member in a %s "
                            "federation",
                            r->heuristic == CWT_H_SWT ? "swt" : "cwt");
    } else if (is_ensemble(m)) {
        rc = cwt_seterr(err, sizeof(err), CWT_ESTATE, "a %s bundle in an ensemble federation",
                        bundle_kind_name(info.hdr.kind));
    } else if (info.hdr.kind == BUNDLE_KIND_CYCLE) {
        rc = cycle_next_visit(m->n, m->me, info.hdr.hop, info.hdr.cycle, &next_cycle, err,
                              sizeof(err));
        if (rc == 0 && r->heuristic == CWT_H_SWT && next_cycle > 0)
            rc = cwt_seterr(err, sizeof(err), CWT_ESTATE,
                            "swt makes one pass; a bundle for "
                            "cycle %u is out of place",
                            next_cycle);
    }
    if (rc == 0) {
        rc = file_read_all(payload, (size_t)1 << 40, &blob, &len, err, sizeof(err));
        if (rc != 0) {
            (void)unlink(payload);
            return hold_local(m, name, err);
        }
    }
    (void)unlink(payload);
    /* The peer's bookkeeping text is parsed into numbers here, and only the numbers are kept:
     * nothing a peer wrote is copied into the saved state (issue 18, H1). */
    if (rc == 0 && info.hdr.kind == BUNDLE_KIND_CYCLE) {
        char sub[CWT_ERRLEN];
        payload_meta(blob, len, "cwt.history", history, sizeof(history));
        payload_meta(blob, len, "cwt.epochs", epochs, sizeof(epochs));
        payload_meta(blob, len, "cwt.normsum", normsum, sizeof(normsum));
        if (cycle_history_parse(history, &hist, sub, sizeof(sub)) != 0)
            rc = cwt_seterr(err, sizeof(err), CWT_EB_TENSORS,
                            "the payload metadata cwt.history is refused: %s", sub);
        else if (epochs[0] != '\0' && cwt_parse_double(epochs, 0, 1e15, &epochs_before) != 0)
            rc = cwt_seterr(err, sizeof(err), CWT_EB_TENSORS,
                            "the payload metadata cwt.epochs is not a number of epochs");
        else if (cycle_normsum_parse(normsum, m->n, &ns, sub, sizeof(sub)) != 0)
            rc = cwt_seterr(err, sizeof(err), CWT_EB_TENSORS,
                            "the payload metadata cwt.normsum is refused: %s", sub);
    }
    if (rc != 0) {
        free(blob);
        return refuse(m, fd, sb, &info, name, rc, err);
    }

    /* Commit order: payload, then state, then ledger, then the inbox file goes. */
    if (info.hdr.kind == BUNDLE_KIND_CYCLE) {
        rc = store_model_put(m->st, CWTD_CKPT_INPUT, blob, len);
        if (rc != 0)
            goto local_fail;
        m->cs.cycle = next_cycle;
        m->cs.hop = m->me;
        m->cs.has_input = 1;
        m->cs.has_parent = 1;
        memcpy(m->cs.parent_hash, info.file_hash, 32);
        m->cs.history = hist;
        m->cs.epochs_before = epochs_before;
        if (next_cycle == 0) {
            /* A new run: no visit of a former one counts towards the carry. */
            m->cs.carry_visits = 0;
            m->cs.carry_steps = 0;
        }
        set_phase(m, CWTD_TRAINING);
    } else if (info.hdr.kind == BUNDLE_KIND_FINAL) {
        install_final(m, blob, len);
        set_phase(m, CWTD_FINISHED);
    } else {
        char member[CWT_ID_MAX + 16];
        snprintf(member, sizeof(member), CWTD_ENSEMBLE_FMT, info.hdr.sender);
        rc = store_model_put(m->st, member, blob, len);
        if (rc != 0)
            goto local_fail;
        if (sender >= 0)
            mask_set(&m->cs, (uint32_t)sender);
        if (mask_full(m))
            set_phase(m, CWTD_FINISHED);
    }
    memcpy(m->cs.in_bundle_id, info.hdr.bundle_id, 16);
    if (state_save(m) != 0)
        goto local_fail;
    audit_opened(m, &info, name);
    rc = bundle_accept(m->st, &info);
    if (rc != 0 && rc != CWT_EB_REPLAY)
        fatalx("cannot record bundle %s in the ledger: %s", idhex, cwt_strerror(rc));
    if (unlink(path) != 0)
        log_error("cannot remove %s from the inbox", path);
    (void)file_fsync_dir(m->cfg->inbox_dir);
    log_info("accepted %s: %s from %s (cycle %u, hop %u)", name, bundle_kind_name(info.hdr.kind),
             info.hdr.sender, info.hdr.cycle, info.hdr.hop);
    if (info.hdr.kind != BUNDLE_KIND_ENSEMBLE_MEMBER)
        outbox_proven(m, info.hdr.sequence);
    m->held[0] = '\0';
    m->inbox_error[0] = '\0';
    m->inbox_backoff = 0;
    free(blob);
    start_job(m);
    return 0;
local_fail:
    free(blob);
    snprintf(err, sizeof(err), "cannot commit it: %s", cwt_strerror(rc));
    return hold_local(m, name, err);
}

/* Looks at every file in the inbox; settle != 0 skips files modified in the last seconds
 * (a copy may still be running). */
static void inbox_scan(struct monitor *m, int settle)
{
    DIR *d = opendir(m->cfg->inbox_dir);
    struct dirent *de;
    char names[64][NAME_MAX + 1];
    int count = 0;
    int64_t now = cwt_now();

    if (d == NULL) {
        log_error("cannot read the inbox %s", m->cfg->inbox_dir);
        return;
    }
    /* Collect first (sorted handling, and the directory changes while we work). */
    while ((de = readdir(d)) != NULL && count < 64) {
        char path[PATH_MAX];
        struct stat sb;
        if (inbox_skip_name(de->d_name))
            continue;
        if (file_join(path, sizeof(path), m->cfg->inbox_dir, de->d_name) != 0 ||
            lstat(path, &sb) != 0)
            continue;
        if (settle && S_ISREG(sb.st_mode) && now - sb.st_mtime < SETTLE_SECONDS)
            continue;
        snprintf(names[count++], NAME_MAX + 1, "%s", de->d_name);
    }
    closedir(d);
    qsort(names, (size_t)count, sizeof(names[0]), (int (*)(const void *, const void *))strcmp);
    if (cwt_monotonic() >= m->inbox_retry_at)
        m->held[0] = '\0';
    for (int i = 0; i < count && !m->stopping; i++)
        inbox_handle(m, names[i]);
}

static void on_inotify(struct monitor *m)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n = read(m->inofd, buf, sizeof(buf));

    if (n <= 0)
        return;
    for (char *p = buf; p < buf + n;) {
        struct inotify_event *ev = (struct inotify_event *)p;
        /* A mode or owner change matters only for a file held as unreadable: other files
         * may still be being written when a tool touches them. */
        int attrib_fix = ev->len > 0 && (ev->mask & IN_ATTRIB) && unreadable_find(m, ev->name) >= 0;
        if (ev->len > 0 && ((ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) || attrib_fix) &&
            !inbox_skip_name(ev->name))
            inbox_handle(m, ev->name);
        p += sizeof(struct inotify_event) + ev->len;
    }
}

/* ------------------------------------------------------------------ control */

/* One held inbox file: name, reason, and its modification time when it is still there. */
static void held_entry(struct monitor *m, struct jbuf *j, const char *name, const char *reason,
                       int must_exist)
{
    char path[PATH_MAX];
    struct stat sb;
    int there =
        file_join(path, sizeof(path), m->cfg->inbox_dir, name) == 0 && lstat(path, &sb) == 0;

    /* A file remembered as unreadable that someone removed is no longer held. */
    if (must_exist && !there)
        return;
    jb_open(j, NULL, '{');
    jb_str(j, "file", name);
    jb_str(j, "reason", reason);
    if (there)
        jb_int(j, "time", (int64_t)sb.st_mtime);
    jb_close(j, '}');
}

/* The inbox files held back, for status and monitoring: those cwtd cannot read (kept until a
 * chmod fixes them), and the one the latest hold names ("NAME held: reason"). Holds that name no
 * file (sealing waits for the trainer) stay in "held" alone. */
static void status_held(struct monitor *m, struct jbuf *j)
{
    const char *sep = strstr(m->held, " held: ");
    char name[NAME_MAX + 1];
    size_t len = sep != NULL ? (size_t)(sep - m->held) : 0;

    name[0] = '\0';
    if (len > 0 && len < sizeof(name)) {
        memcpy(name, m->held, len);
        name[len] = '\0';
    }
    jb_open(j, "inbox_held", '[');
    for (int i = 0; i < UNREADABLE_MAX; i++)
        if (m->unreadable[i][0] != '\0' && strcmp(m->unreadable[i], name) != 0)
            held_entry(m, j, m->unreadable[i],
                       "cwtd cannot read it (make it readable by user or group cwt)", 1);
    if (name[0] != '\0')
        held_entry(m, j, name, sep + 7, 0);
    jb_close(j, ']');
}

/* The rejected inbox files (inbox/rejected/NAME with NAME.reason beside it): their total, and
 * the newest INBOX_REJECTED_SHOWN with file, rule, reason and time, for status and monitoring. */
static void status_rejected(struct monitor *m, struct jbuf *j)
{
    static struct inbox_rejected shown[INBOX_REJECTED_SHOWN];
    size_t n_shown = 0;
    int64_t total = 0;

    (void)inbox_rejected_list(m->rejected_dir, shown, INBOX_REJECTED_SHOWN, &n_shown, &total);
    jb_int(j, "rejected_total", total);
    jb_open(j, "rejected", '[');
    for (size_t i = 0; i < n_shown; i++) {
        jb_open(j, NULL, '{');
        jb_str(j, "file", shown[i].file);
        jb_str(j, "rule", shown[i].rule);
        jb_str(j, "reason", shown[i].reason);
        jb_int(j, "time", shown[i].time);
        jb_close(j, '}');
    }
    jb_close(j, ']');
}

static void status_json(struct monitor *m, struct jbuf *j)
{
    const struct cwt_recipe *r = &m->roster->recipe;
    char fp[80], hex[65], detail[512], when[64];
    struct ledger_entry *le = NULL;
    size_t n_le = 0;
    uint64_t counts[STORE_NSPLITS][CWT_MAX_CLASSES];
    time_t since = (time_t)m->cs.since;
    struct tm tm;
    static const uint8_t zero[32];

    /* JSON carries fingerprints as lower-case hex (docs/json.md); cwtctl spaces them. */
    cwt_hex(m->roster_fp, 32, fp);
    if (gmtime_r(&since, &tm) == NULL ||
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%SZ", &tm) == 0)
        snprintf(when, sizeof(when), "%" PRId64, m->cs.since);
    switch (m->cs.phase) {
    case CWTD_IDLE:
        snprintf(detail, sizeof(detail), "%s",
                 m->me == 0 || is_ensemble(m) ? "idle; run 'cwtctl start' to begin"
                                              : "idle; waiting for the first bundle");
        if (m->me != 0 && !is_ensemble(m))
            snprintf(detail, sizeof(detail), "waiting for a bundle from %s since %s",
                     site_id(m, predecessor(m)), when);
        break;
    case CWTD_WAITING:
        if (is_ensemble(m))
            snprintf(detail, sizeof(detail), "waiting for ensemble members since %s", when);
        else
            snprintf(detail, sizeof(detail), "waiting for a bundle from %s since %s",
                     m->cs.waiting_from, when);
        break;
    case CWTD_TRAINING:
        if (m->have_progress)
            snprintf(detail, sizeof(detail),
                     "training cycle %u at step %" PRIu64 "/%" PRIu64 ", loss %.4f, %.0f images/s",
                     m->cs.cycle, m->progress.step, m->progress.steps, m->progress.loss,
                     m->progress.images_per_s);
        else
            snprintf(detail, sizeof(detail), "training cycle %u (%s)", m->cs.cycle,
                     m->trainer_ready ? "starting" : "waiting for the trainer");
        break;
    case CWTD_SEALING:
        snprintf(detail, sizeof(detail), "sealing the bundle of cycle %u", m->cs.cycle);
        break;
    case CWTD_FINISHED:
        snprintf(detail, sizeof(detail), "finished since %s", when);
        break;
    }
    jb_open(j, NULL, '{');
    jb_str(j, "schema", "cwt.status/1");
    jb_bool(j, "ok", 1);
    jb_str(j, "daemon", "running");
    jb_int(j, "pid", getpid());
    jb_str(j, "site", m->cfg->site_id);
    jb_str(j, "federation", m->roster->federation);
    jb_str(j, "roster_fingerprint", fp);
    jb_str(j, "heuristic",
           r->heuristic == CWT_H_SWT        ? "swt"
           : r->heuristic == CWT_H_ENSEMBLE ? "ensemble"
                                            : "cwt");
    jb_int(j, "position", m->me);
    jb_int(j, "sites", m->n);
    jb_int(j, "cycles", r->cycles);
    jb_str(j, "device", m->device[0] ? m->device : "(trainer starting)");
    jb_str(j, "state", cycle_phase_name(m->cs.phase));
    jb_str(j, "detail", detail);
    jb_bool(j, "paused", m->cs.paused);
    jb_int(j, "cycle", m->cs.cycle);
    jb_int(j, "since", m->cs.since);
    if (m->cs.phase == CWTD_TRAINING && m->have_progress) {
        jb_open(j, "progress", '{');
        jb_int(j, "step", (int64_t)m->progress.step);
        jb_int(j, "steps", (int64_t)m->progress.steps);
        jb_num(j, "loss", m->progress.loss);
        jb_num(j, "images_per_s", m->progress.images_per_s);
        jb_close(j, '}');
    }
    if (ledger_list(m->st, &le, &n_le) == 0) {
        for (int out = 0; out <= 1; out++) {
            for (size_t i = n_le; i-- > 0;) {
                if (le[i].outgoing != out)
                    continue;
                jb_open(j, out ? "last_out" : "last_in", '{');
                cwt_hex(le[i].bundle_id, 16, hex);
                jb_str(j, "bundle", hex);
                jb_str(j, "kind", bundle_kind_name(le[i].kind));
                jb_str(j, out ? "to" : "from", le[i].peer);
                jb_int(j, "cycle", le[i].cycle);
                jb_int(j, "hop", le[i].hop);
                jb_int(j, "sequence", (int64_t)le[i].sequence);
                jb_int(j, "time", le[i].time);
                jb_close(j, '}');
                break;
            }
        }
        free(le);
    }
    /* The outbox file is listed while it is there to be carried (or not written yet), never
     * once a courier took it or a later bundle proved it arrived. */
    if (m->cs.has_out) {
        char opath[PATH_MAX];
        struct stat osb;
        if (!m->cs.out_written ||
            (file_join(opath, sizeof(opath), m->cfg->outbox_dir, m->cs.out_name) == 0 &&
             lstat(opath, &osb) == 0)) {
            jb_str(j, "outbox_file", m->cs.out_name);
            jb_bool(j, "outbox_written", m->cs.out_written);
        }
    }
    if (m->outbox_error[0])
        jb_str(j, "outbox_error", m->outbox_error);
    if (m->last_error[0])
        jb_str(j, "last_error", m->last_error);
    if (m->held[0])
        jb_str(j, "held", m->held);
    status_held(m, j);
    if (m->inbox_error[0])
        jb_str(j, "inbox_error", m->inbox_error);
    status_rejected(m, j);
    if (memcmp(m->cs.final_hash, zero, 32) != 0) {
        cwt_hex(m->cs.final_hash, 32, hex);
        jb_str(j, "final_model", hex);
    }
    jb_open(j, "val_accuracy", '[');
    for (uint32_t i = 0; i < m->cs.n_metrics; i++) {
        jb_open(j, NULL, '{');
        jb_int(j, "cycle", m->cs.metrics[i].cycle);
        jb_num(j, "value", m->cs.metrics[i].val_accuracy);
        jb_close(j, '}');
    }
    jb_close(j, ']');
    memset(counts, 0, sizeof(counts));
    if (store_counts(m->st, r->classes, counts) == 0) {
        jb_open(j, "images", '{');
        for (int s = 0; s < STORE_NSPLITS; s++) {
            uint64_t total = 0;
            for (uint32_t c = 0; c < r->classes && c < CWT_MAX_CLASSES; c++)
                total += counts[s][c];
            jb_int(j, store_split_name((enum store_split)s), (int64_t)total);
        }
        jb_close(j, '}');
    }
    jb_int(j, "trainer_restarts", m->trainer_restarts);
    /* Requests answered by the key process since start (it logs each signature too). */
    jb_int(j, "key_signatures", (int64_t)m->kp.n_sign);
    jb_int(j, "key_content_keys", (int64_t)m->kp.n_open);
    jb_close(j, '}');
}

static void reply_error(int fd, const char *msg)
{
    struct jbuf j;

    char *text;

    jb_init(&j);
    jb_open(&j, NULL, '{');
    jb_bool(&j, "ok", 0);
    jb_str(&j, "error", msg);
    jb_close(&j, '}');
    text = jb_text(&j);
    (void)control_write_reply(fd, CONTROL_TIMEOUT_MS, text != NULL ? text : "{\"ok\":false}");
    free(text);
    jb_free(&j);
}

static void reply_ok(int fd, const char *msg)
{
    struct jbuf j;

    char *text;

    jb_init(&j);
    jb_open(&j, NULL, '{');
    jb_bool(&j, "ok", 1);
    jb_str(&j, "message", msg);
    jb_close(&j, '}');
    text = jb_text(&j);
    (void)control_write_reply(fd, CONTROL_TIMEOUT_MS, text != NULL ? text : "{\"ok\":true}");
    free(text);
    jb_free(&j);
}

static void cmd_start(struct monitor *m, int fd)
{
    char msg[256];

    if (m->cs.phase != CWTD_IDLE) {
        snprintf(msg, sizeof(msg), "the cycle has started already (state: %s)",
                 cycle_phase_name(m->cs.phase));
        reply_error(fd, msg);
        return;
    }
    if (m->me != 0 && !is_ensemble(m)) {
        snprintf(msg, sizeof(msg), "only the first site of the roster (%s) starts the cycle",
                 site_id(m, 0));
        reply_error(fd, msg);
        return;
    }
    (void)store_model_del(m->st, CWTD_CKPT_BEST); /* a former run's best model */
    /* The roster's initial weights are the first visit's input; the trainer takes their
     * parameters and batch-norm statistics and starts a fresh optimizer. */
    if (m->init != NULL && store_model_put(m->st, CWTD_CKPT_INPUT, m->init, m->init_len) != 0) {
        reply_error(fd, "cannot store the initial weights");
        return;
    }
    m->cs.cycle = 0;
    m->cs.hop = m->me;
    m->cs.has_input = m->init != NULL;
    m->cs.has_parent = 0;
    m->cs.epochs_before = 0;
    m->cs.carry_visits = 0;
    m->cs.carry_steps = 0;
    cycle_history_init(&m->cs.history);
    set_phase(m, CWTD_TRAINING);
    if (state_save(m) != 0) {
        reply_error(fd, "cannot save the state in the store");
        return;
    }
    (void)audit_append(m->st, "cycle-started", "federation %s started by the control socket (%s)",
                       m->roster->federation, m->ctl_who);
    start_job(m);
    reply_ok(fd, "started: training cycle 0");
}

static void cmd_resend(struct monitor *m, int fd)
{
    char src[PATH_MAX], dst[PATH_MAX], err[CWT_ERRLEN], msg[CWT_ERRLEN + 64];

    if (!m->cs.has_out) {
        reply_error(fd, "nothing has been sent yet");
        return;
    }
    if (private_path(m, m->cs.out_name, src, sizeof(src)) != 0 ||
        file_join(dst, sizeof(dst), m->cfg->outbox_dir, m->cs.out_name) != 0) {
        reply_error(fd, "path too long");
        return;
    }
    /* The same sealed bytes: a receiver that has it already sees a harmless duplicate. */
    if (file_copy_atomic(src, dst, 0644, err, sizeof(err)) != 0) {
        snprintf(m->outbox_error, sizeof(m->outbox_error), "%s", err);
        snprintf(msg, sizeof(msg), "cannot write to the outbox: %s", err);
        reply_error(fd, msg);
        return;
    }
    m->outbox_error[0] = '\0';
    if (!m->cs.out_written) {
        m->cs.out_written = 1;
        state_save(m);
    }
    (void)audit_append(m->st, "bundle-resent", "file %s (%s)", m->cs.out_name, m->ctl_who);
    snprintf(msg, sizeof(msg), "%s is in the outbox again", m->cs.out_name);
    reply_ok(fd, msg);
}

static void on_control(struct monitor *m)
{
    char cmd[CONTROL_CMD_MAX + 1], err[CWT_ERRLEN];
    int fd = accept4(m->ctlfd, NULL, NULL, SOCK_CLOEXEC);
    struct ucred peer;
    int allowed;

    if (fd < 0)
        return;
    allowed = control_peer_allowed(fd, m->ctl_gid, &peer, err, sizeof(err));
    snprintf(m->ctl_who, sizeof(m->ctl_who), "uid %d pid %d", (int)peer.uid, (int)peer.pid);
    if (allowed != 1) {
        /* Each refusal used to write an audit record: 300 a second from a loop. A minute's
         * first REFUSALS_PER_MINUTE are recorded, the rest counted into the next record. */
        double now = cwt_monotonic();
        if (now - m->refusal_window >= 60) {
            m->refusal_window = now;
            m->refusals = 0;
        }
        if (m->refusals < REFUSALS_PER_MINUTE) {
            m->refusals++;
            log_warnx("control socket: %s", err);
            if (m->refusals_dropped > 0)
                (void)audit_append(m->st, "control-refused",
                                   "%s (and %u refusals not recorded before it)", err,
                                   m->refusals_dropped);
            else
                (void)audit_append(m->st, "control-refused", "%s", err);
            m->refusals_dropped = 0;
        } else {
            m->refusals_dropped++;
        }
        reply_error(fd, "permission denied: this user may not control cwtd");
        close(fd);
        return;
    }
    if (control_read_request(fd, CONTROL_TIMEOUT_MS, cmd, err, sizeof(err)) != 0) {
        reply_error(fd, err);
        close(fd);
        return;
    }
    if (strcmp(cmd, "status") == 0) {
        struct jbuf j;
        char *text;
        jb_init(&j);
        status_json(m, &j);
        text = jb_text(&j);
        if (text == NULL)
            reply_error(fd, "status does not fit in memory");
        else
            (void)control_write_reply(fd, CONTROL_TIMEOUT_MS, text);
        free(text);
        jb_free(&j);
    } else if (strcmp(cmd, "start") == 0) {
        cmd_start(m, fd);
    } else if (strcmp(cmd, "pause") == 0) {
        struct proto_msg msg = {.type = PROTO_PAUSE, .fd = -1};
        m->cs.paused = 1;
        if (state_save(m) != 0) {
            reply_error(fd, "cannot save the state in the store");
            close(fd);
            return;
        }
        if (m->job_inflight)
            (void)proto_send(m->tsock, &msg);
        (void)audit_append(m->st, "paused", "training paused by the control socket (%s)",
                           m->ctl_who);
        reply_ok(fd, "paused");
    } else if (strcmp(cmd, "resume") == 0) {
        struct proto_msg msg = {.type = PROTO_RESUME, .fd = -1};
        m->cs.paused = 0;
        if (state_save(m) != 0) {
            reply_error(fd, "cannot save the state in the store");
            close(fd);
            return;
        }
        if (m->job_inflight)
            (void)proto_send(m->tsock, &msg);
        (void)audit_append(m->st, "resumed", "training resumed by the control socket (%s)",
                           m->ctl_who);
        start_job(m);
        reply_ok(fd, "resumed");
    } else if (strcmp(cmd, "resend") == 0) {
        cmd_resend(m, fd);
    } else if (strcmp(cmd, "stop") == 0) {
        (void)audit_append(m->st, "stop-requested",
                           "stop asked by the control socket (%s); exit status %d", m->ctl_who,
                           CWTD_EXIT_STOP_REQUESTED);
        m->stopping = 1;
        m->exit_code = CWTD_EXIT_STOP_REQUESTED;
        reply_ok(fd, "stopping");
    } else {
        snprintf(err, sizeof(err), "unknown command '%s'", cmd);
        reply_error(fd, err);
    }
    close(fd);
}

/* ------------------------------------------------------------------ set-up and loop */

/* A folder made anew in place of the inbox or outbox (rm -r; mkdir) is invisible to the
 * inotify watch and, under Landlock, out of reach: bundles would wait there unseen. Fatal, so
 * that the restart (systemd does it by itself) watches and admits the new folder. A path that
 * is missing or not a folder for the moment is not a replacement (moved away and back). */
static void check_folders(struct monitor *m)
{
    const struct {
        const char *what, *path;
        dev_t dev;
        ino_t ino;
    } f[2] = {{"inbox", m->cfg->inbox_dir, m->inbox_dev, m->inbox_ino},
              {"outbox", m->cfg->outbox_dir, m->outbox_dev, m->outbox_ino}};

    for (int i = 0; i < 2; i++) {
        struct stat sb;
        if (f[i].ino == 0 || stat(f[i].path, &sb) != 0 || !S_ISDIR(sb.st_mode) ||
            (sb.st_dev == f[i].dev && sb.st_ino == f[i].ino))
            continue;
        (void)audit_append(m->st, "folder-replaced", "%s %s", f[i].what, f[i].path);
        fatalx("the %s folder %s was replaced by a new folder; restart cwtd to watch it (as a "
               "systemd service it restarts by itself)",
               f[i].what, f[i].path);
    }
}

static void on_tick(struct monitor *m)
{
    uint64_t expirations;

    if (read(m->timerfd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
        log_error("timerfd");
    /* The event loop is alive: a monitor stuck anywhere stops these, and systemd restarts
     * it after WatchdogSec=. */
    if (m->watchdog_every > 0 && cwt_monotonic() >= m->next_watchdog) {
        notify_send(m->notifyfd, "WATCHDOG=1");
        m->next_watchdog = cwt_monotonic() + m->watchdog_every;
    }
    outbox_flush(m);
    start_job(m);
    do_seal(m);
    if (cwt_monotonic() >= m->next_rescan) {
        m->next_rescan = cwt_monotonic() + m->cfg->rescan_seconds;
        check_folders(m);
        inbox_scan(m, 1);
    }
}

static void on_signal(struct monitor *m)
{
    struct signalfd_siginfo si;

    if (read(m->sigfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return;
    switch (si.ssi_signo) {
    case SIGTERM:
    case SIGINT:
        log_info("signal %u: stopping", si.ssi_signo);
        m->stopping = 1;
        break;
    case SIGCHLD: {
        int status;
        /* No pid under daemon.trainer_socket: waitpid(-1) would reap the key process. */
        pid_t pid = m->supervisor > 0 ? waitpid(m->supervisor, &status, WNOHANG) : 0;
        if (pid > 0 && pid == m->supervisor)
            fatalx("the trainer supervisor exited (status %d); stopping so that the service "
                   "manager restarts cwtd",
                   status);
        /* The keys are not reloaded in a running daemon: a key process that died takes cwtd
         * down, and a restart loads them again (from files the monitor cannot read). */
        if (waitpid(m->kp.pid, &status, WNOHANG) == m->kp.pid) {
            (void)audit_append(m->st, "key-process-exited", "status %d", status);
            fatalx("the key process exited (status %d); stopping so that the service manager "
                   "restarts cwtd",
                   status);
        }
        break;
    }
    case SIGHUP:
        log_info("SIGHUP: rescanning the inbox");
        inbox_scan(m, 0);
        break;
    default:
        break;
    }
}

static void add_fd(struct monitor *m, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};

    if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        fatal("epoll_ctl");
}

/* Refuses an inbox that others may write to (anyone could plant files). */
static void check_inbox(const struct cwt_config *cfg)
{
    struct stat sb;

    if (stat(cfg->inbox_dir, &sb) != 0)
        fatal("inbox %s", cfg->inbox_dir);
    if (!S_ISDIR(sb.st_mode))
        fatalx("inbox %s is not a folder", cfg->inbox_dir);
    if (sb.st_mode & S_IWOTH)
        fatalx("inbox %s is writable by others (mode %03o); run 'chmod o-w %s'", cfg->inbox_dir,
               (unsigned)(sb.st_mode & 0777), cfg->inbox_dir);
}

static void setup(struct monitor *m, int foreground)
{
    const struct cwt_config *cfg = m->cfg;
    char err[CWT_ERRLEN], lockpath[PATH_MAX];
    struct itimerspec its = {.it_interval = {TICK_SECONDS, 0}, .it_value = {TICK_SECONDS, 0}};
    sigset_t mask;
    struct group *gr;
    int rc, lockfd;

    (void)foreground;
    check_inbox(cfg);
    if (crypto_init() != 0)
        fatalx("cannot initialise libsodium");
    /* The monitor reads only site.pub; the secret keys are the key process's. */
    rc = keys_load_public(cfg->keys_dir, &m->keys, err, sizeof(err));
    if (rc == 0)
        rc = keyproc_handshake(&m->kp, &m->keys, err, sizeof(err));
    if (rc != 0)
        fatalx("%s", err);
    keyproc_ops(&m->kp, &m->kops);
    if (roster_find_site(m->roster, cfg->site_id) < 0)
        fatalx("site %s is not in the roster %s", cfg->site_id, m->roster->path);
    /* The main environment read-write, the trainer's checkpoint environment read-only. */
    rc = store_open(cfg->store_dir, STORE_CREATE | STORE_MONITOR, cfg->store_max_bytes, &m->st, err,
                    sizeof(err));
    if (rc != 0)
        fatalx("%s", err);
    /* One daemon per store: a lock held for the process's life (released by the kernel on
     * kill -9, so a restart never finds a stale lock). */
    if (file_join(lockpath, sizeof(lockpath), cfg->store_dir, "cwtd.lock") != 0)
        fatalx("store path too long");
    lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lockfd < 0)
        fatal("%s", lockpath);
    if (flock(lockfd, LOCK_EX | LOCK_NB) != 0)
        fatalx("another cwtd is running on the store %s", cfg->store_dir);
    (void)audit_append(m->st, "key-load",
                       "cwtd %s started; keys of %s loaded by the key process %ld (key id "
                       "%02x%02x%02x%02x...)",
                       CWT_VERSION, cfg->site_id, (long)m->kp.pid, m->keys.key_id[0],
                       m->keys.key_id[1], m->keys.key_id[2], m->keys.key_id[3]);
    /* cwtd.c refuses root unless daemon.allow_root is set: the override is on the record. */
    if (geteuid() == 0)
        (void)audit_append(m->st, "running-as-root",
                           "daemon.allow_root is set in %s: cwtd runs as root, not as a "
                           "daemon.user",
                           cfg->path);

    if (file_join(m->private_dir, sizeof(m->private_dir), cfg->store_dir, "cwtd-private") != 0 ||
        file_join(m->rejected_dir, sizeof(m->rejected_dir), cfg->inbox_dir, "rejected") != 0)
        fatalx("path too long");
    if (file_mkdir_p(m->private_dir, 0700, err, sizeof(err)) != 0 ||
        file_mkdir_p(m->rejected_dir, 0700, err, sizeof(err)) != 0)
        fatalx("%s", err);
    if (chmod(m->private_dir, 0700) != 0)
        fatal("chmod %s", m->private_dir);

    m->ctl_gid = (gid_t)-1;
    if (cfg->group[0] != '\0') {
        gr = getgrnam(cfg->group);
        if (gr == NULL)
            log_warnx("group %s does not exist; the control socket is for root and the "
                      "daemon's user only",
                      cfg->group);
        else
            m->ctl_gid = gr->gr_gid;
    }
    rc = control_listen(cfg->socket_path, m->ctl_gid, &m->ctlfd, err, sizeof(err));
    if (rc != 0)
        fatalx("%s", err);

    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0)
        fatal("sigprocmask");
    m->sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    m->inofd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    m->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    m->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (m->sigfd < 0 || m->inofd < 0 || m->timerfd < 0 || m->epfd < 0)
        fatal("event loop set-up");
    if (inotify_add_watch(m->inofd, cfg->inbox_dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_ATTRIB) < 0)
        fatal("inotify on %s", cfg->inbox_dir);
    if (timerfd_settime(m->timerfd, 0, &its, NULL) != 0)
        fatal("timerfd_settime");
    add_fd(m, m->sigfd);
    add_fd(m, m->inofd);
    add_fd(m, m->timerfd);
    add_fd(m, m->ctlfd);
    add_fd(m, m->tsock);
    m->notifyfd = notify_open();
    m->watchdog_every = notify_watchdog_interval();
    tzset();

    {
        struct stat sb;
        if (stat(cfg->inbox_dir, &sb) == 0) {
            m->inbox_dev = sb.st_dev;
            m->inbox_ino = sb.st_ino;
        }
        if (stat(cfg->outbox_dir, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            m->outbox_dev = sb.st_dev;
            m->outbox_ino = sb.st_ino;
        }
    }
    /* Everything that needed the wider world is done. */
    {
        struct sandbox_paths paths = {
            .read_write = {cfg->store_dir, cfg->inbox_dir, cfg->outbox_dir},
            /* Not the keys folder: once confined the monitor cannot read a secret key. */
            .read_only = {cfg->roster_path, cfg->path},
        };
        /* Without Landlock cwtd refuses to start unless the configuration says otherwise;
         * then the override is on the audit record (issue 18, M5). */
        if (!sandbox_landlock_available() && cfg->allow_no_landlock)
            (void)audit_append(m->st, "no-landlock",
                               "daemon.allow_no_landlock is set in %s and this kernel offers "
                               "no Landlock: file access is not confined",
                               cfg->path);
        rc =
            sandbox_apply(SANDBOX_MONITOR, &paths,
                          cfg->allow_no_landlock ? SANDBOX_ALLOW_NO_LANDLOCK : 0, err, sizeof(err));
        if (rc != 0)
            fatalx("sandbox: %s", err);
    }
}

int monitor_main(const struct cwt_config *cfg, const struct cwt_roster *roster, int sock,
                 pid_t supervisor, const struct keyproc_client *kp, int foreground, uint8_t *init,
                 size_t init_len)
{
    struct monitor *m = calloc(1, sizeof(*m));
    char status[128];
    int rc;

    if (m == NULL)
        fatal("calloc");
    m->cfg = cfg;
    m->roster = roster;
    m->n = roster->n_sites;
    m->tsock = sock;
    m->supervisor = supervisor;
    m->trainer_peer_unchecked = supervisor < 0;
    m->kp = *kp;
    m->notifyfd = -1;
    m->init = init;
    m->init_len = init_len;
    if (roster_fingerprint(roster, m->roster_fp) != 0)
        fatalx("cannot compute the roster fingerprint");
    {
        int idx = roster_find_site(roster, cfg->site_id);
        if (idx < 0)
            fatalx("site %s is not in the roster %s", cfg->site_id, roster->path);
        m->me = (uint32_t)idx;
    }
    setup(m, foreground);
    state_load(m);
    log_info("site %s (%u of %u) in federation %s: %s", cfg->site_id, m->me + 1, m->n,
             roster->federation, cycle_phase_name(m->cs.phase));
    notify_send(m->notifyfd, "READY=1");
    snprintf(status, sizeof(status), "STATUS=%s", cycle_phase_name(m->cs.phase));
    notify_send(m->notifyfd, status);

    inbox_scan(m, 0);
    outbox_flush(m);
    m->next_rescan = cwt_monotonic() + cfg->rescan_seconds;
    while (!m->stopping) {
        struct epoll_event evs[8];
        int n = epoll_wait(m->epfd, evs, 8, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fatal("epoll_wait");
        }
        for (int i = 0; i < n && !m->stopping; i++) {
            int fd = evs[i].data.fd;
            if (fd == m->sigfd)
                on_signal(m);
            else if (fd == m->inofd)
                on_inotify(m);
            else if (fd == m->timerfd)
                on_tick(m);
            else if (fd == m->ctlfd)
                on_control(m);
            else if (fd == m->tsock)
                on_trainer_message(m);
        }
    }
    notify_send(m->notifyfd, "STOPPING=1");
    log_info("stopping");
    (void)audit_append(m->st, "stop", "cwtd stopped");
    /* Under daemon.trainer_user the supervisor is another uid's, which kill() cannot reach:
     * the closed socket ends its trainer, and the supervisor with it. */
    close(m->tsock);
    /* Never kill(-1): with daemon.trainer_socket there is no supervisor pid. */
    if (m->supervisor > 0) {
        kill(m->supervisor, SIGTERM);
        while (waitpid(m->supervisor, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    close(m->kp.sock); /* the key process exits when its socket closes */
    while (waitpid(m->kp.pid, NULL, 0) < 0 && errno == EINTR)
        ;
    store_close(m->st);
    keys_free(&m->keys);
    rc = m->exit_code;
    if (m->have_layout) {
        st_free(&m->layout);
        free(m->layout_blob);
    }
    free(m);
    return rc;
}
