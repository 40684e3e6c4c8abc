/*
 * test_m5_store_split.c - issue 18, M5: the trainer (the process that hosts the GPU driver)
 * held a read-write LMDB handle on the whole store, so code running in it could rewrite the
 * ledger, the audit log or the saved state through that handle. Now it opens the store with
 * STORE_TRAINER (storage/store.h):
 *
 *   - its descriptor on the main environment's data.mdb is O_RDONLY and every map of it is
 *     read-only (checked through /proc/self/fdinfo and /proc/self/maps), so no write can go
 *     through it; writing images, ledger, audit or state fails with CWT_EPERM;
 *   - it writes its checkpoints and the normalisation statistics into the checkpoint
 *     environment (STORE/checkpoints/), which the monitor's read-write open then reads;
 *   - a store made before the split migrates: a read-only open reads the models where they
 *     are; the trainer's open copies them (and cannot empty the old copies); the monitor's
 *     open empties the old copies; a checkpoint the trainer deleted in between is not
 *     brought back.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "common/cwt.h"
#include "common/fileio.h"
#include "storage/store.h"

static char root[PATH_MAX];
static unsigned stores;

static int setup(void **state)
{
    const char *tmp = getenv("CWT_TEST_TMP");
    char err[CWT_ERRLEN];

    (void)state;
    snprintf(root, sizeof(root), "%s/test_m5_store_split.%ld", tmp != NULL ? tmp : "/tmp",
             (long)getpid());
    return file_mkdir_p(root, 0700, err, sizeof(err)) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[PATH_MAX + 32];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

/* A fresh store with its shape, one image, a ledger entry, an audit record and a state. */
static void make_store(char *dir, size_t dirlen)
{
    struct store *st = NULL;
    struct store_batch *b = NULL;
    struct store_image_hdr hdr = {0};
    uint8_t px[4] = {1, 2, 3, 4};
    char err[CWT_ERRLEN];

    snprintf(dir, dirlen, "%s/store-%u", root, stores++);
    if (store_open(dir, STORE_CREATE, 64u << 20, &st, err, sizeof(err)) != 0)
        fail_msg("store_open: %s", err);
    assert_int_equal(store_set_shape(st, 2, 2, 1), 0);
    assert_int_equal(store_batch_begin(st, &b), 0);
    hdr.h = hdr.w = 2;
    hdr.c = 1;
    assert_int_equal(store_put_image(b, &hdr, px, NULL), 0);
    assert_int_equal(store_batch_commit(b), 0);
    assert_int_equal(store_meta_put(st, "cwtd.state", "cycle=1", 7), 0);
    assert_int_equal(audit_append(st, "test", "made"), 0);
    store_close(st);
}

/* 1 when every descriptor and every map of path in this process is read-only, and there is
 * at least one of each. */
static int only_read_only(const char *path)
{
    char link[64], target[PATH_MAX], line[PATH_MAX + 256];
    int fds = 0, maps = 0, bad = 0;
    FILE *f;

    for (int fd = 0; fd < 1024; fd++) {
        ssize_t n;
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        n = readlink(link, target, sizeof(target) - 1);
        if (n < 0)
            continue;
        target[n] = '\0';
        if (strcmp(target, path) != 0)
            continue;
        fds++;
        if ((fcntl(fd, F_GETFL) & O_ACCMODE) != O_RDONLY)
            bad++;
    }
    f = fopen("/proc/self/maps", "re");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        char perms[8];
        size_t l = strlen(line);
        if (l > 0 && line[l - 1] == '\n')
            line[--l] = '\0';
        if (l < strlen(path) || strcmp(line + l - strlen(path), path) != 0)
            continue;
        if (sscanf(line, "%*s %7s", perms) != 1)
            continue;
        maps++;
        if (perms[1] == 'w')
            bad++;
    }
    fclose(f);
    if (fds == 0 || maps == 0 || bad != 0)
        fprintf(stderr, "%s: %d descriptors, %d maps, %d writable\n", path, fds, maps, bad);
    return fds > 0 && maps > 0 && bad == 0;
}

/* The trainer's side, in a child (LMDB forbids opening one environment twice in a process).
 * Bit per failure. */
static int trainer_body(const char *dir)
{
    struct ledger_entry e;
    struct store_batch *b = NULL;
    struct store *st = NULL;
    uint64_t *ids = NULL;
    size_t n = 0;
    char err[CWT_ERRLEN], data[PATH_MAX + 16];
    int bad = 0;

    if (store_open(dir, STORE_TRAINER, 64u << 20, &st, err, sizeof(err)) != 0) {
        fprintf(stderr, "store_open: %s\n", err);
        return 0x100;
    }
    snprintf(data, sizeof(data), "%s/data.mdb", dir);
    if (!only_read_only(data))
        bad |= 1 << 0;
    memset(&e, 0, sizeof(e));
    snprintf(e.federation, sizeof(e.federation), "fed");
    if (ledger_record(st, &e) != CWT_EPERM)
        bad |= 1 << 1;
    if (audit_append(st, "forged", "by the trainer") != CWT_EPERM)
        bad |= 1 << 2;
    if (store_meta_put(st, "cwtd.state", "cycle=1000", 10) != CWT_EPERM)
        bad |= 1 << 3;
    if (store_batch_begin(st, &b) != CWT_EPERM)
        bad |= 1 << 4;
    /* What it may do: read the images, write its checkpoints and statistics. */
    if (store_read_begin(st) != 0 || store_list(st, STORE_TRAIN, &ids, &n) != 0 || n != 1)
        bad |= 1 << 5;
    store_read_end(st);
    free(ids);
    if (store_model_put(st, "ckpt", "weights", 7) != 0 || store_meta_put(st, "norm", "n", 1) != 0)
        bad |= 1 << 6;
    store_close(st);
    return bad;
}

