/*
 * cmd_data.c - `cwtctl data [--json]`: the images in the store per split and label.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "storage/store.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: cwtctl data [--json]\n\n"
               "Shows the images in the site store per split and per label, the input size\n"
               "and the store's size on disk. Works read-only, also while cwtd runs.\n");
}

static void print_json(uint64_t total, const uint32_t shape[3], uint32_t classes, uint32_t labels,
                       uint64_t (*counts)[CWT_MAX_CLASSES])
{
    printf("{\"images\": %llu, \"input\": [%u, %u, %u], \"classes\": %u, \"splits\": {",
           (unsigned long long)total, shape[0], shape[1], shape[2], classes);
    for (int s = 0; s < STORE_NSPLITS; s++) {
        uint64_t sum = 0;
        for (uint32_t l = 0; l < labels; l++)
            sum += counts[s][l];
        printf("%s\"%s\": {\"total\": %llu, \"labels\": {", s ? ", " : "",
               store_split_name((enum store_split)s), (unsigned long long)sum);
        for (uint32_t l = 0; l < labels; l++)
            printf("%s\"%u\": %llu", l ? ", " : "", l, (unsigned long long)counts[s][l]);
        printf("}}");
    }
    printf("}}\n");
}

static void print_table(uint64_t total, const uint32_t shape[3], uint32_t labels,
                        uint64_t (*counts)[CWT_MAX_CLASSES], const struct cwt_recipe *recipe,
                        uint64_t disk)
{
    uint64_t sums[STORE_NSPLITS] = {0};

    printf("images   %llu\n", (unsigned long long)total);
    printf("input    %ux%ux%u (height x width x channels)\n", shape[0], shape[1], shape[2]);
    printf("classes  %u\n", recipe->classes);
    printf("store    %.1f MiB on disk\n\n", (double)disk / (1024.0 * 1024.0));
    printf("%-28s %10s %10s %10s\n", "label", "train", "val", "test");
    for (uint32_t l = 0; l < labels; l++) {
        char name[CWT_NAME_MAX + 16];
        if (l < recipe->n_class_names)
            snprintf(name, sizeof(name), "%u %s", l, recipe->class_names[l]);
        else
            snprintf(name, sizeof(name), "%u", l);
        printf("%-28s", name);
        for (int s = 0; s < STORE_NSPLITS; s++) {
            printf(" %10llu", (unsigned long long)counts[s][l]);
            sums[s] += counts[s][l];
        }
        printf("\n");
    }
    printf("%-28s %10llu %10llu %10llu\n", "total", (unsigned long long)sums[0],
           (unsigned long long)sums[1], (unsigned long long)sums[2]);
}

int cmd_data(int argc, char **argv, const struct cli_globals *g)
{
    uint64_t(*counts)[CWT_MAX_CLASSES] = NULL;
    struct cwt_config cfg;
    struct cwt_roster *roster = NULL;
    struct store *st = NULL;
    char err[CWT_ERRLEN];
    uint32_t shape[3], labels;
    uint64_t total = 0, disk = 0;
    int rc, code = CLI_OK;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return CLI_OK;
        }
        usage(stderr);
        return cli_error(CLI_USAGE, "unexpected argument '%s'", argv[i]);
    }
    roster = malloc(sizeof(*roster));
    counts = calloc(STORE_NSPLITS, sizeof(*counts));
    if (roster == NULL || counts == NULL) {
        code = cli_error(CLI_FAIL, "out of memory");
        goto out;
    }
    code = cli_load_site(g, &cfg, roster);
    if (code != 0)
        goto out;
    shape[0] = roster->recipe.input_h;
    shape[1] = roster->recipe.input_w;
    shape[2] = roster->recipe.input_c;
    labels = roster->recipe.classes;

    rc = store_open(cfg.store_dir, STORE_RDONLY, cfg.store_max_bytes, &st, err, sizeof(err));
    if (rc == 0) {
        uint32_t h, w, c;
        if (store_get_shape(st, &h, &w, &c) == 0) {
            shape[0] = h;
            shape[1] = w;
            shape[2] = c;
        }
        rc = store_counts(st, CWT_MAX_CLASSES, counts);
        if (rc == 0)
            rc = store_disk_bytes(st, &disk);
        if (rc != 0) {
            code = cli_error(CLI_FAIL, "cannot read the store in %s: %s", cfg.store_dir,
                             cwt_strerror(rc));
            goto out;
        }
    } else if (rc != CWT_ENOENT) { /* no store yet: nothing ingested, all counts zero */
        code = cli_error(CLI_FAIL, "%s", err);
        goto out;
    }
    /* Labels beyond the recipe (a recipe changed after ingest) are shown too. */
    for (uint32_t l = 0; l < CWT_MAX_CLASSES; l++)
        for (int s = 0; s < STORE_NSPLITS; s++) {
            total += counts[s][l];
            if (counts[s][l] > 0 && l >= labels)
                labels = l + 1;
        }
    if (g->json)
        print_json(total, shape, roster->recipe.classes, labels, counts);
    else
        print_table(total, shape, labels, counts, &roster->recipe, disk);
out:
    store_close(st);
    free(counts);
    free(roster);
    return code;
}
