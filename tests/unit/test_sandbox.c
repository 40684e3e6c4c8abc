/*
 * test_sandbox.c - the monitor's and the trainer's sandboxes, applied in forked children
 * through the same functions cwtd uses: no AF_INET/AF_INET6 sockets, AF_UNIX still works,
 * no exec, no executable memory in the monitor, Landlock confines the monitor's files.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cwt.h"
#include "common/fileio.h"
#include "sandbox/sandbox.h"
#include "tests/test_tmp.h"

/* Bits a child sets in its exit status, one per broken expectation. */
#define BAD_SANDBOX   (1 << 0) /* sandbox_apply failed */
#define BAD_INET      (1 << 1) /* an AF_INET socket was created */
#define BAD_INET6     (1 << 2) /* an AF_INET6 socket was created */
#define BAD_UNIX      (1 << 3) /* AF_UNIX socket or socketpair failed */
#define BAD_EXEC      (1 << 4) /* execve did not fail */
#define BAD_PROT_EXEC (1 << 5) /* executable memory policy not as expected */
#define BAD_OUTSIDE   (1 << 6) /* a file outside the allowed folders was readable */
#define BAD_INSIDE    (1 << 7) /* the allowed folder could not be written */

struct fixture {
    char root[PATH_MAX];    /* the test's scratch folder */
    char allowed[PATH_MAX]; /* read-write for the monitor */
    char outside[PATH_MAX]; /* a file in a folder the monitor may not touch */
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    char dir[PATH_MAX];

    if (fx == NULL)
        return -1;
    if (test_tmp_path(fx->root, sizeof(fx->root), "test_sandbox") != 0) {
        free(fx);
        return -1;
    }
    snprintf(fx->allowed, sizeof(fx->allowed), "%s/allowed", fx->root);
    snprintf(dir, sizeof(dir), "%s/other", fx->root);
    snprintf(fx->outside, sizeof(fx->outside), "%s/secret.txt", dir);
    if (file_mkdir_p(fx->allowed, 0700, NULL, 0) != 0 || file_mkdir_p(dir, 0700, NULL, 0) != 0 ||
        file_write_atomic(fx->outside, "x", 1, 0600, NULL, 0) != 0) {
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    int rc = test_tmp_remove(fx->root);

    free(fx);
    return rc;
}

static int probe_sockets(void)
{
    int bad = 0, fd, pair[2];

    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0) {
        bad |= BAD_INET;
        close(fd);
    } else if (errno != EAFNOSUPPORT) {
        bad |= BAD_INET;
    }
    fd = socket(AF_INET6, SOCK_DGRAM, 0);
    if (fd >= 0) {
        bad |= BAD_INET6;
        close(fd);
    }
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        bad |= BAD_UNIX;
    else
        close(fd);
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, pair) != 0) {
        bad |= BAD_UNIX;
    } else {
        close(pair[0]);
        close(pair[1]);
    }
    return bad;
}

static int probe_exec(void)
{
    char *const argv[] = {"true", NULL};
    char *const envp[] = {NULL};

    execve("/bin/true", argv, envp);
    return 0; /* still here: exec failed, as it must */
}

/* 1 if memory can be made executable. */
static int can_map_exec(void)
{
    long page = sysconf(_SC_PAGESIZE);
    void *p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int ok;

    if (p == MAP_FAILED)
        return 0;
    ok = mprotect(p, (size_t)page, PROT_READ | PROT_EXEC) == 0;
    munmap(p, (size_t)page);
    return ok;
}

/* Runs the probes in a child confined as role and returns the child's bit set (or -1 if the
 * child died of a signal). */
