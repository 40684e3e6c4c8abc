/*
 * cmd_control.c - `cwtctl status|start|pause|resume|resend|stop`: one request line
 * {"cmd":"NAME"} to cwtd's control socket, one JSON reply line back. `status` renders the
 * reply as a table (or prints it with --json); when the daemon is down it says so and shows
 * what the store holds, opened read-only.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cycle/cycle.h"
#include "cycle/inbox.h"
#include "common/cwt.h"
#include "crypto/bundle.h"
#include "common/fileio.h"
#include "storage/store.h"

#define REPLY_MAX     (1u << 20) /* a status reply is a few KiB; anything near this is wrong */
#define REPLY_TIMEOUT 30.0       /* seconds; the daemon answers between training steps */

/* ------------------------------------------------------------------ talking to cwtd */

/* Sends one request and reads the reply line into a malloc'd string (*reply). Returns 0,
 * or CWT_EIO / CWT_EFORMAT / CWT_ENOMEM with err filled; *conn_errno is the errno of a failed
 * connect (daemon down, or not allowed by the socket's mode), else 0. */
static int request(const char *socket_path, const char *cmd, char **reply, int *conn_errno,
                   char *err, size_t errlen)
{
    struct sockaddr_un sa;
    char line[64];
    size_t len = 0, cap = 4096;
    char *buf;
    double deadline;
    int fd, n, send_errno = 0;

    *reply = NULL;
    *conn_errno = 0;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(socket_path) >= sizeof(sa.sun_path))
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "control socket path %s is too long",
                          socket_path);
    strcpy(sa.sun_path, socket_path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return cwt_seterr(err, errlen, CWT_EIO, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        *conn_errno = errno;
        close(fd);
        return cwt_seterr(err, errlen, CWT_EIO, "%s: %s", socket_path, strerror(*conn_errno));
    }
    n = snprintf(line, sizeof(line), "{\"cmd\":\"%s\"}\n", cmd);
    {
        ssize_t sent = send(fd, line, (size_t)n, MSG_NOSIGNAL);
        int e = sent < 0 ? errno : EIO; /* a short write of a 64-byte request: treat as EIO */
        if (sent != n) {
            /* cwtd answers a peer it refuses at once and closes, possibly before our request
             * arrives: that answer is still queued for us, so read it before giving up. */
            if (e != EPIPE && e != ECONNRESET) {
                close(fd);
                return cwt_seterr(err, errlen, CWT_EIO, "cannot send to %s: %s", socket_path,
                                  strerror(e));
            }
            send_errno = e;
        }
    }
    buf = malloc(cap);
    if (buf == NULL) {
        close(fd);
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
    }
    deadline = cwt_monotonic() + REPLY_TIMEOUT;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        double left = deadline - cwt_monotonic();
        ssize_t got;
        int rc;

        if (left <= 0) {
            n = cwt_seterr(err, errlen, CWT_EIO, "cwtd did not answer within %.0f s",
                           REPLY_TIMEOUT);
            goto fail;
        }
        rc = poll(&p, 1, (int)(left * 1000) + 1);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            continue;
        if (len + 1 >= cap) {
            char *bigger;
            if (cap >= REPLY_MAX) {
                n = cwt_seterr(err, errlen, CWT_EFORMAT, "reply longer than %u bytes", REPLY_MAX);
                goto fail;
            }
            cap *= 2;
            bigger = realloc(buf, cap);
            if (bigger == NULL) {
                n = cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
                goto fail;
            }
            buf = bigger;
        }
        got = recv(fd, buf + len, cap - len - 1, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        len += (size_t)got;
        if (memchr(buf, '\n', len) != NULL)
            break;
    }
    close(fd);
    buf[len] = '\0';
    if (len == 0 && send_errno != 0) {
        free(buf);
        return cwt_seterr(err, errlen, CWT_EIO, "cannot send to %s: %s", socket_path,
                          strerror(send_errno));
    }
    if (len == 0 || buf[len - 1] != '\n' || strchr(buf, '\n') != buf + len - 1) {
        free(buf);
        return cwt_seterr(err, errlen, CWT_EFORMAT, "cwtd sent an incomplete reply");
    }
    buf[len - 1] = '\0';
    *reply = buf;
    return 0;
fail:
    close(fd);
    free(buf);
    return n;
}

