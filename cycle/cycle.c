/*
 * cycle.c - the rules of the cycle (DESIGN section 5) as pure functions, and the codec of the
 * persistent cycle state.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cycle/cycle.h"

/* Index = enum cwtd_phase. */
static const char *const phase_names[] = {"idle", "waiting", "training", "sealing", "finished"};

const char *cycle_phase_name(enum cwtd_phase p)
{
    if ((unsigned)p >= sizeof(phase_names) / sizeof(phase_names[0]))
        return "unknown";
    return phase_names[p];
}

/* --------------------------------------------------------------- history / patience */

void cycle_history_init(struct cycle_history *h)
{
    memset(h, 0, sizeof(*h));
    h->best = -1;
}

int cycle_history_valid(const struct cycle_history *h)
{
    return h->n <= CWTD_HISTORY_NMAX && isfinite(h->sum) && h->sum >= 0 && h->sum <= (double)h->n &&
           isfinite(h->best) && (h->best == -1 || (h->best >= 0 && h->best <= 1));
}

/* Parses "NAME=" then a number up to the next space or the end; advances *p. */
static int history_field(const char **p, const char *name, int is_double, double *d, uint32_t *u)
{
    char num[64];
    size_t nl = strlen(name), len;

    if (strncmp(*p, name, nl) != 0 || (*p)[nl] != '=')
        return -1;
    *p += nl + 1;
    len = strcspn(*p, " ");
    if (len == 0 || len >= sizeof(num))
        return -1;
    memcpy(num, *p, len);
    num[len] = '\0';
    *p += len;
    if (is_double)
        return cwt_parse_double(num, -1, 1e12, d) == 0 ? 0 : -1;
    {
        int64_t x;
        if (cwt_parse_i64(num, 0, UINT32_MAX, &x) != 0)
            return -1;
        *u = (uint32_t)x;
    }
    return 0;
}

int cycle_history_parse(const char *text, struct cycle_history *h, char *err, size_t errlen)
{
    struct cycle_history v;
    const char *p = text;

    cycle_history_init(h);
    if (text == NULL || text[0] == '\0')
        return 0;
    cycle_history_init(&v);
    for (const char *q = text; *q != '\0'; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f)
            return cwt_seterr(err, errlen, CWT_EFORMAT,
                              "history text has a control character at byte %zu",
                              (size_t)(q - text));
    if (strlen(text) > CWTD_HISTORY_MAX || history_field(&p, "cur", 0, NULL, &v.cur) != 0 ||
        *p++ != ' ' || history_field(&p, "sum", 1, &v.sum, NULL) != 0 || *p++ != ' ' ||
        history_field(&p, "n", 0, NULL, &v.n) != 0 || *p++ != ' ' ||
        history_field(&p, "best", 1, &v.best, NULL) != 0 || *p++ != ' ' ||
        history_field(&p, "bestc", 0, NULL, &v.bestc) != 0 || *p != '\0')
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "history is not \"cur=C sum=S n=K best=B bestc=BC\"");
    if (!cycle_history_valid(&v))
        return cwt_seterr(err, errlen, CWT_EFORMAT, "history values are out of range");
    *h = v;
    return 0;
}

int cycle_history_format(const struct cycle_history *h, char *out, size_t outlen)
{
    int n;

    if (!cycle_history_valid(h))
        return CWT_EINVAL;
    n = snprintf(out, outlen, "cur=%u sum=%.17g n=%u best=%.17g bestc=%u", h->cur, h->sum, h->n,
                 h->best, h->bestc);
    if (n < 0 || (size_t)n >= outlen)
        return CWT_ETOOBIG;
    return 0;
}

void cycle_history_update(const struct cycle_history *in, uint32_t cycle, double val, int last_hop,
                          struct cycle_history *out)
{
    struct cycle_history h;

    if (in != NULL && cycle_history_valid(in))
        h = *in;
    else
        cycle_history_init(&h);
    if (h.cur != cycle) {
        h.cur = cycle;
        h.sum = 0;
        h.n = 0;
    }
    if (isfinite(val) && val >= 0 && val <= 1 && h.n < CWTD_HISTORY_NMAX) {
        h.sum += val;
        h.n++;
        if (h.sum > (double)h.n)
            h.sum = (double)h.n; /* rounding never leaves the valid range */
    }
    if (last_hop && h.n > 0) {
        double mean = h.sum / h.n;
        /* Strictly better: a plateau counts as no improvement. */
        if (mean > h.best) {
            h.best = mean;
            h.bestc = cycle;
        }
    }
    *out = h;
}

