/*
 * cmd_predict.c - `cwtctl predict FILE...`: class probabilities of image files under the
 * site's model. Files are decoded and resized exactly as ingest does (cli/decode.h).
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "decode/decoder.h"
#include "cli/ensemble.h"
#include "engine/train/train.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: cwtctl predict [--json] FILE...\n\n"
               "Prints the site model's class probabilities for each PNG, JPEG or DICOM file.\n"
               "When the roster's heuristic is ensemble, the probabilities are the mean over\n"
               "every member cwtd has received (listed in the output).\n"
               "--json prints JSON Lines: one object per file (docs/json.md).\n"
               "Exit status 1 if any file could not be read or decoded.\n");
}

static const char *class_name(const struct cwt_recipe *r, uint32_t k, char *buf, size_t len)
{
    if (r->n_class_names == r->classes && k < r->n_class_names)
        return r->class_names[k];
    snprintf(buf, len, "%u", k);
    return buf;
}

/* The JSON Lines stream of `predict --json`: one object per file (docs/json.md). */
#define PREDICT_SCHEMA "cwt.predict/1"

/* A file that got no answer: its sentence on stderr, and under --json its line of the stream
 * ("ok": false, the error code and the sentence), so that every file has one line. */
static void file_failed(const struct cli_globals *g, const char *path, int rc, const char *err)
{
    json_t *o;
    int bad;

    if (!g->json) {
        cli_error(CLI_FAIL, "%s", err);
        return;
    }
    cli_note("%s", err);
    o = cli_json_doc(PREDICT_SCHEMA, 0);
    bad = o == NULL;
    if (!bad) {
        bad |= cli_json_set_str(o, "file", path);
        bad |= cli_json_set_str(o, "error", cwt_errname(rc));
        bad |= cli_json_set_str(o, "message", err);
    }
    if (bad) {
        json_decref(o);
        o = NULL;
    }
    cli_json_stream(o);
}

static void print_result(const struct cli_globals *g, const struct cwt_recipe *r, const char *path,
                         const float *p, uint32_t classes, const struct ensemble_members *e)
{
    uint32_t best = 0;
    char buf[16];

    for (uint32_t k = 1; k < classes; k++)
        if (p[k] > p[best])
            best = k;
    if (g->json) {
        json_t *o = cli_json_doc(PREDICT_SCHEMA, 1), *probs = json_object();
        int bad = o == NULL;
        if (!bad) {
            bad |= cli_json_set_str(o, "file", path);
            if (e != NULL) {
                json_t *m = json_array();
                for (uint32_t i = 0; m != NULL && i < e->n; i++)
                    if (json_array_append_new(m, cli_json_str(e->site[i])) != 0)
                        bad = 1;
                bad |= cli_json_set(o, "members", m);
            }
            bad |= cli_json_set_str(o, "predicted", class_name(r, best, buf, sizeof(buf)));
            for (uint32_t k = 0; probs != NULL && k < classes; k++)
                bad |= cli_json_set(probs, class_name(r, k, buf, sizeof(buf)),
                                    json_real((double)p[k]));
        }
        bad |= cli_json_set(o, "probabilities", probs);
        if (bad) {
            json_decref(o);
            o = NULL;
        }
        cli_json_stream(o);
        return;
    }
    printf("%s: %s (%.4f)", path, class_name(r, best, buf, sizeof(buf)), (double)p[best]);
    for (uint32_t k = 0; k < classes; k++)
        printf("  %s %.4f", class_name(r, k, buf, sizeof(buf)), (double)p[k]);
    putchar('\n');
}

struct predict_run {
    struct cwt_config cfg;
    struct cwt_roster roster;
    struct store *st;
    struct eng_device *dev;
    struct eng_model *model;
    struct decoder *dec; /* the sandboxed decoder child */
    uint8_t *pixels;
    float *probs;
    double *sum;     /* ensemble: summed probabilities of a chunk */
    int *chunk_file; /* ensemble: argv index of each decoded image of a chunk */
};

