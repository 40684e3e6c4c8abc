/*
 * fuzz_csv.c - libFuzzer harness for the ingest CSV parser: ingest_csv_list on the input as
 * CSV text, with paths relative to a scratch folder that holds two image files (one nested)
 * and a symlink leading out of it, so that rows reach every path check. Rejected rows are
 * reported to /dev/null, which runs the report's format strings too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/ingest.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Set once in LLVMFuzzerInitialize, read-only afterwards. */
static char base[PATH_MAX];
static struct cwt_recipe recipe;
static struct ingest_options opt;

static void remove_base(void)
{
    char path[PATH_MAX + 16];
    static const char *const names[] = {"a.png", "sub/b.jpg", "sub", "out", NULL};

    for (int i = 0; names[i] != NULL; i++) {
        snprintf(path, sizeof(path), "%s/%s", base, names[i]);
        (void)remove(path);
    }
    (void)rmdir(base);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char tmpl[PATH_MAX], path[PATH_MAX + 16];
    const char *tmp = getenv("TMPDIR");
    FILE *f;

    (void)argc;
    (void)argv;
    snprintf(tmpl, sizeof(tmpl), "%s/cwt-fuzz-csv.XXXXXX", tmp != NULL ? tmp : "/tmp");
    if (mkdtemp(tmpl) == NULL || realpath(tmpl, base) == NULL)
        abort();
    atexit(remove_base);
    snprintf(path, sizeof(path), "%s/sub", base);
    if (mkdir(path, 0700) != 0)
        abort();
    snprintf(path, sizeof(path), "%s/a.png", base);
    if ((f = fopen(path, "w")) == NULL || fclose(f) != 0)
        abort();
    snprintf(path, sizeof(path), "%s/sub/b.jpg", base);
    if ((f = fopen(path, "w")) == NULL || fclose(f) != 0)
        abort();
    snprintf(path, sizeof(path), "%s/out", base);
    if (symlink("/", path) != 0)
        abort();

    recipe_defaults(&recipe);
    recipe.input_h = recipe.input_w = 8;
    recipe.input_c = 1;
    recipe.classes = 3;
    recipe.n_class_names = 3;
    snprintf(recipe.class_names[0], sizeof(recipe.class_names[0]), "normal");
    snprintf(recipe.class_names[1], sizeof(recipe.class_names[1]), "benign");
    snprintf(recipe.class_names[2], sizeof(recipe.class_names[2]), "malignant");
    opt.split_mode = INGEST_SPLIT_STRATIFIED;
    opt.val_fraction = 0.2;
    opt.test_fraction = 0.1;
    opt.seed = 7;
    opt.report = fopen("/dev/null", "w");
    if (opt.report == NULL)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ingest_summary sum;
    char err[CWT_ERRLEN];
    uint64_t reasons = 0;
    size_t rows;

    if (ingest_csv_list((const char *)data, size, "fuzz.csv", base, &recipe, &opt, &sum, &rows, err,
                        sizeof(err)) != 0)
        return 0;
    /* Every row is either listed or rejected for exactly one reason. */
    for (int i = 0; i < INGEST_NREASONS; i++)
        reasons += sum.reasons[i];
    if (reasons != sum.rejected || sum.items != sum.rejected + rows)
        abort();
    return 0;
}