int cycle_should_stop(const struct cycle_history *h, uint32_t cycle, uint32_t cycles,
                      uint32_t patience)
{
    if (cycles > 0 && cycle + 1 >= cycles)
        return 1;
    if (patience == 0)
        return 0;
    if (h == NULL || !cycle_history_valid(h) || h->best < 0)
        return 0; /* no validation data anywhere: run every cycle */
    return cycle >= h->bestc && cycle - h->bestc >= patience;
}

int cycle_next_visit(uint32_t n_sites, uint32_t me, uint32_t sender_hop, uint32_t cycle,
                     uint32_t *cycle_out, char *err, size_t errlen)
{
    uint32_t pred;

    if (n_sites == 0 || me >= n_sites || sender_hop >= n_sites)
        return cwt_seterr(err, errlen, CWT_EINVAL, "site index out of range");
    pred = (me + n_sites - 1) % n_sites;
    if (sender_hop != pred)
        return cwt_seterr(err, errlen, CWT_ESTATE,
                          "the bundle comes from hop %u, but this site "
                          "(hop %u) receives cycle bundles only from hop %u",
                          sender_hop, me, pred);
    if (sender_hop == n_sites - 1) {
        if (cycle == UINT32_MAX)
            return cwt_seterr(err, errlen, CWT_EINVAL, "cycle number overflows");
        *cycle_out = cycle + 1;
    } else {
        *cycle_out = cycle;
    }
    return 0;
}

uint64_t cycle_sequence(uint32_t n_sites, uint32_t cycle, uint32_t hop)
{
    return (uint64_t)cycle * n_sites + hop;
}

int cycle_after(uint32_t n_sites, uint32_t hop, uint64_t parent_seq, uint32_t *cycle_out)
{
    uint64_t c;

    if (n_sites == 0 || hop >= n_sites)
        return CWT_EINVAL;
    c = parent_seq / n_sites + (hop <= parent_seq % n_sites ? 1 : 0);
    if (c > UINT32_MAX)
        return CWT_EINVAL;
    *cycle_out = (uint32_t)c;
    return 0;
}

