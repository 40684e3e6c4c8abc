/*
 * config.c - strict libconfig loading of cwtd.conf and roster.conf.
 *
 * Every group is checked against the list of keys it may hold, so a typo is an error with
 * file and line instead of a silently ignored setting.
 */
#include "config/config.h"

#include <errno.h>
#include <grp.h>
#include <libconfig.h>
#include <libgen.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fileio.h"

#define CONFIG_MAX_BYTES (1u << 20) /* config and roster files are small */

/* Where errors are reported: the file being read and the caller's buffer. */
struct ctx {
    const char *file;
    char *err;
    size_t errlen;
};

static int at(const struct ctx *c, const config_setting_t *s, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Reports "FILE:LINE: KEY: message". */
static int at(const struct ctx *c, const config_setting_t *s, const char *key, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return cwt_seterr(c->err, c->errlen, CWT_ECONFIG, "%s:%u: %s: %s", c->file,
                      s != NULL ? config_setting_source_line(s) : 0, key, msg);
}

/* Fails on any member of grp that is not in known (NULL-terminated). */
static int check_keys(const struct ctx *c, const config_setting_t *grp, const char *prefix,
                      const char *const *known)
{
    int n = config_setting_length(grp);

    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(grp, (unsigned)i);
        const char *name = config_setting_name(s);
        int ok = 0;

        for (size_t k = 0; known[k] != NULL; k++)
            if (name != NULL && strcmp(name, known[k]) == 0)
                ok = 1;
        if (!ok) {
            char full[160];
            snprintf(full, sizeof(full), "%s%s", prefix, name != NULL ? name : "?");
            return at(c, s, full, "unknown key");
        }
    }
    return 0;
}

static const config_setting_t *member(const config_setting_t *grp, const char *name)
{
    return grp != NULL ? config_setting_get_member(grp, name) : NULL;
}

static int get_string(const struct ctx *c, const config_setting_t *grp, const char *prefix,
                      const char *name, int required, char *out, size_t outlen)
{
    const config_setting_t *s = member(grp, name);
    char full[160];
    const char *v;

    snprintf(full, sizeof(full), "%s%s", prefix, name);
    if (s == NULL)
        return required ? at(c, grp, full, "missing (required)") : 0;
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return at(c, s, full, "expected a string");
    v = config_setting_get_string(s);
    if (strlen(v) >= outlen)
        return at(c, s, full, "longer than %zu characters", outlen - 1);
    memcpy(out, v, strlen(v) + 1);
    return 0;
}

static int get_int(const struct ctx *c, const config_setting_t *grp, const char *prefix,
                   const char *name, int64_t min, int64_t max, int64_t *out)
{
    const config_setting_t *s = member(grp, name);
    char full[160];
    long long v;

    snprintf(full, sizeof(full), "%s%s", prefix, name);
    if (s == NULL)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_INT && config_setting_type(s) != CONFIG_TYPE_INT64)
        return at(c, s, full, "expected an integer");
    v = config_setting_get_int64(s);
    if (v < min || v > max)
        return at(c, s, full, "expected an integer from %lld to %lld", (long long)min,
                  (long long)max);
    *out = v;
    return 0;
}

static int get_u32(const struct ctx *c, const config_setting_t *grp, const char *prefix,
                   const char *name, int64_t min, int64_t max, uint32_t *out)
{
    int64_t v = *out;
    int rc = get_int(c, grp, prefix, name, min, max, &v);

    *out = (uint32_t)v;
    return rc;
}

static int get_double(const struct ctx *c, const config_setting_t *grp, const char *prefix,
                      const char *name, double min, double max, double *out)
{
    const config_setting_t *s = member(grp, name);
    char full[160];
    double v;

    snprintf(full, sizeof(full), "%s%s", prefix, name);
    if (s == NULL)
        return 0;
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_FLOAT:
        v = config_setting_get_float(s);
        break;
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        v = (double)config_setting_get_int64(s);
        break;
    default:
        return at(c, s, full, "expected a number");
    }
    if (!isfinite(v) || v < min || v > max)
        return at(c, s, full, "expected a number from %g to %g", min, max);
    *out = v;
    return 0;
}

static int get_bool(const struct ctx *c, const config_setting_t *grp, const char *prefix,
                    const char *name, int *out)
{
    const config_setting_t *s = member(grp, name);
    char full[160];

    snprintf(full, sizeof(full), "%s%s", prefix, name);
    if (s == NULL)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return at(c, s, full, "expected true or false");
    *out = config_setting_get_bool(s);
    return 0;
}

/* A list or array of two numbers [lo, hi] with min <= lo <= hi <= max and lo > 0 when
 * min is 0 (crop scales and aspect ratios). */
static int get_range(const struct ctx *c, const config_setting_t *grp, const char *prefix,
                     const char *name, double min, double max, double out[2])
{
    const config_setting_t *s = member(grp, name);
    char full[160];
    double v[2];

    snprintf(full, sizeof(full), "%s%s", prefix, name);
    if (s == NULL)
        return 0;
    if ((config_setting_type(s) != CONFIG_TYPE_ARRAY &&
         config_setting_type(s) != CONFIG_TYPE_LIST) ||
        config_setting_length(s) != 2)
        return at(c, s, full, "expected two numbers [low, high]");
    for (unsigned i = 0; i < 2; i++) {
        const config_setting_t *el = config_setting_get_elem(s, i);
        int t = config_setting_type(el);
        if (t == CONFIG_TYPE_FLOAT)
            v[i] = config_setting_get_float(el);
        else if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64)
            v[i] = (double)config_setting_get_int64(el);
        else
            return at(c, s, full, "expected two numbers [low, high]");
    }
    if (!isfinite(v[0]) || !isfinite(v[1]) || v[0] < min || v[1] > max || v[0] > v[1])
        return at(c, s, full, "expected [low, high] with %g <= low <= high <= %g", min, max);
    out[0] = v[0];
    out[1] = v[1];
    return 0;
}

/* Returns the group called name (or NULL if absent); a member of another type is an error. */
static int get_group(const struct ctx *c, const config_setting_t *parent, const char *prefix,
                     const char *name, const config_setting_t **out)
{
    const config_setting_t *s = member(parent, name);

    *out = NULL;
    if (s == NULL)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
        char full[160];
        snprintf(full, sizeof(full), "%s%s", prefix, name);
        return at(c, s, full, "expected a group { ... }");
    }
    *out = s;
    return 0;
}

/* Reads a file into libconfig with a size bound and libconfig's own syntax errors turned into
 * FILE:LINE messages. */
