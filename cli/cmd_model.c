/*
 * cmd_model.c - `cwtctl model export|import`: the site's model as a safetensors file
 * (tensor names and metadata: docs/model-export.md).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cli/cli.h"
#include "common/fileio.h"
#include "engine/train/train.h"
#include "storage/safetensors.h"

/* A cnn-small at 256x256x3 is about 2 GiB of float32; nothing legitimate is larger. */
#define MODEL_FILE_MAX (4ull << 30)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cwtctl model export [--json] -o FILE.safetensors\n"
            "       cwtctl model import [--json] FILE.safetensors\n"
            "       cwtctl model fingerprint [--json]\n"
            "       cwtctl model convert [--json] TORCHVISION.safetensors -o FILE.safetensors\n\n"
            "export  writes the site's model (weights, batch-norm buffers, normalisation\n"
            "        statistics and model description in __metadata__)\n"
            "import  replaces the site's model; the file must hold exactly the recipe's\n"
            "        model (fingerprint, tensor names and shapes)\n"
            "convert writes the roster's resnet with a torchvision-named ResNet state dict's\n"
            "        weights and batch-norm statistics (3-channel stem summed for 1 channel,\n"
            "        fc new from the roster seed), for recipe.init; prints its BLAKE2b\n"
            "fingerprint  prints the fingerprint of the roster's model (architecture and\n"
            "        tensor shapes) that every bundle of the federation must carry\n"
            "--json  prints the result as one JSON object\n");
}

struct model_run {
    struct cwt_config cfg;
    struct cwt_roster roster;
    struct store *st;
    struct eng_device *dev;
    struct eng_model *model;
    uint8_t *blob, *out;
};

static void model_cleanup(struct model_run *r)
{
    eng_model_free(r->model);
    if (r->dev != NULL)
        eng_device_close(r->dev);
    if (r->st != NULL)
        store_close(r->st);
    free(r->blob);
    free(r->out);
    free(r);
}

static int model_export(struct model_run *r, const char *path, const struct cli_globals *g)
{
    char err[CWT_ERRLEN];
    size_t len = 0;
    int rc;

    rc = store_open(r->cfg.store_dir, STORE_RDONLY, r->cfg.store_max_bytes, &r->st, err,
                    sizeof(err));
    if (rc != 0)
        return cli_error(CLI_FAIL, "%s", err);
    rc = store_model_get(r->st, TRAIN_CKPT_MODEL, &r->blob, &len);
    if (rc == CWT_ENOENT)
        return cli_error(CLI_FAIL, "no trained model in the store; run 'cwtctl train' first");
    if (rc != 0)
        return cli_error(CLI_FAIL, "cannot read the model from the store: %s", cwt_strerror(rc));
    /* The stored image plus PyTorch's batch-norm counters (checked on the way). */
    if (train_state_export(r->blob, len, &r->out, &len, err, sizeof(err)) != 0)
        return cli_error(CLI_FAIL, "the stored model is damaged: %s", err);
    if (file_write_atomic(path, r->out, len, 0644, err, sizeof(err)) != 0)
        return cli_error(CLI_FAIL, "%s", err);
    if (g->json) {
        json_t *o = cli_json_doc("cwt.model-export/1", 1);
        if (o != NULL && (cli_json_set_str(o, "file", path) != 0 ||
                          cli_json_set(o, "bytes", json_integer((json_int_t)len)) != 0)) {
            json_decref(o);
            o = NULL;
        }
        return cli_json_emit(o, 0);
    } else {
        printf("exported the site's model to %s (%zu bytes)\n", path, len);
    }
    return CLI_OK;
}

