/*
 * sandbox.h - one interface over the confinement mechanisms of cwt's processes (cwtd's
 * monitor, trainer and key process, cwtctl's decoder child), in the layout of OpenSSH's
 * sandbox-*.c: one implementation file per mechanism (sandbox_seccomp.c, sandbox_landlock.c,
 * sandbox_rlimit.c) and sandbox_apply() that composes them.
 *
 * Call order in a process: everything that needs the wider world first (config, passwd and
 * group look-ups, the control socket bind, Vulkan device open in the trainer, DCMTK's
 * dictionary in the decoder), then sandbox_apply(). A sandbox cannot be undone; the calling
 * process and its future children stay confined.
 */
#ifndef CWT_SANDBOX_H
#define CWT_SANDBOX_H

#include <stddef.h>

enum sandbox_role {
    SANDBOX_MONITOR = 0, /* keys and bundles: strict allow-list, no exec, no fork */
    SANDBOX_TRAINER,     /* GPU driver: also ioctl, threads, executable memory (lavapipe) */
    SANDBOX_DECODER,     /* image decoder: read/write on descriptors it was given, nothing else */
    SANDBOX_KEYPROC,     /* key holder: its one socket and its memory; any other call kills it */
};

#define SANDBOX_MAX_PATHS 24

/* Folders and files the monitor may touch once Landlock is on. Unused slots are NULL. */
struct sandbox_paths {
    const char *read_write[SANDBOX_MAX_PATHS]; /* store, inbox, outbox, socket folder */
    const char *read_only[SANDBOX_MAX_PATHS];  /* config file, roster file, keys folder */
};

/* Sets no_new_privs and loads the seccomp allow-list for role: only AF_UNIX sockets
 * (socket/socketpair with another family fail with EAFNOSUPPORT), execve fails with EPERM,
 * and any syscall outside the list fails with EPERM rather than killing the process, so a
 * rare error path that was missed becomes a logged error instead of a half-finished commit.
 * The key process is the exception: its loop is a few dozen lines that make a known handful
 * of calls, so any other call is an attack and kills it (SIGSYS; EPERM in AddressSanitizer
 * builds, whose runtime makes calls of its own). Returns 0, or CWT_EIO / CWT_ENOMEM with a
 * sentence in err. */
int sandbox_seccomp_apply(enum sandbox_role role, char *err, size_t errlen);

/* Restricts file-system access to the given paths with Landlock (raw syscalls, the best ABI
 * the kernel offers). Returns 0 when applied, CWT_EUNSUPPORTED when the kernel lacks
 * Landlock (the caller logs it and goes on), CWT_EIO with a sentence in err otherwise (for
 * instance a path that does not exist). */
int sandbox_landlock_apply(const struct sandbox_paths *paths, char *err, size_t errlen);

/* 1 when the kernel offers Landlock to this process, else 0 (no Landlock, or a filter
 * around the process that blocks it). */
int sandbox_landlock_available(void);

/* Drops every capability: effective, permitted, inheritable, ambient, and the bounding set
 * where CAP_SETPCAP allows. Returns 0, or CWT_EIO with a sentence in err. */
int sandbox_drop_capabilities(char *err, size_t errlen);

/* Resource limits of a confined decoder: address space (skipped in sanitizer builds, whose
 * shadow memory needs terabytes of it), stack, file size 0, a few descriptors, no core
 * dumps, and not dumpable (no ptrace by the same uid, no /proc/PID/mem). */
struct sandbox_limits {
    unsigned long long address_space; /* bytes; 0 leaves it as it is */
    unsigned long long stack;         /* bytes; 0 leaves it as it is */
    unsigned long long open_files;    /* descriptors; 0 leaves it as it is */
};

/* Applies lim to the calling process and sets RLIMIT_FSIZE and RLIMIT_CORE to 0. A limit is
 * only ever lowered. Returns 0, or CWT_EIO with a sentence in err. */
int sandbox_rlimit_apply(const struct sandbox_limits *lim, char *err, size_t errlen);

/* Sets the CPU-time limit of the calling process to seconds from now (RLIMIT_CPU counts the
 * whole life of a process, so a long-lived decoder moves it before each file; SIGXCPU, then
 * SIGKILL, end a decode that spins). Returns 0, or CWT_EIO with a sentence in err. */
int sandbox_rlimit_cpu(unsigned seconds, char *err, size_t errlen);

/* sandbox_apply() flags. */
#define SANDBOX_ALLOW_NO_LANDLOCK 0x1 /* a kernel without Landlock is logged, not refused */

/* The whole sandbox of a role: every capability dropped, Landlock, then seccomp.
 *
 * Landlock, per role:
 *   monitor, trainer  the folders in paths (NULL: no Landlock, for tests of seccomp alone);
 *   key process       no rule at all, whatever paths says (pass NULL): it opens no file once
 *                     its keys are loaded;
 *   decoder           no rule at all where the kernel offers Landlock.
 * The rule for a kernel without Landlock: every role of cwtd (monitor, trainer, key process)
 * fails closed (CWT_EUNSUPPORTED, with a sentence that names the override) unless flags has
 * SANDBOX_ALLOW_NO_LANDLOCK, which is cwtd's daemon.allow_no_landlock, the one switch that
 * the monitor audits; so no process of the daemon runs with less confinement than documented
 * without that record. The key process is held to the rule although its seccomp list has no
 * open either: the two walls are independent, and one override for the whole daemon is what
 * an admin can reason about. The decoder is cwtctl's, which has no configuration and no audit
 * log to carry an override; its seccomp list has no open, so Landlock is a second wall there,
 * applied where the kernel has it. Returns 0 or the first fatal error with err filled. */
int sandbox_apply(enum sandbox_role role, const struct sandbox_paths *paths, int flags, char *err,
                  size_t errlen);

#endif
