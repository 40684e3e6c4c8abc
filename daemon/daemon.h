/*
 * daemon.h - internal contracts between the files of cwtd (not a public module header).
 *
 *   cwtd.c     main: options, checks, privilege drop, fork of the trainer supervisor, then
 *              the monitor
 *   monitor.c  the monitor: event loop, inbox, outbox, supervision of the trainer
 *   cycle.c    the cycle rules and the persistent cycle state (pure functions + codec)
 *   control.c  the control socket: bind, peer check, one request line, one reply line
 *   trainer.c  the trainer supervisor and the trainer (engine, never a secret or a bundle)
 *   notify.c   sd_notify by hand over $NOTIFY_SOCKET
 *
 * Persistent state lives in the store: meta key CWTD_META_STATE holds the cycle state as
 * "key=value" text lines (cwtctl status prints it when the daemon is down); models
 * CWTD_CKPT_INPUT holds the weights of the visit being trained, CWTD_CKPT_RESULT the visit's
 * result (committed before the bundle that carries it is sealed), TRAIN_CKPT_MODEL the final
 * model, "ensemble.<site>" the members of an ensemble.
 */
#ifndef CWT_DAEMON_H
#define CWT_DAEMON_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/cwt.h"
#include "config/config.h"

#define CWTD_META_STATE   "cwtd.state"
#define CWTD_CKPT_INPUT   "cwtd.input"
#define CWTD_CKPT_RESULT  "cwtd.result"
#define CWTD_ENSEMBLE_FMT "ensemble.%s"
#define CWTD_STATE_MAX    4096 /* bytes of the state text */
#define CWTD_HISTORY_MAX  255
#define CWTD_MAX_METRICS  256 /* validation metrics kept for status (one per visit) */

enum cwtd_phase {
    CWTD_IDLE = 0, /* not started (first site before `start`; others before a bundle) */
    CWTD_WAITING,  /* waiting for the bundle from the predecessor (or ensemble members) */
    CWTD_TRAINING, /* a visit is being trained from CWTD_CKPT_INPUT (or from scratch) */
    CWTD_SEALING,  /* the result is committed; the outgoing bundle is not sealed yet */
    CWTD_FINISHED, /* the final model is installed */
};

/* The site's place in the federation, kept across restarts (meta CWTD_META_STATE). */
struct cycle_state {
    enum cwtd_phase phase;
    uint32_t cycle, hop; /* the visit being trained, or the last one done here */
    int has_input;       /* the visit starts from CWTD_CKPT_INPUT, else from scratch */
    int has_parent;      /* the visit's input came in a bundle with this hash */
    uint8_t parent_hash[32];
    uint8_t in_bundle_id[16];           /* the bundle the visit came from (all zero if none) */
    double epochs_before;               /* epochs of training before this visit */
    char history[CWTD_HISTORY_MAX + 1]; /* patience bookkeeping, see cycle_history_update */
    char waiting_from[CWT_ID_MAX + 1];
    int64_t since; /* when the current phase began */
    int paused;    /* `cwtctl pause` holds training until `resume`, across restarts too */
    /* the last outgoing bundle */
    int has_out;
    uint64_t out_seq;
    char out_name[NAME_MAX + 1]; /* file name in the outbox and in the private folder */
    int out_written;             /* copied to the outbox at least once */
    uint8_t out_kind;
    /* the final model */
    uint8_t final_hash[32]; /* BLAKE2b-256 of the installed safetensors image */
    /* one validation accuracy per visit trained here, for status */
    uint32_t n_metrics;
    struct {
        uint32_t cycle;
        double val_accuracy;
    } metrics[CWTD_MAX_METRICS];
    uint32_t ensemble_mask_lo, ensemble_mask_hi; /* members present (bit = roster index) */
    /* the training summary of the visit's result, for the outgoing bundle's header */
    uint64_t sum_steps, sum_train_n, sum_val_n;
    double sum_epochs, sum_train_loss, sum_train_acc, sum_val_loss, sum_val_acc, sum_val_auc;
};

/* Encodes the state as text (NUL-terminated, at most CWTD_STATE_MAX bytes with the NUL).
 * Returns the length or CWT_ETOOBIG. */
int cycle_state_encode(const struct cycle_state *cs, char *out, size_t outlen);
/* Parses the text written by cycle_state_encode (strict: known keys, bounded values).
 * CWT_EFORMAT with a sentence in err. */
int cycle_state_decode(const char *text, size_t len, struct cycle_state *cs, char *err,
                       size_t errlen);
const char *cycle_phase_name(enum cwtd_phase p);

/* Patience bookkeeping text carried in the weights' metadata ("cwt.history"):
 * "cur=C sum=S n=K best=B bestc=BC" - the running sum of validation accuracies of cycle C,
 * and the best mean of a full cycle so far. Adds this visit's val (ignored if NaN) for cycle;
 * at the last hop of a cycle (last_hop != 0) folds the cycle's mean into best. An empty or
 * unparsable input starts afresh. out gets CWTD_HISTORY_MAX + 1 bytes. */