static int model_import(struct model_run *r, const char *path, const struct cli_globals *g)
{
    struct train_model_meta meta;
    struct eng_model_spec spec;
    struct eng_optim_spec ospec;
    char err[CWT_ERRLEN], fp_hex[65];
    size_t len = 0, outlen = 0;
    int rc;

    rc = file_read_all(path, MODEL_FILE_MAX, &r->blob, &len, err, sizeof(err));
    if (rc != 0)
        return cli_error(CLI_FAIL, "%s", err);
    rc = train_specs_from_recipe(&r->roster.recipe, &spec, &ospec, err, sizeof(err));
    if (rc != 0)
        return cli_error(CLI_USAGE, "%s", err);
    rc = eng_device_open(r->cfg.gpu_device, 0, &r->dev, err, sizeof(err));
    if (rc == 0)
        rc = train_model_from_recipe(r->dev, &r->roster.recipe, &r->model, err, sizeof(err));
    if (rc != 0)
        return cli_error(CLI_FAIL, "%s", err);
    /* Every check passes before the store is touched (or created, on a site that has not
     * ingested anything yet and only predicts). */
    rc = train_state_load(r->model, r->blob, len, TRAIN_SAVE_WEIGHTS, &meta, err, sizeof(err));
    if (rc != 0)
        return cli_error(CLI_FAIL, "%s: %s", path, err);
    if (!meta.has_norm)
        return cli_error(CLI_FAIL, "%s: metadata lacks norm_mean/norm_std", path);
    eng_model_set_step(r->model, meta.step);
    rc = train_state_save(r->model, &spec, &meta.norm, &r->roster.recipe, TRAIN_SAVE_WEIGHTS, NULL,
                          0, &r->out, &outlen, err, sizeof(err));
    if (rc != 0)
        return cli_error(CLI_FAIL, "%s", err);
    rc = store_open(r->cfg.store_dir, CLI_STORE_WRITE, r->cfg.store_max_bytes, &r->st, err,
                    sizeof(err));
    if (rc != 0)
        return cli_error(CLI_FAIL, "%s", err);
    if ((rc = store_model_put(r->st, TRAIN_CKPT_MODEL, r->out, outlen)) != 0)
        return cli_error(CLI_FAIL, "cannot store the model: %s", cwt_strerror(rc));
    cwt_hex(meta.fingerprint, sizeof(meta.fingerprint), fp_hex);
    /* Replacing the model changes what the site sends on; the audit log records it. */
    if ((rc = audit_append(r->st, "model-import", "imported %s, model fingerprint %s", path,
                           fp_hex)) != 0)
        return cli_error(CLI_FAIL, "model imported but the audit record failed: %s",
                         cwt_strerror(rc));
    if (g->json) {
        json_t *o = cli_json_doc("cwt.model-import/1", 1);
        if (o != NULL && (cli_json_set_str(o, "file", path) != 0 ||
                          cli_json_set(o, "fingerprint", json_string(fp_hex)) != 0)) {
            json_decref(o);
            o = NULL;
        }
        return cli_json_emit(o, 0);
    } else {
        printf("imported %s as the site's model (fingerprint %.16s...)\n", path, fp_hex);
    }
    return CLI_OK;
}