static int run_child(const struct fixture *fx, enum sandbox_role role, int landlock)
{
    pid_t pid;
    int status;

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sandbox_paths paths = {.read_write = {fx->allowed}};
        char err[CWT_ERRLEN];
        char inside[PATH_MAX + 32];
        int bad = 0, rc, fd;

        rc = sandbox_apply(role, landlock ? &paths : NULL, 0, err, sizeof(err));
        if (rc != 0) {
            fprintf(stderr, "sandbox_apply: %s\n", err);
            _exit(BAD_SANDBOX);
        }
        bad |= probe_sockets();
        bad |= probe_exec();
        if (role == SANDBOX_MONITOR && can_map_exec())
            bad |= BAD_PROT_EXEC;
        if (role == SANDBOX_TRAINER && !can_map_exec())
            bad |= BAD_PROT_EXEC;
        if (landlock) {
            fd = open(fx->outside, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                bad |= BAD_OUTSIDE;
                close(fd);
            }
            snprintf(inside, sizeof(inside), "%s/inside.txt", fx->allowed);
            if (file_write_atomic(inside, "ok", 2, 0600, NULL, 0) != 0)
                bad |= BAD_INSIDE;
        }
        /* _exit: the sanitizer's leak check must not run inside the sandbox. */
        _exit(bad);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

static void *thread_body(void *arg)
{
    return arg;
}

/* In a child confined as role: 0 when a thread starts and joins (bundle hashing needs them)
 * and, for the monitor, fork fails; 1 otherwise. */
static int run_thread_child(enum sandbox_role role)
{
    pid_t pid;
    int status;

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[CWT_ERRLEN];
        pthread_t th;
        void *ret = NULL;
        int marker = 1, bad = 0;
        pid_t grandchild;

        if (sandbox_apply(role, NULL, 0, err, sizeof(err)) != 0)
            _exit(2);
        if (pthread_create(&th, NULL, thread_body, &marker) != 0 || pthread_join(th, &ret) != 0 ||
            ret != &marker)
            bad = 1;
        if (role == SANDBOX_MONITOR) {
            grandchild = fork();
            if (grandchild == 0)
                _exit(0);
            if (grandchild > 0) {
                (void)waitpid(grandchild, NULL, 0);
                bad = 1;
            }
        }
        _exit(bad);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_monitor_sandbox_allows_threads_not_processes(void **state)
{
    (void)state;
    assert_int_equal(run_thread_child(SANDBOX_MONITOR), 0);
}

static void test_trainer_sandbox_allows_threads(void **state)
{
    (void)state;
    assert_int_equal(run_thread_child(SANDBOX_TRAINER), 0);
}

static void test_monitor_sandbox_allows_only_unix_sockets(void **state)
{
    assert_int_equal(run_child(*state, SANDBOX_MONITOR, 0), 0);
}

static void test_trainer_sandbox_allows_only_unix_sockets(void **state)
{
    assert_int_equal(run_child(*state, SANDBOX_TRAINER, 0), 0);
}

static void test_monitor_landlock_confines_files(void **state)
{
    const struct fixture *fx = *state;
    char err[CWT_ERRLEN];
    pid_t pid;
    int status;

    /* Learn in a throw-away child whether this kernel has Landlock at all. */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sandbox_paths paths = {.read_write = {fx->allowed}};
        _exit(sandbox_landlock_apply(&paths, err, sizeof(err)) == CWT_EUNSUPPORTED ? 3 : 0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
        skip();
    assert_int_equal(run_child(fx, SANDBOX_MONITOR, 1), 0);
}

static void test_landlock_refuses_missing_path(void **state)
{
    const struct fixture *fx = *state;
    pid_t pid;
    int status;

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char missing[PATH_MAX + 32];
        char err[CWT_ERRLEN] = "";
        struct sandbox_paths paths = {.read_only = {missing}};
        int rc;

        snprintf(missing, sizeof(missing), "%s/does-not-exist", fx->root);
        rc = sandbox_landlock_apply(&paths, err, sizeof(err));
        if (rc == CWT_EUNSUPPORTED)
            _exit(0);
        _exit(rc == CWT_EIO && strstr(err, "does-not-exist") != NULL ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_unknown_role_is_refused(void **state)
{
    char err[CWT_ERRLEN];

    (void)state;
    assert_int_equal(sandbox_seccomp_apply((enum sandbox_role)7, err, sizeof(err)), CWT_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_monitor_sandbox_allows_only_unix_sockets),
        cmocka_unit_test(test_trainer_sandbox_allows_only_unix_sockets),
        cmocka_unit_test(test_monitor_sandbox_allows_threads_not_processes),
        cmocka_unit_test(test_trainer_sandbox_allows_threads),
        cmocka_unit_test(test_monitor_landlock_confines_files),
        cmocka_unit_test(test_landlock_refuses_missing_path),
        cmocka_unit_test(test_unknown_role_is_refused),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
