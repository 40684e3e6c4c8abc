/*
 * sandbox_landlock.c - file-system confinement of the monitor with Landlock, through raw
 * syscalls (glibc has no wrappers). The best ABI the kernel offers is used: REFER (ABI 2)
 * so files can be renamed into inbox/rejected/, TRUNCATE (ABI 3), and from ABI 4 every TCP
 * bind/connect is denied as well, a second wall behind the seccomp socket-family rule.
 */
#include "sandbox/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cwt.h"

/* Debian 12's kernel headers stop at ABI 2; the later bits are stable kernel ABI. */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#define LL_ACCESS_NET_BIND_TCP    (1ULL << 0)
#define LL_ACCESS_NET_CONNECT_TCP (1ULL << 1)

#define LL_FS_ABI1                                                                                 \
    (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |   \
     LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_REMOVE_DIR |                                 \
     LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | \
     LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |   \
     LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM)

/* Rights that make sense on a regular file (the kernel refuses the others there). */
#define LL_FILE_RIGHTS                                                                             \
    (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |   \
     LANDLOCK_ACCESS_FS_TRUNCATE)

/* The kernel's ruleset attribute as of ABI 4; older kernels get the first 8 bytes only. */
struct ll_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
};

static int add_path(int ruleset, const char *path, uint64_t rights, uint64_t handled, char *err,
                    size_t errlen)
{
    struct landlock_path_beneath_attr rule;
    struct stat sb;
    int fd, rc, saved;

    fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0)
        return cwt_seterr(err, errlen, CWT_EIO, "landlock: cannot open %s: %s", path,
                          strerror(errno));
    if (fstat(fd, &sb) != 0) {
        saved = errno;
        close(fd);
        return cwt_seterr(err, errlen, CWT_EIO, "landlock: cannot stat %s: %s", path,
                          strerror(saved));
    }
    if (!S_ISDIR(sb.st_mode))
        rights &= LL_FILE_RIGHTS;
    memset(&rule, 0, sizeof(rule));
    rule.allowed_access = rights & handled;
    rule.parent_fd = fd;
    rc = (int)syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0);
    saved = errno;
    close(fd);
    if (rc != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "landlock: cannot add a rule for %s: %s", path,
                          strerror(saved));
    return 0;
}

int sandbox_landlock_apply(const struct sandbox_paths *paths, char *err, size_t errlen)
{
    struct ll_ruleset_attr attr;
    size_t attr_size = sizeof(attr.handled_access_fs);
    uint64_t read_only = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
    long abi;
    int ruleset, rc = 0;

    abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    if (abi < 0) {
        if (errno == ENOSYS || errno == EOPNOTSUPP)
            return cwt_seterr(err, errlen, CWT_EUNSUPPORTED,
                              "Landlock is not available in this kernel (%s)", strerror(errno));
        /* Fail closed: EPERM is a seccomp filter around cwtd (a container manager's, such as
         * systemd-nspawn's default list) that does not know Landlock; say what to allow. */
        if (errno == EPERM)
            return cwt_seterr(err, errlen, CWT_EPERM,
                              "landlock: a system-call filter outside cwtd blocks Landlock "
                              "(allow landlock_create_ruleset, landlock_add_rule and "
                              "landlock_restrict_self, e.g. systemd-nspawn "
                              "--system-call-filter=)");
        return cwt_seterr(err, errlen, CWT_EIO, "landlock: cannot query the ABI: %s",
                          strerror(errno));
    }
    memset(&attr, 0, sizeof(attr));
    attr.handled_access_fs = LL_FS_ABI1;
    if (abi >= 2)
        attr.handled_access_fs |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3)
        attr.handled_access_fs |= LANDLOCK_ACCESS_FS_TRUNCATE;
    if (abi >= 4) {
        /* Handled with no rule at all: every TCP bind and connect is denied. */
        attr.handled_access_net = LL_ACCESS_NET_BIND_TCP | LL_ACCESS_NET_CONNECT_TCP;
        attr_size = sizeof(attr);
    }
    ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0);
    if (ruleset < 0)
        return cwt_seterr(err, errlen, CWT_EIO, "landlock: cannot create a ruleset: %s",
                          strerror(errno));
    for (int i = 0; rc == 0 && i < SANDBOX_MAX_PATHS && paths->read_write[i] != NULL; i++)
        rc = add_path(ruleset, paths->read_write[i],
                      attr.handled_access_fs & ~(uint64_t)LANDLOCK_ACCESS_FS_EXECUTE,
                      attr.handled_access_fs, err, errlen);
    for (int i = 0; rc == 0 && i < SANDBOX_MAX_PATHS && paths->read_only[i] != NULL; i++)
        rc = add_path(ruleset, paths->read_only[i], read_only, attr.handled_access_fs, err, errlen);
    if (rc == 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        rc = cwt_seterr(err, errlen, CWT_EIO, "cannot set no_new_privs: %s", strerror(errno));
    if (rc == 0 && syscall(SYS_landlock_restrict_self, ruleset, 0) != 0)
        rc = cwt_seterr(err, errlen, CWT_EIO, "landlock: cannot restrict the process: %s",
                        strerror(errno));
    close(ruleset);
    return rc;
}

int sandbox_landlock_available(void)
{
    return syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) > 0;
}
