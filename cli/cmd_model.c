/*
 * cmd_model.c - `cwtctl model export|import`: the site's model as a safetensors file
 * (tensor names and metadata: docs/model-export.md).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/fileio.h"
#include "engine/train/train.h"

/* A cnn-small at 256x256x3 is about 2 GiB of float32; nothing legitimate is larger. */
#define MODEL_FILE_MAX (4ull << 30)

static void usage(FILE *f)
{
    fprintf(f, "usage: cwtctl model export [--json] -o FILE.safetensors\n"
               "       cwtctl model import [--json] FILE.safetensors\n"
               "       cwtctl model fingerprint [--json]\n\n"
               "export  writes the site's model (weights, batch-norm buffers, normalisation\n"
               "        statistics and model description in __metadata__)\n"
               "import  replaces the site's model; the file must hold exactly the recipe's\n"
               "        model (fingerprint, tensor names and shapes)\n"
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
    rc = store_open(r->cfg.store_dir, STORE_CREATE, r->cfg.store_max_bytes, &r->st, err,
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

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    sub = argv[1];
    if (strcmp(sub, "fingerprint") == 0)
        return model_fingerprint(argc, argv, g);
    if (strcmp(sub, "export") != 0 && strcmp(sub, "import") != 0) {
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
    if ((r = calloc(1, sizeof(*r))) == NULL)
        return cli_error(CLI_FAIL, "out of memory");
    if (cli_load_site(g, &r->cfg, &r->roster) != 0) {
        free(r);
        return CLI_USAGE;
    }
    if (strcmp(sub, "export") == 0)
        rc = model_export(r, output, g);
    else
        rc = model_import(r, argv[optind], g);
    model_cleanup(r);
    return rc;
}
