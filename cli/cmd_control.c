/*
 * cmd_control.c - `cwtctl status|start|pause|resume|resend|stop`: one request line
 * {"cmd":"NAME"} to cwtd's control socket, one JSON reply line back. `status` renders the
 * reply as a table (or prints it with --json); when the daemon is down it says so and shows
 * what the store holds, opened read-only.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cycle/cycle.h"
#include "common/cwt.h"
#include "crypto/bundle.h"
#include "storage/store.h"

#define REPLY_MAX      (1u << 20) /* a status reply is a few KiB; anything near this is wrong */
#define REPLY_TIMEOUT  30.0       /* seconds; the daemon answers between training steps */
#define JSON_MAX_DEPTH 8
#define JSON_MAX_NODES 4096

/* ------------------------------------------------------------------ a small JSON reader */

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

/* Nodes live in one array; children of an object/array follow as a linked list. */
struct jnode {
    enum jtype type;
    char *key; /* member name inside an object, else NULL */
    char *str; /* J_STR */
    double num;
    int boolean;
    int first_child, next; /* indices, -1 for none */
};

struct jdoc {
    struct jnode nodes[JSON_MAX_NODES];
    int n;
    const char *p, *end;
    int bad;
};

static void jskip(struct jdoc *d)
{
    while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' || *d->p == '\r' || *d->p == '\n'))
        d->p++;
}

static char *jparse_string(struct jdoc *d)
{
    size_t cap = 64, len = 0;
    char *s;

    if (d->p >= d->end || *d->p != '"') {
        d->bad = 1;
        return NULL;
    }
    d->p++;
    s = malloc(cap);
    if (s == NULL) {
        d->bad = 1;
        return NULL;
    }
    while (d->p < d->end && *d->p != '"') {
        char c = *d->p++;
        if ((unsigned char)c < 0x20)
            goto bad;
        if (c == '\\') {
            if (d->p >= d->end)
                goto bad;
            c = *d->p++;
            switch (c) {
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'r':
                c = '\r';
                break;
            case 'b':
            case 'f':
                c = ' ';
                break;
            case 'u': {
                unsigned v = 0;
                if (d->end - d->p < 4)
                    goto bad;
                for (int i = 0; i < 4; i++) {
                    char h = *d->p++;
                    v <<= 4;
                    if (h >= '0' && h <= '9')
                        v |= (unsigned)(h - '0');
                    else if (h >= 'a' && h <= 'f')
                        v |= (unsigned)(h - 'a' + 10);
                    else if (h >= 'A' && h <= 'F')
                        v |= (unsigned)(h - 'A' + 10);
                    else
                        goto bad;
                }
                c = v < 0x80 && v >= 0x20 ? (char)v : '?'; /* display only */
                break;
            }
            case '"':
            case '\\':
            case '/':
                break;
            default:
                goto bad;
            }
        }
        if (len + 1 >= cap) {
            char *bigger;
            cap *= 2;
            bigger = realloc(s, cap);
            if (bigger == NULL)
                goto bad;
            s = bigger;
        }
        s[len++] = c;
    }
    if (d->p >= d->end)
        goto bad;
    d->p++;
    s[len] = '\0';
    return s;
bad:
    free(s);
    d->bad = 1;
    return NULL;
}

static int jparse_value(struct jdoc *d, int depth);

/* Parses the members or elements of a container whose opening bracket was consumed. */
static void jparse_children(struct jdoc *d, int self, int depth, int is_obj)
{
    int last = -1;
    char close = is_obj ? '}' : ']';

    jskip(d);
    if (d->p < d->end && *d->p == close) {
        d->p++;
        return;
    }
    for (;;) {
        char *key = NULL;
        int child;

        jskip(d);
        if (is_obj) {
            key = jparse_string(d);
            if (d->bad)
                return;
            jskip(d);
            if (d->p >= d->end || *d->p != ':') {
                free(key);
                d->bad = 1;
                return;
            }
            d->p++;
        }
        child = jparse_value(d, depth + 1);
        if (d->bad) {
            free(key);
            return;
        }
        d->nodes[child].key = key;
        if (last < 0)
            d->nodes[self].first_child = child;
        else
            d->nodes[last].next = child;
        last = child;
        jskip(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            continue;
        }
        if (d->p < d->end && *d->p == close) {
            d->p++;
            return;
        }
        d->bad = 1;
        return;
    }
}

