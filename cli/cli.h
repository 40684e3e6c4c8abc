/*
 * cli.h - what every cwtctl command group shares.
 *
 * Exit codes: 0 ok, 1 failed operation or verification, 2 usage or configuration error.
 * A failing command prints one clear sentence on stderr ("cwtctl: ...") and exits.
 */
#ifndef CWT_CLI_H
#define CWT_CLI_H

#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"
#include "storage/store.h"

#define CLI_OK    0
#define CLI_FAIL  1
#define CLI_USAGE 2

/* How the commands that write the main environment (ingest, roster, key, bundle, audit, model
 * import) open the store: as cwtd's monitor does, with the checkpoint environment read-only
 * (storage/store.h STORE_MONITOR). Its files belong to daemon.trainer_user where that is set,
 * and the group of daemon.user may read them but not write them; none of these commands
 * writes a training record. */
#define CLI_STORE_WRITE (STORE_CREATE | STORE_MONITOR)

/* The packaged site's trainer, which `cwtctl init --system` writes into the configuration and
 * `cwtctl doctor` checks: its own user, which the package makes (daemon.trainer_user), and the
 * socket through which the service manager starts it (daemon.trainer_socket). The socket must
 * be the path that packaging/cwtd-trainer.socket listens on (ListenSequentialPacket=); a test
 * compares the two. */
#define CLI_SYSTEM_TRAINER_USER   "cwt-train"
#define CLI_SYSTEM_TRAINER_SOCKET "/run/cwtd-trainer.sock"

/* Options every command understands, taken out of argv before dispatch. */
struct cli_globals {
    const char *config_path; /* -c FILE, else $CWT_CONFIG, else /etc/cwt/cwtd.conf */
    int json;                /* --json */
    int verbose;             /* -v */
    int tty;                 /* stdout is a terminal (progress lines) */
};

/* A command group: argv[0] is the group name ("ingest", "bundle", ...). Returns the exit code. */
typedef int (*cli_cmd_fn)(int argc, char **argv, const struct cli_globals *g);

/* Prints "cwtctl: <message>" on stderr and returns code (for `return cli_error(...)`). Under
 * --json it also prints the error object on stdout (see cli_fail) with the error code "usage"
 * (code CLI_USAGE) or "failed". */
int cli_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The candidate closest to word by edit distance (insertions, deletions, substitutions and
 * swaps of neighbours), if it is close enough to be a typo of it (at most 1 edit for words of
 * up to 4 letters, 2 up to 8, else 3); NULL otherwise. cands: n strings. */
const char *cli_closest(const char *word, const char *const *cands, size_t n);

/* 1 when argv[from..argc) holds "-h" or "--help", so that "cwtctl GROUP SUB --help" prints the
 * group's usage (on stdout, exit 0) wherever the option stands; else 0. */
int cli_wants_help(int argc, char **argv, int from);

/* getopt_long() for command cmd ("ingest", "bundle seal"), with getopt's own messages replaced
 * by one sentence on stderr: an unknown option with the closest known one ("did you mean
 * '--json'?"), or an option that lacks its value. Returns what getopt_long returns; '?' once
 * the sentence is printed, and the caller then exits with CLI_USAGE. */
int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
               const char *cmd);

/* Loads the site configuration (and, if roster != NULL, its roster). Prints the error and
 * returns CLI_USAGE on failure, 0 on success. */
int cli_load_site(const struct cli_globals *g, struct cwt_config *cfg, struct cwt_roster *roster);

/* The site id in the configuration against the one its keys carry (keys/site.pub). Returns 0
 * when they agree or site.pub cannot be read (the caller's own key load says why); else fills
 * msg with one sentence naming both ids and the line to change, and returns CWT_EINVAL. */
int cli_site_id_mismatch(const struct cwt_config *cfg, char *msg, size_t msglen);

/* ---- JSON output (cli/cli_json.c, on jansson; the rules and schemas are docs/json.md) ---- */

/* Sets whether this run is under --json (main() calls it once from the global options). */
void cli_json_set_mode(int on);
/* Whether this run is under --json. */
int cli_json_mode(void);
/* Records that a JSON document went to stdout (cli_json_emit does it), so that a later failure
 * prints no second document. For a document written elsewhere (simulate's results). */
