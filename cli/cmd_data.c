/*
 * cmd_data.c - `cwtctl data [--json]`: the images in the store per split and label.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/ingest.h"
#include "storage/store.h"

/* The version of `data --json`'s document (docs/ingest.md). */
#define DATA_SCHEMA "cwt.data/1"

static void usage(FILE *f)
{
    fprintf(f, "usage: cwtctl data [--json]\n\n"
               "Shows the images in the site store per split and per label, the input size,\n"
               "the store's size on disk and the images per value of each metadata column\n"
               "(extra CSV columns of `cwtctl ingest`). Works read-only, also while cwtd runs.\n");
}

/* Images per value of each metadata column (store_imeta). Bounded, since values come from
 * outside: at most META_COLS columns and META_VALUES distinct values per column are named;
 * the rest are counted in `other_columns` / a column's `other`. */
#define META_COLS   64
#define META_VALUES 4096

struct meta_value {
    char value[STORE_IMETA_VALUE_MAX + 1];
    uint64_t n;
};

struct meta_col {
    char name[STORE_IMETA_NAME_MAX + 1];
    struct meta_value *v; /* ascending by value */
    size_t n, cap;
    uint64_t images, other;
};

struct meta_counts {
    struct meta_col col[META_COLS];
    uint32_t ncols;
    uint64_t other_columns; /* (image, column) pairs beyond META_COLS columns */
};

static int meta_count_one(uint64_t id, const struct store_imeta *m, void *ctx)
{
    struct meta_counts *mc = ctx;

    (void)id;
    for (uint32_t k = 0; k < m->n; k++) {
        struct meta_col *c = NULL;
        size_t lo = 0, hi;
        for (uint32_t j = 0; j < mc->ncols && c == NULL; j++)
            if (strcmp(mc->col[j].name, m->kv[k].name) == 0)
                c = &mc->col[j];
        if (c == NULL) {
            if (mc->ncols == META_COLS) {
                mc->other_columns++;
                continue;
            }
            c = &mc->col[mc->ncols++];
            snprintf(c->name, sizeof(c->name), "%s", m->kv[k].name);
        }
        c->images++;
        hi = c->n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (strcmp(c->v[mid].value, m->kv[k].value) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < c->n && strcmp(c->v[lo].value, m->kv[k].value) == 0) {
            c->v[lo].n++;
            continue;
        }
        if (c->n == META_VALUES) {
            c->other++;
            continue;
        }
        if (c->n == c->cap) {
            size_t ncap = c->cap ? c->cap * 2 : 16;
            struct meta_value *grown = realloc(c->v, ncap * sizeof(*grown));
            if (grown == NULL)
                return CWT_ENOMEM;
            c->v = grown;
            c->cap = ncap;
        }
        memmove(&c->v[lo + 1], &c->v[lo], (c->n - lo) * sizeof(c->v[0]));
        snprintf(c->v[lo].value, sizeof(c->v[lo].value), "%s", m->kv[k].value);
        c->v[lo].n = 1;
        c->n++;
    }
    return 0;
}

/* Duplicates whose label or split differed from the stored copy: `cwtctl ingest` records each
 * as an audit record (event INGEST_CONFLICT_EVENT, details starting "differs=label",
 * "differs=split" or "differs=label+split"). Stores written before that have none: 0. */
