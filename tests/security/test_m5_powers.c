/*
 * test_m5_powers.c - issue 18, M4/M5: what each confined process may do, tried for real in a
 * forked child confined by the same function its process uses, each attempt reported back
 * as one bit of the child's exit status.
 *
 *   decoder (decoder_confine): cannot open, create or stat-by-path a file, cannot make a
 *     socket, fork, exec, signal its parent or map executable memory; can still read a
 *     descriptor it holds and answer on its socket.
 *   trainer (sandbox_apply(SANDBOX_TRAINER)): cannot signal its parent, fork, or issue a
 *     terminal ioctl (TIOCSTI, also with high bits set), while other ioctls (as GPU drivers
 *     issue) reach the kernel, threads start and executable memory (JIT) works; under its
 *     Landlock rules (trainer_sandbox_paths) it cannot open a file of the store folder
 *     (ledger, audit, state in data.mdb; cwtd-private) or a key.
 *   monitor (sandbox_apply(SANDBOX_MONITOR)): cannot mmap or mprotect executable memory.
 *   every role: no capability left (root's bounding set emptied too); a kernel without
 *     Landlock is refused unless SANDBOX_ALLOW_NO_LANDLOCK (daemon.allow_no_landlock).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>
#include <seccomp.h>
#include <sys/prctl.h>

#include "common/cwt.h"
#include "common/fileio.h"
#include "config/config.h"
#include "daemon/daemon.h"
#include "decode/decoder.h"
#include "sandbox/sandbox.h"

#include "sec_probe.h"
#include "tests/test_tmp.h"

#define P_OPEN    (1 << 0)  /* opened an existing file */
#define P_CREATE  (1 << 1)  /* created a file */
#define P_SOCKET  (1 << 2)  /* made a socket */
#define P_FORK    (1 << 3)  /* forked */
#define P_EXEC    (1 << 4)  /* exec did not fail */
#define P_KILL    (1 << 5)  /* signalled its parent */
#define P_EXECMEM (1 << 6)  /* executable memory policy not as expected */
#define P_READFD  (1 << 7)  /* could not read a descriptor it holds */
#define P_TIOCSTI (1 << 8)  /* a terminal ioctl got through */
#define P_IOCTL   (1 << 9)  /* a non-terminal ioctl was refused by the filter */
#define P_THREAD  (1 << 10) /* no thread could start */
#define P_CONFINE (1 << 11) /* the confinement itself failed */
#define P_STAT    (1 << 12) /* stat by path worked */

static char scratch[PATH_MAX];
static char secret[PATH_MAX + 32];

static int setup(void **state)
{
    (void)state;
    if (test_tmp_path(scratch, sizeof(scratch), "test_m5_powers") != 0)
        return -1;
    snprintf(secret, sizeof(secret), "%s/sign.key", scratch);
    if (file_mkdir_p(scratch, 0700, NULL, 0) != 0 ||
        file_write_atomic(secret, "secret", 6, 0600, NULL, 0) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return test_tmp_remove(scratch) == 0 ? 0 : -1;
}

/* 1 if PROT_EXEC memory can be had through mmap or mprotect. */
static int can_exec_memory(void)
{
    long page = sysconf(_SC_PAGESIZE);
    void *p = mmap(NULL, (size_t)page, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int ok = 0;

    if (p != MAP_FAILED) {
        munmap(p, (size_t)page);
        ok = 1;
    }
    p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
        if (mprotect(p, (size_t)page, PROT_READ | PROT_EXEC) == 0)
            ok = 1;
        munmap(p, (size_t)page);
    }
    return ok;
}

static int tries_fork(void)
{
    pid_t pid = fork();

    if (pid == 0)
        _exit(0);
    if (pid > 0) {
        (void)waitpid(pid, NULL, 0);
        return P_FORK;
    }
    return 0;
}

static int tries_exec(void)
{
    char *const argv[] = {"true", NULL};
    char *const envp[] = {NULL};

    execve("/bin/true", argv, envp);
    return 0;
}

static void *thread_body(void *arg)
{
    return arg;
}

static int decoder_body(void)
{
    char err[CWT_ERRLEN], made[PATH_MAX + 32], buf[8];
    struct stat sb;
    int bad = 0, fd, held;

    /* A descriptor opened before confinement, as the parent hands over an image. */
    held = open(secret, O_RDONLY | O_CLOEXEC);
    if (held < 0 || decoder_confine(err, sizeof(err)) != 0) {
        fprintf(stderr, "decoder_confine: %s\n", err);
        return P_CONFINE;
    }
    fd = open(secret, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        bad |= P_OPEN;
        close(fd);
    }
    fd = openat(AT_FDCWD, "/etc/passwd", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        bad |= P_OPEN;
        close(fd);
    }
    snprintf(made, sizeof(made), "%s/made", scratch);
    fd = open(made, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        bad |= P_CREATE;
        close(fd);
    }
    if (stat(secret, &sb) == 0)
        bad |= P_STAT;
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd >= 0) {
        bad |= P_SOCKET;
        close(fd);
    }
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0) {
        bad |= P_SOCKET;
        close(fd);
    }
    bad |= tries_fork();
    bad |= tries_exec();
    if (kill(getppid(), 0) == 0)
        bad |= P_KILL;
    if (can_exec_memory())
        bad |= P_EXECMEM;
    if (pread(held, buf, 6, 0) != 6 || memcmp(buf, "secret", 6) != 0)
        bad |= P_READFD;
    return bad;
}