static int jparse_value(struct jdoc *d, int depth)
{
    int self;
    struct jnode *n;

    if (depth > JSON_MAX_DEPTH || d->n >= JSON_MAX_NODES) {
        d->bad = 1;
        return 0;
    }
    self = d->n++;
    n = &d->nodes[self];
    memset(n, 0, sizeof(*n));
    n->first_child = -1;
    n->next = -1;
    jskip(d);
    if (d->p >= d->end) {
        d->bad = 1;
        return self;
    }
    if (*d->p == '{' || *d->p == '[') {
        int is_obj = *d->p == '{';
        n->type = is_obj ? J_OBJ : J_ARR;
        d->p++;
        jparse_children(d, self, depth, is_obj);
    } else if (*d->p == '"') {
        n->type = J_STR;
        n->str = jparse_string(d);
    } else if (d->end - d->p >= 4 && strncmp(d->p, "null", 4) == 0) {
        n->type = J_NULL;
        d->p += 4;
    } else if (d->end - d->p >= 4 && strncmp(d->p, "true", 4) == 0) {
        n->type = J_BOOL;
        n->boolean = 1;
        d->p += 4;
    } else if (d->end - d->p >= 5 && strncmp(d->p, "false", 5) == 0) {
        n->type = J_BOOL;
        d->p += 5;
    } else {
        char num[64];
        size_t k = 0;
        char *endp;
        while (d->p < d->end && k + 1 < sizeof(num) && strchr("+-0123456789.eE", *d->p))
            num[k++] = *d->p++;
        num[k] = '\0';
        n->type = J_NUM;
        n->num = strtod(num, &endp);
        if (k == 0 || *endp != '\0')
            d->bad = 1;
    }
    return self;
}

static void jdoc_free(struct jdoc *d)
{
    for (int i = 0; i < d->n; i++) {
        free(d->nodes[i].key);
        free(d->nodes[i].str);
    }
    d->n = 0;
}

/* Parses text into d (heap: the node table is large). 0 or CLI_FAIL. */
static int jdoc_parse(struct jdoc *d, const char *text, size_t len)
{
    d->n = 0;
    d->bad = 0;
    d->p = text;
    d->end = text + len;
    jparse_value(d, 0);
    jskip(d);
    if (d->bad || d->p != d->end || d->nodes[0].type != J_OBJ)
        return CLI_FAIL;
    return 0;
}

static const struct jnode *jget(const struct jdoc *d, int obj, const char *key)
{
    if (obj < 0 || obj >= d->n || d->nodes[obj].type != J_OBJ)
        return NULL;
    for (int c = d->nodes[obj].first_child; c >= 0; c = d->nodes[c].next)
        if (d->nodes[c].key != NULL && strcmp(d->nodes[c].key, key) == 0)
            return &d->nodes[c];
    return NULL;
}

static int jindex(const struct jdoc *d, const struct jnode *n)
{
    return n == NULL ? -1 : (int)(n - d->nodes);
}

static const char *jstr(const struct jdoc *d, int obj, const char *key)
{
    const struct jnode *n = jget(d, obj, key);

    return n != NULL && n->type == J_STR ? n->str : NULL;
}

static int jnum(const struct jdoc *d, int obj, const char *key, double *out)
{
    const struct jnode *n = jget(d, obj, key);

    if (n == NULL || n->type != J_NUM)
        return 0;
    *out = n->num;
    return 1;
}

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

/* ------------------------------------------------------------------ status rendering */

static void fmt_time(int64_t t, char *out, size_t outlen)
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (t <= 0 || gmtime_r(&tt, &tm) == NULL ||
        strftime(out, outlen, "%Y-%m-%d %H:%M:%SZ", &tm) == 0)
        snprintf(out, outlen, "-");
}

static void render_bundle(const struct jdoc *d, int root, const char *key, const char *label)
{
    int b = jindex(d, jget(d, root, key));
    const char *kind, *peer, *id;
    double cycle = 0, hop = 0, t = 0;
    char when[40];
    int out = strcmp(key, "last_out") == 0;

    if (b < 0)
        return;
    kind = jstr(d, b, "kind");
    peer = jstr(d, b, out ? "to" : "from");
    id = jstr(d, b, "bundle");
    jnum(d, b, "cycle", &cycle);
    jnum(d, b, "hop", &hop);
    jnum(d, b, "time", &t);
    fmt_time((int64_t)t, when, sizeof(when));
    printf("%-16s %s %s %s (cycle %.0f, hop %.0f) at %s, id %.16s\n", label, kind ? kind : "?",
           out ? "to" : "from", peer ? peer : "?", cycle, hop, when, id ? id : "?");
}