struct dup_counts {
    uint64_t conflicts, label, split;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Each conflict is counted once however often the same copy was ingested again: records are
 * compared on what they say up to " kept=" (what differs, the hash, both labels and splits). */
static int count_conflicts(struct store *st, struct dup_counts *d)
{
    struct audit_record *rec = NULL;
    const char **key = NULL;
    size_t n = 0, k = 0;
    int rc;

    memset(d, 0, sizeof(*d));
    if ((rc = audit_list(st, &rec, &n)) != 0)
        return rc;
    if (n > 0 && (key = calloc(n, sizeof(*key))) == NULL) {
        free(rec);
        return CWT_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        char *cut;
        if (strcmp(rec[i].event, INGEST_CONFLICT_EVENT) != 0)
            continue;
        rec[i].details[sizeof(rec[i].details) - 1] = '\0';
        if ((cut = strstr(rec[i].details, " kept=")) != NULL)
            *cut = '\0';
        key[k++] = rec[i].details;
    }
    if (k > 0)
        qsort(key, k, sizeof(*key), cmp_str);
    for (size_t i = 0; i < k; i++) {
        if (i > 0 && strcmp(key[i], key[i - 1]) == 0)
            continue;
        d->conflicts++;
        if (strncmp(key[i], "differs=label", 13) == 0)
            d->label++;
        if (strncmp(key[i], "differs=split", 13) == 0 ||
            strncmp(key[i], "differs=label+split", 19) == 0)
            d->split++;
    }
    free(key);
    free(rec);
    return 0;
}

static void meta_counts_free(struct meta_counts *mc)
{
    for (uint32_t j = 0; j < mc->ncols; j++)
        free(mc->col[j].v);
    mc->ncols = 0;
}

/* Sets key to v in o; a NULL v marks the document failed, so one check covers every field. */
static void put(json_t *o, const char *key, json_t *v, int *bad)
{
    if (v == NULL || json_object_set_new(o, key, v) != 0)
        *bad = 1;
}

static json_t *jcount(uint64_t v)
{
    return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

/* `data --json`: the document of schema DATA_SCHEMA (docs/ingest.md, docs/schemas/data.json), a
 * new reference; NULL when out of memory. */
static json_t *data_json(uint64_t total, const uint32_t shape[3], uint32_t classes, uint32_t labels,
                         uint64_t (*counts)[CWT_MAX_CLASSES], const struct meta_counts *mc,
                         const struct dup_counts *dups)
{
    json_t *o = cli_json_doc(DATA_SCHEMA, 1), *splits = json_object(), *meta = json_object();
    int bad = o == NULL || splits == NULL || meta == NULL;

    if (bad) {
        json_decref(o);
        json_decref(splits);
        json_decref(meta);
        return NULL;
    }
    put(o, "images", jcount(total), &bad);
    put(o, "input", json_pack("[i,i,i]", (int)shape[0], (int)shape[1], (int)shape[2]), &bad);
    put(o, "classes", json_integer(classes), &bad);
    for (int s = 0; s < STORE_NSPLITS; s++) {
        json_t *sp = json_object(), *lab = json_object();
        uint64_t sum = 0;
        if (sp == NULL || lab == NULL) {
            json_decref(sp);
            json_decref(lab);
            bad = 1;
            break;
        }
        for (uint32_t l = 0; l < labels; l++) {
            char key[16];
            snprintf(key, sizeof(key), "%u", l);
            sum += counts[s][l];
            put(lab, key, jcount(counts[s][l]), &bad);
        }
        put(sp, "total", jcount(sum), &bad);
        put(sp, "labels", lab, &bad);
        put(splits, store_split_name((enum store_split)s), sp, &bad);
    }
    put(o, "splits", splits, &bad);
    for (uint32_t j = 0; j < mc->ncols; j++) {
        const struct meta_col *c = &mc->col[j];
        json_t *col = json_object(), *vals = json_object();
        if (col == NULL || vals == NULL) {
            json_decref(col);
            json_decref(vals);
            bad = 1;
            break;
        }
        for (size_t k = 0; k < c->n; k++) {
            json_t *key = cli_json_str(c->v[k].value);
            if (key == NULL)
                bad = 1;
            else
                put(vals, json_string_value(key), jcount(c->v[k].n), &bad);
            json_decref(key);
        }
        put(col, "values", vals, &bad);
        put(col, "missing", jcount(total - c->images), &bad);
        if (c->other > 0)
            put(col, "other", jcount(c->other), &bad);
        {
            json_t *name = cli_json_str(c->name);
            if (name == NULL)
                bad = 1;
            else
                put(meta, json_string_value(name), col, &bad);
            json_decref(name);
        }
    }
    put(o, "metadata", meta, &bad);
    if (mc->other_columns > 0)
        put(o, "other_columns", jcount(mc->other_columns), &bad);
    put(o, "duplicates",
        json_pack("{s:I,s:I,s:I}", "conflicts", (json_int_t)dups->conflicts, "label",
                  (json_int_t)dups->label, "split", (json_int_t)dups->split),
        &bad);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
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

static void print_meta_table(uint64_t total, const struct meta_counts *mc)
{
    for (uint32_t j = 0; j < mc->ncols; j++) {
        const struct meta_col *c = &mc->col[j];
        printf("\nmetadata column '%s' (%llu images without it)\n", c->name,
               (unsigned long long)(total - c->images));
        for (size_t k = 0; k < c->n; k++)
            printf("  %-26s %10llu\n", c->v[k].value, (unsigned long long)c->v[k].n);
        if (c->other > 0)
            printf("  %-26s %10llu\n", "(other values)", (unsigned long long)c->other);
    }
}

int cmd_data(int argc, char **argv, const struct cli_globals *g)
{
    uint64_t(*counts)[CWT_MAX_CLASSES] = NULL;
    struct meta_counts *mc = NULL;
    struct cwt_config cfg;
    struct cwt_roster *roster = NULL;
    struct store *st = NULL;
    char err[CWT_ERRLEN];
    uint32_t shape[3], labels;
    struct dup_counts dups;
    uint64_t total = 0, disk = 0;
    int rc, code = CLI_OK;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return CLI_OK;
        }
        if (argv[i][0] == '-') {
            static const char *const known[] = {"--help", "--json", "--config", "--verbose"};
            const char *near = cli_closest(argv[i], known, sizeof(known) / sizeof(known[0]));
            if (near != NULL)
                return cli_error(CLI_USAGE, "data: unknown option '%s'; did you mean '%s'?",
                                 argv[i], near);
            return cli_error(CLI_USAGE, "data: unknown option '%s' (see 'cwtctl data --help')",
                             argv[i]);
        }
        return cli_error(CLI_USAGE, "data: unexpected argument '%s'", argv[i]);
    }
    roster = malloc(sizeof(*roster));
    counts = calloc(STORE_NSPLITS, sizeof(*counts));
    mc = calloc(1, sizeof(*mc));
    if (roster == NULL || counts == NULL || mc == NULL) {
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
        if (rc == 0 && (rc = store_read_begin(st)) == 0) {
            rc = store_each_image_meta(st, meta_count_one, mc);
            store_read_end(st);
        }
        if (rc == 0)
            rc = count_conflicts(st, &dups);
        if (rc != 0) {
            code = cli_error(CLI_FAIL, "cannot read the store in %s: %s", cfg.store_dir,
                             cwt_strerror(rc));
            goto out;
        }
    } else if (rc == CWT_ENOENT) {
        /* Zeros here would read as "the data is gone"; no store means nothing was ingested
         * into this folder, which is a different thing to tell a data steward. */
        code = cli_fail(CLI_USAGE, "not-found",
                        "there is no store in %s yet (nothing has been ingested; see "
                        "'cwtctl ingest --help')",
                        cfg.store_dir);
        goto out;
    } else {
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
    if (g->json) {
        json_t *doc = data_json(total, shape, roster->recipe.classes, labels, counts, mc, &dups);
        if (doc == NULL)
            code = cli_fail(CLI_FAIL, "no-memory", "out of memory");
        else
            code = cli_json_emit(doc, 0);
    } else {
        print_table(total, shape, labels, counts, &roster->recipe, disk);
        print_meta_table(total, mc);
        if (dups.conflicts > 0)
            printf("\nduplicates with another label or split: %llu (label %llu, split %llu; "
                   "'cwtctl audit show' lists them)\n",
                   (unsigned long long)dups.conflicts, (unsigned long long)dups.label,
                   (unsigned long long)dups.split);
    }
out:
    store_close(st);
    if (mc != NULL)
        meta_counts_free(mc);
    free(mc);
    free(counts);
    free(roster);
    return code;
}
