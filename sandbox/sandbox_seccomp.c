/*
 * sandbox_seccomp.c - the seccomp allow-lists of the monitor, the trainer, cwtd's key process
 * (libseccomp) and cwtctl's decoder child.
 *
 * Monitor and trainer: only AF_UNIX sockets, no exec, no ptrace, no mount, no io_uring, no
 * keyctl, no bpf, threads but no new processes - anything not listed fails with EPERM. The
 * trainer adds what GPU drivers need: ioctls on their device nodes (but no terminal ioctl),
 * executable memory for the JIT of Mesa's lavapipe and oneDNN; it may signal only itself.
 * The monitor has no executable memory. The decoder has a list of its own, much shorter: it
 * reads the descriptor it was handed and writes pixels to its socket. The key process's is
 * the shortest, and the only one whose unlisted calls kill rather than fail.
 */
#include "sandbox/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

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
    /* memory: sodium_malloc guards and locks pages; mmap and mprotect are narrowed below */
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
    /* signals (kill and wait are per role, below) */
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

/* The monitor alone reaps and stops the trainer supervisor. */
static const char *const monitor_extra_calls[] = {
    "wait4",
    "waitid",
    "kill",
    "tgkill",
};

/* What a Vulkan driver needs on top: NUMA hints, thread names and priorities (ioctl, clone,
 * kill and executable memory are narrowed in add_trainer_rules). */
static const char *const trainer_extra_calls[] = {
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

/* The decoder child: I/O on descriptors it holds (its socket, the image it was handed, a
 * memfd that DCMTK reads), memory without PROT_EXEC (narrowed below), time and the C
 * library's signal and exit paths. No open, no socket, no fork, no exec. */
static const char *const decoder_calls[] = {
    "read",        "write",        "readv",          "writev",          "pread64",
    "lseek",       "close",        "fstat",          "fcntl",           "dup",
    "ftruncate",   "memfd_create", "recvmsg",        "sendmsg",         "recvfrom",
    "sendto",      "munmap",       "mremap",         "madvise",         "brk",
    "futex",       "getrandom",    "clock_gettime",  "clock_getres",    "gettimeofday",
    "time",        "sched_yield",  "rseq",           "set_robust_list", "restart_syscall",
    "exit",        "exit_group",   "rt_sigprocmask", "rt_sigaction",    "rt_sigreturn",
    "sigaltstack", "getpid",       "gettid",         "getrusage",       "getrlimit",
};

/* The key process's request loop once its keys are loaded: its socket, stderr for its log
 * lines, the C library's memory and exit paths. No open, no socket, no fork, no exec, no
 * mprotect; mmap and fstat are narrowed in add_keyproc_rules. */
static const char *const keyproc_calls[] = {
    "read",       "write",         "recvmsg", "sendmsg", "close",          "exit",
    "exit_group", "rt_sigreturn",  "brk",     "munmap",  "madvise",        "futex",
    "fstat",      "clock_gettime", "getpid",  "gettid",  "rt_sigprocmask", "getrandom",
};

/* AddressSanitizer's runtime queries sigaltstack before every noreturn call and makes other
 * calls of its own on its exit path, which say nothing about the key process: in such a
 * build (the sanitizer build of the tests) an unlisted call fails with EPERM instead of
 * killing, and sigaltstack is allowed. */
#if defined(__SANITIZE_ADDRESS__)
#define KEYPROC_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KEYPROC_ASAN 1
#endif
#endif

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

/* mmap and mprotect without PROT_EXEC (OpenSSH's SC_MMAP): no process that does not JIT
 * can make memory executable, so injected code has nowhere to run. */
static int add_no_exec_memory(scmp_filter_ctx ctx)
{
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    rc = rc ? rc
            : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                               SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    return rc;
}

/* Threads but no new processes. clone is allowed only with CLONE_THREAD in its flags (the
 * first argument on every architecture cwt builds for); clone3 passes its flags in memory
 * that seccomp cannot read, so it fails with ENOSYS and the C library falls back to clone. */
static int add_threads_only(scmp_filter_ctx ctx)
{
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    return rc ? rc : seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
}

/* Signals to the calling process only (abort() and raise() use tgkill on themselves). */
static int add_signal_self(scmp_filter_ctx ctx)
{
    scmp_datum_t self = (scmp_datum_t)getpid();
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1, SCMP_A0(SCMP_CMP_EQ, self));
    return rc ? rc
              : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
                                 SCMP_A0(SCMP_CMP_EQ, self));
}

/* The decoder: its own short list; fstat only on a descriptor (glibc's fstat is
 * newfstatat(fd, "", AT_EMPTY_PATH)); prlimit64 only on itself (the per-file CPU limit). */
static int add_decoder_rules(scmp_filter_ctx ctx, char *err, size_t errlen)
{
    int rc = add_calls(ctx, decoder_calls, sizeof(decoder_calls) / sizeof(decoder_calls[0]), err,
                       errlen);
    if (rc != 0)
        return rc;
    rc = add_no_exec_memory(ctx);
    rc = rc ? rc : add_signal_self(ctx);
    rc = rc ? rc
            : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(newfstatat), 1,
                               SCMP_A3(SCMP_CMP_MASKED_EQ, AT_EMPTY_PATH, AT_EMPTY_PATH));
    rc =
        rc ? rc
           : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 1, SCMP_A0(SCMP_CMP_EQ, 0));
    if (rc != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "seccomp: decoder rules: %s", strerror(-rc));
    return 0;
}