void cycle_history_update(const char *in, uint32_t cycle, double val, int last_hop, char *out,
                          size_t outlen);
/* Whether the federation stops after the last hop of `cycle`: the roster's cycle count is
 * reached, or (patience > 0) no cycle mean improved on the best for `patience` cycles. */
int cycle_should_stop(const char *history, uint32_t cycle, uint32_t cycles, uint32_t patience);

/* What a bundle of (kind, cycle, sender hop) means for the site at index me of n: the visit
 * it should train next. Returns 0 and sets *cycle_out (the hop is me), or CWT_ESTATE with a
 * sentence in err when the bundle is not for this place in the cycle (wrong sender). */
int cycle_next_visit(uint32_t n_sites, uint32_t me, uint32_t sender_hop, uint32_t cycle,
                     uint32_t *cycle_out, char *err, size_t errlen);

/* Seed of the data loader for a visit: a pure function of the roster seed, cycle and hop. */
uint64_t cycle_loader_seed(uint64_t roster_seed, uint32_t cycle, uint32_t hop);

/* Name of the trainer checkpoint of a visit (fits proto_job.ckpt). */
void cycle_ckpt_name(uint32_t cycle, uint32_t hop, char *out, size_t outlen);

/* Outgoing bundle file name: "<federation>-c<cycle>-h<hop>-<kind>-to-<site or all>.cwtb". */
int cycle_bundle_name(const char *federation, uint32_t cycle, uint32_t hop, const char *kind,
                      const char *to, char *out, size_t outlen);

/* ------------------------------------------------------------------ control socket */

/* Binds the control socket at path (mode 0660, group gid unless (gid_t)-1). Refuses
 * (CWT_EEXIST) when another daemon answers on it; removes a stale socket. *fd_out is
 * listening and non-blocking. */
int control_listen(const char *path, gid_t gid, int *fd_out, char *err, size_t errlen);

/* Whether the peer of connected socket fd may control the daemon: root, the daemon's own
 * uid, or a member (primary or supplementary) of gid. Returns 1 allowed, 0 refused (with
 * the peer's uid/gid in err), <0 on error. */
int control_peer_allowed(int fd, gid_t gid, char *err, size_t errlen);

/* Reads one request line from a connected client (at most CONTROL_LINE_MAX bytes, within
 * timeout_ms) and parses it: {"cmd":"NAME"} with NAME of [a-z] only. CWT_EFORMAT for
 * anything else. */
#define CONTROL_LINE_MAX 1024
#define CONTROL_CMD_MAX  15
int control_read_request(int fd, int timeout_ms, char cmd[CONTROL_CMD_MAX + 1], char *err,
                         size_t errlen);

/* Writes the whole reply line (a newline is added) within timeout_ms. */
int control_write_reply(int fd, int timeout_ms, const char *line);

/* A growable JSON text for the status reply; errors make it empty and set bad. */
struct jbuf {
    char *p;
    size_t len, cap;
    int bad;
    int need_comma;
};
void jb_init(struct jbuf *j);
void jb_free(struct jbuf *j);
void jb_raw(struct jbuf *j, const char *s);
void jb_key(struct jbuf *j, const char *key); /* "key": */
void jb_str(struct jbuf *j, const char *key, const char *val);
void jb_num(struct jbuf *j, const char *key, double val); /* null when not finite */
void jb_int(struct jbuf *j, const char *key, int64_t val);
void jb_open(struct jbuf *j, const char *key, char bracket); /* key NULL inside arrays */
void jb_close(struct jbuf *j, char bracket);

/* ------------------------------------------------------------------ sd_notify */

/* Opens the $NOTIFY_SOCKET datagram socket (returns -1 when unset or on error; not an error
 * for cwtd). Done before the sandbox; the socket stays connected. */
int notify_open(void);
/* Sends "READY=1", "STATUS=...", "STOPPING=1" ... ; ignores failures. */
void notify_send(int fd, const char *msg);

/* ------------------------------------------------------------------ processes */

/* The trainer supervisor: forked before any secret is loaded. It forks the trainer, restarts
 * it when it dies (reporting PROTO_DIED on sock first) with a growing pause, and exits when
 * the monitor goes away. Never returns. */
void trainer_supervisor_main(const struct cwt_config *cfg, const struct cwt_roster *roster,
                             int sock) __attribute__((noreturn));

/* Runs the monitor until stopped. Takes ownership of sock (the trainer socketpair end) and
 * supervisor (its pid). Returns the process exit code. */
int monitor_main(const struct cwt_config *cfg, const struct cwt_roster *roster, int sock,
                 pid_t supervisor, int foreground);

#endif