static int read_config(const char *path, config_t *cf, char *err, size_t errlen)
{
    uint8_t *buf;
    size_t len;
    int rc;

    rc = file_read_all(path, CONFIG_MAX_BYTES, &buf, &len, err, errlen);
    if (rc != 0)
        return rc == CWT_ENOENT ? rc : CWT_ECONFIG;
    if (memchr(buf, '\0', len) != NULL) {
        free(buf);
        return cwt_seterr(err, errlen, CWT_ECONFIG, "%s: contains a NUL byte; not a text file",
                          path);
    }
    /* @include would let a config pull in arbitrary files; cwt never needs it, and
     * libconfig 1.5 cannot switch it off, so such lines are refused here. */
    for (const char *p = (const char *)buf; p != NULL; p = strchr(p, '\n')) {
        p += (*p == '\n');
        p += strspn(p, " \t");
        if (strncmp(p, "@include", 8) == 0) {
            free(buf);
            return cwt_seterr(err, errlen, CWT_ECONFIG, "%s: @include is not allowed", path);
        }
    }
    config_init(cf);
    if (config_read_string(cf, (const char *)buf) != CONFIG_TRUE) {
        rc = cwt_seterr(err, errlen, CWT_ECONFIG, "%s:%d: %s", path, config_error_line(cf),
                        config_error_text(cf));
        config_destroy(cf);
        free(buf);
        return rc;
    }
    free(buf);
    return 0;
}

/* Makes p absolute relative to base (the config file's folder). */
static int resolve_path(const struct ctx *c, const config_setting_t *s, const char *key,
                        const char *base, char *p, size_t plen)
{
    char tmp[PATH_MAX];
    int n;

    if (p[0] == '/')
        return 0;
    n = snprintf(tmp, sizeof(tmp), "%s/%s", base, p);
    if (n < 0 || (size_t)n >= sizeof(tmp) || (size_t)n >= plen)
        return at(c, s, key, "path too long");
    memcpy(p, tmp, (size_t)n + 1);
    return 0;
}

const char *config_default_path(const char *explicit_path)
{
    const char *env;

    if (explicit_path != NULL)
        return explicit_path;
    env = getenv("CWT_CONFIG");
    if (env != NULL && *env != '\0')
        return env;
    return CWT_DEFAULT_CONFIG;
}

int config_load(const char *path, struct cwt_config *cfg, char *err, size_t errlen)
{
    static const char *const top_keys[] = {"site_id", "dirs",   "socket", "roster",
                                           "gpu",     "daemon", "limits", NULL};
    static const char *const dir_keys[] = {"site", "store", "keys", "inbox", "outbox", NULL};
    static const char *const gpu_keys[] = {"device", NULL};
    static const char *const daemon_keys[] = {"user",
                                              "group",
                                              "trainer_user",
                                              "trainer_socket",
                                              "rescan_seconds",
                                              "settle_seconds",
                                              "allow_root",
                                              "allow_no_landlock",
                                              NULL};
    static const char *const limit_keys[] = {"store_max_gb", "max_bundle_mb", NULL};
    struct ctx c = {path, err, errlen};
    /* NULL until read: the gpu lookup below also runs after an earlier error. */
    const config_setting_t *root, *dirs = NULL, *gpu = NULL, *daemon = NULL, *limits = NULL, *dev;
    char base[PATH_MAX], copy[PATH_MAX];
    config_t cf;
    int64_t store_gb = 16;
    int rc;

    memset(cfg, 0, sizeof(*cfg));
    if (strlen(path) >= sizeof(cfg->path))
        return cwt_seterr(err, errlen, CWT_ECONFIG, "%s: path too long", path);
    rc = read_config(path, &cf, err, errlen);
    if (rc != 0)
        return rc;
    if (realpath(path, cfg->path) == NULL)
        snprintf(cfg->path, sizeof(cfg->path), "%s", path);
    snprintf(copy, sizeof(copy), "%s", cfg->path);
    snprintf(base, sizeof(base), "%s", dirname(copy));

    snprintf(cfg->dir, sizeof(cfg->dir), "%s", base);
    snprintf(cfg->store_dir, sizeof(cfg->store_dir), "store");
    snprintf(cfg->keys_dir, sizeof(cfg->keys_dir), "keys");
    snprintf(cfg->inbox_dir, sizeof(cfg->inbox_dir), "inbox");
    snprintf(cfg->outbox_dir, sizeof(cfg->outbox_dir), "outbox");
    snprintf(cfg->socket_path, sizeof(cfg->socket_path), "cwtd.sock");
    snprintf(cfg->roster_path, sizeof(cfg->roster_path), "roster.conf");
    snprintf(cfg->gpu_device, sizeof(cfg->gpu_device), "auto");
    snprintf(cfg->group, sizeof(cfg->group), "cwt");
    cfg->rescan_seconds = 30;
    cfg->settle_seconds = 30;
    cfg->max_bundle_mb = 4096;

    root = config_root_setting(&cf);
    rc = check_keys(&c, root, "", top_keys);
    if (rc == 0)
        rc = get_string(&c, root, "", "site_id", 1, cfg->site_id, sizeof(cfg->site_id));
    if (rc == 0 && !cwt_valid_id(cfg->site_id))
        rc = at(&c, member(root, "site_id"), "site_id",
                "expected 1-63 characters of letters, digits, '.', '_' or '-'");
    if (rc == 0)
        rc = get_group(&c, root, "", "dirs", &dirs);
    if (rc == 0 && dirs != NULL)
        rc = check_keys(&c, dirs, "dirs.", dir_keys);
    if (rc == 0)
        rc = get_string(&c, dirs, "dirs.", "site", 0, cfg->dir, sizeof(cfg->dir));
    if (rc == 0)
        rc = resolve_path(&c, member(dirs, "site"), "dirs.site", base, cfg->dir, sizeof(cfg->dir));
    if (rc == 0)
        rc = get_string(&c, dirs, "dirs.", "store", 0, cfg->store_dir, sizeof(cfg->store_dir));
    if (rc == 0)
        rc = get_string(&c, dirs, "dirs.", "keys", 0, cfg->keys_dir, sizeof(cfg->keys_dir));
    if (rc == 0)
        rc = get_string(&c, dirs, "dirs.", "inbox", 0, cfg->inbox_dir, sizeof(cfg->inbox_dir));
    if (rc == 0)
        rc = get_string(&c, dirs, "dirs.", "outbox", 0, cfg->outbox_dir, sizeof(cfg->outbox_dir));
    if (rc == 0)
        rc = get_string(&c, root, "", "socket", 0, cfg->socket_path, sizeof(cfg->socket_path));
    if (rc == 0)
        rc = get_string(&c, root, "", "roster", 0, cfg->roster_path, sizeof(cfg->roster_path));

    if (rc == 0)
        rc = get_group(&c, root, "", "gpu", &gpu);
    if (rc == 0 && gpu != NULL)
        rc = check_keys(&c, gpu, "gpu.", gpu_keys);
    dev = member(gpu, "device");
    if (rc == 0 && dev != NULL) {
        if (config_setting_type(dev) == CONFIG_TYPE_INT) {
            int idx = config_setting_get_int(dev);
            if (idx < 0 || idx > 63)
                rc = at(&c, dev, "gpu.device", "expected \"auto\", an index 0-63 or a name");
            else
                snprintf(cfg->gpu_device, sizeof(cfg->gpu_device), "%d", idx);
        } else {
            rc = get_string(&c, gpu, "gpu.", "device", 0, cfg->gpu_device, sizeof(cfg->gpu_device));
        }
    }

    if (rc == 0)
        rc = get_group(&c, root, "", "daemon", &daemon);
    if (rc == 0 && daemon != NULL)
        rc = check_keys(&c, daemon, "daemon.", daemon_keys);
    if (rc == 0)
        rc = get_string(&c, daemon, "daemon.", "user", 0, cfg->user, sizeof(cfg->user));
    if (rc == 0)
        rc = get_string(&c, daemon, "daemon.", "group", 0, cfg->group, sizeof(cfg->group));
    /* Only parsed here: whether the user exists and differs from daemon.user is cwtd's check
     * at start, where the user database of the running host is the one that counts. */
    if (rc == 0)
        rc = get_string(&c, daemon, "daemon.", "trainer_user", 0, cfg->trainer_user,
                        sizeof(cfg->trainer_user));
    if (rc == 0)
        rc = get_string(&c, daemon, "daemon.", "trainer_socket", 0, cfg->trainer_socket,
                        sizeof(cfg->trainer_socket));
    /* The socket only says how the trainer starts; whose uid it runs under is trainer_user,
     * which the store's owners (cwtd --prepare-store) and the monitor's check follow. */
    if (rc == 0 && cfg->trainer_socket[0] != '\0' && cfg->trainer_user[0] == '\0')
        rc = at(&c, config_setting_get_member(daemon, "trainer_socket"), "daemon.trainer_socket",
                "needs daemon.trainer_user, the user the service manager starts the trainer as");
    if (rc == 0)
        rc = get_u32(&c, daemon, "daemon.", "rescan_seconds", 1, 86400, &cfg->rescan_seconds);
    if (rc == 0)
        rc = get_u32(&c, daemon, "daemon.", "settle_seconds", 1, 86400, &cfg->settle_seconds);
    if (rc == 0)
        rc = get_bool(&c, daemon, "daemon.", "allow_root", &cfg->allow_root);
    if (rc == 0)
        rc = get_bool(&c, daemon, "daemon.", "allow_no_landlock", &cfg->allow_no_landlock);

    if (rc == 0)
        rc = get_group(&c, root, "", "limits", &limits);
    if (rc == 0 && limits != NULL)
        rc = check_keys(&c, limits, "limits.", limit_keys);
    if (rc == 0)
        rc = get_int(&c, limits, "limits.", "store_max_gb", 1, 65536, &store_gb);
    if (rc == 0)
        rc = get_u32(&c, limits, "limits.", "max_bundle_mb", 1, 1 << 20, &cfg->max_bundle_mb);
    cfg->store_max_bytes = (uint64_t)store_gb << 30;

    /* Relative folders are relative to the site folder. */
    if (rc == 0)
        rc = resolve_path(&c, dirs, "dirs.store", cfg->dir, cfg->store_dir, sizeof(cfg->store_dir));
    if (rc == 0)
        rc = resolve_path(&c, dirs, "dirs.keys", cfg->dir, cfg->keys_dir, sizeof(cfg->keys_dir));
    if (rc == 0)
        rc = resolve_path(&c, dirs, "dirs.inbox", cfg->dir, cfg->inbox_dir, sizeof(cfg->inbox_dir));
    if (rc == 0)
        rc = resolve_path(&c, dirs, "dirs.outbox", cfg->dir, cfg->outbox_dir,
                          sizeof(cfg->outbox_dir));
    if (rc == 0)
        rc = resolve_path(&c, root, "socket", cfg->dir, cfg->socket_path, sizeof(cfg->socket_path));
    if (rc == 0 && cfg->trainer_socket[0] != '\0')
        rc = resolve_path(&c, member(daemon, "trainer_socket"), "daemon.trainer_socket", cfg->dir,
                          cfg->trainer_socket, sizeof(cfg->trainer_socket));
    /* sockaddr_un's sun_path holds 107 bytes and a NUL; a relative path counts once made
     * absolute, as cwtd connects to it. */
    if (rc == 0 && strlen(cfg->trainer_socket) > 107)
        rc = at(&c, member(daemon, "trainer_socket"), "daemon.trainer_socket",
                "longer than a socket path may be (107)");
    if (rc == 0)
        rc = resolve_path(&c, root, "roster", cfg->dir, cfg->roster_path, sizeof(cfg->roster_path));
    config_destroy(&cf);
    return rc;
}

