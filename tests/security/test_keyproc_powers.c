/*
 * test_keyproc_powers.c - issue 18, L7/M5: what cwtd's key process may do once confined,
 * tried for real in forked children confined by the same call the key process makes
 * (sandbox_apply(SANDBOX_KEYPROC)), as test_m5_powers.c does for the other roles.
 *
 *   - each forbidden call (open, openat, create, stat by path, socket, socketpair, fork,
 *     exec, signalling its parent, executable memory, mprotect, prctl, a terminal ioctl) ends
 *     the process with SIGSYS (or fails with EPERM in an AddressSanitizer build);
 *   - what its loop needs still works: read a descriptor it holds, answer on its socket,
 *     allocate memory, draw random bytes;
 *   - a kernel without Landlock is refused unless daemon.allow_no_landlock, as for the monitor
 *     and the trainer: by sandbox_apply, and end to end through keyproc_start and the
 *     monitor's handshake, which reports the refusal (before, the key process only warned and
 *     went on with its file access unconfined).
 *
 * Its Landlock domain (no file at all) sits behind a seccomp list that has no open, so no
 * open from inside can reach it; what is shown is that the role never runs without it
 * unless the audited override says so.
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
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>
#include <seccomp.h>
#include <sodium.h>

#include "common/cwt.h"
#include "common/fileio.h"
#include "config/config.h"
#include "crypto/keys.h"
#include "daemon/keyproc.h"
#include "sandbox/sandbox.h"

#include "sec_probe.h"
#include "tests/test_tmp.h"

enum attempt {
    A_OPEN = 0,
    A_OPENAT,
    A_CREATE,
    A_STAT,
    A_SOCKET,
    A_SOCKETPAIR,
    A_FORK,
    A_EXEC,
    A_KILL_PARENT,
    A_MMAP_EXEC,
    A_MPROTECT,
    A_PRCTL,
    A_TIOCSTI,
    A_COUNT
};

static const char *const attempt_name[A_COUNT] = {
    "open",   "openat",       "open(O_CREAT)",   "stat by path", "socket", "socketpair",     "fork",
    "execve", "kill(parent)", "mmap(PROT_EXEC)", "mprotect",     "prctl",  "ioctl(TIOCSTI)",
};

/* Child exit codes: the call was refused with EPERM (AddressSanitizer builds), the call went
 * through, the sandbox could not be applied. A refusal in a normal build is SIGSYS. */
#define X_REFUSED 0
#define X_ALLOWED 10
#define X_CONFINE 11
#define X_BROKEN  12

static char scratch[PATH_MAX];
static char secret[PATH_MAX + 32];
static char keys_dir[PATH_MAX + 32];
static struct site_keys pub;

static int setup(void **state)
{
    char err[CWT_ERRLEN];

    (void)state;
    if (crypto_init() != 0 || test_tmp_path(scratch, sizeof(scratch), "test_keyproc_powers") != 0)
        return -1;
    snprintf(secret, sizeof(secret), "%s/secret", scratch);
    snprintf(keys_dir, sizeof(keys_dir), "%s/keys", scratch);
    if (file_mkdir_p(scratch, 0700, err, sizeof(err)) != 0 ||
        file_write_atomic(secret, "secret", 6, 0600, err, sizeof(err)) != 0 ||
        keys_generate(keys_dir, "site-k", err, sizeof(err)) != 0 ||
        keys_load_public(keys_dir, &pub, err, sizeof(err)) != 0) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return test_tmp_remove(scratch) == 0 ? 0 : -1;
}

/* The flags cwtd would pass on this kernel: none where Landlock exists; the override where
 * it does not, so that the seccomp half is still tried. */
static int keyproc_flags(void)
{
    return sandbox_landlock_available() ? 0 : SANDBOX_ALLOW_NO_LANDLOCK;
}

/* 1 when the call was refused (returned -1 with EPERM), else 0. */
static int refused(long rc)
{
    return rc < 0 && errno == EPERM;
}

