/*
 * cmd_predict.c - `cwtctl predict FILE...`: class probabilities of image files under the
 * site's model. Files are decoded and resized exactly as ingest does (cli/decode.h).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/decode.h"
#include "engine/train/train.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: cwtctl predict [--json] FILE...\n\n"
               "Prints the site model's class probabilities for each PNG, JPEG or DICOM file.\n"
               "Exit status 1 if any file could not be read or decoded.\n");
}

static const char *class_name(const struct cwt_recipe *r, uint32_t k, char *buf, size_t len)
{
    if (r->n_class_names == r->classes && k < r->n_class_names)
        return r->class_names[k];
    snprintf(buf, len, "%u", k);
    return buf;
}

static void print_result(const struct cli_globals *g, const struct cwt_recipe *r, const char *path,
                         const float *p, uint32_t classes)
{
    uint32_t best = 0;
    char buf[16];

    for (uint32_t k = 1; k < classes; k++)
        if (p[k] > p[best])
            best = k;
    if (g->json) {
        fputs("{\"file\":", stdout);
        cli_json_string(stdout, path);
        fputs(",\"predicted\":", stdout);
        cli_json_string(stdout, class_name(r, best, buf, sizeof(buf)));
        fputs(",\"probabilities\":{", stdout);
        for (uint32_t k = 0; k < classes; k++) {
            if (k)
                putchar(',');
            cli_json_string(stdout, class_name(r, k, buf, sizeof(buf)));
            printf(":%.6g", (double)p[k]);
        }
        fputs("}}\n", stdout);
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
    uint8_t *pixels;
    float *probs;
};

static void predict_cleanup(struct predict_run *r)
{
    eng_model_free(r->model);
    if (r->dev != NULL)
        eng_device_close(r->dev);
    if (r->st != NULL)
        store_close(r->st);
    free(r->pixels);
    free(r->probs);
    free(r);
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
    char err[CWT_ERRLEN];
    int ch, rc, failed = 0;

    optind = 0;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            usage(stdout);
            return CLI_OK;
        default:
            usage(stderr);
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
    rc = store_open(r->cfg.store_dir, STORE_RDONLY, r->cfg.store_max_bytes, &r->st, err,
                    sizeof(err));
    if (rc == 0)
        rc = eng_device_open(r->cfg.gpu_device, 0, &r->dev, err, sizeof(err));
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
        struct decoded_image img;
        memset(&img, 0, sizeof(img));
        rc = decode_file(argv[i], &img, err, sizeof(err));
        if (rc == 0) {
            rc = image_prepare(&img, spec.in_h, spec.in_w, spec.in_c, r->pixels);
            if (rc != 0)
                cwt_seterr(err, sizeof(err), rc, "%s: cannot convert the image: %s", argv[i],
                           cwt_strerror(rc));
        }
        decode_free(&img);
        if (rc == 0) {
            rc = train_predict_images(r->model, &spec, &norm, r->pixels, 1, 1, r->probs);
            if (rc != 0)
                cwt_seterr(err, sizeof(err), rc, "%s: inference failed: %s", argv[i],
                           cwt_strerror(rc));
        }
        if (rc != 0) {
            cli_error(CLI_FAIL, "%s", err);
            failed = 1;
            continue;
        }
        print_result(g, &r->roster.recipe, argv[i], r->probs, spec.classes);
    }
    fflush(stdout);
    predict_cleanup(r);
    return failed ? CLI_FAIL : CLI_OK;
}