/* ------------------------------------------------------------------ recipe */

void recipe_defaults(struct cwt_recipe *r)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->model, sizeof(r->model), "cnn-small");
    r->resnet_depth = 8;
    r->width = 1.0;
    r->input_h = 28;
    r->input_w = 28;
    r->input_c = 1;
    r->classes = 10;
    r->seed = 1;
    r->batch_size = 64;
    r->epochs = 5;
    r->optimizer = CWT_OPT_SGD;
    r->lr = 0.01; /* 0.05 made cnn-small collapse to one class in short visits */
    r->momentum = 0.9;
    r->weight_decay = 5e-4;
    r->beta1 = 0.9;
    r->beta2 = 0.999;
    r->eps = 1e-8;
    r->schedule = CWT_LR_CONSTANT;
    r->lr_min = 0.0;
    r->gamma = 0.1;
    r->step_epochs = 10.0;
    r->cycle_epochs = 2.0;
    r->heuristic = CWT_H_CWT;
    r->visit_unit = CWT_VISIT_EPOCHS;
    r->visit_length = 1.0;
    r->cycles = 5;
    r->patience = 3;
    r->bundle_ttl_days = 30;
    /* torchvision's RandomResizedCrop defaults */
    r->augment_crop_scale[0] = 0.08;
    r->augment_crop_scale[1] = 1.0;
    r->augment_crop_ratio[0] = 3.0 / 4.0;
    r->augment_crop_ratio[1] = 4.0 / 3.0;
    r->backbone_lr_scale = 1.0;
}

static const char *const optimizer_names[] = {"sgd", "adam", "adamw", NULL};
static const char *const schedule_names[] = {"constant", "step", "cosine", "cyclical", NULL};
static const char *const heuristic_names[] = {"cwt", "swt", "ensemble", NULL};
static const char *const visit_names[] = {"epochs", "steps", "proportional", NULL};
static const char *const select_names[] = {"accuracy", "balanced_accuracy", "auc", NULL};

static int get_enum(const struct ctx *c, const config_setting_t *grp, const char *prefix,
                    const char *name, const char *const *names, int *out)
{
    char v[CWT_NAME_MAX + 1] = "";
    int rc = get_string(c, grp, prefix, name, 0, v, sizeof(v));
    char full[160];

    if (rc != 0 || v[0] == '\0')
        return rc;
    for (int i = 0; names[i] != NULL; i++)
        if (strcmp(v, names[i]) == 0) {
            *out = i;
            return 0;
        }
    snprintf(full, sizeof(full), "%s%s", prefix, name);
    return at(c, member(grp, name), full, "unknown value \"%s\"", v);
}