static void render_status(const struct jdoc *d)
{
    const int root = 0;
    const char *s;
    double pos = 0, sites = 0, v;
    int arr;

    s = jstr(d, root, "daemon");
    printf("%-16s %s\n", "daemon", s ? s : "?");
    jnum(d, root, "position", &pos);
    jnum(d, root, "sites", &sites);
    printf("%-16s %s (%.0f of %.0f) in federation %s\n", "site",
           jstr(d, root, "site") ? jstr(d, root, "site") : "?", pos + 1, sites,
           jstr(d, root, "federation") ? jstr(d, root, "federation") : "?");
    if ((s = jstr(d, root, "roster_fingerprint")) != NULL)
        printf("%-16s %s\n", "roster", s);
    if ((s = jstr(d, root, "heuristic")) != NULL && jnum(d, root, "cycles", &v))
        printf("%-16s %s, %.0f cycles\n", "heuristic", s, v);
    if ((s = jstr(d, root, "device")) != NULL)
        printf("%-16s %s\n", "device", s);
    if ((s = jstr(d, root, "detail")) != NULL)
        printf("%-16s %s%s\n", "state", s,
               jnum(d, root, "paused", &v) && v != 0 ? " (paused)" : "");
    render_bundle(d, root, "last_in", "last in");
    render_bundle(d, root, "last_out", "last out");
    if ((s = jstr(d, root, "outbox_file")) != NULL)
        printf("%-16s %s%s\n", "outbox", s,
               jnum(d, root, "outbox_written", &v) && v == 0 ? " (not written yet)" : "");
    if ((s = jstr(d, root, "outbox_error")) != NULL)
        printf("%-16s %s\n", "outbox error", s);
    if ((s = jstr(d, root, "held")) != NULL)
        printf("%-16s %s\n", "held", s);
    if ((s = jstr(d, root, "last_error")) != NULL)
        printf("%-16s %s\n", "last error", s);
    arr = jindex(d, jget(d, root, "val_accuracy"));
    if (arr >= 0 && d->nodes[arr].first_child >= 0) {
        printf("%-16s", "val accuracy");
        for (int c = d->nodes[arr].first_child; c >= 0; c = d->nodes[c].next) {
            double cyc = 0, acc = NAN;
            jnum(d, c, "cycle", &cyc);
            jnum(d, c, "value", &acc);
            printf(" c%.0f=%.4f", cyc, acc);
        }
        printf("\n");
    }
    arr = jindex(d, jget(d, root, "images"));
    if (arr >= 0) {
        double tr = 0, va = 0, te = 0;
        jnum(d, arr, "train", &tr);
        jnum(d, arr, "val", &va);
        jnum(d, arr, "test", &te);
        printf("%-16s train %.0f, val %.0f, test %.0f\n", "images", tr, va, te);
    }
    if ((s = jstr(d, root, "final_model")) != NULL)
        printf("%-16s %s\n", "final model", s);
    if (jnum(d, root, "trainer_restarts", &v) && v > 0)
        printf("%-16s %.0f\n", "trainer restarts", v);
}

/* The daemon is down: what the configuration, roster and store (read-only) say, as the same
 * JSON the daemon would send, so both paths render alike. Returns a malloc'd string. */
