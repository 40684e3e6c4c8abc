/*
 * sec_probe.h - the probing harness of the sandbox power tests (test_m5_powers.c,
 * test_keyproc_powers.c): a probe runs in a child, so that the filters it loads do not outlive
 * it, and reports a result wider than an exit status. Include after cmocka.h and seccomp.h.
 */
#ifndef CWT_TESTS_SECURITY_SEC_PROBE_H
#define CWT_TESTS_SECURITY_SEC_PROBE_H

#include <errno.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/sandbox.h"

/* Runs body in a forked child and returns what it returned (through a pipe: an exit status
 * fits 8 bits), or -1 if the child died before reporting. cmocka-asserts pipe, fork and
 * waitpid. */
static inline int sec_run_bits(int (*body)(void))
{
    int pfd[2], status, bits = -1;
    pid_t pid;

    assert_int_equal(pipe(pfd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int b;
        close(pfd[0]);
        b = body();
        _exit(write(pfd[1], &b, sizeof(b)) == (ssize_t)sizeof(b) ? 0 : 1);
    }
    close(pfd[1]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (read(pfd[0], &bits, sizeof(bits)) != (ssize_t)sizeof(bits))
        bits = -1;
    close(pfd[0]);
    return bits;
}

/* Makes this process (for good: call it in a sec_run_bits child) look like a kernel without
 * Landlock: sets no_new_privs and loads a filter that answers ENOSYS to the Landlock calls.
 * 0, or -1 if that failed or sandbox_landlock_available() still says yes. */
static inline int sec_hide_landlock(void)
{
    static const char *const calls[] = {"landlock_create_ruleset", "landlock_add_rule",
                                        "landlock_restrict_self"};
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);

    if (ctx == NULL || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++)
        if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), seccomp_syscall_resolve_name(calls[i]),
                             0) != 0)
            return -1;
    if (seccomp_load(ctx) != 0)
        return -1;
    seccomp_release(ctx);
    return sandbox_landlock_available() ? -1 : 0;
}

#endif