/* A name that renders unchanged between quotes in the canonical text: printable ASCII without
 * '"' or '\\'. */
static int printable(const char *v)
{
    for (; *v != '\0'; v++)
        if ((unsigned char)*v < 0x20 || (unsigned char)*v > 0x7e || *v == '"' || *v == '\\')
            return 0;
    return 1;
}

static int parse_recipe(const struct ctx *c, const config_setting_t *rg, struct cwt_recipe *r)
{
    static const char *const recipe_keys[] = {"model", "input", "classes", "class_names", "seed",
                                              "train", "cycle", "init",    "finetune",    NULL};
    static const char *const init_keys[] = {"file", "blake2b", NULL};
    static const char *const finetune_keys[] = {"freeze_stages", "backbone_lr_scale", NULL};
    static const char *const model_keys[] = {"name", "depth", "width", "dropout", NULL};
    static const char *const train_keys[] = {"batch_size",
                                             "epochs",
                                             "optimizer",
                                             "lr",
                                             "momentum",
                                             "nesterov",
                                             "weight_decay",
                                             "beta1",
                                             "beta2",
                                             "eps",
                                             "schedule",
                                             "lr_min",
                                             "gamma",
                                             "step_epochs",
                                             "cycle_epochs",
                                             "augment_hflip",
                                             "augment_crop_pad",
                                             "augment_vflip",
                                             "augment_resized_crop",
                                             "augment_crop_scale",
                                             "augment_crop_ratio",
                                             "augment_rotate",
                                             "augment_brightness",
                                             "augment_contrast",
                                             "balanced_sampling",
                                             "class_weighted_loss",
                                             NULL};
    static const char *const cycle_keys[] = {"heuristic",       "select", "visit_unit",
                                             "visit_length",    "cycles", "patience",
                                             "bundle_ttl_days", NULL};
    const config_setting_t *mg, *tg, *cg, *ig, *fg, *in, *names;
    int64_t seed = (int64_t)r->seed;
    int e, rc;

    rc = check_keys(c, rg, "recipe.", recipe_keys);
    if (rc == 0)
        rc = get_group(c, rg, "recipe.", "model", &mg);
    if (rc == 0 && mg != NULL)
        rc = check_keys(c, mg, "recipe.model.", model_keys);
    if (rc == 0)
        rc = get_string(c, mg, "recipe.model.", "name", 0, r->model, sizeof(r->model));
    if (rc == 0 && strcmp(r->model, "cnn-small") != 0 && strcmp(r->model, "resnet") != 0)
        rc = at(c, member(mg, "name"), "recipe.model.name",
                "unknown model \"%s\" (expected cnn-small or resnet)", r->model);
    if (rc == 0)
        rc = get_u32(c, mg, "recipe.model.", "depth", 8, 18, &r->resnet_depth);
    if (rc == 0 && r->resnet_depth != 8 && r->resnet_depth != 10 && r->resnet_depth != 18)
        rc = at(c, member(mg, "depth"), "recipe.model.depth", "expected 8, 10 or 18");
    if (rc == 0)
        rc = get_double(c, mg, "recipe.model.", "width", 0.125, 8.0, &r->width);
    if (rc == 0)
        rc = get_double(c, mg, "recipe.model.", "dropout", 0.0, 0.9, &r->dropout);

    in = member(rg, "input");
    if (rc == 0 && in != NULL) {
        int ok = (config_setting_type(in) == CONFIG_TYPE_ARRAY ||
                  config_setting_type(in) == CONFIG_TYPE_LIST) &&
                 config_setting_length(in) == 3;
        int64_t v[3] = {0, 0, 0};

        for (int i = 0; ok && i < 3; i++) {
            const config_setting_t *el = config_setting_get_elem(in, (unsigned)i);
            if (config_setting_type(el) != CONFIG_TYPE_INT)
                ok = 0;
            else
                v[i] = config_setting_get_int(el);
        }
        if (!ok || v[0] < 1 || v[1] < 1 || (v[2] != 1 && v[2] != 3))
            rc = at(c, in, "recipe.input", "expected 3 positive integers [H, W, C] with C 1 or 3");
        else if (v[0] > 1024 || v[1] > 1024)
            rc = at(c, in, "recipe.input", "height and width must be at most 1024");
        else {
            r->input_h = (uint32_t)v[0];
            r->input_w = (uint32_t)v[1];
            r->input_c = (uint32_t)v[2];
        }
    }
    if (rc == 0)
        rc = get_u32(c, rg, "recipe.", "classes", 2, CWT_MAX_CLASSES, &r->classes);
    names = member(rg, "class_names");
    if (rc == 0 && names != NULL) {
        int n = config_setting_length(names);
        if ((config_setting_type(names) != CONFIG_TYPE_ARRAY &&
             config_setting_type(names) != CONFIG_TYPE_LIST) ||
            n != (int)r->classes)
            rc = at(c, names, "recipe.class_names", "expected a list of %u strings (one per class)",
                    r->classes);
        for (int i = 0; rc == 0 && i < n; i++) {
            const config_setting_t *el = config_setting_get_elem(names, (unsigned)i);
            const char *v;

            if (config_setting_type(el) != CONFIG_TYPE_STRING) {
                rc = at(c, el, "recipe.class_names", "expected strings");
                break;
            }
            v = config_setting_get_string(el);
            if (v[0] == '\0' || strlen(v) > CWT_NAME_MAX || strchr(v, ',') != NULL) {
                rc = at(c, el, "recipe.class_names", "names must be 1-%d characters without commas",
                        CWT_NAME_MAX);
                break;
            }
            for (int j = 0; j < i; j++)
                if (strcmp(r->class_names[j], v) == 0)
                    rc = at(c, el, "recipe.class_names", "duplicate class name \"%s\"", v);
            snprintf(r->class_names[i], sizeof(r->class_names[i]), "%s", v);
        }
        if (rc == 0)
            r->n_class_names = (uint32_t)n;
    }
    if (rc == 0)
        rc = get_int(c, rg, "recipe.", "seed", 0, INT64_MAX, &seed);
    r->seed = (uint64_t)seed;

    if (rc == 0)
        rc = get_group(c, rg, "recipe.", "train", &tg);
    if (rc == 0 && tg != NULL)
        rc = check_keys(c, tg, "recipe.train.", train_keys);
    if (rc == 0)
        rc = get_u32(c, tg, "recipe.train.", "batch_size", 1, 4096, &r->batch_size);
    if (rc == 0)
        rc = get_u32(c, tg, "recipe.train.", "epochs", 1, 100000, &r->epochs);
    e = (int)r->optimizer;
    if (rc == 0)
        rc = get_enum(c, tg, "recipe.train.", "optimizer", optimizer_names, &e);
    r->optimizer = (enum cwt_optimizer)e;
    if (rc == 0)
        rc = get_double(c, tg, "recipe.train.", "lr", 1e-9, 10.0, &r->lr);
    if (rc == 0)
        rc = get_double(c, tg, "recipe.train.", "momentum", 0.0, 0.9999, &r->momentum);
    if (rc == 0)
        rc = get_bool(c, tg, "recipe.train.", "nesterov", &r->nesterov);
    if (rc == 0)
        rc = get_double(c, tg, "recipe.train.", "weight_decay", 0.0, 1.0, &r->weight_decay);
    if (rc == 0)
        rc = get_double(c, tg, "recipe.train.", "beta1", 0.0, 0.9999, &r->beta1);
    if (rc == 0)
        rc = get_double(c, tg, "recipe.train.", "beta2", 0.0, 0.999999, &r->beta2);
    if (rc == 0)
        rc = get_double(c, tg, "recipe.train.", "eps", 1e-12, 1.0, &r->eps);
    e = (int)r->schedule;
    if (rc == 0)
        rc = get_enum(c, tg, "recipe.train.", "schedule", schedule_names, &e);
    r->schedule = (enum cwt_lr_schedule)e;
    if (rc == 0)
        rc = get_double(c, tg, "recipe.train.", "lr_min", 0.0, 10.0, &r->lr_min);
    if (rc == 0)
        rc = get_double(c, tg, "recipe.train.", "gamma", 1e-6, 1.0, &r->gamma);
    if (rc == 0)
        rc = get_double(c, tg, "recipe.train.", "step_epochs", 0.01, 1e6, &r->step_epochs);
    if (rc == 0)
        rc = get_double(c, tg, "recipe.train.", "cycle_epochs", 0.01, 1e6, &r->cycle_epochs);
    if (rc == 0)
        rc = get_bool(c, tg, "recipe.train.", "augment_hflip", &r->augment_hflip);
    if (rc == 0)
        rc = get_u32(c, tg, "recipe.train.", "augment_crop_pad", 0, 64, &r->augment_crop_pad);
    if (rc == 0)
        rc = get_bool(c, tg, "recipe.train.", "augment_vflip", &r->augment_vflip);
    if (rc == 0)
        rc = get_bool(c, tg, "recipe.train.", "augment_resized_crop", &r->augment_resized_crop);
    if (rc == 0)
        rc = get_range(c, tg, "recipe.train.", "augment_crop_scale", 1e-3, 1.0,
                       r->augment_crop_scale);
    if (rc == 0)
        rc = get_range(c, tg, "recipe.train.", "augment_crop_ratio", 0.1, 10.0,
                       r->augment_crop_ratio);
    /* Both crops at once would crop twice; the recipe names one. */
    if (rc == 0 && r->augment_resized_crop && r->augment_crop_pad > 0)
        rc = at(c, member(tg, "augment_resized_crop"), "recipe.train.augment_resized_crop",
                "cannot be combined with augment_crop_pad (choose one crop)");
    if (rc == 0)
        rc = get_double(c, tg, "recipe.train.", "augment_rotate", 0.0, 180.0, &r->augment_rotate);
    if (rc == 0)
        rc = get_double(c, tg, "recipe.train.", "augment_brightness", 0.0, 1.0,
                        &r->augment_brightness);
    if (rc == 0)
        rc = get_double(c, tg, "recipe.train.", "augment_contrast", 0.0, 1.0, &r->augment_contrast);
    if (rc == 0)
        rc = get_bool(c, tg, "recipe.train.", "balanced_sampling", &r->balanced_sampling);
    if (rc == 0)
        rc = get_bool(c, tg, "recipe.train.", "class_weighted_loss", &r->class_weighted_loss);

    if (rc == 0)
        rc = get_group(c, rg, "recipe.", "cycle", &cg);
    if (rc == 0 && cg != NULL)
        rc = check_keys(c, cg, "recipe.cycle.", cycle_keys);
    e = (int)r->heuristic;
    if (rc == 0)
        rc = get_enum(c, cg, "recipe.cycle.", "heuristic", heuristic_names, &e);
    r->heuristic = (enum cwt_heuristic)e;
    e = (int)r->select;
    if (rc == 0)
        rc = get_enum(c, cg, "recipe.cycle.", "select", select_names, &e);
    r->select = (enum cwt_select)e;
    e = (int)r->visit_unit;
    if (rc == 0)
        rc = get_enum(c, cg, "recipe.cycle.", "visit_unit", visit_names, &e);
    r->visit_unit = (enum cwt_visit_unit)e;
    if (rc == 0)
        rc = get_double(c, cg, "recipe.cycle.", "visit_length", 1e-3, 1e7, &r->visit_length);
    if (rc == 0)
        rc = get_u32(c, cg, "recipe.cycle.", "cycles", 1, 100000, &r->cycles);
    if (rc == 0)
        rc = get_u32(c, cg, "recipe.cycle.", "patience", 0, 100000, &r->patience);
    if (rc == 0)
        rc = get_u32(c, cg, "recipe.cycle.", "bundle_ttl_days", 1, 3650, &r->bundle_ttl_days);
    if (rc == 0)
        rc = get_group(c, rg, "recipe.", "init", &ig);
    if (rc == 0 && ig != NULL) {
        char hex[80] = "";
        rc = check_keys(c, ig, "recipe.init.", init_keys);
        if (rc == 0)
            rc = get_string(c, ig, "recipe.init.", "file", 1, r->init_file, sizeof(r->init_file));
        /* A plain name in the roster's folder: a roster from a peer cannot point at any other
         * file of the site. */
        if (rc == 0 && (r->init_file[0] == '\0' || r->init_file[0] == '.' ||
                        strchr(r->init_file, '/') != NULL || !printable(r->init_file)))
            rc = at(c, member(ig, "file"), "recipe.init.file",
                    "expected a plain file name in the roster's folder");
        if (rc == 0)
            rc = get_string(c, ig, "recipe.init.", "blake2b", 1, hex, sizeof(hex));
        if (rc == 0 && (strlen(hex) != 64 || cwt_unhex(hex, r->init_hash, 32) != 0))
            rc = at(c, member(ig, "blake2b"), "recipe.init.blake2b",
                    "expected 64 hex digits (the BLAKE2b-256 of the file)");
        r->has_init = rc == 0;
    }
    if (rc == 0)
        rc = get_group(c, rg, "recipe.", "finetune", &fg);
    if (rc == 0 && fg != NULL) {
        /* The stem is stage 0: resnet-8 has 3 stages after it, resnet-10/18 have 4. */
        uint32_t stages = strcmp(r->model, "resnet") != 0 ? 0 : r->resnet_depth == 8 ? 4 : 5;
        rc = check_keys(c, fg, "recipe.finetune.", finetune_keys);
        if (rc == 0)
            rc = get_u32(c, fg, "recipe.finetune.", "freeze_stages", 0, 5, &r->freeze_stages);
        if (rc == 0 && r->freeze_stages > 0 && stages == 0)
            rc = at(c, member(fg, "freeze_stages"), "recipe.finetune.freeze_stages",
                    "freezing needs a resnet (model %s has no stages)", r->model);
        else if (rc == 0 && r->freeze_stages > stages)
            rc =
                at(c, member(fg, "freeze_stages"), "recipe.finetune.freeze_stages",
                   "expected 0 to %u for resnet-%u (the stem is stage 0)", stages, r->resnet_depth);
        if (rc == 0)
            rc = get_double(c, fg, "recipe.finetune.", "backbone_lr_scale", 0.0, 10.0,
                            &r->backbone_lr_scale);
    }
    return rc;
}

