/*
 * sandbox.c - composes the mechanisms of sandbox.h: Landlock first (it needs open(O_PATH)
 * on the allowed paths), seccomp last. The rule for a kernel without Landlock is stated once,
 * at sandbox_apply() in sandbox.h.
 */
#include "sandbox/sandbox.h"

#include <stdio.h>
#include <string.h>

#include "common/cwt.h"
#include "common/log.h"

int sandbox_apply(enum sandbox_role role, const struct sandbox_paths *paths, int flags, char *err,
                  size_t errlen)
{
    static const struct sandbox_paths none;
    int rc;

    if (role == SANDBOX_KEYPROC && paths != NULL)
        return cwt_seterr(err, errlen, CWT_EINVAL,
                          "the key process's file access is no file at all, not a list");
    rc = sandbox_drop_capabilities(err, errlen);
    if (rc != 0)
        return rc;
    if (role == SANDBOX_DECODER) {
        /* No rule: every file access is denied. A kernel without Landlock (or a filter
         * around cwtctl that blocks it) leaves seccomp, which has no open, as the wall. */
        (void)sandbox_landlock_apply(&none, err, errlen);
        return sandbox_seccomp_apply(role, err, errlen);
    }
    if (role == SANDBOX_KEYPROC)
        paths = &none;
    if (paths != NULL) {
        rc = sandbox_landlock_apply(paths, err, errlen);
        if (rc == CWT_EUNSUPPORTED && (flags & SANDBOX_ALLOW_NO_LANDLOCK) == 0) {
            size_t used = strlen(err);
            if (used < errlen)
                snprintf(err + used, errlen - used,
                         "; cwtd refuses to run with unconfined file access (set "
                         "daemon.allow_no_landlock = true in the configuration to run anyway, "
                         "on the audit record)");
            return rc;
        }
        if (rc == CWT_EUNSUPPORTED)
            log_warnx("%s; file access is not confined (daemon.allow_no_landlock)", err);
        else if (rc != 0)
            return rc;
        else
            log_debug("landlock: confined to %s",
                      role == SANDBOX_KEYPROC ? "no file at all" : "the site's folders");
    }
    return sandbox_seccomp_apply(role, err, errlen);
}
