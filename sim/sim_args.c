/*
 * sim_args.c - names and argument lists of `cwtctl simulate`.
 */
#include <stdio.h>
#include <string.h>

#include "sim/sim.h"

static const char *const heur_names[SIM_NHEUR] = {"central", "single", "ensemble", "swt",
                                                  "cwt",     "cwt+",   "fedavg",   "fedprox"};

const char *sim_heur_name(enum sim_heur h)
{
    return (unsigned)h < SIM_NHEUR ? heur_names[h] : "unknown";
}

const char *sim_selection_text(enum sim_heur h)
{
    switch (h) {
    case SIM_CENTRAL:
        return "best pooled val accuracy (after each epoch)";
    case SIM_SINGLE:
        return "best own local val accuracy (after each local epoch)";
    case SIM_ENSEMBLE:
        return "members: the single models, each by its own local val accuracy";
    case SIM_SWT:
        return "best mean local val accuracy over institutions (after each institution)";
    case SIM_CWT:
    case SIM_CWT_PLUS:
        return "best mean local val accuracy over institutions (after each cycle)";
    case SIM_FEDAVG:
    case SIM_FEDPROX:
        return "best mean local val accuracy over institutions (after each round)";
    default:
        return "";
    }
}

/* Calls fn(token, ctx) for every comma-separated token of text; empty tokens are errors. */
static int each_token(const char *text, const char *what, int (*fn)(const char *, void *),
                      void *ctx, char *err, size_t errlen)
{
    const char *p = text;

    if (*p == '\0')
        return cwt_seterr(err, errlen, CWT_EINVAL, "%s: the list is empty", what);
    for (;;) {
        char tok[64];
        size_t len = strcspn(p, ",");
        int rc;
        if (len == 0 || len >= sizeof(tok))
            return cwt_seterr(err, errlen, CWT_EINVAL, "%s %s: empty or overlong entry", what,
                              text);
        memcpy(tok, p, len);
        tok[len] = '\0';
        if ((rc = fn(tok, ctx)) != 0)
            return cwt_seterr(err, errlen, CWT_EINVAL, "%s: '%s' is not valid%s", what, tok,
                              rc == CWT_EEXIST ? " (given twice)" : "");
        p += len;
        if (*p == '\0')
            return 0;
        p++;
    }
}

struct heur_ctx {
    int *want;
    double *mu;
};

static int heur_token(const char *tok, void *vctx)
{
    struct heur_ctx *c = vctx;
    int *want = c->want;

    /* fedprox always names its MU: there is no default strength of the proximal term. */
    if (strncmp(tok, "fedprox:", 8) == 0) {
        if (cwt_parse_double(tok + 8, 1e-12, SIM_PROX_MU_MAX, c->mu) != 0)
            return CWT_EINVAL;
        if (want[SIM_FEDPROX])
            return CWT_EEXIST;
        want[SIM_FEDPROX] = 1;
        return 0;
    }
    for (int h = 0; h < SIM_NHEUR; h++)
        if (h != SIM_FEDPROX && strcmp(tok, heur_names[h]) == 0) {
            if (want[h])
                return CWT_EEXIST;
            want[h] = 1;
            return 0;
        }
    return CWT_EINVAL;
}

int sim_heur_parse(const char *text, int want[SIM_NHEUR], double *mu, char *err, size_t errlen)
{
    struct heur_ctx c = {want, mu};
    int rc;

    memset(want, 0, SIM_NHEUR * sizeof(int));
    *mu = 0.0;
    rc = each_token(text, "--heuristics", heur_token, &c, err, errlen);
    if (rc != 0) {
        size_t used = strlen(err);
        if (used + 1 < errlen)
            snprintf(err + used, errlen - used,
                     "; choose from central,single,ensemble,swt,cwt,cwt+,fedavg,fedprox:MU "
                     "(0 < MU <= %g)",
                     SIM_PROX_MU_MAX);
    }
    return rc;
}

int sim_local_bn_parse(const char *text, enum sim_local_bn *out, char *err, size_t errlen)
{
    static const char *const names[] = {"none", "stats", "all"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(text, names[i]) == 0) {
            *out = (enum sim_local_bn)i;
            return 0;
        }
    return cwt_seterr(err, errlen, CWT_EINVAL, "--local-bn %s: expected none, stats or all", text);
}

static const char *const plus_names[] = {"proportional", "loss", "sampling", "clr"};

static int plus_token(const char *tok, void *ctx)
{
    unsigned *mods = ctx;

    for (unsigned i = 0; i < 4; i++)
        if (strcmp(tok, plus_names[i]) == 0) {
            if (*mods & (1u << i))
                return CWT_EEXIST;
            *mods |= 1u << i;
            return 0;
        }
    return CWT_EINVAL;
}

int sim_plus_parse(const char *text, unsigned *mods, char *err, size_t errlen)
{
    int rc;

    *mods = 0;
    if (strcmp(text, "all") == 0) {
        *mods = SIM_PLUS_ALL;
        return 0;
    }
    rc = each_token(text, "--plus", plus_token, mods, err, errlen);
    if (rc != 0) {
        size_t used = strlen(err);
        if (used + 1 < errlen)
            snprintf(err + used, errlen - used,
                     "; use all or a list of proportional,loss,sampling,clr");
    }
    return rc;
}