int roster_init_path(const struct cwt_roster *r, char *out, size_t outlen)
{
    const char *slash = strrchr(r->path, '/');
    int n;

    if (!r->recipe.has_init)
        return CWT_ENOENT;
    if (slash == NULL)
        n = snprintf(out, outlen, "%s", r->recipe.init_file);
    else
        n = snprintf(out, outlen, "%.*s/%s", (int)(slash - r->path), r->path, r->recipe.init_file);
    return n < 0 || (size_t)n >= outlen ? CWT_ETOOBIG : 0;
}

/* ------------------------------------------------------------------ key lines */

#define KEYLINE_PREFIX "cwt-site-v1"

int keyline_format(const char *site_id, const uint8_t sign_pk[CWT_SIGN_PK_LEN],
                   const uint8_t box_pk[CWT_BOX_PK_LEN], char *out, size_t outlen,
                   uint8_t key_id[CWT_KEYID_LEN])
{
    uint8_t both[CWT_SIGN_PK_LEN + CWT_BOX_PK_LEN];
    uint8_t digest[32];
    char b64[sodium_base64_ENCODED_LEN(sizeof(both), sodium_base64_VARIANT_ORIGINAL)];
    int n;

    if (!cwt_valid_id(site_id))
        return CWT_EINVAL;
    memcpy(both, sign_pk, CWT_SIGN_PK_LEN);
    memcpy(both + CWT_SIGN_PK_LEN, box_pk, CWT_BOX_PK_LEN);
    sodium_bin2base64(b64, sizeof(b64), both, sizeof(both), sodium_base64_VARIANT_ORIGINAL);
    n = snprintf(out, outlen, "%s %s %s", KEYLINE_PREFIX, site_id, b64);
    if (n < 0 || (size_t)n >= outlen)
        return CWT_ETOOBIG;
    if (key_id != NULL) {
        crypto_generichash(digest, sizeof(digest), both, sizeof(both), NULL, 0);
        memcpy(key_id, digest, CWT_KEYID_LEN);
    }
    return 0;
}