/* ------------------------------------------------------------------ reading the reply */

/* Members of the status document, NULL when absent or of another type. */
static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static int jnum(const json_t *o, const char *key, double *out)
{
    const json_t *v = json_object_get(o, key);

    if (!json_is_number(v))
        return 0;
    *out = json_number_value(v);
    return 1;
}

static int jtrue(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);

    /* 0/1 from a cwtd older than cwt.status/1 reads the same. */
    return json_is_true(v) || (json_is_integer(v) && json_integer_value(v) != 0);
}

/* Parses a reply line: one JSON object, at most REPLY_MAX bytes (request() bounds it), UTF-8
 * checked by jansson. NULL if it is not one. */
static json_t *parse_reply(const char *text)
{
    json_error_t jerr;
    json_t *doc = json_loadb(text, strlen(text), JSON_REJECT_DUPLICATES, &jerr);

    if (doc != NULL && !json_is_object(doc)) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

/* ------------------------------------------------------------------ status rendering */

static void fmt_time(int64_t t, char *out, size_t outlen)
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (t <= 0 || gmtime_r(&tt, &tm) == NULL ||
        strftime(out, outlen, "%Y-%m-%d %H:%M:%SZ", &tm) == 0)
        snprintf(out, outlen, "-");
}

static void render_bundle(const json_t *root, const char *key, const char *label)
{
    const json_t *b = json_object_get(root, key);
    const char *kind, *peer, *id;
    double cycle = 0, hop = 0, t = 0;
    char when[40];
    int out = strcmp(key, "last_out") == 0;

    if (!json_is_object(b))
        return;
    kind = jstr(b, "kind");
    peer = jstr(b, out ? "to" : "from");
    id = jstr(b, "bundle");
    jnum(b, "cycle", &cycle);
    jnum(b, "hop", &hop);
    jnum(b, "time", &t);
    fmt_time((int64_t)t, when, sizeof(when));
    printf("%-16s %s %s %s (cycle %.0f, hop %.0f) at %s, id %.16s\n", label, kind ? kind : "?",
           out ? "to" : "from", peer ? peer : "?", cycle, hop, when, id ? id : "?");
}

