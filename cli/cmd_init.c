/*
 * cmd_init.c - `cwtctl init`: create a new site (configuration, starter roster, folders, keys).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/fileio.h"
#include "crypto/keys.h"

static void init_usage(FILE *f)
{
    fprintf(f, "usage: cwtctl init --site-id ID --dir DIR [--input HxWxC] [--classes N | "
               "--class-names a,b,...]\n"
               "                   [--model cnn-small|resnet] [--federation ID] [--seed N]\n\n"
               "Creates DIR/cwtd.conf, a starter DIR/roster.conf holding the training recipe and\n"
               "an empty site list, the folders store/ inbox/ outbox/ keys/, and the site's\n"
               "signing and encryption keys. Refuses to overwrite an existing site.\n");
}

/* Parses "28x28x1". */
static int parse_input(const char *s, struct cwt_recipe *r)
{
    unsigned h, w, c;
    char tail;

    if (sscanf(s, "%ux%ux%u%c", &h, &w, &c, &tail) != 3 || h < 1 || w < 1 || h > 1024 || w > 1024 ||
        (c != 1 && c != 3))
        return CWT_EINVAL;
    r->input_h = h;
    r->input_w = w;
    r->input_c = c;
    return 0;
}

static int parse_class_names(const char *s, struct cwt_recipe *r)
{
    char buf[8192], *save = NULL;
    uint32_t n = 0;

    if (strlen(s) >= sizeof(buf))
        return CWT_ETOOBIG;
    strcpy(buf, s);
    for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        if (n >= CWT_MAX_CLASSES || tok[0] == '\0' || strlen(tok) > CWT_NAME_MAX)
            return CWT_EINVAL;
        for (uint32_t j = 0; j < n; j++)
            if (strcmp(r->class_names[j], tok) == 0)
                return CWT_EINVAL;
        snprintf(r->class_names[n], sizeof(r->class_names[n]), "%s", tok);
        n++;
    }
    if (n < 2)
        return CWT_EINVAL;
    r->n_class_names = n;
    r->classes = n;
    return 0;
}

int cmd_init(int argc, char **argv, const struct cli_globals *g)
{
    static const struct option opts[] = {{"site-id", required_argument, NULL, 's'},
                                         {"dir", required_argument, NULL, 'd'},
                                         {"input", required_argument, NULL, 'i'},
                                         {"classes", required_argument, NULL, 'k'},
                                         {"class-names", required_argument, NULL, 'n'},
                                         {"model", required_argument, NULL, 'm'},
                                         {"federation", required_argument, NULL, 'f'},
                                         {"seed", required_argument, NULL, 'S'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *site_id = NULL, *dir = NULL, *federation = NULL;
    char err[CWT_ERRLEN], path[PATH_MAX], keys_dir[PATH_MAX];
    struct cwt_recipe *recipe;
    int have_classes = 0, have_names = 0, ch, rc = CLI_USAGE;
    int64_t v;

    recipe = calloc(1, sizeof(*recipe));
    if (recipe == NULL)
        return cli_error(CLI_FAIL, "out of memory");
    recipe_defaults(recipe);
    optind = 0;
    while ((ch = cli_getopt(argc, argv, "h", opts, "init")) != -1) {
        switch (ch) {
        case 's':
            site_id = optarg;
            break;
        case 'd':
            dir = optarg;
            break;
        case 'f':
            federation = optarg;
            break;
        case 'i':
            if (parse_input(optarg, recipe) != 0) {
                cli_error(CLI_USAGE, "--input %s: expected HxWxC, e.g. 28x28x1 (C is 1 or 3)",
                          optarg);
                goto out;
            }
            break;
        case 'k':
            if (cwt_parse_i64(optarg, 2, CWT_MAX_CLASSES, &v) != 0) {
                cli_error(CLI_USAGE, "--classes %s: expected a number from 2 to %d", optarg,
                          CWT_MAX_CLASSES);
                goto out;
            }
            recipe->classes = (uint32_t)v;
            have_classes = 1;
            break;
        case 'n':
            if (parse_class_names(optarg, recipe) != 0) {
                cli_error(CLI_USAGE,
                          "--class-names: expected 2-%d distinct names of at most %d "
                          "characters, separated by commas",
                          CWT_MAX_CLASSES, CWT_NAME_MAX);
                goto out;
            }
            have_names = 1;
            break;
        case 'm':
            if (strcmp(optarg, "cnn-small") != 0 && strcmp(optarg, "resnet") != 0) {
                cli_error(CLI_USAGE, "--model %s: expected cnn-small or resnet", optarg);
                goto out;
            }
            snprintf(recipe->model, sizeof(recipe->model), "%s", optarg);
            break;
        case 'S':
            if (cwt_parse_i64(optarg, 0, INT64_MAX, &v) != 0) {
                cli_error(CLI_USAGE, "--seed %s: expected a non-negative integer", optarg);
                goto out;
            }
            recipe->seed = (uint64_t)v;
            break;
        case 'h':
            init_usage(stdout);
            rc = CLI_OK;
            goto out;
        default:
            goto out;
        }
    }
    if (optind != argc || site_id == NULL || dir == NULL) {
        cli_error(CLI_USAGE, "init needs --site-id ID and --dir DIR (see 'cwtctl init --help')");
        goto out;
    }
    if (have_classes && have_names) {
        cli_error(CLI_USAGE, "give either --classes or --class-names, not both");
        goto out;
    }
    if (federation != NULL && !cwt_valid_id(federation)) {
        cli_error(CLI_USAGE, "--federation %s: use 1-63 letters, digits, '.', '_' or '-'",
                  federation);
        goto out;
    }

    rc = site_init(dir, site_id, recipe, err, sizeof(err));
    if (rc == CWT_EINVAL) {
        rc = cli_error(CLI_USAGE, "%s", err);
        goto out;
    }
    if (rc != 0) {
        rc = cli_error(CLI_FAIL, "%s", err);
        goto out;
    }
    if (federation != NULL) {
        struct cwt_roster *r = calloc(1, sizeof(*r));

        if (r == NULL || file_join(path, sizeof(path), dir, "roster.conf") != 0 ||
            roster_load(path, r, err, sizeof(err)) != 0) {
            free(r);
            rc = cli_error(CLI_FAIL, "cannot set the federation id: %s", err);
            goto out;
        }
        snprintf(r->federation, sizeof(r->federation), "%s", federation);
        rc = roster_save(path, r, err, sizeof(err));
        free(r);
        if (rc != 0) {
            rc = cli_error(CLI_FAIL, "%s", err);
            goto out;
        }
    }
    if (file_join(keys_dir, sizeof(keys_dir), dir, "keys") != 0) {
        rc = cli_error(CLI_FAIL, "%s: path too long", dir);
        goto out;
    }
    if (crypto_init() != 0 || keys_generate(keys_dir, site_id, err, sizeof(err)) != 0) {
        rc = cli_error(CLI_FAIL, "cannot make the site keys: %s", err);
        goto out;
    }
    if (g->json) {
        printf("{\"site_id\": ");
        cli_json_string(stdout, site_id);
        printf(", \"dir\": ");
        cli_json_string(stdout, dir);
        printf("}\n");
    } else {
        printf("Created site %s in %s\n", site_id, dir);
        printf("  next: share 'cwtctl -c %s/cwtd.conf key show' with the other sites,\n", dir);
        printf("        add theirs with 'cwtctl roster add', then compare 'cwtctl roster check'\n");
    }
    rc = CLI_OK;
out:
    free(recipe);
    return rc;
}