static int trainer_body(void)
{
    char err[CWT_ERRLEN];
    pthread_t th;
    void *ret = NULL;
    int marker = 1, bad = 0, fd;
    char c = 'x';

    if (sandbox_apply(SANDBOX_TRAINER, NULL, 0, err, sizeof(err)) != 0) {
        fprintf(stderr, "sandbox_apply: %s\n", err);
        return P_CONFINE;
    }
    if (kill(getppid(), 0) == 0)
        bad |= P_KILL;
    bad |= tries_fork();
    bad |= tries_exec();
    /* TIOCSTI on a descriptor that is no terminal: the kernel would say ENOTTY, the filter
     * says EPERM first. The same with bits set above the 32 the kernel reads. */
    fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (ioctl(fd, TIOCSTI, &c) == 0 || errno != EPERM)
        bad |= P_TIOCSTI;
    if (syscall(SYS_ioctl, fd, (unsigned long)TIOCSTI | (1ul << 40), &c) == 0 || errno != EPERM)
        bad |= P_TIOCSTI;
    if (ioctl(fd, TCGETS, NULL) == 0 || errno != EPERM)
        bad |= P_TIOCSTI;
    /* A DRM-type request reaches the kernel, which refuses it for /dev/null (ENOTTY). */
    if (ioctl(fd, _IOWR('d', 0x00, uint64_t), NULL) == 0 || errno == EPERM)
        bad |= P_IOCTL;
    close(fd);
    if (pthread_create(&th, NULL, thread_body, &marker) != 0 || pthread_join(th, &ret) != 0 ||
        ret != &marker)
        bad |= P_THREAD;
    if (!can_exec_memory())
        bad |= P_EXECMEM;
    return bad;
}

/* The trainer's Landlock ruleset (trainer_sandbox_paths, as cwtd builds it): no file of the
 * store folder (data.mdb holds the ledger, audit and state; cwtd-private the monitor's
 * staged bundles) can be opened, for writing or reading, nor a key; /dev/null still can. */
static int trainer_files_body(void)
{
    static struct cwt_config cfg;
    struct sandbox_paths paths;
    char err[CWT_ERRLEN], cache[PATH_MAX], path[PATH_MAX + 64];
    int bad = 0, fd;

    if (!sandbox_landlock_available())
        return 0; /* nothing to test; cwtd itself would refuse to start */
    snprintf(cfg.store_dir, sizeof(cfg.store_dir), "%s/store", scratch);
    snprintf(path, sizeof(path), "%s/cwtd-private", cfg.store_dir);
    if (file_mkdir_p(path, 0700, NULL, 0) != 0)
        return P_CONFINE;
    snprintf(path, sizeof(path), "%s/data.mdb", cfg.store_dir);
    if (file_write_atomic(path, "x", 1, 0600, NULL, 0) != 0)
        return P_CONFINE;
    trainer_sandbox_paths(&cfg, &paths, cache, sizeof(cache));
    if (sandbox_apply(SANDBOX_TRAINER, &paths, 0, err, sizeof(err)) != 0) {
        fprintf(stderr, "sandbox_apply: %s\n", err);
        return P_CONFINE;
    }
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0 || errno != EACCES) {
        bad |= P_OPEN;
        if (fd >= 0)
            close(fd);
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        bad |= P_OPEN;
        close(fd);
    }
    snprintf(path, sizeof(path), "%s/cwtd-private/out.cwtb", cfg.store_dir);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        bad |= P_CREATE;
        close(fd);
    }
    fd = open(secret, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        bad |= P_OPEN;
        close(fd);
    }
    fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        bad |= P_READFD;
    else
        close(fd);
    return bad;
}