int keyline_parse(const char *line, struct cwt_roster_site *site, char *err, size_t errlen)
{
    char buf[CWT_KEYLINE_MAX + 1];
    uint8_t both[CWT_SIGN_PK_LEN + CWT_BOX_PK_LEN];
    size_t len = strlen(line), binlen = 0;
    const char *b64_end = NULL;
    char *prefix, *id, *b64, *extra, *save = NULL;

    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
        len--;
    if (len == 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "empty key line");
    if (len > CWT_KEYLINE_MAX)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "key line longer than %d characters",
                          CWT_KEYLINE_MAX);
    memcpy(buf, line, len);
    buf[len] = '\0';
    prefix = strtok_r(buf, " ", &save);
    id = strtok_r(NULL, " ", &save);
    b64 = strtok_r(NULL, " ", &save);
    extra = strtok_r(NULL, " ", &save);
    if (prefix == NULL || strcmp(prefix, KEYLINE_PREFIX) != 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "key line must start with \"" KEYLINE_PREFIX "\"");
    if (id == NULL || b64 == NULL || extra != NULL)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "key line must be \"" KEYLINE_PREFIX " <site-id> <base64 key>\"");
    if (!cwt_valid_id(id))
        return cwt_seterr(err, errlen, CWT_EFORMAT, "key line site id \"%.64s\" is not valid", id);
    if (sodium_base642bin(both, sizeof(both), b64, strlen(b64), NULL, &binlen, &b64_end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        binlen != sizeof(both) || b64_end == NULL || *b64_end != '\0')
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "key line for %s: the key is not 64 bytes of base64", id);
    memset(site, 0, sizeof(*site));
    snprintf(site->id, sizeof(site->id), "%s", id);
    memcpy(site->sign_pk, both, CWT_SIGN_PK_LEN);
    memcpy(site->box_pk, both + CWT_SIGN_PK_LEN, CWT_BOX_PK_LEN);
    /* Re-format so that the stored line is canonical whatever spacing was pasted. */
    return keyline_format(site->id, site->sign_pk, site->box_pk, site->key_line,
                          sizeof(site->key_line), site->key_id);
}

/* ------------------------------------------------------------------ roster */

int roster_find_site(const struct cwt_roster *r, const char *site_id)
{
    for (uint32_t i = 0; i < r->n_sites; i++)
        if (strcmp(r->sites[i].id, site_id) == 0)
            return (int)i;
    return -1;
}

int roster_find_key_id(const struct cwt_roster *r, const uint8_t key_id[CWT_KEYID_LEN])
{
    for (uint32_t i = 0; i < r->n_sites; i++)
        if (memcmp(r->sites[i].key_id, key_id, CWT_KEYID_LEN) == 0)
            return (int)i;
    return -1;
}

