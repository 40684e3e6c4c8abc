/*
 * sandbox_caps.c - dropping every Linux capability (raw capget/capset: glibc has no wrapper
 * and libcap would be a dependency for twenty lines).
 *
 * cwtd normally runs as an unprivileged user and holds no capability at all; started as root
 * with daemon.allow_root, it would hold all of them. Either way a confined process keeps none:
 * not in its effective, permitted or inheritable sets, nor its ambient set, nor (where it may
 * still change it, with CAP_SETPCAP) its bounding set.
 */
#include "sandbox/sandbox.h"

#include <errno.h>
#include <linux/capability.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cwt.h"

int sandbox_drop_capabilities(char *err, size_t errlen)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    int setpcap;

    memset(data, 0, sizeof(data));
    if (syscall(SYS_capget, &hdr, data) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "capget: %s", strerror(errno));
    /* Nothing held (the packaged service's case): nothing to drop, and nothing to call.
     * The ambient set is a subset of permitted and inheritable, so it is empty too; capset
     * itself may be filtered (cwtd.service blocks @privileged, which has capset). */
    {
        int held = 0;
        for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
            held |= data[i].effective != 0 || data[i].permitted != 0 || data[i].inheritable != 0;
        if (!held)
            return 0;
    }
    setpcap = (data[CAP_TO_INDEX(CAP_SETPCAP)].effective & CAP_TO_MASK(CAP_SETPCAP)) != 0;
    /* The bounding set first, while CAP_SETPCAP is still held; without it (an unprivileged
     * user) the bounding set cannot change and matters only across exec, which seccomp and
     * no_new_privs rule out. Numbers past the kernel's last capability fail with EINVAL. */
    for (int cap = 0; setpcap && cap <= 63; cap++) {
        if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0)
            break;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
            return cwt_seterr(err, errlen, CWT_EIO, "cannot drop capability %d: %s", cap,
                              strerror(errno));
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        return cwt_seterr(err, errlen, CWT_EIO, "cannot clear ambient capabilities: %s",
                          strerror(errno));
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capset, &hdr, data) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "capset: %s", strerror(errno));
    /* Check, rather than trust, that nothing is left. */
    if (syscall(SYS_capget, &hdr, data) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "capget: %s", strerror(errno));
    for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
        if (data[i].effective != 0 || data[i].permitted != 0 || data[i].inheritable != 0)
            return cwt_seterr(err, errlen, CWT_EIO, "capabilities are still held after capset");
    return 0;
}