static int monitor_body(void)
{
    char err[CWT_ERRLEN];

    if (sandbox_apply(SANDBOX_MONITOR, NULL, 0, err, sizeof(err)) != 0) {
        fprintf(stderr, "sandbox_apply: %s\n", err);
        return P_CONFINE;
    }
    return can_exec_memory() ? P_EXECMEM : 0;
}

/* Confined as the monitor, as root or not: no capability left in any set (read from
 * /proc/self/status: capget itself is not on the monitor's list). */
static int caps_body(void)
{
    char err[CWT_ERRLEN], line[256];
    int was_root = geteuid() == 0, bad = 0, seen = 0;
    FILE *f;

    if (sandbox_apply(SANDBOX_MONITOR, NULL, 0, err, sizeof(err)) != 0) {
        fprintf(stderr, "sandbox_apply: %s\n", err);
        return P_CONFINE;
    }
    f = fopen("/proc/self/status", "re");
    if (f == NULL)
        return P_CONFINE;
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long long v;
        char name[16];
        if (sscanf(line, "Cap%15[^:]: %llx", name, &v) != 2)
            continue;
        seen++;
        /* Root held CAP_SETPCAP, so its bounding set is empty too. */
        if (v != 0 && (strcmp(name, "Bnd") != 0 || was_root)) {
            fprintf(stderr, "Cap%s: %llx\n", name, v);
            bad = P_KILL;
        }
    }
    fclose(f);
    return seen >= 4 ? bad : P_CONFINE;
}

/* A kernel without Landlock, as a filter that answers ENOSYS makes it look: the monitor's
 * sandbox refuses (naming the override), and applies with SANDBOX_ALLOW_NO_LANDLOCK. Bit 0:
 * refused as it must be; bit 1: applied with the override. */
static int no_landlock_body(void)
{
    struct sandbox_paths paths = {.read_write = {scratch}};
    char err[CWT_ERRLEN] = "";
    int bits = 0, rc;
    pid_t pid;

    if (sec_hide_landlock() != 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        rc = sandbox_apply(SANDBOX_MONITOR, &paths, 0, err, sizeof(err));
        _exit(rc == CWT_EUNSUPPORTED && strstr(err, "daemon.allow_no_landlock") != NULL ? 0 : 1);
    }
    if (pid > 0 && waitpid(pid, &rc, 0) == pid && WIFEXITED(rc) && WEXITSTATUS(rc) == 0)
        bits |= 1;
    if (sandbox_apply(SANDBOX_MONITOR, &paths, SANDBOX_ALLOW_NO_LANDLOCK, err, sizeof(err)) == 0)
        bits |= 2;
    return bits;
}

static void test_sandbox_drops_every_capability(void **state)
{
    (void)state;
    assert_int_equal(sec_run_bits(caps_body), 0);
}

static void test_no_landlock_fails_closed_unless_allowed(void **state)
{
    (void)state;
    assert_int_equal(sec_run_bits(no_landlock_body), 3);
}

static void test_decoder_cannot_open_files_or_reach_out(void **state)
{
    (void)state;
    assert_int_equal(sec_run_bits(decoder_body), 0);
}

static void test_trainer_cannot_signal_fork_or_tiocsti(void **state)
{
    (void)state;
    assert_int_equal(sec_run_bits(trainer_body), 0);
}

static void test_trainer_cannot_open_store_files(void **state)
{
    (void)state;
    assert_int_equal(sec_run_bits(trainer_files_body), 0);
}

static void test_monitor_has_no_executable_memory(void **state)
{
    (void)state;
    assert_int_equal(sec_run_bits(monitor_body), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decoder_cannot_open_files_or_reach_out),
        cmocka_unit_test(test_trainer_cannot_signal_fork_or_tiocsti),
        cmocka_unit_test(test_trainer_cannot_open_store_files),
        cmocka_unit_test(test_monitor_has_no_executable_memory),
        cmocka_unit_test(test_sandbox_drops_every_capability),
        cmocka_unit_test(test_no_landlock_fails_closed_unless_allowed),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
