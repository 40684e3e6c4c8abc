/*
 * cli.h - what every cwtctl command group shares.
 *
 * Exit codes: 0 ok, 1 failed operation or verification, 2 usage or configuration error.
 * A failing command prints one clear sentence on stderr ("cwtctl: ...") and exits.
 */
#ifndef CWT_CLI_H
#define CWT_CLI_H

#include <getopt.h>
#include <stdio.h>

#include "config/config.h"

#define CLI_OK    0
#define CLI_FAIL  1
#define CLI_USAGE 2

/* Options every command understands, taken out of argv before dispatch. */
struct cli_globals {
    const char *config_path; /* -c FILE, else $CWT_CONFIG, else /etc/cwt/cwtd.conf */
    int json;                /* --json */
    int verbose;             /* -v */
    int tty;                 /* stdout is a terminal (progress lines) */
};

/* A command group: argv[0] is the group name ("ingest", "bundle", ...). Returns the exit code. */
typedef int (*cli_cmd_fn)(int argc, char **argv, const struct cli_globals *g);

/* Prints "cwtctl: <message>" on stderr and returns code (for `return cli_error(...)`). */
int cli_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The candidate closest to word by edit distance (insertions, deletions, substitutions and
 * swaps of neighbours), if it is close enough to be a typo of it (at most 1 edit for words of
 * up to 4 letters, 2 up to 8, else 3); NULL otherwise. cands: n strings. */
const char *cli_closest(const char *word, const char *const *cands, size_t n);

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

/* Writes s as a JSON string literal (quotes and escapes included). The output is valid UTF-8
 * whatever s holds: a byte that does not start a well-formed UTF-8 sequence (a file name in
 * Latin-1) is written as U+FFFD. */
void cli_json_string(FILE *f, const char *s);

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
