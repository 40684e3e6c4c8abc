/*
 * fuzz_idx.c - libFuzzer harness for IDX ingest: the header parser and the reader of labels
 * and images behind it, reached through ingest_run with an images file and a labels file in
 * memfds, into a scratch store on tmpfs where there is one.
 *
 * Input: one byte k, then the labels file (k bytes, or what is left), then the images file.
 * Both may be gzip'd. The store is created afresh when it fills up and every few thousand
 * runs, so that new images keep reaching the store rather than the duplicate check.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cli/ingest.h"
#include "common/fileio.h"

#define STORE_MAP   (256u << 20)
#define STORE_RUNS  5000 /* runs between fresh stores */
#define IMAGE_SIDE  8
#define NUM_CLASSES 10

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The scratch store and the fixed settings; set up in LLVMFuzzerInitialize. */
static char root[PATH_MAX], store_dir[PATH_MAX + 8];
static struct store *st;
static unsigned runs;
static struct cwt_recipe recipe;
static struct ingest_options opt;

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    return remove(path);
}

static void store_fresh(void)
{
    char err[CWT_ERRLEN];

    if (st != NULL)
        store_close(st);
    st = NULL;
    (void)nftw(store_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    if (store_open(store_dir, STORE_CREATE, STORE_MAP, &st, err, sizeof(err)) != 0 ||
        store_set_shape(st, IMAGE_SIDE, IMAGE_SIDE, 1) != 0) {
        fprintf(stderr, "fuzz_idx: %s\n", err);
        abort();
    }
    runs = 0;
}

static void cleanup(void)
{
    if (st != NULL)
        store_close(st);
    (void)nftw(root, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");

    (void)argc;
    (void)argv;
    /* LMDB fsyncs every commit: on tmpfs that costs nothing. */
    if (access("/dev/shm", W_OK) == 0)
        tmp = "/dev/shm";
    snprintf(root, sizeof(root), "%s/cwt-fuzz-idx.XXXXXX", tmp != NULL ? tmp : "/tmp");
    if (mkdtemp(root) == NULL)
        abort();
    snprintf(store_dir, sizeof(store_dir), "%s/store", root);
    atexit(cleanup);
    store_fresh();

    recipe_defaults(&recipe);
    recipe.input_h = recipe.input_w = IMAGE_SIDE;
    recipe.input_c = 1;
    recipe.classes = NUM_CLASSES;
    opt.split_mode = INGEST_SPLIT_STRATIFIED;
    opt.val_fraction = 0.25;
    opt.test_fraction = 0.25;
    opt.seed = 11;
    opt.report = fopen("/dev/null", "w");
    if (opt.report == NULL)
        abort();
    return 0;
}

static int memfd_with(const char *name, const uint8_t *data, size_t size, char *path,
                      size_t pathlen)
{
    int fd = memfd_create(name, MFD_CLOEXEC);

    if (fd < 0)
        abort();
    if (size > 0 && write(fd, data, size) != (ssize_t)size)
        abort();
    snprintf(path, pathlen, "/proc/self/fd/%d", fd);
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char images[64], labels[64], err[CWT_ERRLEN];
    const char *inputs[2] = {images, labels};
    struct ingest_summary sum;
    size_t k = 0;
    int fd_images, fd_labels, rc;

    if (size > 0) {
        k = data[0];
        data++;
        size--;
        if (k > size)
            k = size;
    }
    fd_labels = memfd_with("labels", data, k, labels, sizeof(labels));
    fd_images = memfd_with("images", data + k, size - k, images, sizeof(images));
    rc = ingest_run(st, &recipe, inputs, 2, &opt, &sum, err, sizeof(err));
    if (rc == 0 && sum.ingested + sum.duplicates + sum.rejected != sum.items)
        abort(); /* every image is counted once */
    close(fd_labels);
    close(fd_images);
    if (rc == CWT_ETOOBIG || ++runs >= STORE_RUNS)
        store_fresh();
    return 0;
}