static char *offline_status(const struct cwt_config *cfg, const struct cwt_roster *roster,
                            const char *why)
{
    char *text = NULL, fp_text[80], state[4096], hex[40];
    size_t text_len = 0, len = 0;
    FILE *f = open_memstream(&text, &text_len);
    struct store *st = NULL;
    char err[CWT_ERRLEN];
    uint8_t fp[32];
    int idx = roster_find_site(roster, cfg->site_id);

    if (f == NULL)
        return NULL;
    fputs("{\"ok\":true,\"daemon\":", f);
    cli_json_string(f, "not running");
    fputs(",\"why\":", f);
    cli_json_string(f, why);
    fputs(",\"site\":", f);
    cli_json_string(f, cfg->site_id);
    fputs(",\"federation\":", f);
    cli_json_string(f, roster->federation);
    if (roster_fingerprint(roster, fp) == 0) {
        roster_fingerprint_text(fp, fp_text, sizeof(fp_text));
        fputs(",\"roster_fingerprint\":", f);
        cli_json_string(f, fp_text);
    }
    fprintf(f, ",\"position\":%d,\"sites\":%u,\"cycles\":%u", idx < 0 ? -1 : idx, roster->n_sites,
            roster->recipe.cycles);
    if (store_open(cfg->store_dir, STORE_RDONLY, cfg->store_max_bytes, &st, err, sizeof(err)) !=
        0) {
        fputs(",\"detail\":", f);
        cli_json_string(f, err);
    } else {
        struct ledger_entry *le = NULL;
        size_t n_le = 0;
        uint64_t counts[STORE_NSPLITS][CWT_MAX_CLASSES];
        char device[300];

        if (store_meta_get(st, "cwtd.device", device, sizeof(device) - 1, &len) == 0) {
            device[len] = '\0';
            fputs(",\"device\":", f);
            cli_json_string(f, device);
        }
        if (store_meta_get(st, "cwtd.state", state, sizeof(state) - 1, &len) == 0) {
            static struct cycle_state cs;
            char detail[512] = "", phase[32] = "?", from[CWT_ID_MAX + 1] = "";
            char final_hash[65] = "", serr[CWT_ERRLEN];
            unsigned cycle = 0;
            long long since = 0;
            int paused = 0;
            static const uint8_t zero[32];
            state[len] = '\0';
            /* The daemon's own decoder (cycle/cycle.h): the same strict rules as cwtd. */
            if (cycle_state_decode(state, len, &cs, serr, sizeof(serr)) != 0) {
                fputs(",\"state_error\":", f);
                cli_json_string(f, serr);
            } else {
                snprintf(phase, sizeof(phase), "%s", cycle_phase_name(cs.phase));
                cycle = cs.cycle;
                since = (long long)cs.since;
                paused = cs.paused;
                snprintf(from, sizeof(from), "%s", cs.waiting_from);
                if (memcmp(cs.final_hash, zero, 32) != 0)
                    cwt_hex(cs.final_hash, 32, final_hash);
                if (cs.n_metrics > 0) {
                    fputs(",\"val_accuracy\":[", f);
                    for (uint32_t i = 0; i < cs.n_metrics; i++) {
                        fprintf(f, "%s{\"cycle\":%u,\"value\":", i ? "," : "", cs.metrics[i].cycle);
                        if (isfinite(cs.metrics[i].val_accuracy))
                            fprintf(f, "%.6g}", cs.metrics[i].val_accuracy);
                        else
                            fputs("null}", f);
                    }
                    fputs("]", f);
                }
            }
            fmt_time(since, hex, sizeof(hex));
            if (strcmp(phase, "waiting") == 0 && from[0] != '\0')
                snprintf(detail, sizeof(detail), "waiting for a bundle from %s since %s", from,
                         hex);
            else
                snprintf(detail, sizeof(detail), "%s (cycle %u) since %s", phase, cycle, hex);
            fprintf(f, ",\"paused\":%d", paused ? 1 : 0);
            fputs(",\"state\":", f);
            cli_json_string(f, phase);
            fputs(",\"detail\":", f);
            cli_json_string(f, detail);
            if (final_hash[0] != '\0') {
                fputs(",\"final_model\":", f);
                cli_json_string(f, final_hash);
            }
        } else {
            fputs(",\"state\":\"idle\",\"detail\":\"never started\"", f);
        }
        if (ledger_list(st, &le, &n_le) == 0) {
            for (int out = 0; out <= 1; out++)
                for (size_t i = n_le; i-- > 0;) {
                    char id[33];
                    if (le[i].outgoing != out)
                        continue;
                    cwt_hex(le[i].bundle_id, 16, id);
                    fprintf(f, ",\"%s\":{\"bundle\":\"%s\",\"kind\":", out ? "last_out" : "last_in",
                            id);
                    cli_json_string(f, bundle_kind_name(le[i].kind));
                    fprintf(f, ",\"%s\":", out ? "to" : "from");
                    cli_json_string(f, le[i].peer);
                    fprintf(f, ",\"cycle\":%u,\"hop\":%u,\"sequence\":%" PRIu64 ",\"time\":%lld}",
                            le[i].cycle, le[i].hop, le[i].sequence, (long long)le[i].time);
                    break;
                }
            free(le);
        }
        memset(counts, 0, sizeof(counts));
        if (store_counts(st, roster->recipe.classes, counts) == 0) {
            uint64_t tot[STORE_NSPLITS] = {0};
            for (int s = 0; s < STORE_NSPLITS; s++)
                for (uint32_t c = 0; c < roster->recipe.classes && c < CWT_MAX_CLASSES; c++)
                    tot[s] += counts[s][c];
            fprintf(f,
                    ",\"images\":{\"train\":%" PRIu64 ",\"val\":%" PRIu64 ",\"test\":%" PRIu64 "}",
                    tot[0], tot[1], tot[2]);
        }
        store_close(st);
    }
    fputs("}", f);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static int show(const struct cli_globals *g, const char *json)
{
    struct jdoc *d;
    int rc;

    if (g->json) {
        printf("%s\n", json);
        return CLI_OK;
    }
    d = malloc(sizeof(*d));
    if (d == NULL)
        return cli_error(CLI_FAIL, "out of memory");
    rc = jdoc_parse(d, json, strlen(json));
    if (rc == 0)
        render_status(d);
    jdoc_free(d);
    free(d);
    return rc == 0 ? CLI_OK : cli_error(CLI_FAIL, "cwtd sent a reply that is not JSON");
}

static void usage(FILE *f, const char *cmd)
{
    if (strcmp(cmd, "status") == 0)
        fprintf(f, "usage: cwtctl status [--json]\n"
                   "Shows what the site is doing; when cwtd is down, what its store holds.\n");
    else
        fprintf(f, "usage: cwtctl %s\n", cmd);
}

int cmd_control(int argc, char **argv, const struct cli_globals *g)
{
    struct cwt_config cfg;
    struct cwt_roster *roster;
    const char *cmd = argv[0];
    char err[CWT_ERRLEN], *reply = NULL;
    struct jdoc *d;
    int rc, e;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout, cmd);
            return CLI_OK;
        }
        usage(stderr, cmd);
        return cli_error(CLI_USAGE, "'%s' takes no argument '%s'", cmd, argv[i]);
    }
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
            return cli_error(CLI_FAIL,
                             "permission denied on the control socket %s (members of "
                             "group '%s' and the daemon's user may use it)",
                             cfg.socket_path, cfg.group);
        }
        if (strcmp(cmd, "status") == 0) {
            char *json = offline_status(&cfg, roster, err);
            free(roster);
            if (json == NULL)
                return cli_error(CLI_FAIL, "cwtd is not running (%s)", err);
            if (!g->json)
                fprintf(stderr, "cwtctl: cwtd is not running (%s); showing the store\n", err);
            show(g, json);
            free(json);
            return CLI_FAIL;
        }
        free(roster);
        return cli_error(CLI_FAIL, "cwtd is not running (%s)", err);
    }
    free(roster);
    if (rc != 0)
        return cli_error(CLI_FAIL, "%s", err);

    d = malloc(sizeof(*d));
    if (d == NULL) {
        free(reply);
        return cli_error(CLI_FAIL, "out of memory");
    }
    if (jdoc_parse(d, reply, strlen(reply)) != 0) {
        jdoc_free(d);
        free(d);
        free(reply);
        return cli_error(CLI_FAIL, "cwtd sent a reply that is not JSON");
    }
    {
        const struct jnode *ok = jget(d, 0, "ok");
        const char *msg = jstr(d, 0, "error");
        if (ok == NULL || ok->type != J_BOOL || !ok->boolean) {
            rc = cli_error(CLI_FAIL, "%s: %s", cmd, msg ? msg : "refused");
            if (g->json)
                printf("%s\n", reply);
        } else if (strcmp(cmd, "status") == 0) {
            rc = show(g, reply);
        } else {
            msg = jstr(d, 0, "message");
            if (g->json)
                printf("%s\n", reply);
            else
                printf("%s\n", msg ? msg : "ok");
            rc = CLI_OK;
        }
    }
    jdoc_free(d);
    free(d);
    free(reply);
    return rc;
}
