/*
 * daemon.h - internal contracts between the files of cwtd (not a public module header).
 *
 *   cwtd.c     main: options, checks, privilege drop, fork of the trainer supervisor (by
 *              root, as daemon.trainer_user, when that is set) or the connection to
 *              daemon.trainer_socket, fork of the key process, then the monitor; with
 *              --trainer, the supervisor for one connection to that socket
 *   keyproc.c  the key process: the only holder of the secret keys (daemon/keyproc.h)
 *   monitor.c  the monitor: event loop, inbox, outbox, supervision of the trainer
 *   cycle.c    the cycle rules and the persistent cycle state (pure functions + codec;
 *              cycle/cycle.h, library cwt_cycle, shared with cwtctl)
 *   control.c  the control socket: bind, peer check, one request line, one reply line
 *   trainer.c  the trainer supervisor and the trainer (engine, never a secret or a bundle)
 *   notify.c   sd_notify by hand over $NOTIFY_SOCKET
 *
 * Persistent state lives in the store: meta key CWTD_META_STATE holds the cycle state as
 * "key=value" text lines (cwtctl status prints it when the daemon is down); models
 * CWTD_CKPT_INPUT holds the weights of the visit being trained, CWTD_CKPT_RESULT the visit's
 * result (committed before the bundle that carries it is sealed), CWTD_CKPT_BEST the model
 * that closed the best cycle so far (kept by the last site), TRAIN_CKPT_MODEL the final model,
 * "ensemble.<site>" the members of an ensemble.
 */
#ifndef CWT_DAEMON_H
#define CWT_DAEMON_H

#include <limits.h>
#include <stddef.h>
#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/cwt.h"
#include "config/config.h"

#include "cycle/cycle.h"

#define CWTD_CKPT_INPUT   "cwtd.input"
#define CWTD_CKPT_RESULT  "cwtd.result"
#define CWTD_CKPT_BEST    "cwtd.best" /* the best cycle's closing model (last site only) */
#define CWTD_ENSEMBLE_FMT "ensemble.%s"
#define CWTD_MODEL_LAYOUT "cwtd.layout" /* the roster model's tensors, written by the trainer */

/* ------------------------------------------------------------------ control socket */

/* Binds the control socket at path (mode 0660, group gid unless (gid_t)-1). Refuses
 * (CWT_EEXIST) when another daemon answers on it; removes a stale socket. *fd_out is
 * listening and non-blocking. */
int control_listen(const char *path, gid_t gid, int *fd_out, char *err, size_t errlen);

/* Whether the peer of connected socket fd may control the daemon: root, the daemon's own
 * uid, or a member (primary or supplementary, up to CONTROL_GROUPS_MAX groups) of gid.
 * Returns 1 allowed, 0 refused (with the peer's uid/gid in err), <0 on error. *peer gets the
 * peer's credentials (pid -1 and uid/gid (uid_t)-1 when they could not be read) for the
 * audit records of what it asks. */
#define CONTROL_GROUPS_MAX 65536 /* the kernel's NGROUPS_MAX */
struct ucred;
int control_peer_allowed(int fd, gid_t gid, struct ucred *peer, char *err, size_t errlen);

/* The exit status of cwtd after `cwtctl stop` (EX_TEMPFAIL): not 0, so that systemd's
 * Restart=on-failure starts the service again; an operator's stop is a restart, and only
 * `systemctl stop` (SIGTERM, exit 0) stops the service for good. */
#define CWTD_EXIT_STOP_REQUESTED 75

/* Reads one request line from a connected client (at most CONTROL_LINE_MAX bytes, within
 * timeout_ms) and parses it: {"cmd":"NAME"} with NAME of [a-z] only. CWT_EFORMAT for
 * anything else. */
#define CONTROL_LINE_MAX 1024
#define CONTROL_CMD_MAX  15
int control_read_request(int fd, int timeout_ms, char cmd[CONTROL_CMD_MAX + 1], char *err,
                         size_t errlen);

/* Writes the whole reply line (a newline is added) within timeout_ms. */
int control_write_reply(int fd, int timeout_ms, const char *line);

/* A JSON reply built with jansson (valid UTF-8 whatever the bytes of a file name: invalid
 * bytes become U+FFFD). Members are added to the innermost open object or array; out of memory
 * makes the whole reply fail (bad). jb_text returns the compact text, malloc'd, or NULL. */
#define JB_DEPTH 8
struct jbuf {
    json_t *stack[JB_DEPTH];
    int depth;
    int bad;
};
void jb_init(struct jbuf *j);
void jb_free(struct jbuf *j);
char *jb_text(struct jbuf *j); /* caller frees; NULL when bad or out of memory */
void jb_str(struct jbuf *j, const char *key, const char *val);
void jb_num(struct jbuf *j, const char *key, double val); /* null when not finite */
void jb_int(struct jbuf *j, const char *key, int64_t val);
void jb_bool(struct jbuf *j, const char *key, int val);
void jb_open(struct jbuf *j, const char *key, char bracket); /* key NULL inside arrays */
void jb_close(struct jbuf *j, char bracket);

/* ------------------------------------------------------------------ sd_notify */

/* Opens the $NOTIFY_SOCKET datagram socket (returns -1 when unset or on error; not an error
 * for cwtd). Done before the sandbox; the socket stays connected. */
int notify_open(void);
/* Sends "READY=1", "STATUS=...", "STOPPING=1" ... ; ignores failures. */
void notify_send(int fd, const char *msg);
/* Seconds between "WATCHDOG=1" pings: half of $WATCHDOG_USEC when systemd set it for this
 * process ($WATCHDOG_PID unset or ours), else 0 (no watchdog). Read before the sandbox. */
double notify_watchdog_interval(void);

/* ------------------------------------------------------------------ processes */

struct sandbox_paths;
/* The folders and device nodes the trainer's Landlock ruleset allows (see trainer.c), with
 * the Mesa shader cache folder written into cache. Public for tests/security. */
void trainer_sandbox_paths(const struct cwt_config *cfg, struct sandbox_paths *paths, char *cache,
                           size_t cachelen);

/* The trainer supervisor: forked before any secret is loaded, or started by the service
 * manager for a connection to daemon.trainer_socket. It forks the trainer, restarts it when
 * it dies (reporting PROTO_DIED on sock first) with a growing pause, and exits when the
 * monitor goes away (its socket closes, or the parent it started with is gone). Never
 * returns. */
void trainer_supervisor_main(const struct cwt_config *cfg, const struct cwt_roster *roster,
                             int sock) __attribute__((noreturn));

/* Runs the monitor until stopped. Takes ownership of sock (the trainer socketpair end, or
 * the connection to daemon.trainer_socket), supervisor (its pid; -1 for a supervisor that
 * the service manager started, whose uid is checked on its first message), the key process kp
 * (daemon/keyproc.h) and init (the roster's initial weights, checked against recipe.init.blake2b,
 * malloc'd; NULL when the recipe has none). Returns the process exit code. */
struct keyproc_client;
int monitor_main(const struct cwt_config *cfg, const struct cwt_roster *roster, int sock,
                 pid_t supervisor, const struct keyproc_client *kp, int foreground, uint8_t *init,
                 size_t init_len);

#endif
