/*
 * test_log.c - the log lines: control characters from outside text are escaped (a newline in
 * a file name cannot forge a second line), and syslog priorities prefix each line exactly when
 * stderr is the stream $JOURNAL_STREAM names (as systemd sets it for a service).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

/* Runs the logging calls with stderr sent to a temporary file and returns what they wrote.
 * journal: 1 = $JOURNAL_STREAM names that file, 0 = unset, -1 = names another inode. */
static char *capture(int journal)
{
    static char out[4096];
    char path[] = "/tmp/cwt-test-log.XXXXXX";
    int fd = mkstemp(path), saved = dup(STDERR_FILENO);
    struct stat st;
    char js[64];
    size_t n;
    FILE *f;

    assert_true(fd >= 0 && saved >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    fflush(stderr);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    if (journal == 0) {
        unsetenv("JOURNAL_STREAM");
    } else {
        snprintf(js, sizeof(js), "%ju:%ju", (uintmax_t)st.st_dev,
                 (uintmax_t)st.st_ino + (journal < 0));
        setenv("JOURNAL_STREAM", js, 1);
    }
    log_init("t", 1);
    log_info("bundle %s accepted", "x\ncwtd: accepted forged.cwtb");
    log_warnx("held: %s", "tab\there esc\x1b[31m del\x7f");
    errno = ENOSPC;
    log_error("write %s", "outbox");
    log_errorx("refused");
    log_debug("detail");
    fflush(stderr);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    f = fopen(path, "r");
    assert_non_null(f);
    n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = 0;
    fclose(f);
    close(fd);
    unlink(path);
    unsetenv("JOURNAL_STREAM");
    return out;
}

static void test_controls_escaped(void **state)
{
    const char *want = "t: bundle x\\x0acwtd: accepted forged.cwtb accepted\n"
                       "t: warning: held: tab\\x09here esc\\x1b[31m del\\x7f\n"
                       "t: error: write outbox: No space left on device\n"
                       "t: error: refused\n"
                       "t: debug: detail\n";

    (void)state;
    assert_string_equal(capture(0), want);
}

static void test_journal_priorities(void **state)
{
    const char *want = "<6>t: bundle x\\x0acwtd: accepted forged.cwtb accepted\n"
                       "<4>t: warning: held: tab\\x09here esc\\x1b[31m del\\x7f\n"
                       "<3>t: error: write outbox: No space left on device\n"
                       "<3>t: error: refused\n"
                       "<7>t: debug: detail\n";

    (void)state;
    assert_string_equal(capture(1), want);
    /* Inherited from a service but pointing elsewhere: plain lines. */
    assert_true(strncmp(capture(-1), "t: bundle", 9) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_controls_escaped),
        cmocka_unit_test(test_journal_priorities),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