/* Files per ensemble chunk: every member is loaded once per chunk, and only a chunk's
 * pixels are held in memory. */
#define PREDICT_CHUNK 256

static void predict_cleanup(struct predict_run *r)
{
    eng_model_free(r->model);
    decoder_close(r->dec);
    if (r->dev != NULL)
        eng_device_close(r->dev);
    if (r->st != NULL)
        store_close(r->st);
    free(r->pixels);
    free(r->probs);
    free(r->sum);
    free(r->chunk_file);
    free(r);
}

/* Decodes argv[i] into pixels (the model's input shape) in the decoder child; 0, or an error
 * printed already. */
static int load_image(const struct cli_globals *g, struct decoder *dec, const char *path,
                      const struct eng_model_spec *spec, uint8_t *pixels)
{
    char err[CWT_ERRLEN];
    int rc;

    rc = decoder_decode_file(dec, path, spec->in_h, spec->in_w, spec->in_c, pixels, err,
                             sizeof(err));
    if (rc != 0)
        file_failed(g, path, rc, err);
    return rc;
}

/* The decoded images of one chunk, for predict_member. */
struct predict_chunk {
    const uint8_t *pixels;
    uint32_t count, max_batch;
};

/* ensemble_run_fn of predict: one member's probabilities for a chunk of images. */
static int predict_member(struct eng_model *m, const struct eng_model_spec *spec,
                          const struct train_norm *norm, float *probs, void *ctx, char *err,
                          size_t errlen)
{
    const struct predict_chunk *c = ctx;
    int rc = train_predict_images(m, spec, norm, c->pixels, c->count, c->max_batch, probs);

    if (rc != 0)
        return cwt_seterr(err, errlen, rc, "inference failed: %s", cwt_strerror(rc));
    return 0;
}

/* The ensemble's probabilities for argv[first..argc): files in chunks of PREDICT_CHUNK; per
 * chunk the members are loaded one after the other (one model on the device at a time) and
 * their probabilities averaged. A file that cannot be decoded sets *failed; a member that
 * cannot be loaded or run is an error (err). */
static int predict_ensemble(struct predict_run *r, const struct cli_globals *g,
                            const struct ensemble_members *e, int first, int argc, char **argv,
                            int *failed, char *err, size_t errlen)
{
    const struct cwt_recipe *rec = &r->roster.recipe;
    struct eng_model_spec spec;
    struct eng_optim_spec optim;
    size_t image_bytes;
    uint32_t max_batch = rec->batch_size > 0 ? rec->batch_size : 1;
    int rc;

    if ((rc = train_specs_from_recipe(rec, &spec, &optim, err, errlen)) != 0)
        return rc;
    image_bytes = (size_t)spec.in_h * spec.in_w * spec.in_c;
    if (image_bytes == 0 || image_bytes > SIZE_MAX / PREDICT_CHUNK)
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "the model's input is too large");
    r->pixels = malloc(image_bytes * PREDICT_CHUNK);
    r->probs = malloc((size_t)PREDICT_CHUNK * spec.classes * sizeof(float));
    r->sum = malloc((size_t)PREDICT_CHUNK * spec.classes * sizeof(double));
    r->chunk_file = malloc(PREDICT_CHUNK * sizeof(int));
    if (r->pixels == NULL || r->probs == NULL || r->sum == NULL || r->chunk_file == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory");
    for (int start = first; start < argc; start += PREDICT_CHUNK) {
        int end = argc - start > PREDICT_CHUNK ? start + PREDICT_CHUNK : argc;
        uint32_t count = 0;
        size_t cells;

        for (int i = start; i < end; i++) {
            if (load_image(g, r->dec, argv[i], &spec, r->pixels + (size_t)count * image_bytes) !=
                0) {
                *failed = 1;
                continue;
            }
            r->chunk_file[count++] = i;
        }
        if (count == 0)
            continue;
        cells = (size_t)count * spec.classes;
        struct predict_chunk chunk = {r->pixels, count, max_batch};
        rc = ensemble_average(r->dev, r->st, rec, e, cells, predict_member, &chunk, r->sum,
                              r->probs, err, errlen);
        if (rc != 0)
            return rc;
        for (uint32_t j = 0; j < count; j++)
            print_result(g, rec, argv[r->chunk_file[j]], r->probs + (size_t)j * spec.classes,
                         spec.classes, e);
        fflush(stdout);
    }
    return 0;
}

