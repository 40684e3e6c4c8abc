/*
 * test_m5_store_split.c - issue 18, M5: the trainer (the process that hosts the GPU driver)
 * held a read-write LMDB handle on the whole store, so code running in it could rewrite the
 * ledger, the audit log or the saved state through that handle; and the monitor wrote the
 * trainer's checkpoint environment. Now each environment has one writer (storage/store.h):
 *
 *   - the trainer opens the store with STORE_TRAINER: its descriptor on the main
 *     environment's data.mdb is O_RDONLY and every map of it is read-only (checked through
 *     /proc/self/fd and /proc/self/maps, and by writing through the map, which faults, and
 *     by mprotect, which the kernel refuses), so no write can go through it; writing images,
 *     ledger, audit, state or a monitor's record (cwtd.input, model, ...) fails with
 *     CWT_EPERM;
 *   - the monitor opens it with STORE_MONITOR, the mirror: the checkpoint environment
 *     (STORE/checkpoints/) is read-only in the same ways, and putting or deleting a
 *     trainer's record (visit checkpoints, the layout, norm) fails with CWT_EPERM;
 *   - the environment is chosen by the record's name, not by the caller;
 *   - older stores migrate: one made before the checkpoint environment (everything in main)
 *     and one of the split before this (everything in checkpoints/) both end with the
 *     monitor's records in main and the trainer's in checkpoints/, whoever opens first, and
 *     nothing deleted comes back.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "common/cwt.h"
#include "common/fileio.h"
#include "storage/store.h"
#include "tests/test_tmp.h"

static char root[PATH_MAX];
static unsigned stores;

static int setup(void **state)
{
    char err[CWT_ERRLEN];

    (void)state;
    if (test_tmp_path(root, sizeof(root), "test_m5_store_split") != 0)
        return -1;
    return file_mkdir_p(root, 0700, err, sizeof(err)) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return test_tmp_remove(root) == 0 ? 0 : -1;
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

/* The start of the first map of path in this process, or NULL. */
static void *map_of(const char *path)
{
    char line[PATH_MAX + 256];
    unsigned long start = 0;
    FILE *f = fopen("/proc/self/maps", "re");

    if (f == NULL)
        return NULL;
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t l = strlen(line);
        if (l > 0 && line[l - 1] == '\n')
            line[--l] = '\0';
        if (l >= strlen(path) && strcmp(line + l - strlen(path), path) == 0 &&
            sscanf(line, "%lx-", &start) == 1)
            break;
        start = 0;
    }
    fclose(f);
    return (void *)start;
}

/* 1 when no code of this process can write through the map of path: a store into it faults
 * (in a child, which dies of SIGSEGV) and making it writable is refused (EACCES: the file's
 * descriptor was opened read-only). */
static int map_write_faults(const char *path)
{
    volatile uint8_t *p = map_of(path);
    long page = sysconf(_SC_PAGESIZE);
    int status;
    pid_t pid;

    if (p == NULL || page <= 0)
        return 0;
    pid = fork();
    if (pid < 0)
        return 0;
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL); /* cmocka's handler would catch it */
        p[0] = p[0];
        _exit(0);
    }
    if (waitpid(pid, &status, 0) != pid || !WIFSIGNALED(status) || WTERMSIG(status) != SIGSEGV)
        return 0;
    return mprotect((void *)p, (size_t)page, PROT_READ | PROT_WRITE) == -1 && errno == EACCES;
}

/* The store in dir opened with flags, as a child body does; NULL (said on stderr) if it fails. */
static struct store *open_as(const char *dir, int flags)
{
    struct store *st = NULL;
    char err[CWT_ERRLEN];

    if (store_open(dir, flags, 64u << 20, &st, err, sizeof(err)) != 0) {
        fprintf(stderr, "store_open: %s\n", err);
        return NULL;
    }
    return st;
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
    char data[PATH_MAX + 16];
    int bad = 0;