void sim_plus_format(unsigned mods, char *out, size_t len)
{
    size_t used = 0;

    out[0] = '\0';
    for (unsigned i = 0; i < 4 && used < len; i++)
        if (mods & (1u << i))
            used +=
                (size_t)snprintf(out + used, len - used, "%s%s", used ? "+" : "", plus_names[i]);
    if (used == 0)
        snprintf(out, len, "none");
}

struct list_ctx {
    double hi;
    double *out;
    uint32_t max, n;
};

static int list_token(const char *tok, void *vctx)
{
    struct list_ctx *c = vctx;
    double v;

    if (c->n >= c->max || cwt_parse_double(tok, 1e-9, c->hi, &v) != 0)
        return CWT_EINVAL;
    for (uint32_t i = 0; i < c->n; i++)
        if (c->out[i] == v)
            return CWT_EEXIST;
    c->out[c->n++] = v;
    return 0;
}

int sim_parse_list(const char *text, double hi, double *out, uint32_t max, uint32_t *n, char *err,
                   size_t errlen)
{
    struct list_ctx c = {hi, out, max, 0};
    int rc = each_token(text, "--visits", list_token, &c, err, errlen);

    if (rc != 0) {
        size_t used = strlen(err);
        if (used + 1 < errlen)
            snprintf(err + used, errlen - used,
                     "; give at most %u distinct positive numbers up to %g", max, hi);
        return rc;
    }
    *n = c.n;
    return 0;
}

struct aug_ctx {
    struct cwt_recipe *r;
    unsigned seen; /* bit per entry kind: each may be given once */
};

/* One entry of --augment; the names match the recipe keys' meaning (docs/simulate.md). */
static int aug_token(const char *tok, void *vctx)
{
    static const char *const names[] = {"none", "crop",    "pad:",        "hflip",     "vflip",
                                        "rot:", "jitter:", "brightness:", "contrast:", NULL};
    struct aug_ctx *c = vctx;
    struct cwt_recipe *r = c->r;
    const char *arg = NULL;
    double v = 0.0;
    int64_t n = 0;
    unsigned k;

    for (k = 0; names[k] != NULL; k++) {
        size_t len = strlen(names[k]);
        if (strncmp(tok, names[k], len) != 0)
            continue;
        if (names[k][len - 1] == ':') {
            arg = tok + len;
            break;
        }
        if (tok[len] == '\0')
            break;
        if (k == 1 && tok[len] == ':') { /* crop:SMIN */
            arg = tok + len + 1;
            break;
        }
    }
    if (names[k] == NULL)
        return CWT_EINVAL;
    /* jitter sets brightness and contrast: it counts as both. */
    unsigned bits = k == 6 ? (1u << 7 | 1u << 8) : 1u << k;
    if (c->seen & bits)
        return CWT_EEXIST;
    if ((k == 0 && c->seen != 0) || (k != 0 && (c->seen & 1u)))
        return CWT_EINVAL; /* none stands alone */
    c->seen |= bits;
    switch (k) {
    case 1:
        if (arg != NULL && cwt_parse_double(arg, 1e-3, 1.0, &v) != 0)
            return CWT_EINVAL;
        r->augment_resized_crop = 1;
        r->augment_crop_scale[0] = arg != NULL ? v : 0.08;
        r->augment_crop_scale[1] = 1.0;
        break;
    case 2:
        if (cwt_parse_i64(arg, 1, 64, &n) != 0)
            return CWT_EINVAL;
        r->augment_crop_pad = (uint32_t)n;
        break;
    case 3:
        r->augment_hflip = 1;
        break;
    case 4:
        r->augment_vflip = 1;
        break;
    case 5:
        if (cwt_parse_double(arg, 1e-9, 180.0, &r->augment_rotate) != 0)
            return CWT_EINVAL;
        break;
    case 6:
    case 7:
    case 8:
        if (cwt_parse_double(arg, 1e-9, 1.0, &v) != 0)
            return CWT_EINVAL;
        if (k != 8)
            r->augment_brightness = v;
        if (k != 7)
            r->augment_contrast = v;
        break;
    default:
        break;
    }
    return 0;
}

int sim_augment_parse(const char *text, struct cwt_recipe *r, char *err, size_t errlen)
{
    struct aug_ctx c = {r, 0};
    int rc;

    r->augment_hflip = r->augment_vflip = r->augment_resized_crop = 0;
    r->augment_crop_pad = 0;
    r->augment_crop_scale[0] = 0.08;
    r->augment_crop_scale[1] = 1.0;
    r->augment_crop_ratio[0] = 3.0 / 4.0;
    r->augment_crop_ratio[1] = 4.0 / 3.0;
    r->augment_rotate = r->augment_brightness = r->augment_contrast = 0.0;
    rc = each_token(text, "--augment", aug_token, &c, err, errlen);
    if (rc == 0 && r->augment_resized_crop && r->augment_crop_pad > 0)
        rc = cwt_seterr(err, errlen, CWT_EINVAL, "--augment: crop and pad:N cannot be combined");
    else if (rc != 0) {
        size_t used = strlen(err);
        if (used + 1 < errlen)
            snprintf(err + used, errlen - used,
                     "; use none or a list of crop[:SMIN], pad:N, hflip, vflip, rot:DEG, "
                     "jitter:X, brightness:X, contrast:X (0 < X <= 1, DEG <= 180)");
    }
    return rc;
}
