/*
 * test_tmp.h - scratch folders for the C tests (tests/unit, tests/security): a fresh path
 * under $CWT_TEST_TMP (ctest sets it to the build's test-tmp/; /tmp when unset) and its
 * removal. Header-only; include as "tests/test_tmp.h".
 */
#ifndef CWT_TESTS_TEST_TMP_H
#define CWT_TESTS_TEST_TMP_H

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Writes "$CWT_TEST_TMP/NAME.PID.N" into out, N counting this process's calls, so that no
 * other test process and no earlier call of this one has the path. Nothing is created: the
 * caller (store_open, file_mkdir_p, mkdir) makes what it needs there. 0, or -1 when the path
 * does not fit in len. */
static inline int test_tmp_path(char *out, size_t len, const char *name)
{
    static unsigned calls; /* tests run one thread per process */
    const char *tmp = getenv("CWT_TEST_TMP");
    int n = snprintf(out, len, "%s/%s.%ld.%u", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp", name,
                     (long)getpid(), calls++);

    return n < 0 || (size_t)n >= len ? -1 : 0;
}

static inline int test_tmp_remove_one(const char *path, const struct stat *sb, int type,
                                      struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

/* Removes path and everything below it, as rm -rf does, without following links; a missing
 * path is no error. 0, or -1 with errno set. */
static inline int test_tmp_remove(const char *path)
{
    if (nftw(path, test_tmp_remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return errno == ENOENT ? 0 : -1;
    return 0;
}

#endif
