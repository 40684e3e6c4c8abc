/*
 * sandbox.h - one interface over the confinement mechanisms of cwtd's two processes, in the
 * layout of OpenSSH's sandbox-*.c: one implementation file per mechanism
 * (sandbox_seccomp.c, sandbox_landlock.c) and sandbox_apply() that composes them.
 *
 * Call order in a process: everything that needs the wider world first (config, passwd and
 * group look-ups, the control socket bind, Vulkan device open in the trainer), then
 * sandbox_apply(). A sandbox cannot be undone; the calling process and its future children
 * stay confined.
 */
#ifndef CWT_SANDBOX_H
#define CWT_SANDBOX_H

#include <stddef.h>

enum sandbox_role {
    SANDBOX_MONITOR = 0, /* keys and bundles: strict allow-list, no exec, no fork */
    SANDBOX_TRAINER,     /* GPU driver: also ioctl, threads, executable memory (lavapipe) */
};

#define SANDBOX_MAX_PATHS 8

/* Folders and files the monitor may touch once Landlock is on. Unused slots are NULL. */
struct sandbox_paths {
    const char *read_write[SANDBOX_MAX_PATHS]; /* store, inbox, outbox, socket folder */
    const char *read_only[SANDBOX_MAX_PATHS];  /* config file, roster file, keys folder */
};

/* Sets no_new_privs and loads the seccomp allow-list for role: only AF_UNIX sockets
 * (socket/socketpair with another family fail with EAFNOSUPPORT), execve fails with EPERM,
 * and any syscall outside the list fails with EPERM rather than killing the process, so a
 * rare error path that was missed becomes a logged error instead of a half-finished commit.
 * Returns 0, or CWT_EIO / CWT_ENOMEM with a sentence in err. */
int sandbox_seccomp_apply(enum sandbox_role role, char *err, size_t errlen);

/* Restricts file-system access to the given paths with Landlock (raw syscalls, the best ABI
 * the kernel offers). Returns 0 when applied, CWT_EUNSUPPORTED when the kernel lacks
 * Landlock (the caller logs it and goes on), CWT_EIO with a sentence in err otherwise (for
 * instance a path that does not exist). */
int sandbox_landlock_apply(const struct sandbox_paths *paths, char *err, size_t errlen);

/* The whole sandbox of a role: Landlock when paths != NULL (logged, not fatal, when the
 * kernel lacks it), then seccomp. Returns 0 or the first fatal error with err filled. */
int sandbox_apply(enum sandbox_role role, const struct sandbox_paths *paths, char *err,
                  size_t errlen);

#endif