void cli_json_mark_emitted(void);

/* Prints "cwtctl: <message>" on stderr and returns code. Under --json it also prints, once,
 * {"schema":"cwt.error/1","ok":false,"error":errcode,"message":"<message>"} on stdout, unless
 * a document was printed already. errcode is a stable name from docs/json.md ("no-config",
 * "bad-option", "daemon-down", "audit-broken", or cwt_errname() of a CWT_E* code). */
int cli_fail(int code, const char *errcode, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int cli_vfail(int code, const char *errcode, const char *fmt, va_list ap);
/* Prints "cwtctl: <message>" on stderr only: one of several problems that the command's own
 * document reports (under --json no error object follows). */
void cli_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* New JSON string from any bytes (cleaned as cwt_utf8_clean); json_null() for s == NULL; NULL
 * when out of memory. The caller owns the reference (or hands it to cli_json_set). */
json_t *cli_json_str(const char *s);
/* New JSON string of n bytes as lower-case hex: the one format of fingerprints, hashes and ids
 * in JSON. NULL when out of memory. */
json_t *cli_json_hex(const uint8_t *bytes, size_t n);

/* obj[key] = value, taking the reference to value (also on failure). value may be NULL (a
 * constructor that ran out of memory): returns CWT_ENOMEM then, else 0. Lets a writer chain
 * `rc |= cli_json_set(o, "n", json_integer(n));` and check once. */
int cli_json_set(json_t *obj, const char *key, json_t *value);
/* obj[key] = cli_json_str(s). 0 or CWT_ENOMEM. */
int cli_json_set_str(json_t *obj, const char *key, const char *s);

/* A new object {"schema": schema, "ok": ok} to which a command adds its members; NULL when out
 * of memory. schema is "cwt.NAME/VERSION". */
json_t *cli_json_doc(const char *schema, int ok);
/* Prints doc on stdout, on one line ({"a": 1, "b": 2}) or indented (indent != 0), keys in insertion
 * order, non-ASCII as UTF-8, one trailing newline; then drops the reference. doc may be NULL (out
 * of memory). Returns 0, or CLI_FAIL with a sentence on stderr. */
int cli_json_emit(json_t *doc, int indent);
/* The end of a command that lists things: sets doc[key] = list (taking list, also when doc is
 * NULL), then emits doc as cli_json_emit(doc, 0) does; rc != 0 (a member that could not be
 * built) or a failed set emits nothing and reports out of memory instead. */
int cli_json_emit_list(json_t *doc, const char *key, json_t *list, int rc);
/* Prints doc on stdout as one line of a JSON Lines stream (train, predict: docs/json.md) and drops
 * the reference. Unlike cli_json_emit it does not count as the run's document: a later failure
 * still ends the stream with a cwt.error/1 line. 0, or CLI_FAIL with a sentence on stderr. */
int cli_json_stream(json_t *doc);

/* Command groups, one file each (cli/cmd_*.c). */
int cmd_init(int argc, char **argv, const struct cli_globals *g);
int cmd_doctor(int argc, char **argv, const struct cli_globals *g);
int cmd_ingest(int argc, char **argv, const struct cli_globals *g);
int cmd_data(int argc, char **argv, const struct cli_globals *g);
int cmd_key(int argc, char **argv, const struct cli_globals *g);
int cmd_roster(int argc, char **argv, const struct cli_globals *g);
int cmd_bundle(int argc, char **argv, const struct cli_globals *g);
int cmd_chain(int argc, char **argv, const struct cli_globals *g);
int cmd_audit(int argc, char **argv, const struct cli_globals *g);
int cmd_train(int argc, char **argv, const struct cli_globals *g);
int cmd_eval(int argc, char **argv, const struct cli_globals *g);
int cmd_predict(int argc, char **argv, const struct cli_globals *g);
int cmd_model(int argc, char **argv, const struct cli_globals *g);
int cmd_simulate(int argc, char **argv, const struct cli_globals *g);
/* Daemon control: status, start, pause, resume, resend, stop (cli/cmd_control.c). */
int cmd_control(int argc, char **argv, const struct cli_globals *g);

#endif