int roster_load(const char *path, struct cwt_roster *r, char *err, size_t errlen)
{
    static const char *const top_keys[] = {"federation", "recipe", "sites", NULL};
    static const char *const site_keys[] = {"id", "key", NULL};
    struct ctx c = {path, err, errlen};
    const config_setting_t *root, *rg, *sites;
    config_t cf;
    int rc;

    memset(r, 0, sizeof(*r));
    recipe_defaults(&r->recipe);
    snprintf(r->path, sizeof(r->path), "%s", path);
    rc = read_config(path, &cf, err, errlen);
    if (rc != 0)
        return rc == CWT_ENOENT ? cwt_seterr(err, errlen, CWT_ECONFIG, "%s: no such file", path)
                                : rc;
    root = config_root_setting(&cf);
    rc = check_keys(&c, root, "", top_keys);
    if (rc == 0)
        rc = get_string(&c, root, "", "federation", 1, r->federation, sizeof(r->federation));
    if (rc == 0 && !cwt_valid_id(r->federation))
        rc = at(&c, member(root, "federation"), "federation",
                "expected 1-63 characters of letters, digits, '.', '_' or '-'");
    if (rc == 0)
        rc = get_group(&c, root, "", "recipe", &rg);
    if (rc == 0 && rg == NULL)
        rc = at(&c, root, "recipe", "missing (required)");
    if (rc == 0)
        rc = parse_recipe(&c, rg, &r->recipe);

    sites = member(root, "sites");
    if (rc == 0 && sites != NULL && config_setting_type(sites) != CONFIG_TYPE_LIST)
        rc = at(&c, sites, "sites", "expected a list ( { id = ...; key = ...; }, ... )");
    for (int i = 0; rc == 0 && sites != NULL && i < config_setting_length(sites); i++) {
        const config_setting_t *s = config_setting_get_elem(sites, (unsigned)i);
        struct cwt_roster_site *site;
        char id[CWT_ID_MAX + 1] = "", key[CWT_KEYLINE_MAX + 1] = "", kerr[256];

        if (r->n_sites >= CWT_MAX_SITES) {
            rc = at(&c, s, "sites", "more than %d sites", CWT_MAX_SITES);
            break;
        }
        if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
            rc = at(&c, s, "sites", "expected { id = \"...\"; key = \"cwt-site-v1 ...\"; }");
            break;
        }
        rc = check_keys(&c, s, "sites.", site_keys);
        if (rc == 0)
            rc = get_string(&c, s, "sites.", "id", 1, id, sizeof(id));
        if (rc == 0)
            rc = get_string(&c, s, "sites.", "key", 1, key, sizeof(key));
        if (rc != 0)
            break;
        site = &r->sites[r->n_sites];
        if (keyline_parse(key, site, kerr, sizeof(kerr)) != 0) {
            rc = at(&c, member(s, "key"), "sites.key", "%s", kerr);
            break;
        }
        if (strcmp(site->id, id) != 0) {
            rc = at(&c, s, "sites.id", "\"%s\" differs from the id in its key line (\"%s\")", id,
                    site->id);
            break;
        }
        for (uint32_t j = 0; j < r->n_sites; j++) {
            if (strcmp(r->sites[j].id, site->id) == 0)
                rc = at(&c, s, "sites.id", "site \"%s\" is listed twice", id);
            else if (memcmp(r->sites[j].sign_pk, site->sign_pk, CWT_SIGN_PK_LEN) == 0 ||
                     memcmp(r->sites[j].box_pk, site->box_pk, CWT_BOX_PK_LEN) == 0)
                rc = at(&c, s, "sites.key", "site \"%s\" has the same key as \"%s\"", id,
                        r->sites[j].id);
        }
        if (rc == 0)
            r->n_sites++;
    }
    config_destroy(&cf);
    return rc;
}

/* %.17g (round-trips doubles) with a decimal point always: libconfig arrays hold one type, so
 * [0.5, 1] would not read back. */
static void real_text(double v, char *out, size_t len)
{
    int n = snprintf(out, len, "%.17g", v);

    if (n > 0 && (size_t)n + 2 < len && strpbrk(out, ".eEn") == NULL)
        memcpy(out + n, ".0", 3);
}

static void put_recipe_text(FILE *f, const struct cwt_recipe *r)
{
    fprintf(f, "recipe = {\n");
    fprintf(f, "  model = { name = \"%s\"; depth = %u; width = %.17g; dropout = %.17g; };\n",
            r->model, r->resnet_depth, r->width, r->dropout);
    fprintf(f, "  input = [%u, %u, %u];\n", r->input_h, r->input_w, r->input_c);
    fprintf(f, "  classes = %u;\n", r->classes);
    if (r->n_class_names > 0) {
        fprintf(f, "  class_names = [");
        for (uint32_t i = 0; i < r->n_class_names; i++)
            fprintf(f, "%s\"%s\"", i ? ", " : "", r->class_names[i]);
        fprintf(f, "];\n");
    }
    fprintf(f, "  seed = %lluL;\n", (unsigned long long)r->seed);
    fprintf(f, "  train = {\n");
    fprintf(f, "    batch_size = %u;\n    epochs = %u;\n", r->batch_size, r->epochs);
    fprintf(f, "    optimizer = \"%s\";\n", optimizer_names[r->optimizer]);
    fprintf(f, "    lr = %.17g;\n    momentum = %.17g;\n    nesterov = %s;\n", r->lr, r->momentum,
            r->nesterov ? "true" : "false");
    fprintf(f, "    weight_decay = %.17g;\n    beta1 = %.17g;\n    beta2 = %.17g;\n",
            r->weight_decay, r->beta1, r->beta2);
    fprintf(f, "    eps = %.17g;\n", r->eps);
    fprintf(f, "    schedule = \"%s\";\n    lr_min = %.17g;\n    gamma = %.17g;\n",
            schedule_names[r->schedule], r->lr_min, r->gamma);
    fprintf(f, "    step_epochs = %.17g;\n    cycle_epochs = %.17g;\n", r->step_epochs,
            r->cycle_epochs);
    fprintf(f, "    augment_hflip = %s;\n    augment_crop_pad = %u;\n",
            r->augment_hflip ? "true" : "false", r->augment_crop_pad);
    /* The augmentations and fine-tuning settings below are written only when they are on, so
     * that a roster from before them keeps its text and therefore its fingerprint; when on,
     * they are part of it, so sites cannot silently train differently. */
    if (r->augment_vflip)
        fprintf(f, "    augment_vflip = true;\n");
    if (r->augment_resized_crop) {
        char v[4][40];
        for (int i = 0; i < 4; i++)
            real_text(i < 2 ? r->augment_crop_scale[i] : r->augment_crop_ratio[i - 2], v[i],
                      sizeof(v[i]));
        fprintf(f,
                "    augment_resized_crop = true;\n    augment_crop_scale = [%s, %s];\n"
                "    augment_crop_ratio = [%s, %s];\n",
                v[0], v[1], v[2], v[3]);
    }
    if (r->augment_rotate != 0.0)
        fprintf(f, "    augment_rotate = %.17g;\n", r->augment_rotate);
    if (r->augment_brightness != 0.0)
        fprintf(f, "    augment_brightness = %.17g;\n", r->augment_brightness);
    if (r->augment_contrast != 0.0)
        fprintf(f, "    augment_contrast = %.17g;\n", r->augment_contrast);
    fprintf(f, "    balanced_sampling = %s;\n    class_weighted_loss = %s;\n",
            r->balanced_sampling ? "true" : "false", r->class_weighted_loss ? "true" : "false");
    fprintf(f, "  };\n");
    fprintf(f, "  cycle = {\n");
    fprintf(f, "    heuristic = \"%s\";\n    visit_unit = \"%s\";\n    visit_length = %.17g;\n",
            heuristic_names[r->heuristic], visit_names[r->visit_unit], r->visit_length);
    /* Written only when not the default, so that a roster from before the key keeps its
     * text and therefore its fingerprint. */
    if (r->select != CWT_SEL_ACCURACY)
        fprintf(f, "    select = \"%s\";\n", select_names[r->select]);
    fprintf(f, "    cycles = %u;\n    patience = %u;\n    bundle_ttl_days = %u;\n", r->cycles,
            r->patience, r->bundle_ttl_days);
    fprintf(f, "  };\n");
    if (r->freeze_stages != 0 || r->backbone_lr_scale != 1.0)
        fprintf(f,
                "  finetune = {\n    freeze_stages = %u;\n    backbone_lr_scale = %.17g;\n  };\n",
                r->freeze_stages, r->backbone_lr_scale);
    /* Only with initial weights, so that a roster without them keeps its fingerprint. */
    if (r->has_init) {
        char hex[65];
        cwt_hex(r->init_hash, 32, hex);
        fprintf(f, "  init = {\n    file = \"%s\";\n    blake2b = \"%s\";\n  };\n", r->init_file,
                hex);
    }
    fprintf(f, "};\n");
}

