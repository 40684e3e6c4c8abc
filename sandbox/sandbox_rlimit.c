/*
 * sandbox_rlimit.c - resource limits of a confined process: what a parser bug may cost in
 * memory, stack, CPU time and disk before the kernel stops it.
 */
#include "sandbox/sandbox.h"

#include <errno.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/time.h>

#include "common/cwt.h"

/* Lowers one limit to value (soft and hard); a limit already lower stays. */
static int lower(int resource, const char *name, unsigned long long value, char *err, size_t errlen)
{
    struct rlimit rl;

    if (getrlimit(resource, &rl) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "getrlimit(%s): %s", name, strerror(errno));
    if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > value)
        rl.rlim_max = (rlim_t)value;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > rl.rlim_max)
        rl.rlim_cur = rl.rlim_max;
    if (setrlimit(resource, &rl) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "setrlimit(%s): %s", name, strerror(errno));
    return 0;
}

int sandbox_rlimit_apply(const struct sandbox_limits *lim, char *err, size_t errlen)
{
    int rc = 0;

    if (lim == NULL)
        return cwt_seterr(err, errlen, CWT_EINVAL, "no resource limits given");
    /* No byte may be written to a file, and a crash leaves no core with patient pixels. */
    rc = lower(RLIMIT_FSIZE, "RLIMIT_FSIZE", 0, err, errlen);
    if (rc == 0)
        rc = lower(RLIMIT_CORE, "RLIMIT_CORE", 0, err, errlen);
        /* AddressSanitizer reserves terabytes of shadow address space at start-up: an
         * address-space limit would make every allocation of a sanitizer build fail. */
#if !defined(__SANITIZE_ADDRESS__)
    if (rc == 0 && lim->address_space != 0)
        rc = lower(RLIMIT_AS, "RLIMIT_AS", lim->address_space, err, errlen);
#endif
    /* The kernel checks RLIMIT_STACK whenever the main stack grows, so deep recursion ends
     * in SIGSEGV at this depth rather than wherever the inherited limit happened to be. */
    if (rc == 0 && lim->stack != 0)
        rc = lower(RLIMIT_STACK, "RLIMIT_STACK", lim->stack, err, errlen);
    if (rc == 0 && lim->open_files != 0)
        rc = lower(RLIMIT_NOFILE, "RLIMIT_NOFILE", lim->open_files, err, errlen);
    if (rc == 0 && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        rc = cwt_seterr(err, errlen, CWT_EIO, "prctl(PR_SET_DUMPABLE): %s", strerror(errno));
    return rc;
}

int sandbox_rlimit_cpu(unsigned seconds, char *err, size_t errlen)
{
    struct rusage ru;
    struct rlimit rl;
    unsigned long long used;

    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "getrusage: %s", strerror(errno));
    used = (unsigned long long)ru.ru_utime.tv_sec + (unsigned long long)ru.ru_stime.tv_sec + 1;
    /* The soft limit sends SIGXCPU (default action: terminate), the hard one a second later
     * SIGKILL. Only the soft limit moves: the hard one stays unlimited so it can be raised
     * again for the next file; the parent's wall-clock timeout is the outer bound. */
    if (getrlimit(RLIMIT_CPU, &rl) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "getrlimit(RLIMIT_CPU): %s", strerror(errno));
    rl.rlim_cur = (rlim_t)(used + seconds);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max)
        rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_CPU, &rl) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "setrlimit(RLIMIT_CPU): %s", strerror(errno));
    return 0;
}