/* In the confined child: makes one forbidden call. Returns the exit code. */
static int try_forbidden(enum attempt a)
{
    long page = sysconf(_SC_PAGESIZE);
    char c = 'x';
    int sv[2];
    void *p;

    switch (a) {
    case A_OPEN:
        return refused(open(secret, O_RDONLY | O_CLOEXEC)) ? X_REFUSED : X_ALLOWED;
    case A_OPENAT:
        return refused(openat(AT_FDCWD, "/etc/passwd", O_RDONLY | O_CLOEXEC)) ? X_REFUSED
                                                                              : X_ALLOWED;
    case A_CREATE: {
        char made[PATH_MAX + 32];
        snprintf(made, sizeof(made), "%s/made", scratch);
        return refused(open(made, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) ? X_REFUSED
                                                                                  : X_ALLOWED;
    }
    case A_STAT: {
        struct stat sb;
        return refused(stat(secret, &sb)) ? X_REFUSED : X_ALLOWED;
    }
    case A_SOCKET:
        return refused(socket(AF_UNIX, SOCK_STREAM, 0)) ? X_REFUSED : X_ALLOWED;
    case A_SOCKETPAIR:
        return refused(socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) ? X_REFUSED : X_ALLOWED;
    case A_FORK: {
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        return refused(pid) ? X_REFUSED : X_ALLOWED;
    }
    case A_EXEC: {
        char *const argv[] = {"true", NULL};
        char *const envp[] = {NULL};
        return refused(execve("/bin/true", argv, envp)) ? X_REFUSED : X_ALLOWED;
    }
    case A_KILL_PARENT:
        return refused(kill(getppid(), 0)) ? X_REFUSED : X_ALLOWED;
    case A_MMAP_EXEC:
        p = mmap(NULL, (size_t)page, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED && errno == EPERM ? X_REFUSED : X_ALLOWED;
    case A_MPROTECT:
        p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return X_BROKEN;
        return refused(mprotect(p, (size_t)page, PROT_READ)) ? X_REFUSED : X_ALLOWED;
    case A_PRCTL:
        return refused(prctl(PR_SET_NAME, "k", 0, 0, 0)) ? X_REFUSED : X_ALLOWED;
    case A_TIOCSTI:
        return refused(ioctl(STDERR_FILENO, TIOCSTI, &c)) ? X_REFUSED : X_ALLOWED;
    case A_COUNT:
        break;
    }
    return X_BROKEN;
}

/* Forks a child that confines itself as the key process, then runs body(arg); returns its
 * wait status. */
static int run_confined(int (*body)(int, int), int arg, int flags)
{
    int status;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        char err[CWT_ERRLEN];
        int held = open(secret, O_RDONLY | O_CLOEXEC);
        if (held < 0)
            _exit(X_CONFINE);
        if (sandbox_apply(SANDBOX_KEYPROC, NULL, flags, err, sizeof(err)) != 0) {
            fprintf(stderr, "sandbox_apply: %s\n", err);
            _exit(X_CONFINE);
        }
        /* _exit is exit_group, on the list; exit() would run handlers that are not. */
        _exit(body(arg, held));
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static int forbidden_body(int a, int held)
{
    (void)held;
    return try_forbidden((enum attempt)a);
}

static void test_keyproc_dies_on_any_call_off_its_list(void **state)
{
    (void)state;
    for (int a = 0; a < A_COUNT; a++) {
        int status = run_confined(forbidden_body, a, keyproc_flags());
        int ok = (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS) ||
                 (WIFEXITED(status) && WEXITSTATUS(status) == X_REFUSED);
        if (!ok)
            fail_msg("%s in the confined key process: %s %d", attempt_name[a],
                     WIFSIGNALED(status) ? "signal" : "exit status",
                     WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    }
}

/* What the request loop needs: read a descriptor it holds, a round trip on a socket it was
 * given (recvmsg/sendmsg, as proto.c does), heap memory, random bytes. */
static int allowed_body(int sock, int held)
{
    char buf[8];
    uint8_t rnd[16];
    struct iovec iov = {buf, sizeof(buf)};
    struct msghdr mh = {0};
    void *big;

    if (read(held, buf, 6) != 6 || memcmp(buf, "secret", 6) != 0)
        return 1;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (recvmsg(sock, &mh, 0) != 4 || memcmp(buf, "ping", 4) != 0)
        return 2;
    memcpy(buf, "pong", 4);
    iov.iov_len = 4;
    if (sendmsg(sock, &mh, 0) != 4)
        return 3;
    big = malloc(8u << 20); /* past the mmap threshold: mmap without PROT_EXEC */
    if (big == NULL)
        return 4;
    memset(big, 1, 8u << 20);
    free(big);
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        return 5;
    return 0;
}

static int allowed_sock = -1;

static int allowed_wrapper(int unused, int held)
{
    (void)unused;
    return allowed_body(allowed_sock, held);
}

static void test_keyproc_loop_still_works(void **state)
{
    int sv[2], status;
    char buf[8] = {0};

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(send(sv[0], "ping", 4, 0), 4);
    allowed_sock = sv[1];
    status = run_confined(allowed_wrapper, 0, keyproc_flags());
    close(sv[1]);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(recv(sv[0], buf, sizeof(buf), 0), 4);
    assert_memory_equal(buf, "pong", 4);
    close(sv[0]);
}

/* Bit 0: sandbox_apply refused without the override and named it; bit 1: it applied with
 * the override; bit 2: a list of paths for the key process is refused (its file access is
 * decided in sandbox.c, not by the caller). */
static int no_landlock_body(void)
{
    struct sandbox_paths paths = {.read_only = {scratch}};
    char err[CWT_ERRLEN] = "";
    int bits = 0, status;
    pid_t pid;

    if (sec_hide_landlock() != 0)
        return 0x80;
    pid = fork();
    if (pid == 0) {
        int rc = sandbox_apply(SANDBOX_KEYPROC, NULL, 0, err, sizeof(err));
        _exit(rc == CWT_EUNSUPPORTED && strstr(err, "daemon.allow_no_landlock") != NULL ? 0 : 1);
    }
    if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        bits |= 1;
    pid = fork();
    if (pid == 0)
        _exit(sandbox_apply(SANDBOX_KEYPROC, NULL, SANDBOX_ALLOW_NO_LANDLOCK, err, sizeof(err)) == 0
                  ? 0
                  : 1);
    if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        bits |= 2;
    if (sandbox_apply(SANDBOX_KEYPROC, &paths, SANDBOX_ALLOW_NO_LANDLOCK, err, sizeof(err)) ==
        CWT_EINVAL)
        bits |= 4;
    return bits;
}

/* End to end on a kernel without Landlock: the key process cwtd starts refuses in its
 * greeting (the monitor's handshake gets CWT_EPERM and the sentence naming the override);
 * with daemon.allow_no_landlock it starts and signs. Bit 0: refused; bit 1: served. */
static int no_landlock_keyproc_body(void)
{
    static struct cwt_config cfg;
    struct keyproc_client kp;
    struct key_ops ops;
    uint8_t digest[KEYOPS_DIGEST_LEN] = {1}, sig[KEYOPS_SIG_LEN];
    char err[CWT_ERRLEN];
    int bits = 0, status;

    if (sec_hide_landlock() != 0)
        return 0x80;
    snprintf(cfg.keys_dir, sizeof(cfg.keys_dir), "%s", keys_dir);
    cfg.allow_no_landlock = 0;
    keyproc_start(&cfg, &kp);
    if (keyproc_handshake(&kp, &pub, err, sizeof(err)) == CWT_EPERM &&
        strstr(err, "daemon.allow_no_landlock") != NULL)
        bits |= 1;
    else
        fprintf(stderr, "without the override: %s\n", err);
    close(kp.sock);
    if (waitpid(kp.pid, &status, 0) != kp.pid || !WIFEXITED(status) || WEXITSTATUS(status) != 2)
        bits &= ~1;

    cfg.allow_no_landlock = 1;
    keyproc_start(&cfg, &kp);
    if (keyproc_handshake(&kp, &pub, err, sizeof(err)) == 0) {
        keyproc_ops(&kp, &ops);
        if (ops.sign(ops.ctx, KEYOPS_CTX_BUNDLE, digest, sig) == 0 &&
            keyops_verify(KEYOPS_CTX_BUNDLE, digest, sig, pub.sign_pk) == 0)
            bits |= 2;
    } else {
        fprintf(stderr, "with the override: %s\n", err);
    }
    close(kp.sock);
    (void)waitpid(kp.pid, &status, 0);
    return bits;
}

static void test_no_landlock_fails_closed_unless_allowed(void **state)
{
    (void)state;
    assert_int_equal(sec_run_bits(no_landlock_body), 7);
}

static void test_no_landlock_key_process_refuses_at_start(void **state)
{
    (void)state;
    assert_int_equal(sec_run_bits(no_landlock_keyproc_body), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keyproc_dies_on_any_call_off_its_list),
        cmocka_unit_test(test_keyproc_loop_still_works),
        cmocka_unit_test(test_no_landlock_fails_closed_unless_allowed),
        cmocka_unit_test(test_no_landlock_key_process_refuses_at_start),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