    if ((st = open_as(dir, STORE_TRAINER)) == NULL)
        return 0x100;
    snprintf(data, sizeof(data), "%s/data.mdb", dir);
    if (!only_read_only(data) || !map_write_faults(data))
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
    /* Nor the monitor's records, whatever it names them. */
    if (store_model_put(st, "cwtd.input", "forged", 6) != CWT_EPERM ||
        store_model_put(st, "ensemble.x", "forged", 6) != CWT_EPERM ||
        store_model_del(st, "model") != CWT_EPERM)
        bad |= 1 << 7;
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

/* The monitor's side, the mirror: run after trainer_body, which made the checkpoint
 * environment. Bit per failure. */
static int monitor_body(const char *dir)
{
    struct store *st = NULL;
    uint8_t *blob = NULL, hash[32] = {0};
    size_t len = 0;
    char data[PATH_MAX + 32], buf[8];
    int bad = 0, resume = 0;

    if ((st = open_as(dir, STORE_CREATE | STORE_MONITOR)) == NULL)
        return 0x80;
    snprintf(data, sizeof(data), "%s/checkpoints/data.mdb", dir);
    if (!only_read_only(data) || !map_write_faults(data))
        bad |= 1 << 0;
    if (store_model_put(st, "cwtd.visit.c0.h0", "forged", 6) != CWT_EPERM ||
        store_model_put(st, "cwtd.layout", "forged", 6) != CWT_EPERM)
        bad |= 1 << 1;
    if (store_model_del(st, "ckpt") != CWT_EPERM)
        bad |= 1 << 2;
    if (store_meta_put(st, "norm", "forged", 6) != CWT_EPERM ||
        store_visit_begin(st, "cwtd.visit.c0.h0", hash, &resume) != CWT_EPERM)
        bad |= 1 << 3;
    /* What it may do: read the trainer's records, write its own and the state. */
    if (store_model_get(st, "ckpt", &blob, &len) != 0 || len != 7 ||
        store_meta_get(st, "norm", buf, sizeof(buf), &len) != 0)
        bad |= 1 << 4;
    free(blob);
    if (store_model_put(st, "cwtd.input", "in", 2) != 0 ||
        store_meta_put(st, "cwtd.state", "cycle=2", 7) != 0 ||
        store_model_del(st, "cwtd.input") != 0)
        bad |= 1 << 5;
    store_close(st);
    return bad;
}

/* The size of model name in st, or -1 when it cannot be read: for the bodies that run in a
 * child of another uid and report by bits rather than by cmocka. */
static long model_size(struct store *st, const char *name)
{
    uint8_t *blob = NULL;
    size_t len = 0;
    long size = store_model_get(st, name, &blob, &len) == 0 ? (long)len : -1;

    free(blob);
    return size;
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
    assert_int_equal(in_child(monitor_body, dir), 0);
    /* cwtctl's open sees what the trainer wrote, and the state as the monitor left it. */
    if (store_open(dir, STORE_CREATE, 64u << 20, &st, err, sizeof(err)) != 0)
        fail_msg("store_open: %s", err);
    expect_model(st, "ckpt", "weights");
    assert_int_equal(store_meta_get(st, "norm", buf, sizeof(buf), &len), 0);
    assert_int_equal(len, 1);
    assert_int_equal(store_meta_get(st, "cwtd.state", buf, sizeof(buf), &len), 0);
    assert_memory_equal(buf, "cycle=2", 7);
    assert_int_equal(audit_verify(st, err, sizeof(err)), 0);
    store_close(st);
}

/* Raw LMDB access to one environment of a store (main: dir; checkpoints: dir/checkpoints),
 * as an older cwt left it; only while this process has no struct store open. */
static MDB_txn *raw_begin(const char *dir, int ckpt, int rdonly, MDB_env **env)
{
    char path[PATH_MAX + 16];
    MDB_txn *txn;

    snprintf(path, sizeof(path), "%s%s", dir, ckpt ? "/checkpoints" : "");
    assert_int_equal(mdb_env_create(env), 0);
    assert_int_equal(mdb_env_set_maxdbs(*env, 8), 0);
    assert_int_equal(mdb_env_set_mapsize(*env, 64u << 20), 0);
    assert_int_equal(mdb_env_open(*env, path, MDB_NOTLS | (rdonly ? MDB_RDONLY : 0), 0600), 0);
    assert_int_equal(mdb_txn_begin(*env, NULL, rdonly ? MDB_RDONLY : 0, &txn), 0);
    return txn;
}

static void raw_end(MDB_env *env, MDB_txn *txn, int commit)
{
    if (commit)
        assert_int_equal(mdb_txn_commit(txn), 0);
    else
        mdb_txn_abort(txn);
    mdb_env_close(env);
}

/* Puts (val != NULL) or deletes (val == NULL, absent or not) key in database db. */
static void raw_set(const char *dir, int ckpt, const char *db, const char *key, const char *val)
{
    MDB_env *env;
    MDB_txn *txn = raw_begin(dir, ckpt, 0, &env);
    MDB_dbi dbi;
    MDB_val k = {strlen(key), (void *)key}, v = {val != NULL ? strlen(val) : 0, (void *)val};
    int rc;

    assert_int_equal(mdb_dbi_open(txn, db, 0, &dbi), 0);
    rc = val != NULL ? mdb_put(txn, dbi, &k, &v, 0) : mdb_del(txn, dbi, &k, NULL);
    assert_true(rc == 0 || (val == NULL && rc == MDB_NOTFOUND));
    raw_end(env, txn, 1);
}

/* 1 when key is in database db, 0 when not. */
static int raw_has(const char *dir, int ckpt, const char *db, const char *key)
{
    MDB_env *env;
    MDB_txn *txn = raw_begin(dir, ckpt, 1, &env);
    MDB_dbi dbi;
    MDB_val k = {strlen(key), (void *)key}, v;
    int rc;

    assert_int_equal(mdb_dbi_open(txn, db, 0, &dbi), 0);
    rc = mdb_get(txn, dbi, &k, &v);
    assert_true(rc == 0 || rc == MDB_NOTFOUND);
    raw_end(env, txn, 0);
    return rc == 0;
}

/* Entries in database db. */
static size_t raw_count(const char *dir, int ckpt, const char *db)
{
    MDB_env *env;
    MDB_txn *txn = raw_begin(dir, ckpt, 1, &env);
    MDB_dbi dbi;
    MDB_stat ms;

    assert_int_equal(mdb_dbi_open(txn, db, 0, &dbi), 0);
    assert_int_equal(mdb_stat(txn, dbi, &ms), 0);
    raw_end(env, txn, 0);
    return ms.ms_entries;
}

/* The main marker of storage/store_ckpt.c: the monitor's records are in main. */
#define MAIN_MARKER "cwt.models.main"

/* Layout 1, before the checkpoint environment: every record and the norm in main. Two
 * training records ("old", "keep") and a monitor's ("cwtd.result"). */
static void make_old_layout(const char *dir)
{
    char ckpt[PATH_MAX + 16];

    snprintf(ckpt, sizeof(ckpt), "%s/checkpoints", dir);
    assert_int_equal(test_tmp_remove(ckpt), 0);
    raw_set(dir, 0, "meta", MAIN_MARKER, NULL);
    raw_set(dir, 0, "models", "old", "old-weights");
    raw_set(dir, 0, "models", "keep", "old-weights");
    raw_set(dir, 0, "models", "cwtd.result", "res");
    raw_set(dir, 0, "meta", "norm", "N");
}

/* The trainer of a layout-1 store: it reads and deletes a training record, cannot write a
 * monitor's. */
static int migrating_trainer_body(const char *dir)
{
    struct store *st = NULL;
    int bad = 0;

    if ((st = open_as(dir, STORE_TRAINER)) == NULL)
        return 0x80;
    if (model_size(st, "old") != 11)
        bad |= 1;
    /* A checkpoint it is done with: the migration must not bring it back. */
    if (store_model_del(st, "old") != 0)
        bad |= 2;
    if (store_model_put(st, "cwtd.result", "x", 1) != CWT_EPERM)
        bad |= 4;
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

    /* cwtctl while cwtd runs: read-only, reads the records where they are, changes nothing. */
    if (store_open(dir, STORE_RDONLY, 64u << 20, &st, err, sizeof(err)) != 0)
        fail_msg("store_open: %s", err);
    expect_model(st, "old", "old-weights");
    expect_model(st, "cwtd.result", "res");
    assert_int_equal(store_meta_get(st, "norm", buf, sizeof(buf), &len), 0);
    assert_int_equal(store_model_put(st, "x", "y", 1), CWT_EPERM);
    assert_int_equal(store_model_put(st, "model", "y", 1), CWT_EPERM);
    store_close(st);
    snprintf(ckpt, sizeof(ckpt), "%s/checkpoints", dir);
    assert_int_equal(stat(ckpt, &sb), -1);

    /* The trainer first: it copies, cannot empty the main environment, deletes "old". */
    assert_int_equal(in_child(migrating_trainer_body, dir), 0);
    assert_int_equal(raw_count(dir, 0, "models"), 3);

    /* A read-only open now reads the checkpoint environment: "old" stays deleted. */
    if (store_open(dir, STORE_RDONLY, 64u << 20, &st, err, sizeof(err)) != 0)
        fail_msg("store_open: %s", err);
    assert_int_equal(store_model_get(st, "old", &blob, &len), CWT_ENOENT);
    expect_model(st, "keep", "old-weights");
    expect_model(st, "cwtd.result", "res");
    store_close(st);

    /* cwtctl's read-write open: each record in its environment, nothing brought back. */
    if (store_open(dir, STORE_CREATE, 64u << 20, &st, err, sizeof(err)) != 0)
        fail_msg("store_open: %s", err);
    assert_int_equal(store_model_get(st, "old", &blob, &len), CWT_ENOENT);
    expect_model(st, "keep", "old-weights");
    expect_model(st, "cwtd.result", "res");
    assert_int_equal(store_meta_get(st, "norm", buf, sizeof(buf), &len), 0);
    assert_int_equal(len, 1);
    assert_memory_equal(buf, "N", 1);
    store_close(st);
    assert_int_equal(raw_count(dir, 0, "models"), 1);
    assert_true(raw_has(dir, 0, "models", "cwtd.result"));
    assert_false(raw_has(dir, 0, "meta", "norm"));
    assert_false(raw_has(dir, 1, "models", "cwtd.result"));
    assert_true(raw_has(dir, 1, "models", "keep"));
}

/* cwtd's monitor on a layout-1 store, before its trainer has made checkpoints/: it reads the
 * training records where they are and cannot write them. */
static int old_monitor_body(const char *dir)
{
    struct store *st = NULL;
    int bad = 0;

    if ((st = open_as(dir, STORE_CREATE | STORE_MONITOR)) == NULL)
        return 0x80;
    if (model_size(st, "keep") != 11)
        bad |= 1;
    if (model_size(st, "cwtd.result") != 3)
        bad |= 2;
    if (store_model_put(st, "old", "x", 1) != CWT_EPERM || store_model_del(st, "old") != CWT_EPERM)
        bad |= 4;
    if (store_model_put(st, "cwtd.input", "in", 2) != 0)
        bad |= 8;
    store_close(st);
    return bad;
}

/* The trainer's open after such a monitor: reads the monitor's new record from main. */
static int trainer_after_monitor_body(const char *dir)
{
    struct store *st = NULL;
    int bad = 0;

    if ((st = open_as(dir, STORE_TRAINER)) == NULL)
        return 0x80;
    if (model_size(st, "cwtd.input") != 2)
        bad |= 1;
    if (store_model_del(st, "old") != 0)
        bad |= 2;
    store_close(st);
    return bad;
}

static void test_old_store_migrates_monitor_first(void **state)
{
    (void)state;
    char dir[PATH_MAX];

    make_store(dir, sizeof(dir));
    make_old_layout(dir);
    assert_int_equal(in_child(old_monitor_body, dir), 0);
    /* Main is migrated; the training records wait in main for the trainer's copy. */
    assert_true(raw_has(dir, 0, "meta", MAIN_MARKER));
    assert_int_equal(raw_count(dir, 0, "models"), 4);

    /* The trainer copies only the training records: the monitor's are in main already. */
    assert_int_equal(in_child(trainer_after_monitor_body, dir), 0);
    assert_true(raw_has(dir, 1, "models", "keep"));
    assert_false(raw_has(dir, 1, "models", "old"));
    assert_false(raw_has(dir, 1, "models", "cwtd.result"));
    assert_false(raw_has(dir, 1, "models", "cwtd.input"));

    /* The monitor's next open deletes main's copies of the training records; "old" stays
     * deleted. */
    assert_int_equal(in_child(old_monitor_body, dir), 0);
    assert_int_equal(raw_count(dir, 0, "models"), 2);
    assert_true(raw_has(dir, 0, "models", "cwtd.result"));
    assert_true(raw_has(dir, 0, "models", "cwtd.input"));
    assert_false(raw_has(dir, 0, "meta", "norm"));
    assert_false(raw_has(dir, 1, "models", "old"));
}

/* A store of the split before this one (layout 2): every record in checkpoints/, among them
 * the monitor's; main holds older copies of layout 1 that a crash left behind. */
static void make_split_layout(const char *dir)
{
    raw_set(dir, 0, "meta", MAIN_MARKER, NULL);
    raw_set(dir, 1, "models", "cwtd.input", "in-2");
    raw_set(dir, 1, "models", "ensemble.b", "member");
    raw_set(dir, 1, "models", "cwtd.visit.c1.h0", "ck");
    raw_set(dir, 0, "models", "cwtd.best", "stale");
    raw_set(dir, 0, "models", "cwtd.visit.c0.h0", "stale");
    raw_set(dir, 0, "meta", "norm", "stale");
}

/* The monitor of a layout-2 store: the migration put its records in main, and nothing of
 * main's older copies is read. */
static int split_monitor_body(const char *dir)
{
    struct store *st = NULL;
    uint8_t *blob = NULL;
    size_t len = 0;
    char buf[8];
    int bad = 0;

    if ((st = open_as(dir, STORE_CREATE | STORE_MONITOR)) == NULL)
        return 0x80;
    if (store_model_get(st, "cwtd.input", &blob, &len) != 0 || len != 4 ||
        memcmp(blob, "in-2", 4) != 0)
        bad |= 1;
    free(blob);
    blob = NULL;
    if (model_size(st, "ensemble.b") != 6)
        bad |= 2;
    if (model_size(st, "cwtd.visit.c1.h0") != 2)
        bad |= 4;
    if (store_model_get(st, "cwtd.best", &blob, &len) != CWT_ENOENT ||
        store_model_get(st, "cwtd.visit.c0.h0", &blob, &len) != CWT_ENOENT ||
        store_meta_get(st, "norm", buf, sizeof(buf), &len) != CWT_ENOENT)
        bad |= 8;
    store_close(st);
    return bad;
}

/* The trainer of a layout-2 store: it reads its checkpoint and cannot write main. */
static int split_trainer_body(const char *dir)
{
    struct store *st = NULL;
    int bad = 0;

    if ((st = open_as(dir, STORE_TRAINER)) == NULL)
        return 0x80;
    if (model_size(st, "cwtd.visit.c1.h0") != 2)
        bad |= 1;
    if (store_model_put(st, "cwtd.input", "x", 1) != CWT_EPERM)
        bad |= 2;
    store_close(st);
    return bad;
}

static void test_split_store_moves_monitor_records(void **state)
{
    struct store *st = NULL;
    uint8_t *blob = NULL;
    size_t len = 0;
    char dir[PATH_MAX], err[CWT_ERRLEN];

    (void)state;
    make_store(dir, sizeof(dir));
    make_split_layout(dir);

    /* Read-only: the monitor's records are read where layout 2 keeps them. */
    if (store_open(dir, STORE_RDONLY, 64u << 20, &st, err, sizeof(err)) != 0)
        fail_msg("store_open: %s", err);
    expect_model(st, "cwtd.input", "in-2");
    expect_model(st, "ensemble.b", "member");
    assert_int_equal(store_model_get(st, "cwtd.best", &blob, &len), CWT_ENOENT);
    store_close(st);

    /* The trainer first: it cannot move them and leaves them where they are. */
    assert_int_equal(in_child(split_trainer_body, dir), 0);
    assert_true(raw_has(dir, 1, "models", "cwtd.input"));
    assert_false(raw_has(dir, 0, "meta", MAIN_MARKER));

    /* The monitor moves them into main in one transaction, with the marker. */
    assert_int_equal(in_child(split_monitor_body, dir), 0);
    assert_true(raw_has(dir, 0, "meta", MAIN_MARKER));
    assert_int_equal(raw_count(dir, 0, "models"), 2);
    assert_true(raw_has(dir, 0, "models", "cwtd.input"));
    assert_true(raw_has(dir, 0, "models", "ensemble.b"));
    assert_false(raw_has(dir, 0, "meta", "norm"));
    /* It cannot delete the copies in checkpoints/; they are never read again ... */
    assert_true(raw_has(dir, 1, "models", "cwtd.input"));
    raw_set(dir, 1, "models", "cwtd.input", "never read");
    if (store_open(dir, STORE_RDONLY, 64u << 20, &st, err, sizeof(err)) != 0)
        fail_msg("store_open: %s", err);
    expect_model(st, "cwtd.input", "in-2");
    store_close(st);

    /* ... and the trainer's next open deletes them. */
    assert_int_equal(in_child(split_trainer_body, dir), 0);
    assert_false(raw_has(dir, 1, "models", "cwtd.input"));
    assert_false(raw_has(dir, 1, "models", "ensemble.b"));
    assert_true(raw_has(dir, 1, "models", "cwtd.visit.c1.h0"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trainer_cannot_write_ledger_audit_or_state),
        cmocka_unit_test(test_old_store_migrates),
        cmocka_unit_test(test_old_store_migrates_monitor_first),
        cmocka_unit_test(test_split_store_moves_monitor_records),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