static void render_status(const json_t *d)
{
    const char *s;
    double pos = 0, sites = 0, v;
    const json_t *arr, *e;
    size_t i;

    printf("%-16s %s\n", "daemon", jtrue(d, "daemon") ? "running" : "not running");
    jnum(d, "position", &pos);
    jnum(d, "sites", &sites);
    printf("%-16s %s (%.0f of %.0f) in federation %s\n", "site",
           jstr(d, "site") ? jstr(d, "site") : "?", pos + 1, sites,
           jstr(d, "federation") ? jstr(d, "federation") : "?");
    if ((s = jstr(d, "roster_fingerprint")) != NULL) {
        uint8_t fp[32];
        char text[80];
        /* JSON carries hex; people compare the spaced groups that 'cwtctl key show' prints. */
        if (strlen(s) == 64 && cwt_unhex(s, fp, 32) == 0) {
            roster_fingerprint_text(fp, text, sizeof(text));
            printf("%-16s %s\n", "roster", text);
        } else {
            printf("%-16s %s\n", "roster", s);
        }
    }
    if ((s = jstr(d, "heuristic")) != NULL && jnum(d, "cycles", &v))
        printf("%-16s %s, %.0f cycles\n", "heuristic", s, v);
    if ((s = jstr(d, "device")) != NULL)
        printf("%-16s %s\n", "device", s);
    if ((s = jstr(d, "detail")) != NULL)
        printf("%-16s %s%s\n", "state", s, jtrue(d, "paused") ? " (paused)" : "");
    render_bundle(d, "last_in", "last in");
    render_bundle(d, "last_out", "last out");
    if ((s = jstr(d, "outbox_file")) != NULL)
        printf("%-16s %s%s\n", "outbox", s,
               json_is_false(json_object_get(d, "outbox_written")) ||
                       (json_is_integer(json_object_get(d, "outbox_written")) &&
                        !jtrue(d, "outbox_written"))
                   ? " (not written yet)"
                   : "");
    if ((s = jstr(d, "outbox_error")) != NULL)
        printf("%-16s %s\n", "outbox error", s);
    if ((s = jstr(d, "held")) != NULL)
        printf("%-16s %s\n", "held", s);
    json_array_foreach(json_object_get(d, "inbox_held"), i, e)
    {
        char when[40];
        double t = 0;
        if (!jnum(e, "time", &t))
            continue;
        fmt_time((int64_t)t, when, sizeof(when));
        printf("%-16s %s in the inbox since %s\n", "", jstr(e, "file") ? jstr(e, "file") : "?",
               when);
    }
    if ((s = jstr(d, "inbox_error")) != NULL)
        printf("%-16s %s\n", "inbox error", s);
    if ((s = jstr(d, "last_error")) != NULL)
        printf("%-16s %s\n", "last error", s);
    if (jnum(d, "rejected_total", &v) && v > 0) {
        printf("%-16s %.0f in the inbox's rejected/ folder\n", "rejected", v);
        json_array_foreach(json_object_get(d, "rejected"), i, e)
        {
            char when[40];
            double t = 0;
            jnum(e, "time", &t);
            fmt_time((int64_t)t, when, sizeof(when));
            printf("%-16s %s at %s: %s\n", "", jstr(e, "file") ? jstr(e, "file") : "?", when,
                   jstr(e, "reason") ? jstr(e, "reason") : "?");
        }
    }
    arr = json_object_get(d, "val_accuracy");
    if (json_array_size(arr) > 0) {
        printf("%-16s", "val accuracy");
        json_array_foreach(arr, i, e)
        {
            double cyc = 0, acc = NAN;
            jnum(e, "cycle", &cyc);
            jnum(e, "value", &acc);
            printf(" c%.0f=%.4f", cyc, acc);
        }
        printf("\n");
    }
    arr = json_object_get(d, "images");
    if (json_is_object(arr)) {
        double tr = 0, va = 0, te = 0;
        jnum(arr, "train", &tr);
        jnum(arr, "val", &va);
        jnum(arr, "test", &te);
        printf("%-16s train %.0f, val %.0f, test %.0f\n", "images", tr, va, te);
    }
    if ((s = jstr(d, "final_model")) != NULL)
        printf("%-16s %s\n", "final model", s);
    if (jnum(d, "trainer_restarts", &v) && v > 0)
        printf("%-16s %.0f\n", "trainer restarts", v);
}

/* ------------------------------------------------------------------ offline status */

/* The rejected inbox files as cwtd lists them (inbox.h), when this user may read the folder;
 * else rejected_total and rejected are left out (unknown is not zero). */
static int offline_rejected(const struct cwt_config *cfg, json_t *d)
{
    static struct inbox_rejected shown[INBOX_REJECTED_SHOWN];
    char dir[PATH_MAX];
    size_t n = 0;
    int64_t total = 0;
    json_t *a;
    int rc = 0;

    if (file_join(dir, sizeof(dir), cfg->inbox_dir, INBOX_REJECTED_DIR) != 0 ||
        inbox_rejected_list(dir, shown, INBOX_REJECTED_SHOWN, &n, &total) != 0)
        return 0;
    rc |= cli_json_set(d, "rejected_total", json_integer((json_int_t)total));
    rc |= cli_json_set(d, "rejected", a = json_array());
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *e = json_object();
        if (e == NULL || json_array_append_new(a, e) != 0)
            return CWT_ENOMEM;
        rc |= cli_json_set_str(e, "file", shown[i].file);
        rc |= cli_json_set_str(e, "rule", shown[i].rule);
        rc |= cli_json_set_str(e, "reason", shown[i].reason);
        rc |= cli_json_set(e, "time", json_integer((json_int_t)shown[i].time));
    }
    return rc;
}

/* The files waiting in the inbox (the names cwtd reads, inbox.h), at most
 * INBOX_REJECTED_SHOWN: with cwtd down every one of them is held until it starts. Left out when
 * this user may not read the inbox. */
