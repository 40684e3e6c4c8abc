/*
 * test_ledger.c - the replay ledger: records survive a reopen, a second record of the same id
 * is a replay, the last sequence rises only for received chain bundles (not for sent ones or
 * ensemble members), and listing keeps insertion order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/store.h"
#include "tests/test_tmp.h"

static void entry(struct ledger_entry *e, uint8_t id, uint64_t seq, uint8_t kind, int outgoing)
{
    memset(e, 0, sizeof(*e));
    memset(e->bundle_id, id, 16);
    memset(e->bundle_hash, id ^ 0xff, 32);
    snprintf(e->federation, sizeof(e->federation), "fed-1");
    snprintf(e->peer, sizeof(e->peer), "site-b");
    e->sequence = seq;
    e->kind = kind;
    e->outgoing = (uint8_t)outgoing;
    e->time = 1700000000 + seq;
}

static void test_ledger(void **state)
{
    char dir[512];
    struct store *st;
    struct ledger_entry e, got, *all;
    uint64_t last;
    uint8_t head[32];
    size_t n;

    (void)state;
    assert_int_equal(test_tmp_path(dir, sizeof(dir), "test_ledger"), 0);
    assert_int_equal(store_open(dir, STORE_CREATE, 1ull << 24, &st, NULL, 0), 0);
    assert_int_equal(ledger_last(st, "fed-1", &last, head), CWT_ENOENT);
    assert_int_equal(last, 0);

    entry(&e, 1, 0, 1, 1); /* sent: does not move the last sequence */
    assert_int_equal(ledger_record(st, &e), 0);
    assert_int_equal(ledger_last(st, "fed-1", &last, head), CWT_ENOENT);
    entry(&e, 2, 1, 1, 0);
    assert_int_equal(ledger_record(st, &e), 0);
    assert_int_equal(ledger_record(st, &e), CWT_EB_REPLAY);
    assert_int_equal(ledger_last(st, "fed-1", &last, head), 0);
    assert_int_equal(last, 1);
    assert_memory_equal(head, e.bundle_hash, 32);
    entry(&e, 3, 7, 3, 0); /* ensemble member: recorded, last unchanged */
    assert_int_equal(ledger_record(st, &e), 0);
    assert_int_equal(ledger_last(st, "fed-1", &last, NULL), 0);
    assert_int_equal(last, 1);
    entry(&e, 4, 4, 2, 0);
    assert_int_equal(ledger_record(st, &e), 0);
    entry(&e, 5, 3, 1, 0); /* lower sequence recorded (caller's rule), last stays 4 */
    assert_int_equal(ledger_record(st, &e), 0);
    store_close(st);

    assert_int_equal(store_open(dir, STORE_RDONLY, 1ull << 24, &st, NULL, 0), 0);
    assert_int_equal(ledger_last(st, "fed-1", &last, head), 0);
    assert_int_equal(last, 4);
    memset(got.bundle_id, 0, 16);
    entry(&e, 2, 1, 1, 0);
    assert_int_equal(ledger_lookup(st, e.bundle_id, &got), 0);
    assert_int_equal(got.sequence, 1);
    assert_string_equal(got.federation, "fed-1");
    assert_string_equal(got.peer, "site-b");
    assert_int_equal(got.time, 1700000001);
    memset(e.bundle_id, 9, 16);
    assert_int_equal(ledger_lookup(st, e.bundle_id, &got), CWT_ENOENT);
    assert_int_equal(ledger_list(st, &all, &n), 0);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(all[i].bundle_id[0], i + 1);
    assert_int_equal(all[0].outgoing, 1);
    free(all);
    assert_int_equal(ledger_last(st, "other", &last, head), CWT_ENOENT);
    store_close(st);
    assert_int_equal(test_tmp_remove(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_ledger)};

    return cmocka_run_group_tests(tests, NULL, NULL);
}