static int in_child(int (*body)(const char *), const char *dir)
{
    int status;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0)
        _exit(body(dir) & 0xff);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void expect_model(struct store *st, const char *name, const char *want)
{
    uint8_t *blob = NULL;
    size_t len = 0;

    if (store_model_get(st, name, &blob, &len) != 0)
        fail_msg("model %s is missing", name);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(blob, want, len);
    free(blob);
}

static void test_trainer_cannot_write_ledger_audit_or_state(void **state)
{
    struct store *st = NULL;
    char dir[PATH_MAX], err[CWT_ERRLEN], buf[16];
    size_t len = 0;

    (void)state;
    make_store(dir, sizeof(dir));
    assert_int_equal(in_child(trainer_body, dir), 0);
    /* The monitor's open sees what the trainer wrote, and the state as it was. */
    if (store_open(dir, STORE_CREATE, 64u << 20, &st, err, sizeof(err)) != 0)
        fail_msg("store_open: %s", err);
    expect_model(st, "ckpt", "weights");
    assert_int_equal(store_meta_get(st, "norm", buf, sizeof(buf), &len), 0);
    assert_int_equal(len, 1);
    assert_int_equal(store_meta_get(st, "cwtd.state", buf, sizeof(buf), &len), 0);
    assert_memory_equal(buf, "cycle=1", 7);
    assert_int_equal(audit_verify(st, err, sizeof(err)), 0);
    store_close(st);
}

/* Puts a model and the norm into the main environment and removes the checkpoint
 * environment: a store as made before the split. */
static void make_old_layout(const char *dir)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi models, meta;
    MDB_val k, v;
    char cmd[PATH_MAX + 64];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s/checkpoints'", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_set_mapsize(env, 64u << 20), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_NOTLS, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "models", 0, &models), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    k.mv_data = "old";
    k.mv_size = 3;
    v.mv_data = "old-weights";
    v.mv_size = 11;
    assert_int_equal(mdb_put(txn, models, &k, &v, 0), 0);
    k.mv_data = "keep";
    k.mv_size = 4;
    assert_int_equal(mdb_put(txn, models, &k, &v, 0), 0);
    k.mv_data = "norm";
    k.mv_size = 4;
    v.mv_data = "N";
    v.mv_size = 1;
    assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* Entries left in the main environment's models database. */
static size_t old_copies(const char *dir)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi models;
    MDB_stat ms;

    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_NOTLS | MDB_RDONLY, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "models", 0, &models), 0);
    assert_int_equal(mdb_stat(txn, models, &ms), 0);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return ms.ms_entries;
}

static int migrating_trainer_body(const char *dir)
{
    struct store *st = NULL;
    uint8_t *blob = NULL;
    size_t len = 0;
    char err[CWT_ERRLEN];
    int bad = 0;

    if (store_open(dir, STORE_TRAINER, 64u << 20, &st, err, sizeof(err)) != 0) {
        fprintf(stderr, "store_open: %s\n", err);
        return 0x80;
    }
    if (store_model_get(st, "old", &blob, &len) != 0 || len != 11)
        bad |= 1;
    free(blob);
    /* A checkpoint it is done with: the migration must not bring it back. */
    if (store_model_del(st, "old") != 0)
        bad |= 2;
    store_close(st);
    return bad;
}

static void test_old_store_migrates(void **state)
{
    struct store *st = NULL;
    uint8_t *blob = NULL;
    size_t len = 0;
    char dir[PATH_MAX], err[CWT_ERRLEN], buf[4], ckpt[PATH_MAX + 16];
    struct stat sb;

    (void)state;
    make_store(dir, sizeof(dir));
    make_old_layout(dir);

    /* cwtctl while cwtd runs: read-only, reads the models where they are, changes nothing. */
    if (store_open(dir, STORE_RDONLY, 64u << 20, &st, err, sizeof(err)) != 0)
        fail_msg("store_open: %s", err);
    expect_model(st, "old", "old-weights");
    assert_int_equal(store_meta_get(st, "norm", buf, sizeof(buf), &len), 0);
    assert_int_equal(store_model_put(st, "x", "y", 1), CWT_EPERM);
    store_close(st);
    snprintf(ckpt, sizeof(ckpt), "%s/checkpoints", dir);
    assert_int_equal(stat(ckpt, &sb), -1);

    /* The trainer first: it copies, cannot empty the main environment, deletes "old". */
    assert_int_equal(in_child(migrating_trainer_body, dir), 0);
    assert_int_equal(old_copies(dir), 2);

    /* A read-only open now reads the checkpoint environment: "old" stays deleted. */
    if (store_open(dir, STORE_RDONLY, 64u << 20, &st, err, sizeof(err)) != 0)
        fail_msg("store_open: %s", err);
    assert_int_equal(store_model_get(st, "old", &blob, &len), CWT_ENOENT);
    expect_model(st, "keep", "old-weights");
    store_close(st);

    /* The monitor's open empties the old copies and brings nothing back. */
    if (store_open(dir, STORE_CREATE, 64u << 20, &st, err, sizeof(err)) != 0)
        fail_msg("store_open: %s", err);
    assert_int_equal(store_model_get(st, "old", &blob, &len), CWT_ENOENT);
    expect_model(st, "keep", "old-weights");
    assert_int_equal(store_meta_get(st, "norm", buf, sizeof(buf), &len), 0);
    assert_int_equal(len, 1);
    assert_memory_equal(buf, "N", 1);
    store_close(st);
    assert_int_equal(old_copies(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trainer_cannot_write_ledger_audit_or_state),
        cmocka_unit_test(test_old_store_migrates),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