/* Renders the roster in its canonical layout. With comments == 0 this is also the exact byte
 * string the fingerprint hashes: fixed key order, fixed number formatting (%.17g round-trips
 * doubles), canonical key lines. */
static int roster_render(const struct cwt_roster *r, int comments, char **out, size_t *outlen)
{
    FILE *f = open_memstream(out, outlen);

    if (f == NULL)
        return CWT_ENOMEM;
    if (comments)
        fprintf(f, "# roster.conf - the federation: sites in cycle order and the training "
                   "recipe.\n# Identical at every site; compare `cwtctl roster check` "
                   "fingerprints out of band.\n# Add sites with `cwtctl roster add "
                   "'cwt-site-v1 ...'`.\n\n");
    else
        fprintf(f, "cwt-roster-v1\n");
    fprintf(f, "federation = \"%s\";\n", r->federation);
    put_recipe_text(f, &r->recipe);
    fprintf(f, "sites = (");
    for (uint32_t i = 0; i < r->n_sites; i++)
        fprintf(f, "%s\n  { id = \"%s\"; key = \"%s\"; }", i ? "," : "", r->sites[i].id,
                r->sites[i].key_line);
    fprintf(f, "%s);\n", r->n_sites ? "\n" : "");
    if (ferror(f)) {
        fclose(f);
        free(*out);
        *out = NULL;
        return CWT_ENOMEM;
    }
    if (fclose(f) != 0) {
        free(*out);
        *out = NULL;
        return CWT_ENOMEM;
    }
    return 0;
}

int roster_save(const char *path, const struct cwt_roster *r, char *err, size_t errlen)
{
    char *text;
    size_t len;
    int rc = roster_render(r, 1, &text, &len);

    if (rc != 0)
        return cwt_seterr(err, errlen, rc, "%s: out of memory", path);
    rc = file_write_atomic(path, text, len, 0644, err, errlen);
    free(text);
    return rc;
}

int roster_fingerprint(const struct cwt_roster *r, uint8_t out[32])
{
    char *text;
    size_t len;
    int rc = roster_render(r, 0, &text, &len);

    if (rc != 0)
        return rc;
    crypto_generichash(out, 32, (const uint8_t *)text, len, NULL, 0);
    free(text);
    return 0;
}

void roster_fingerprint_text(const uint8_t fp[32], char *out, size_t outlen)
{
    char hex[65];
    size_t o = 0;

    cwt_hex(fp, 32, hex);
    for (size_t i = 0; i < 64; i += 4) {
        size_t need = (i > 0 ? 1 : 0) + 4; /* separator and group */

        if (o + need >= outlen) /* keep room for the NUL */
            break;
        if (i > 0)
            out[o++] = ' ';
        memcpy(out + o, hex + i, 4);
        o += 4;
    }
    if (outlen > 0)
        out[o < outlen ? o : outlen - 1] = '\0';
}

int recipe_label_index(const struct cwt_recipe *r, const char *label, uint32_t *out)
{
    int64_t v;

    for (uint32_t i = 0; i < r->n_class_names; i++)
        if (strcmp(r->class_names[i], label) == 0) {
            *out = i;
            return 0;
        }
    if (cwt_parse_i64(label, 0, (int64_t)r->classes - 1, &v) == 0) {
        *out = (uint32_t)v;
        return 0;
    }
    return CWT_ENOENT;
}

/* ------------------------------------------------------------------ site init */

int site_init(const char *dir, const char *site_id, const struct cwt_recipe *recipe, char *err,
              size_t errlen)
{
    static const char *const subdirs[] = {"store", "inbox", "outbox", "keys"};
    char path[PATH_MAX], conf[2048];
    const char *group;
    struct cwt_roster *r;
    struct stat sb;
    int rc, n;

    if (!cwt_valid_id(site_id))
        return cwt_seterr(err, errlen, CWT_EINVAL,
                          "site id \"%s\" is not valid: use 1-63 letters, digits, '.', '_' or "
                          "'-'",
                          site_id);
    if (file_join(path, sizeof(path), dir, "cwtd.conf") != 0)
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "%s: path too long", dir);
    if (stat(path, &sb) == 0)
        return cwt_seterr(err, errlen, CWT_EEXIST,
                          "%s exists already; refusing to overwrite an existing site", path);
    rc = file_mkdir_p(dir, 0750, err, errlen);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
        char sub[PATH_MAX];
        mode_t mode = strcmp(subdirs[i], "keys") == 0 ? 0700 : 0750;

        if (file_join(sub, sizeof(sub), dir, subdirs[i]) != 0)
            return cwt_seterr(err, errlen, CWT_ETOOBIG, "%s: path too long", dir);
        rc = file_mkdir_p(sub, mode, err, errlen);
        if (rc == 0 && chmod(sub, mode) != 0)
            rc = cwt_seterr(err, errlen, CWT_EIO, "%s: cannot set mode: %s", sub, strerror(errno));
        if (rc != 0)
            return rc;
    }

    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
    snprintf(r->federation, sizeof(r->federation), "cwt-federation");
    r->recipe = *recipe;
    if (file_join(path, sizeof(path), dir, "roster.conf") != 0)
        rc = cwt_seterr(err, errlen, CWT_ETOOBIG, "%s: path too long", dir);
    else
        rc = roster_save(path, r, err, errlen);
    free(r);
    if (rc != 0)
        return rc;

    /* The control socket goes to group cwt where the package made that group; elsewhere
     * (an unpackaged site) to no group, so that cwtd does not warn at every start about a group
     * that does not exist. */
    group = getgrnam("cwt") != NULL ? "cwt" : "";
    n = snprintf(conf, sizeof(conf),
                 "# cwtd.conf - site configuration (libconfig syntax). See cwtd.conf(5).\n"
                 "# Relative paths are relative to this file's folder.\n"
                 "site_id = \"%s\";\n"
                 "dirs = {\n"
                 "  store = \"store\";\n"
                 "  keys = \"keys\";\n"
                 "  inbox = \"inbox\";\n"
                 "  outbox = \"outbox\";\n"
                 "};\n"
                 "socket = \"cwtd.sock\";\n"
                 "roster = \"roster.conf\";\n"
                 "gpu = { device = \"auto\"; };   # \"auto\", an index, or a name substring\n"
                 "daemon = { user = \"\"; group = \"%s\"; rescan_seconds = 30; };\n"
                 "limits = { store_max_gb = 16; max_bundle_mb = 4096; };\n",
                 site_id, group);
    if (n < 0 || (size_t)n >= sizeof(conf))
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "configuration too long");
    if (file_join(path, sizeof(path), dir, "cwtd.conf") != 0)
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "%s: path too long", dir);
    return file_write_new(path, conf, (size_t)n, 0640, err, errlen);
}