/* The key process: its list, memory without PROT_EXEC and without mprotect (sodium_malloc's
 * guard pages are set up before confinement), fstat only on a descriptor. */
static int add_keyproc_rules(scmp_filter_ctx ctx, char *err, size_t errlen)
{
    int rc = add_calls(ctx, keyproc_calls, sizeof(keyproc_calls) / sizeof(keyproc_calls[0]), err,
                       errlen);
    if (rc != 0)
        return rc;
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                          SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    rc = rc ? rc
            : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(newfstatat), 1,
                               SCMP_A3(SCMP_CMP_MASKED_EQ, AT_EMPTY_PATH, AT_EMPTY_PATH));
#ifdef KEYPROC_ASAN
    rc = rc ? rc : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(sigaltstack), 0);
#endif
    if (rc != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "seccomp: key process rules: %s", strerror(-rc));
    return 0;
}

/* The trainer's ioctls: any but a terminal's. Terminal ioctls have type 'T' (0x54) in bits
 * 8-15 of the request (TIOCSTI, which pushes keystrokes into a terminal, is 0x5412); GPU
 * drivers use other types ('d' for DRM, 'F' for NVIDIA, '>' for sync files). seccomp has no
 * "masked not equal", so one rule per bit allows a request whose type differs from 0x54 in
 * that bit; a 'T' request matches none and fails with EPERM. Only bits 8-15 are compared, so
 * high bits set in the 64-bit argument (the kernel reads an unsigned int) change nothing. */
static int add_trainer_ioctls(scmp_filter_ctx ctx)
{
    int rc = 0;

    for (unsigned bit = 8; rc == 0 && bit < 16; bit++) {
        scmp_datum_t mask = (scmp_datum_t)1 << bit;
        scmp_datum_t want = ((scmp_datum_t)0x5400 & mask) ^ mask;
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                              SCMP_A1(SCMP_CMP_MASKED_EQ, mask, want));
    }
    return rc;
}

static int add_rules(scmp_filter_ctx ctx, enum sandbox_role role, char *err, size_t errlen)
{
    int rc;

    if (role == SANDBOX_DECODER)
        return add_decoder_rules(ctx, err, errlen);
    if (role == SANDBOX_KEYPROC)
        return add_keyproc_rules(ctx, err, errlen);

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
        rc = add_calls(ctx, monitor_extra_calls,
                       sizeof(monitor_extra_calls) / sizeof(monitor_extra_calls[0]), err, errlen);
        if (rc != 0)
            return rc;
        /* The monitor never needs executable memory (no JIT), and the only ioctls it makes
         * are isatty() and FIONREAD on its own descriptors. */
        rc = add_no_exec_memory(ctx);
        rc = rc ? rc
                : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                                   SCMP_A1(SCMP_CMP_EQ, TCGETS));
        rc = rc ? rc
                : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                                   SCMP_A1(SCMP_CMP_EQ, FIONREAD));
        rc = rc ? rc
                : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                                   SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME));
        /* Bundle sealing and opening hash on helper threads (crypto/bundle_pipe.c). */
        rc = rc ? rc : add_threads_only(ctx);
        if (rc != 0)
            return cwt_seterr(err, errlen, CWT_EIO, "seccomp: monitor rules: %s", strerror(-rc));
        return 0;
    }
    /* The trainer: executable memory (JIT), threads (Mesa, oneDNN, OpenMP) but no process,
     * signals to itself only, device ioctls but no terminal ioctl. */
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 0);
    rc = rc ? rc : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 0);
    rc = rc ? rc : add_threads_only(ctx);
    rc = rc ? rc : add_signal_self(ctx);
    rc = rc ? rc : add_trainer_ioctls(ctx);
    if (rc != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "seccomp: trainer rules: %s", strerror(-rc));
    return add_calls(ctx, trainer_extra_calls,
                     sizeof(trainer_extra_calls) / sizeof(trainer_extra_calls[0]), err, errlen);
}

int sandbox_seccomp_apply(enum sandbox_role role, char *err, size_t errlen)
{
    scmp_filter_ctx ctx;
    uint32_t deny = SCMP_ACT_ERRNO(EPERM);
    int rc;

    if (role != SANDBOX_MONITOR && role != SANDBOX_TRAINER && role != SANDBOX_DECODER &&
        role != SANDBOX_KEYPROC)
        return cwt_seterr(err, errlen, CWT_EINVAL, "seccomp: unknown sandbox role %d", role);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "cannot set no_new_privs: %s", strerror(errno));
        /* EPERM, not kill, for anything unlisted, except in the key process: see sandbox.h. */
#ifndef KEYPROC_ASAN
    if (role == SANDBOX_KEYPROC)
        deny = SCMP_ACT_KILL_PROCESS;
#endif
    ctx = seccomp_init(deny);
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