uint64_t cycle_loader_seed(uint64_t roster_seed, uint32_t cycle, uint32_t hop)
{
    /* SplitMix64 over the three inputs; any fixed mixing works as long as every site and
     * every restart computes the same value. */
    uint64_t z = roster_seed ^ ((uint64_t)cycle << 32 | hop);

    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void cycle_ckpt_name(uint32_t cycle, uint32_t hop, char *out, size_t outlen)
{
    snprintf(out, outlen, "cwtd.visit.c%u.h%u", cycle, hop);
}

int cycle_bundle_name(const char *federation, uint32_t cycle, uint32_t hop, const char *kind,
                      const char *to, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s-c%u-h%u-%s-to-%s.cwtb", federation, cycle, hop, kind, to);

    if (n < 0 || (size_t)n >= outlen)
        return CWT_ETOOBIG;
    return 0;
}

/* --------------------------------------------------------------- state codec */

/* Appends printf output to a bounded buffer; sets *bad when it does not fit. */
static void addf(char *out, size_t outlen, size_t *pos, int *bad, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void addf(char *out, size_t outlen, size_t *pos, int *bad, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (*bad)
        return;
    va_start(ap, fmt);
    n = vsnprintf(out + *pos, outlen - *pos, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= outlen - *pos) {
        *bad = 1;
        return;
    }
    *pos += (size_t)n;
}

/* An outbox file name as cwtd makes them: printable, no slash, not hidden ("" = none). */
static int valid_out_name(const char *v)
{
    if (strlen(v) > NAME_MAX || v[0] == '.')
        return 0;
    for (; *v != '\0'; v++)
        if ((unsigned char)*v < 0x20 || *v == 0x7f || *v == '/')
            return 0;
    return 1;
}

int cycle_state_encode(const struct cycle_state *cs, char *out, size_t outlen)
{
    char hex[65], history[CWTD_HISTORY_MAX + 1];
    size_t pos = 0;
    int bad = 0;

    if (outlen == 0)
        return CWT_ETOOBIG;
    out[0] = '\0';
    /* Names are written only when they are what the decoder accepts; numbers are formatted. */
    if ((cs->waiting_from[0] != '\0' && !cwt_valid_id(cs->waiting_from)) ||
        !valid_out_name(cs->out_name) ||
        cycle_history_format(&cs->history, history, sizeof(history)) != 0)
        return CWT_EINVAL;
    addf(out, outlen, &pos, &bad, "version=2\nphase=%s\ncycle=%u\nhop=%u\nhas_input=%d\n",
         cycle_phase_name(cs->phase), cs->cycle, cs->hop, cs->has_input ? 1 : 0);
    cwt_hex(cs->parent_hash, 32, hex);
    addf(out, outlen, &pos, &bad, "has_parent=%d\nparent=%s\n", cs->has_parent ? 1 : 0, hex);
    cwt_hex(cs->in_bundle_id, 16, hex);
    addf(out, outlen, &pos, &bad, "in_bundle=%s\nepochs_before=%.17g\nhistory=%s\n", hex,
         cs->epochs_before, history);
    addf(out, outlen, &pos, &bad, "carry=%u,%" PRIu64 "\n", cs->carry_visits, cs->carry_steps);
    addf(out, outlen, &pos, &bad, "waiting_from=%s\nsince=%" PRId64 "\npaused=%d\n",
         cs->waiting_from, cs->since, cs->paused ? 1 : 0);
    addf(out, outlen, &pos, &bad,
         "has_out=%d\nout_seq=%" PRIu64 "\nout_name=%s\n"
         "out_written=%d\nout_kind=%u\n",
         cs->has_out ? 1 : 0, cs->out_seq, cs->out_name, cs->out_written ? 1 : 0,
         (unsigned)cs->out_kind);
    cwt_hex(cs->final_hash, 32, hex);
    addf(out, outlen, &pos, &bad, "final=%s\nensemble=%u,%u\n", hex, cs->ensemble_mask_lo,
         cs->ensemble_mask_hi);
    addf(out, outlen, &pos, &bad,
         "summary=%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%.17g,%.17g,%.17g,%.17g,%.17g,%.17g\n",
         cs->sum_steps, cs->sum_train_n, cs->sum_val_n, cs->sum_epochs, cs->sum_train_loss,
         cs->sum_train_acc, cs->sum_val_loss, cs->sum_val_acc, cs->sum_val_auc);
    addf(out, outlen, &pos, &bad, "metrics=");
    for (uint32_t i = 0; i < cs->n_metrics && i < CWTD_MAX_METRICS; i++)
        addf(out, outlen, &pos, &bad, "%s%u:%.6g", i ? "," : "", cs->metrics[i].cycle,
             cs->metrics[i].val_accuracy);
    addf(out, outlen, &pos, &bad, "\n");
    if (bad)
        return CWT_ETOOBIG;
    return (int)pos;
}

/* Copies a value into a fixed field; 0 or -1 when it does not fit. */
static int copy_field(char *dst, size_t dstlen, const char *val)
{
    size_t n = strlen(val);

    if (n >= dstlen)
        return -1;
    memcpy(dst, val, n + 1);
    return 0;
}

static int parse_u32(const char *v, uint32_t *out)
{
    int64_t x;

    if (cwt_parse_i64(v, 0, UINT32_MAX, &x) != 0)
        return -1;
    *out = (uint32_t)x;
    return 0;
}

static int parse_metrics(const char *v, struct cycle_state *cs)
{
    cs->n_metrics = 0;
    while (*v != '\0') {
        unsigned cyc;
        double acc;
        int used = 0;

        if (cs->n_metrics >= CWTD_MAX_METRICS)
            return -1;
        if (sscanf(v, "%u:%lf%n", &cyc, &acc, &used) != 2 || used <= 0)
            return -1;
        cs->metrics[cs->n_metrics].cycle = cyc;
        cs->metrics[cs->n_metrics].val_accuracy = acc;
        cs->n_metrics++;
        v += used;
        if (*v == ',')
            v++;
        else if (*v != '\0')
            return -1;
    }
    return 0;
}

static int parse_line(struct cycle_state *cs, const char *key, const char *v)
{
    int64_t x;

    /* Version 1 is version 2 without "carry" (no visit counted yet): it still loads. */
    if (strcmp(key, "version") == 0)
        return strcmp(v, "1") == 0 || strcmp(v, "2") == 0 ? 0 : -1;
    if (strcmp(key, "phase") == 0) {
        for (size_t i = 0; i < sizeof(phase_names) / sizeof(phase_names[0]); i++)
            if (strcmp(v, phase_names[i]) == 0) {
                cs->phase = (enum cwtd_phase)i;
                return 0;
            }
        return -1;
    }
    if (strcmp(key, "cycle") == 0)
        return parse_u32(v, &cs->cycle);
    if (strcmp(key, "hop") == 0)
        return parse_u32(v, &cs->hop);
    if (strcmp(key, "paused") == 0) {
        if (cwt_parse_i64(v, 0, 1, &x) != 0)
            return -1;
        cs->paused = (int)x;
        return 0;
    }
    if (strcmp(key, "has_input") == 0 || strcmp(key, "has_parent") == 0 ||
        strcmp(key, "has_out") == 0 || strcmp(key, "out_written") == 0) {
        if (cwt_parse_i64(v, 0, 1, &x) != 0)
            return -1;
        if (key[0] == 'o')
            cs->out_written = (int)x;
        else if (strcmp(key, "has_input") == 0)
            cs->has_input = (int)x;
        else if (strcmp(key, "has_parent") == 0)
            cs->has_parent = (int)x;
        else
            cs->has_out = (int)x;
        return 0;
    }
    if (strcmp(key, "parent") == 0)
        return cwt_unhex(v, cs->parent_hash, 32) == 0 ? 0 : -1;
    if (strcmp(key, "in_bundle") == 0)
        return cwt_unhex(v, cs->in_bundle_id, 16) == 0 ? 0 : -1;
    if (strcmp(key, "final") == 0)
        return cwt_unhex(v, cs->final_hash, 32) == 0 ? 0 : -1;
    if (strcmp(key, "epochs_before") == 0)
        return cwt_parse_double(v, 0, 1e15, &cs->epochs_before) == 0 ? 0 : -1;
    if (strcmp(key, "history") == 0)
        return cycle_history_parse(v, &cs->history, NULL, 0) == 0 ? 0 : -1;
    if (strcmp(key, "waiting_from") == 0)
        return (v[0] == '\0' || cwt_valid_id(v))
                   ? copy_field(cs->waiting_from, sizeof(cs->waiting_from), v)
                   : -1;
    if (strcmp(key, "since") == 0)
        return cwt_parse_i64(v, 0, INT64_MAX, &cs->since);
    if (strcmp(key, "out_seq") == 0) {
        if (cwt_parse_i64(v, 0, INT64_MAX, &x) != 0)
            return -1;
        cs->out_seq = (uint64_t)x;
        return 0;
    }
    if (strcmp(key, "out_name") == 0)
        return valid_out_name(v) ? copy_field(cs->out_name, sizeof(cs->out_name), v) : -1;
    if (strcmp(key, "out_kind") == 0) {
        if (cwt_parse_i64(v, 0, 255, &x) != 0)
            return -1;
        cs->out_kind = (uint8_t)x;
        return 0;
    }
    if (strcmp(key, "ensemble") == 0) {
        unsigned lo, hi;
        int used = 0;
        if (sscanf(v, "%u,%u%n", &lo, &hi, &used) != 2 || v[used] != '\0')
            return -1;
        cs->ensemble_mask_lo = lo;
        cs->ensemble_mask_hi = hi;
        return 0;
    }
    if (strcmp(key, "metrics") == 0)
        return parse_metrics(v, cs);
    if (strcmp(key, "carry") == 0) {
        char vis[16];
        const char *comma = strchr(v, ',');
        int64_t st;
        if (comma == NULL || (size_t)(comma - v) >= sizeof(vis))
            return -1;
        memcpy(vis, v, (size_t)(comma - v));
        vis[comma - v] = '\0';
        if (parse_u32(vis, &cs->carry_visits) != 0 || cwt_parse_i64(comma + 1, 0, INT64_MAX, &st))
            return -1;
        cs->carry_steps = (uint64_t)st;
        return 0;
    }
    if (strcmp(key, "summary") == 0) {
        unsigned long long st, tn, vn;
        int used = 0;
        /* NaN is written as "nan" by printf and read back by scanf. */
        if (sscanf(v, "%llu,%llu,%llu,%lf,%lf,%lf,%lf,%lf,%lf%n", &st, &tn, &vn, &cs->sum_epochs,
                   &cs->sum_train_loss, &cs->sum_train_acc, &cs->sum_val_loss, &cs->sum_val_acc,
                   &cs->sum_val_auc, &used) != 9 ||
            v[used] != '\0')
            return -1;
        cs->sum_steps = st;
        cs->sum_train_n = tn;
        cs->sum_val_n = vn;
        return 0;
    }
    return -1;
}

int cycle_state_decode(const char *text, size_t len, struct cycle_state *cs, char *err,
                       size_t errlen)
{
    char line[CWTD_STATE_MAX], seen[32][24];
    size_t pos = 0;
    int lineno = 0, n_seen = 0;

    memset(cs, 0, sizeof(*cs));
    cycle_history_init(&cs->history);
    if (len >= CWTD_STATE_MAX)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "daemon state of %zu bytes is too long", len);
    while (pos < len) {
        size_t end = pos, n;
        char *eq;

        while (end < len && text[end] != '\n')
            end++;
        n = end - pos;
        lineno++;
        memcpy(line, text + pos, n);
        line[n] = '\0';
        pos = end + 1;
        if (n == 0)
            continue;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
                return cwt_seterr(err, errlen, CWT_EFORMAT,
                                  "daemon state line %d has a control character", lineno);
        if ((eq = strchr(line, '=')) == NULL)
            return cwt_seterr(err, errlen, CWT_EFORMAT, "daemon state line %d is malformed",
                              lineno);
        *eq = '\0';
        /* Each key once: a second "cycle=" line must not override the first. */
        for (int i = 0; i < n_seen; i++)
            if (strcmp(seen[i], line) == 0)
                return cwt_seterr(err, errlen, CWT_EFORMAT,
                                  "daemon state line %d repeats the key %s", lineno, line);
        if (n_seen < (int)(sizeof(seen) / sizeof(seen[0])) && strlen(line) < sizeof(seen[0]))
            snprintf(seen[n_seen++], sizeof(seen[0]), "%s", line);
        if (parse_line(cs, line, eq + 1) != 0)
            return cwt_seterr(err, errlen, CWT_EFORMAT, "daemon state line %d (%s) is invalid",
                              lineno, line);
    }
    return 0;
}

/* ------------------------------------------------------------------ pooled normalisation */

/* The largest pixel count whose sums of squares still fit: 255^2 * pixels < 2^63. */
#define NORMSUM_PIXELS_MAX ((uint64_t)INT64_MAX / (255u * 255u))

static int normsum_valid(const struct cycle_normsum *ns, uint32_t max_sites)
{
    if (ns->sites == 0 || ns->sites > max_sites || ns->channels == 0 ||
        ns->channels > CWTD_NORMSUM_CHANNELS || ns->pixels == 0 || ns->pixels > NORMSUM_PIXELS_MAX)
        return 0;
    for (uint32_t k = 0; k < ns->channels; k++)
        if (ns->sum[k] > 255u * ns->pixels || ns->sumsq[k] > 255u * 255u * ns->pixels)
            return 0;
    return 1;
}

/* Parses "NAME=V0[,V1..]" at *p into at most max values (digits only, each < 2^63). */
static int normsum_field(const char **p, const char *name, uint64_t *v, uint32_t max,
                         uint32_t *count)
{
    size_t nl = strlen(name);
    uint32_t k = 0;

    if (strncmp(*p, name, nl) != 0 || (*p)[nl] != '=')
        return CWT_EFORMAT;
    *p += nl + 1;
    for (;;) {
        char digits[24];
        size_t d = 0;
        int64_t x;
        while ((*p)[d] >= '0' && (*p)[d] <= '9')
            if (++d >= sizeof(digits))
                return CWT_EFORMAT;
        /* One spelling per number (no leading zero), so the text is canonical. */
        if (d == 0 || k >= max || (d > 1 && (*p)[0] == '0'))
            return CWT_EFORMAT;
        memcpy(digits, *p, d);
        digits[d] = '\0';
        if (cwt_parse_i64(digits, 0, INT64_MAX, &x) != 0)
            return CWT_EFORMAT;
        v[k++] = (uint64_t)x;
        *p += d;
        if (**p != ',')
            break;
        (*p)++;
    }
    *count = k;
    return 0;
}

int cycle_normsum_parse(const char *text, uint32_t max_sites, struct cycle_normsum *ns, char *err,
                        size_t errlen)
{
    struct cycle_normsum v;
    const char *p = text;
    uint64_t one[1];
    uint32_t n1 = 0, ns1 = 0, nq = 0;

    memset(ns, 0, sizeof(*ns));
    if (text == NULL || text[0] == '\0')
        return 0;
    memset(&v, 0, sizeof(v));
    if (strlen(text) > CWTD_NORMSUM_MAX)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "normsum text is too long");
    if (normsum_field(&p, "sites", one, 1, &n1) != 0 || one[0] > UINT32_MAX || *p++ != ' ')
        goto bad;
    v.sites = (uint32_t)one[0];
    if (normsum_field(&p, "pixels", one, 1, &n1) != 0 || *p++ != ' ')
        goto bad;
    v.pixels = one[0];
    if (normsum_field(&p, "sum", v.sum, CWTD_NORMSUM_CHANNELS, &ns1) != 0 || *p++ != ' ' ||
        normsum_field(&p, "sumsq", v.sumsq, CWTD_NORMSUM_CHANNELS, &nq) != 0 || *p != '\0' ||
        ns1 != nq)
        goto bad;
    v.channels = ns1;
    if (!normsum_valid(&v, max_sites))
        return cwt_seterr(err, errlen, CWT_EFORMAT, "normsum values are out of range");
    *ns = v;
    return 0;
bad:
    return cwt_seterr(err, errlen, CWT_EFORMAT,
                      "normsum is not \"sites=K pixels=P sum=S0,.. sumsq=Q0,..\"");
}

