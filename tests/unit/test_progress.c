/*
 * test_progress.c - the progress line's ETA and format: the time left is elapsed * left/done,
 * written mm:ss below an hour and h:mm:ss above, "--:--" before anything is done, "00:00" at
 * the end; the line is "<text>, ETA <eta>"; a line that is not live writes nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/progress.h"

static void eta_values(void **state)
{
    char b[32];

    (void)state;
    /* 10 of 100 in 6 s: 90 left at 10/6 per second = 54 s. */
    progress_eta(b, sizeof(b), 10, 100, 6.0);
    assert_string_equal(b, "00:54");
    /* 1 of 4 in 100 s: 300 s left. */
    progress_eta(b, sizeof(b), 1, 4, 100.0);
    assert_string_equal(b, "05:00");
    /* 1 of 100 in 60 s: 99 minutes = 1:39:00. */
    progress_eta(b, sizeof(b), 1, 100, 60.0);
    assert_string_equal(b, "1:39:00");
    progress_eta(b, sizeof(b), 0, 100, 5.0);
    assert_string_equal(b, "--:--");
    progress_eta(b, sizeof(b), 5, 100, 0.0);
    assert_string_equal(b, "--:--");
    progress_eta(b, sizeof(b), 100, 100, 5.0);
    assert_string_equal(b, "00:00");
    /* Capped: an estimate beyond 99 hours says 99:00:00. */
    progress_eta(b, sizeof(b), 1, UINT64_MAX, 1.0);
    assert_string_equal(b, "99:00:00");
}

static void line_format(void **state)
{
    char b[128];

    (void)state;
    progress_format(b, sizeof(b), "run 3/12 cwt+ x1, step 40/100", 240, 1200, 24.0);
    assert_string_equal(b, "run 3/12 cwt+ x1, step 40/100, ETA 01:36");
    progress_format(b, sizeof(b), "images 5/10", 5, 10, 1.0);
    assert_string_equal(b, "images 5/10, ETA 00:01");
}

/* Not live (stderr is not a terminal): draw and clear write nothing. */
static void quiet_when_not_live(void **state)
{
    struct progress p;
    char buf[256] = {0};
    FILE *f;
    int saved;

    (void)state;
    fflush(stderr);
    f = tmpfile();
    assert_non_null(f);
    saved = dup(fileno(stderr));
    assert_true(saved >= 0);
    assert_true(dup2(fileno(f), fileno(stderr)) >= 0);
    progress_start(&p, 0);
    progress_draw(&p, 1, 1, 2, "images %d/%d", 1, 2);
    progress_clear(&p);
    fflush(stderr);
    assert_true(dup2(saved, fileno(stderr)) >= 0);
    close(saved);
    rewind(f);
    assert_int_equal(fread(buf, 1, sizeof(buf) - 1, f), 0);
    fclose(f);
    assert_int_equal(p.drawn, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(eta_values),
        cmocka_unit_test(line_format),
        cmocka_unit_test(quiet_when_not_live),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