static int offline_held(const struct cwt_config *cfg, json_t *d)
{
    DIR *dp = opendir(cfg->inbox_dir);
    struct dirent *de;
    json_t *a;
    size_t n = 0;
    int rc;

    if (dp == NULL)
        return 0;
    /* Readable: the list is there, empty or not, as cwtd always sends it. */
    rc = cli_json_set(d, "inbox_held", a = json_array());
    while (rc == 0 && n < INBOX_REJECTED_SHOWN && (de = readdir(dp)) != NULL) {
        char path[PATH_MAX];
        struct stat sb;
        json_t *e;
        if (inbox_skip_name(de->d_name) ||
            file_join(path, sizeof(path), cfg->inbox_dir, de->d_name) != 0 ||
            lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if ((e = json_object()) == NULL || json_array_append_new(a, e) != 0) {
            rc = CWT_ENOMEM;
            break;
        }
        rc |= cli_json_set_str(e, "file", de->d_name);
        rc |=
            cli_json_set_str(e, "reason", "cwtd is not running; it reads the file when it starts");
        rc |= cli_json_set(e, "time", json_integer((json_int_t)sb.st_mtime));
        n++;
    }
    closedir(dp);
    if (rc == 0 && n > 0)
        rc |= cli_json_set(d, "held",
                           json_sprintf("%zu inbox file%s wait%s for cwtd to start", n,
                                        n == 1 ? "" : "s", n == 1 ? "s" : ""));
    return rc;
}

/* The daemon is down: what the configuration, roster and store (read-only) say, in the same
 * cwt.status/1 shape the daemon sends, with "daemon": false, "ok": false and the error
 * "daemon-down" (the command exits 1). NULL when out of memory. */
static json_t *offline_status(const struct cwt_config *cfg, const struct cwt_roster *roster,
                              const char *why)
{
    json_t *d = cli_json_doc("cwt.status/1", 0);
    struct store *st = NULL;
    char err[CWT_ERRLEN], state[4096], msg[CWT_ERRLEN + 64];
    uint8_t fp[32];
    size_t len = 0;
    int idx = roster_find_site(roster, cfg->site_id), rc = 0;

    if (d == NULL)
        return NULL;
    snprintf(msg, sizeof(msg), "cwtd is not running (%s)", why);
    rc |= cli_json_set(d, "error", json_string("daemon-down"));
    rc |= cli_json_set_str(d, "message", msg);
    rc |= cli_json_set(d, "daemon", json_false());
    rc |= cli_json_set_str(d, "site", cfg->site_id);
    rc |= cli_json_set_str(d, "federation", roster->federation);
    if (roster_fingerprint(roster, fp) == 0)
        rc |= cli_json_set(d, "roster_fingerprint", cli_json_hex(fp, 32));
    rc |= cli_json_set(d, "position", json_integer(idx));
    rc |= cli_json_set(d, "sites", json_integer(roster->n_sites));
    rc |= cli_json_set(d, "cycles", json_integer(roster->recipe.cycles));
    if (store_open(cfg->store_dir, STORE_RDONLY, cfg->store_max_bytes, &st, err, sizeof(err)) !=
        0) {
        rc |= cli_json_set_str(d, "detail", err);
    } else {
        struct ledger_entry *le = NULL;
        size_t n_le = 0;
        uint64_t counts[STORE_NSPLITS][CWT_MAX_CLASSES];
        char device[300];

        if (store_meta_get(st, "cwtd.device", device, sizeof(device) - 1, &len) == 0) {
            device[len] = '\0';
            rc |= cli_json_set_str(d, "device", device);
        }
        if (store_meta_get(st, "cwtd.state", state, sizeof(state) - 1, &len) == 0) {
            static struct cycle_state cs;
            char detail[512] = "", phase[32] = "?", from[CWT_ID_MAX + 1] = "", when[40];
            char serr[CWT_ERRLEN];
            unsigned cycle = 0;
            long long since = 0;
            int paused = 0;
            static const uint8_t zero[32];
            state[len] = '\0';
            /* The daemon's own decoder (cycle/cycle.h): the same strict rules as cwtd. */
            if (cycle_state_decode(state, len, &cs, serr, sizeof(serr)) != 0) {
                rc |= cli_json_set_str(d, "state_error", serr);
            } else {
                json_t *acc = json_array();
                snprintf(phase, sizeof(phase), "%s", cycle_phase_name(cs.phase));
                cycle = cs.cycle;
                since = (long long)cs.since;
                paused = cs.paused;
                snprintf(from, sizeof(from), "%s", cs.waiting_from);
                if (memcmp(cs.final_hash, zero, 32) != 0)
                    rc |= cli_json_set(d, "final_model", cli_json_hex(cs.final_hash, 32));
                for (uint32_t i = 0; acc != NULL && i < cs.n_metrics; i++) {
                    json_t *m = json_object();
                    double v = cs.metrics[i].val_accuracy;
                    if (m == NULL || json_array_append_new(acc, m) != 0) {
                        rc = CWT_ENOMEM;
                        break;
                    }
                    rc |= cli_json_set(m, "cycle", json_integer(cs.metrics[i].cycle));
                    rc |= cli_json_set(m, "value", isfinite(v) ? json_real(v) : json_null());
                }
                rc |= cli_json_set(d, "val_accuracy", acc);
            }
            fmt_time(since, when, sizeof(when));
            if (strcmp(phase, "waiting") == 0 && from[0] != '\0')
                snprintf(detail, sizeof(detail), "waiting for a bundle from %s since %s", from,
                         when);
            else
                snprintf(detail, sizeof(detail), "%s (cycle %u) since %s", phase, cycle, when);
            rc |= cli_json_set(d, "paused", json_boolean(paused));
            rc |= cli_json_set(d, "state", json_string(phase));
            rc |= cli_json_set_str(d, "detail", detail);
            rc |= cli_json_set(d, "cycle", json_integer(cycle));
            rc |= cli_json_set(d, "since", json_integer(since));
        } else {
            rc |= cli_json_set(d, "state", json_string("idle"));
            rc |= cli_json_set(d, "detail", json_string("never started"));
        }
        if (ledger_list(st, &le, &n_le) == 0) {
            for (int out = 0; out <= 1; out++)
                for (size_t i = n_le; i-- > 0;) {
                    json_t *b;
                    if (le[i].outgoing != out)
                        continue;
                    b = json_object();
                    rc |= cli_json_set(d, out ? "last_out" : "last_in", b);
                    if (b == NULL)
                        break;
                    rc |= cli_json_set(b, "bundle", cli_json_hex(le[i].bundle_id, 16));
                    rc |= cli_json_set(b, "kind", json_string(bundle_kind_name(le[i].kind)));
                    rc |= cli_json_set_str(b, out ? "to" : "from", le[i].peer);
                    rc |= cli_json_set(b, "cycle", json_integer(le[i].cycle));
                    rc |= cli_json_set(b, "hop", json_integer(le[i].hop));
                    rc |= cli_json_set(b, "sequence", json_integer((json_int_t)le[i].sequence));
                    rc |= cli_json_set(b, "time", json_integer((json_int_t)le[i].time));
                    break;
                }
            free(le);
        }
        memset(counts, 0, sizeof(counts));
        if (store_counts(st, roster->recipe.classes, counts) == 0) {
            json_t *img = json_object();
            rc |= cli_json_set(d, "images", img);
            for (int s = 0; img != NULL && s < STORE_NSPLITS; s++) {
                uint64_t tot = 0;
                for (uint32_t c = 0; c < roster->recipe.classes && c < CWT_MAX_CLASSES; c++)
                    tot += counts[s][c];
                rc |= cli_json_set(img, store_split_name((enum store_split)s),
                                   json_integer((json_int_t)tot));
            }
        }
        store_close(st);
    }
    rc |= offline_held(cfg, d);
    rc |= offline_rejected(cfg, d);
    if (rc != 0) {
        json_decref(d);
        return NULL;
    }
    return d;
}

/* ------------------------------------------------------------------ Prometheus export */

/* A label value with \, " and newline escaped (the text exposition format's rules). */
static void prom_label(FILE *f, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\' || *s == '"')
            fprintf(f, "\\%c", *s);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

static void prom_metric(FILE *f, const char *name, const char *type, const char *help,
                        const char *site, const char *extra_label, double v)
{
    if (help != NULL)
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    fprintf(f, "%s{site=\"", name);
    prom_label(f, site);
    fprintf(f, "\"%s} ", extra_label != NULL ? extra_label : "");
    if (isnan(v))
        fputs("NaN\n", f);
    else
        fprintf(f, "%.17g\n", v);
}

/* The status document d as a Prometheus text exposition (node_exporter textfile collector):
 * metrics whose value is unknown are left out rather than given as 0. Returns 0, or CLI_FAIL
 * with a sentence on stderr. */
static int prometheus(const json_t *d, const char *path)
{
    char *text = NULL, err[CWT_ERRLEN];
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    const char *site = jstr(d, "site") ? jstr(d, "site") : "";
    const json_t *b, *img, *acc;
    double v, seq = -1;
    int rc = 0;

    if (f == NULL)
        return cli_error(CLI_FAIL, "out of memory");
    prom_metric(f, "cwt_daemon_up", "gauge", "1 when cwtd answered on its control socket.", site,
                NULL, jtrue(d, "daemon") ? 1 : 0);
    if (jnum(d, "cycle", &v))
        prom_metric(f, "cwt_cycle", "gauge", "The cycle this site is in or last finished.", site,
                    NULL, v);
    for (int out = 0; out <= 1; out++) {
        b = json_object_get(d, out ? "last_out" : "last_in");
        if (jnum(b, "sequence", &v) && v > seq)
            seq = v;
    }
    if (seq >= 0)
        prom_metric(f, "cwt_sequence", "gauge",
                    "The highest bundle sequence number in this site's ledger.", site, NULL, seq);
    if (jnum(json_object_get(d, "last_in"), "time", &v))
        prom_metric(f, "cwt_last_bundle_in_timestamp_seconds", "gauge",
                    "When the last bundle was accepted (Unix time).", site, NULL, v);
    if (jnum(json_object_get(d, "last_out"), "time", &v))
        prom_metric(f, "cwt_last_bundle_out_timestamp_seconds", "gauge",
                    "When the last bundle was sealed (Unix time).", site, NULL, v);
    acc = json_object_get(d, "val_accuracy");
    if (json_array_size(acc) > 0) {
        const json_t *last = json_array_get(acc, json_array_size(acc) - 1);
        const json_t *val = json_object_get(last, "value");
        prom_metric(f, "cwt_val_accuracy", "gauge",
                    "Validation accuracy after the latest cycle (NaN if not finite).", site, NULL,
                    json_is_number(val) ? json_number_value(val) : NAN);
    }
    img = json_object_get(d, "images");
    if (json_is_object(img)) {
        static const char *const splits[] = {"train", "val", "test"};
        for (size_t i = 0; i < 3; i++) {
            char label[32];
            if (!jnum(img, splits[i], &v))
                continue;
            snprintf(label, sizeof(label), ",split=\"%s\"", splits[i]);
            prom_metric(f, "cwt_images", "gauge", i == 0 ? "Images in the site's store." : NULL,
                        site, label, v);
        }
    }
    if (json_is_array(json_object_get(d, "inbox_held")))
        prom_metric(f, "cwt_inbox_held", "gauge",
                    "Inbox files cwtd holds back (kept in the inbox).", site, NULL,
                    (double)json_array_size(json_object_get(d, "inbox_held")));
    if (jnum(d, "rejected_total", &v))
        prom_metric(f, "cwt_inbox_rejected_total", "counter",
                    "Inbox files moved to the inbox's rejected/ folder.", site, NULL, v);
    if (fclose(f) != 0) {
        free(text);
        return cli_error(CLI_FAIL, "out of memory");
    }
    if (path == NULL) {
        if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0)
            rc = cli_error(CLI_FAIL, "cannot write to stdout");
    } else if (file_write_atomic(path, text, len, 0644, err, sizeof(err)) != 0) {
        /* Temp file, fsync, rename: the collector never reads half a file. */
        rc = cli_fail(CLI_FAIL, "io", "%s", err);
    }
    free(text);
    return rc;
}

/* ------------------------------------------------------------------ the commands */

static void usage(FILE *f, const char *cmd)
{
    if (strcmp(cmd, "status") == 0)
        fprintf(f, "usage: cwtctl status [--json] [--prometheus [FILE]]\n"
                   "Shows what the site is doing; when cwtd is down, what its store holds.\n"
                   "--prometheus prints the metrics for Prometheus, or writes them to FILE\n"
                   "atomically (for node_exporter's textfile collector).\n");
    else
        fprintf(f, "usage: cwtctl %s [--json]\n", cmd);
}

/* Shows a status document: JSON, Prometheus or the table. Takes d. */
static int show(const struct cli_globals *g, json_t *d, int prom, const char *prom_path)
{
    int rc = CLI_OK;

    if (prom)
        rc = prometheus(d, prom_path);
    else if (g->json)
        return cli_json_emit(d, 0);
    else
        render_status(d);
    json_decref(d);
    return rc;
}

int cmd_control(int argc, char **argv, const struct cli_globals *g)
{
    struct cwt_config cfg;
    struct cwt_roster *roster;
    const char *cmd = argv[0], *prom_path = NULL;
    char err[CWT_ERRLEN], *reply = NULL;
    int is_status = strcmp(cmd, "status") == 0, prom = 0;
    json_t *d;
    int rc, e;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout, cmd);
            return CLI_OK;
        }
        if (is_status && strcmp(argv[i], "--prometheus") == 0) {
            prom = 1;
            if (i + 1 < argc && argv[i + 1][0] != '-')
                prom_path = argv[++i];
            continue;
        }
        if (is_status && strncmp(argv[i], "--prometheus=", 13) == 0) {
            prom = 1;
            prom_path = argv[i] + 13;
            continue;
        }
        usage(stderr, cmd);
        return cli_fail(CLI_USAGE, "bad-option", "'%s' takes no argument '%s'", cmd, argv[i]);
    }
    if (prom && g->json)
        return cli_fail(CLI_USAGE, "bad-option",
                        "status: --prometheus and --json exclude each other");
    roster = malloc(sizeof(*roster));
    if (roster == NULL)
        return cli_error(CLI_FAIL, "out of memory");
    rc = cli_load_site(g, &cfg, roster);
    if (rc != 0) {
        free(roster);
        return rc;
    }
    rc = request(cfg.socket_path, cmd, &reply, &e, err, sizeof(err));
    if (rc != 0 && e != 0) {
        if (e == EACCES || e == EPERM) {
            free(roster);
            return cli_fail(CLI_FAIL, "permission",
                            "permission denied on the control socket %s (members of "
                            "group '%s' and the daemon's user may use it)",
                            cfg.socket_path, cfg.group);
        }
        if (is_status) {
            d = offline_status(&cfg, roster, err);
            free(roster);
            if (d == NULL)
                return cli_fail(CLI_FAIL, "daemon-down", "cwtd is not running (%s)", err);
            if (!g->json)
                fprintf(stderr, "cwtctl: cwtd is not running (%s); showing the store\n", err);
            rc = show(g, d, prom, prom_path);
            /* The export is the answer a monitor asked for (cwt_daemon_up 0): it succeeded. */
            return prom ? rc : CLI_FAIL;
        }
        free(roster);
        return cli_fail(CLI_FAIL, "daemon-down", "cwtd is not running (%s)", err);
    }
    free(roster);
    if (rc != 0)
        return cli_fail(CLI_FAIL, "daemon-error", "%s", err);

    d = parse_reply(reply);
    free(reply);
    if (d == NULL)
        return cli_fail(CLI_FAIL, "daemon-error", "cwtd sent a reply that is not a JSON object");
    if (!json_is_true(json_object_get(d, "ok"))) {
        const char *msg = jstr(d, "error");
        rc = cli_fail(CLI_FAIL, "refused", "%s: %s", cmd, msg ? msg : "refused");
        json_decref(d);
        return rc;
    }
    if (is_status) {
        /* A cwtd older than cwt.status/1 sent 0/1 and a text fingerprint; name the shape. */
        if (json_object_get(d, "schema") == NULL &&
            cli_json_set(d, "schema", json_string("cwt.status/1")) != 0) {
            json_decref(d);
            return cli_error(CLI_FAIL, "out of memory");
        }
        if (json_is_string(json_object_get(d, "daemon")) &&
            cli_json_set(d, "daemon", json_true()) != 0) {
            json_decref(d);
            return cli_error(CLI_FAIL, "out of memory");
        }
        return show(g, d, prom, prom_path);
    }
    {
        const char *msg = jstr(d, "message");
        if (g->json) {
            json_t *o = cli_json_doc("cwt.control/1", 1);
            if (o != NULL && (cli_json_set(o, "command", json_string(cmd)) != 0 ||
                              cli_json_set_str(o, "message", msg ? msg : "ok") != 0)) {
                json_decref(o);
                o = NULL;
            }
            rc = cli_json_emit(o, 0);
        } else {
            printf("%s\n", msg ? msg : "ok");
            rc = CLI_OK;
        }
    }
    json_decref(d);
    return rc;
}