/* Reads a little-endian float32 (tensor data is not aligned in a safetensors image). */
static float get_f32(const uint8_t *p)
{
    float v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/* The shape as "[a, b, ...]" for messages. */
static void shape_text(const struct st_tensor *t, char *out, size_t outlen)
{
    size_t used = 0;

    out[0] = '\0';
    for (uint32_t d = 0; d < t->ndim && used < outlen; d++) {
        int n = snprintf(out + used, outlen - used, "%s%llu", d ? ", " : "[",
                         (unsigned long long)t->shape[d]);
        if (n < 0)
            return;
        used += (size_t)n;
    }
    if (used < outlen)
        snprintf(out + used, outlen - used, "%s", t->ndim ? "]" : "[]");
}

/* `cwtctl model convert IN -o OUT` (docs/model-export.md, "Initial weights from torchvision"):
 * the roster's resnet, built from the roster seed, with every tensor of IN that has the same
 * name (torchvision's ResNet names are the engine's) and shape: convolutions, batch-norm
 * weights, biases and running statistics. Rules: the stem conv1.weight of a 3-channel IN is
 * summed over its input channels for a 1-channel roster (a grey image x gives the same
 * response as the RGB image (x, x, x) did); fc.* is never taken (the class count differs) and
 * keeps the roster seed's init; num_batches_tracked counters are skipped; any other tensor of
 * IN that the model lacks, or a shape that differs, is refused with its name, so a ResNet-18
 * state dict does not pass for a ResNet-10. The normalisation written is mean 0 std 1 (the
 * federation uses the site's own statistics, then the pooled ones). */
static int model_convert(struct model_run *r, const char *in, const char *path,
                         const struct cli_globals *g)
{
    struct eng_model_spec spec;
    struct eng_optim_spec ospec;
    struct train_norm norm;
    struct st_file fi, fo;
    char err[CWT_ERRLEN], a[96], b[96], hex[65];
    uint8_t hash[32], *used = NULL;
    size_t len = 0, outlen = 0, base;
    int rc = CLI_FAIL;

    if (strcmp(r->roster.recipe.model, "resnet") != 0)
        return cli_error(CLI_USAGE,
                         "model convert needs a roster whose model is resnet (this "
                         "one has %s)",
                         r->roster.recipe.model);
    if (file_read_all(in, MODEL_FILE_MAX, &r->blob, &len, err, sizeof(err)) != 0)
        return cli_error(CLI_FAIL, "%s", err);
    if (st_parse(r->blob, len, &fi, err, sizeof(err)) != 0)
        return cli_error(CLI_FAIL, "%s: %s", in, err);
    memset(&fo, 0, sizeof(fo));
    if (train_specs_from_recipe(&r->roster.recipe, &spec, &ospec, err, sizeof(err)) != 0 ||
        eng_device_open(r->cfg.gpu_device, 0, &r->dev, err, sizeof(err)) != 0 ||
        train_model_from_recipe(r->dev, &r->roster.recipe, &r->model, err, sizeof(err)) != 0) {
        cli_error(CLI_FAIL, "%s", err);
        goto out;
    }
    memset(&norm, 0, sizeof(norm));
    norm.channels = r->roster.recipe.input_c;
    for (uint32_t k = 0; k < norm.channels && k < TRAIN_MAX_CHANNELS; k++)
        norm.std[k] = 1.0f;
    if (train_state_save(r->model, &spec, &norm, &r->roster.recipe, TRAIN_SAVE_WEIGHTS, NULL, 0,
                         &r->out, &outlen, err, sizeof(err)) != 0 ||
        st_parse(r->out, outlen, &fo, err, sizeof(err)) != 0) {
        cli_error(CLI_FAIL, "%s", err);
        goto out;
    }
    base = (size_t)(fo.data - r->out);
    if ((used = calloc(fi.n ? fi.n : 1, 1)) == NULL) {
        cli_error(CLI_FAIL, "out of memory");
        goto out;
    }
    for (uint32_t i = 0; i < fo.n; i++) {
        const struct st_tensor *t = &fo.tensors[i], *s;
        uint8_t *dst = r->out + base + t->begin;
        int j;
        if (strncmp(t->name, "fc.", 3) == 0)
            continue;
        if ((j = st_find(&fi, t->name)) < 0) {
            cli_error(CLI_FAIL, "%s lacks %s, a tensor of the roster's resnet-%u", in, t->name,
                      r->roster.recipe.resnet_depth);
            goto out;
        }
        s = &fi.tensors[j];
        used[j] = 1;
        shape_text(s, a, sizeof(a));
        shape_text(t, b, sizeof(b));
        if (s->dtype != ST_F32) {
            cli_error(CLI_FAIL, "%s: %s is %s; float32 (F32) is needed", in, t->name,
                      st_dtype_name(s->dtype));
            goto out;
        }
        if (strcmp(a, b) == 0) {
            memcpy(dst, fi.data + s->begin, (size_t)(t->end - t->begin));
        } else if (strcmp(t->name, "conv1.weight") == 0 && s->ndim == 4 && t->ndim == 4 &&
                   s->shape[0] == t->shape[0] && s->shape[1] == 3 && t->shape[1] == 1 &&
                   s->shape[2] == t->shape[2] && s->shape[3] == t->shape[3]) {
            size_t plane = (size_t)(t->shape[2] * t->shape[3]);
            for (size_t o = 0; o < t->shape[0]; o++)
                for (size_t p = 0; p < plane; p++) {
                    float v = 0;
                    for (size_t c = 0; c < 3; c++)
                        v += get_f32(fi.data + s->begin + 4 * ((o * 3 + c) * plane + p));
                    memcpy(dst + 4 * (o * plane + p), &v, sizeof(v));
                }
        } else {
            cli_error(CLI_FAIL, "%s: %s is %s, the roster's model wants %s%s", in, t->name, a, b,
                      strcmp(t->name, "conv1.weight") == 0
                          ? " (inputs up to 64x64 use a 3x3 stem, larger ones torchvision's 7x7)"
                          : "");
            goto out;
        }
    }
    for (uint32_t j = 0; j < fi.n; j++) {
        const char *nm = fi.tensors[j].name;
        size_t nl = strlen(nm);
        if (used[j] || strncmp(nm, "fc.", 3) == 0 ||
            (nl >= 20 && strcmp(nm + nl - 20, ".num_batches_tracked") == 0))
            continue;
        cli_error(CLI_FAIL, "%s: %s is not a tensor of the roster's resnet-%u (another depth?)", in,
                  nm, r->roster.recipe.resnet_depth);
        goto out;
    }
    /* The strict loader checks the result (finite values, every tensor) before it is written. */
    if (train_state_load(r->model, r->out, outlen, TRAIN_SAVE_WEIGHTS, NULL, err, sizeof(err)) !=
        0) {
        cli_error(CLI_FAIL, "%s: %s", in, err);
        goto out;
    }
    if (file_write_atomic(path, r->out, outlen, 0644, err, sizeof(err)) != 0) {
        cli_error(CLI_FAIL, "%s", err);
        goto out;
    }
    crypto_generichash(hash, 32, r->out, outlen, NULL, 0);
    cwt_hex(hash, 32, hex);
    if (g->json) {
        json_t *doc = cli_json_doc("cwt.model-convert/1", 1);
        if (doc != NULL && (cli_json_set_str(doc, "file", path) != 0 ||
                            cli_json_set(doc, "blake2b", json_string(hex)) != 0)) {
            json_decref(doc);
            doc = NULL;
        }
        rc = cli_json_emit(doc, 0);
        goto out;
    }
    printf("wrote %s; for the roster: init = { file = \"%s\"; blake2b = \"%s\"; };\n", path,
           strrchr(path, '/') != NULL ? strrchr(path, '/') + 1 : path, hex);
    rc = CLI_OK;
out:
    free(used);
    st_free(&fi);
    st_free(&fo);
    return rc;
}

/* `cwtctl model fingerprint`: the roster model's fingerprint, for auditors and for
 * `bundle seal/open --model-fp`. */
static int model_fingerprint(int argc, char **argv, const struct cli_globals *g)
{
    struct model_run *r;
    uint8_t fp[32];
    char err[CWT_ERRLEN], hex[65];
    int rc;

    if (argc != 2)
        return cli_error(CLI_USAGE, "usage: cwtctl model fingerprint");
    (void)argv;
    if ((r = calloc(1, sizeof(*r))) == NULL)
        return cli_error(CLI_FAIL, "out of memory");
    if (cli_load_site(g, &r->cfg, &r->roster) != 0) {
        free(r);
        return CLI_USAGE;
    }
    rc = train_recipe_fingerprint(&r->roster.recipe, r->cfg.gpu_device, fp, err, sizeof(err));
    model_cleanup(r);
    if (rc != 0)
        return cli_error(CLI_FAIL, "cannot build the roster's model: %s", err);
    cwt_hex(fp, 32, hex);
    if (g->json) {
        json_t *o = cli_json_doc("cwt.model-fingerprint/1", 1);
        if (o != NULL && cli_json_set(o, "fingerprint", json_string(hex)) != 0) {
            json_decref(o);
            o = NULL;
        }
        return cli_json_emit(o, 0);
    } else
        printf("%s\n", hex);
    return CLI_OK;
}

int cmd_model(int argc, char **argv, const struct cli_globals *g)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *output = NULL, *sub;
    char name[32];
    struct model_run *r;
    int ch, rc;

    if (argc < 2 || cli_wants_help(argc, argv, 1)) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    sub = argv[1];
    if (strcmp(sub, "fingerprint") == 0)
        return model_fingerprint(argc, argv, g);
    if (strcmp(sub, "export") != 0 && strcmp(sub, "import") != 0 && strcmp(sub, "convert") != 0) {
        usage(stderr);
        return cli_error(CLI_USAGE, "unknown subcommand 'model %s'", sub);
    }
    /* Options after the subcommand: getopt sees argv[1..] with the subcommand as argv[0]. */
    optind = 0;
    snprintf(name, sizeof(name), "model %s", sub);
    while ((ch = cli_getopt(argc - 1, argv + 1, "o:h", opts, name)) != -1) {
        switch (ch) {
        case 'o':
            output = optarg;
            break;
        case 'h':
            usage(stdout);
            return CLI_OK;
        default:
            return CLI_USAGE;
        }
    }
    argc -= 1;
    argv += 1;
    if (strcmp(sub, "export") == 0 && (output == NULL || optind != argc))
        return cli_error(CLI_USAGE, "usage: cwtctl model export -o FILE.safetensors");
    if (strcmp(sub, "import") == 0 && (output != NULL || optind + 1 != argc))
        return cli_error(CLI_USAGE, "usage: cwtctl model import FILE.safetensors");
    if (strcmp(sub, "convert") == 0 && (output == NULL || optind + 1 != argc))
        return cli_error(CLI_USAGE,
                         "usage: cwtctl model convert TORCHVISION.safetensors -o FILE.safetensors");
    if ((r = calloc(1, sizeof(*r))) == NULL)
        return cli_error(CLI_FAIL, "out of memory");
    if (cli_load_site(g, &r->cfg, &r->roster) != 0) {
        free(r);
        return CLI_USAGE;
    }
    if (strcmp(sub, "export") == 0)
        rc = model_export(r, output, g);
    else if (strcmp(sub, "convert") == 0)
        rc = model_convert(r, argv[optind], output, g);
    else
        rc = model_import(r, argv[optind], g);
    model_cleanup(r);
    return rc;
}