int cmd_predict(int argc, char **argv, const struct cli_globals *g)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct predict_run *r;
    struct eng_model_spec spec;
    struct train_norm norm;
    struct ensemble_members members = {0};
    char err[CWT_ERRLEN];
    int ch, rc, failed = 0;

    optind = 0;
    while ((ch = cli_getopt(argc, argv, "h", opts, "predict")) != -1) {
        switch (ch) {
        case 'h':
            usage(stdout);
            return CLI_OK;
        default:
            return CLI_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return cli_error(CLI_USAGE, "no image files given");
    }
    if ((r = calloc(1, sizeof(*r))) == NULL)
        return cli_error(CLI_FAIL, "out of memory");
    if (cli_load_site(g, &r->cfg, &r->roster) != 0) {
        free(r);
        return CLI_USAGE;
    }
    /* The decoder child is forked first, before the store and the GPU driver are open. */
    if (decoder_open(&r->dec) != 0) {
        free(r);
        return cli_error(CLI_FAIL, "out of memory");
    }
    rc = decoder_start(r->dec, err, sizeof(err));
    if (rc == 0)
        rc = store_open(r->cfg.store_dir, STORE_RDONLY, r->cfg.store_max_bytes, &r->st, err,
                        sizeof(err));
    if (rc == 0)
        rc = eng_device_open(r->cfg.gpu_device, 0, &r->dev, err, sizeof(err));
    if (rc == 0 && r->roster.recipe.heuristic == CWT_H_ENSEMBLE) {
        rc = ensemble_find(r->st, &r->roster, &members, err, sizeof(err));
        if (rc == 0) {
            if (!g->json)
                ensemble_print(stdout, &members);
            rc = predict_ensemble(r, g, &members, optind, argc, argv, &failed, err, sizeof(err));
        }
        predict_cleanup(r);
        if (rc != 0)
            return cli_error(CLI_FAIL, "%s", err);
        return failed ? CLI_FAIL : CLI_OK;
    }
    if (rc == 0)
        rc = train_load_named(r->dev, r->st, TRAIN_CKPT_MODEL, &r->roster.recipe, &r->model, &spec,
                              &norm, err, sizeof(err));
    if (rc == 0) {
        r->pixels = malloc((size_t)spec.in_h * spec.in_w * spec.in_c);
        r->probs = malloc(spec.classes * sizeof(float));
        if (r->pixels == NULL || r->probs == NULL)
            rc = cwt_seterr(err, sizeof(err), CWT_ENOMEM, "out of memory");
    }
    if (rc != 0) {
        predict_cleanup(r);
        return cli_error(CLI_FAIL, "%s", err);
    }
    /* One file at a time: a bad file is reported and the others still get an answer. */
    for (int i = optind; i < argc; i++) {
        rc = decoder_decode_file(r->dec, argv[i], spec.in_h, spec.in_w, spec.in_c, r->pixels, err,
                                 sizeof(err));
        if (rc == 0) {
            rc = train_predict_images(r->model, &spec, &norm, r->pixels, 1, 1, r->probs);
            if (rc != 0)
                cwt_seterr(err, sizeof(err), rc, "%s: inference failed: %s", argv[i],
                           cwt_strerror(rc));
        }
        if (rc != 0) {
            file_failed(g, argv[i], rc, err);
            failed = 1;
            continue;
        }
        print_result(g, &r->roster.recipe, argv[i], r->probs, spec.classes, NULL);
    }
    fflush(stdout);
    predict_cleanup(r);
    return failed ? CLI_FAIL : CLI_OK;
}
