/*
 * sandbox_seccomp.c - the seccomp allow-lists of the monitor and the trainer (libseccomp).
 *
 * Both processes: only AF_UNIX sockets, no exec, no ptrace, no mount, no io_uring, no
 * keyctl, no bpf - anything not listed fails with EPERM. The trainer's list is a superset:
 * GPU drivers issue ioctls on their device nodes, Mesa's lavapipe starts threads and JIT-
 * compiles shaders into executable memory.
 */
#include "daemon/sandbox.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <termios.h>

#include "common/cwt.h"

/* Everything the monitor needs after start-up: files in its folders (LMDB, inbox, outbox),
 * the event loop (epoll, inotify, timerfd, signalfd), the control socket, the socketpair to
 * the trainer with fd passing (memfd), libsodium's locked memory and the C library. */
static const char *const monitor_calls[] = {
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "lseek",
    "open",
    "openat",
    "close",
    "close_range",
    "fstat",
    "stat",
    "lstat",
    "newfstatat",
    "statx",
    "statfs",
    "fstatfs",
    "access",
    "faccessat",
    "faccessat2",
    "readlink",
    "readlinkat",
    "getdents64",
    "rename",
    "renameat",
    "renameat2",
    "link",
    "linkat",
    "unlink",
    "unlinkat",
    "mkdir",
    "mkdirat",
    "rmdir",
    "fsync",
    "fdatasync",
    "ftruncate",
    "fallocate",
    "msync",
    "flock",
    "fcntl",
    "fchmod",
    "fchmodat",
    "umask",
    "dup",
    "dup2",
    "dup3",
    "pipe2",
    "getcwd",
    "copy_file_range",
    "sendfile",
    /* memory: sodium_malloc guards and locks pages; mprotect is narrowed below */
    "mmap",
    "munmap",
    "mremap",
    "madvise",
    "mlock",
    "mlock2",
    "munlock",
    "brk",
    /* time, randomness, threads of the C library */
    "futex",
    "getrandom",
    "clock_gettime",
    "clock_getres",
    "gettimeofday",
    "time",
    "nanosleep",
    "clock_nanosleep",
    "set_robust_list",
    "rseq",
    "sched_yield",
    "sched_getaffinity",
    "restart_syscall",
    /* event loop */
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "inotify_init1",
    "inotify_add_watch",
    "inotify_rm_watch",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    "signalfd4",
    "eventfd2",
    /* unix sockets (the family is checked below) */
    "accept",
    "accept4",
    "bind",
    "listen",
    "connect",
    "getsockopt",
    "setsockopt",
    "getsockname",
    "getpeername",
    "sendmsg",
    "recvmsg",
    "sendto",
    "recvfrom",
    "shutdown",
    "memfd_create",
    /* processes and signals: reaping and stopping the trainer supervisor */
    "wait4",
    "waitid",
    "kill",
    "tgkill",
    "exit",
    "exit_group",
    "rt_sigprocmask",
    "rt_sigaction",
    "rt_sigreturn",
    "sigaltstack",
    "getpid",
    "gettid",
    "getppid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getgroups",
    "getresuid",
    "getresgid",
    "prlimit64",
    "getrlimit",
    "getrusage",
    "sysinfo",
    "uname",
};

/* What a Vulkan driver needs on top: device ioctls, threads, executable JIT memory, NUMA
 * hints, thread names and priorities. */
static const char *const trainer_extra_calls[] = {
    "ioctl",
    "clone",
    "clone3",
    "set_tid_address",
    "prctl",
    "mbind",
    "get_mempolicy",
    "set_mempolicy",
    "membarrier",
    "sched_setaffinity",
    "sched_getparam",
    "sched_getscheduler",
    "sched_setscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "getpriority",
    "setpriority",
    "getdents",
    "fchown",
    "utimensat",
    "mincore",
    "pkey_mprotect",
    "process_mrelease",
};

static int add_calls(scmp_filter_ctx ctx, const char *const *names, size_t n, char *err,
                     size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        int nr = seccomp_syscall_resolve_name(names[i]);
        int rc;

        /* Names that do not exist on this architecture (stat on arm64, say) are skipped. */
        if (nr == __NR_SCMP_ERROR || nr < 0)
            continue;
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
        if (rc != 0)
            return cwt_seterr(err, errlen, CWT_EIO, "seccomp: cannot allow %s: %s", names[i],
                              strerror(-rc));
    }
    return 0;
}

static int add_rules(scmp_filter_ctx ctx, enum sandbox_role role, char *err, size_t errlen)
{
    int rc;

    rc = add_calls(ctx, monitor_calls, sizeof(monitor_calls) / sizeof(monitor_calls[0]), err,
                   errlen);
    if (rc != 0)
        return rc;

    /* No network: sockets of the unix family only. */
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
    rc = rc ? rc
            : seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
                               SCMP_A0(SCMP_CMP_NE, AF_UNIX));
    rc = rc ? rc
            : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socketpair), 1,
                               SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
    rc = rc ? rc
            : seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socketpair), 1,
                               SCMP_A0(SCMP_CMP_NE, AF_UNIX));
    if (rc != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "seccomp: socket rules: %s", strerror(-rc));

    if (role == SANDBOX_MONITOR) {
        /* The monitor never needs executable memory (no JIT), and the only ioctls it makes
         * are isatty() and FIONREAD on its own descriptors. */
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
        rc = rc ? rc
                : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                                   SCMP_A1(SCMP_CMP_EQ, TCGETS));
        rc = rc ? rc
                : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                                   SCMP_A1(SCMP_CMP_EQ, FIONREAD));
        rc = rc ? rc
                : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                                   SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME));
        /* Threads but no new processes: bundle sealing and opening hash on helper threads
         * (crypto/bundle_pipe.c). clone is allowed only with CLONE_THREAD in its flags (the
         * first argument on every architecture cwt builds for); clone3 passes its flags in
         * memory that seccomp cannot read, so it fails with ENOSYS and the C library falls
         * back to clone. */
        rc = rc ? rc
                : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                                   SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
        rc = rc ? rc : seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
        if (rc != 0)
            return cwt_seterr(err, errlen, CWT_EIO, "seccomp: monitor rules: %s", strerror(-rc));
        return 0;
    }
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 0);
    if (rc != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "seccomp: trainer rules: %s", strerror(-rc));
    return add_calls(ctx, trainer_extra_calls,
                     sizeof(trainer_extra_calls) / sizeof(trainer_extra_calls[0]), err, errlen);
}

int sandbox_seccomp_apply(enum sandbox_role role, char *err, size_t errlen)
{
    scmp_filter_ctx ctx;
    int rc;

    if (role != SANDBOX_MONITOR && role != SANDBOX_TRAINER)
        return cwt_seterr(err, errlen, CWT_EINVAL, "seccomp: unknown sandbox role %d", role);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "cannot set no_new_privs: %s", strerror(errno));
    /* EPERM, not kill, for anything unlisted: see sandbox.h. */
    ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    if (ctx == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "seccomp: cannot create a filter");
    /* execve and execveat are not listed, so they fail with EPERM like everything else
     * (libseccomp refuses a rule whose action equals the default action). */
    rc = add_rules(ctx, role, err, errlen);
    if (rc == 0) {
        int lrc = seccomp_load(ctx);
        if (lrc != 0)
            rc = cwt_seterr(err, errlen, CWT_EIO, "seccomp: cannot load the filter: %s",
                            strerror(-lrc));
    }
    seccomp_release(ctx);
    return rc;
}