/* Appends formatted text at *used; CWT_ETOOBIG when it does not fit. */
static int append(char *out, size_t outlen, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int append(char *out, size_t outlen, size_t *used, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (*used >= outlen)
        return CWT_ETOOBIG;
    va_start(ap, fmt);
    n = vsnprintf(out + *used, outlen - *used, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= outlen - *used)
        return CWT_ETOOBIG;
    *used += (size_t)n;
    return 0;
}

int cycle_normsum_format(const struct cycle_normsum *ns, char *out, size_t outlen)
{
    size_t used = 0;
    int rc;

    if (!normsum_valid(ns, UINT32_MAX))
        return CWT_EINVAL;
    rc = append(out, outlen, &used, "sites=%u pixels=%" PRIu64 " sum=", ns->sites, ns->pixels);
    for (uint32_t k = 0; rc == 0 && k < ns->channels; k++)
        rc = append(out, outlen, &used, "%s%" PRIu64, k ? "," : "", ns->sum[k]);
    if (rc == 0)
        rc = append(out, outlen, &used, " sumsq=");
    for (uint32_t k = 0; rc == 0 && k < ns->channels; k++)
        rc = append(out, outlen, &used, "%s%" PRIu64, k ? "," : "", ns->sumsq[k]);
    if (rc == 0 && used > CWTD_NORMSUM_MAX)
        rc = CWT_ETOOBIG;
    return rc;
}

int cycle_normsum_add(struct cycle_normsum *acc, const struct cycle_normsum *site)
{
    struct cycle_normsum r = *acc;

    if (acc->sites == 0) {
        r = *site;
        r.sites = 1;
    } else {
        if (acc->channels != site->channels)
            return CWT_EINVAL;
        if (site->pixels > NORMSUM_PIXELS_MAX - acc->pixels || acc->sites == UINT32_MAX)
            return CWT_ETOOBIG;
        r.pixels += site->pixels;
        r.sites++;
        for (uint32_t k = 0; k < r.channels; k++) {
            r.sum[k] += site->sum[k]; /* bounded by 255 * pixels, checked below */
            r.sumsq[k] += site->sumsq[k];
        }
    }
    if (!normsum_valid(&r, UINT32_MAX))
        return CWT_ETOOBIG;
    *acc = r;
    return 0;
}
