/*
 * test_proto.c - monitor <-> trainer framing: every type round-trips; truncated, oversized,
 * garbage and out-of-range messages are refused; descriptors travel only where allowed;
 * weights memfds must be sealed.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cwt.h"
#include "daemon/proto.h"

static struct proto_msg sample_job(void)
{
    struct proto_msg m;

    memset(&m, 0, sizeof(m));
    m.type = PROTO_JOB;
    m.job = 42;
    m.fd = -1;
    m.u.job.kind = PROTO_JOB_VISIT;
    m.u.job.cycle = 3;
    m.u.job.hop = 2;
    m.u.job.resume = 1;
    m.u.job.has_weights = 1;
    m.u.job.patience = 4;
    m.u.job.loader_seed = 0x0123456789abcdefull;
    m.u.job.sched_total = 7.5;
    m.u.job.epochs_before = 7.5;
    m.u.job.has_before = 1;
    m.u.job.steps_before = 0x123456789ull;
    strcpy(m.u.job.ckpt, "cwtd.visit.3.2");
    m.u.job.history =
        (struct cycle_history){.cur = 3, .n = 2, .bestc = 2, .sum = 1.6, .best = 0.81};
    return m;
}

static void test_every_type_round_trips(void **state)
{
    uint8_t buf[PROTO_MAX_MSG];
    struct proto_msg in[7], out;
    char err[CWT_ERRLEN];

    (void)state;
    memset(in, 0, sizeof(in));
    in[0].type = PROTO_HELLO;
    in[0].u.hello.pid = 1234;
    strcpy(in[0].u.hello.device, "llvmpipe (LLVM 15.0.6, 256 bits)");
    in[1] = sample_job();
    in[2].type = PROTO_PROGRESS;
    in[2].u.progress = (struct proto_progress){
        .step = 10, .steps = 100, .epoch = 1, .loss = 0.5, .images_per_s = 812.25};
    in[3].type = PROTO_RESULT;
    in[3].u.result = (struct proto_result){.status = CWT_ENUMERIC,
                                           .steps = 9,
                                           .steps_total = 0x987654321ull,
                                           .epochs = 1.5,
                                           .val_accuracy = NAN,
                                           .val_auc = 0.75};
    strcpy(in[3].u.result.message, "loss became NaN at step 9");
    in[4].type = PROTO_PAUSE;
    in[5].type = PROTO_RESUME;
    in[6].type = PROTO_DIED;
    in[6].u.died = (struct proto_died){.wait_status = 9, .pid = 77};
    for (int i = 0; i < 7; i++) {
        int n = proto_encode(&in[i], buf, sizeof(buf));
        assert_true(n >= PROTO_HDR_LEN);
        assert_int_equal(proto_decode(buf, (size_t)n, &out, err, sizeof(err)), 0);
        assert_int_equal(out.type, in[i].type);
        assert_int_equal(out.fd, -1);
    }
    /* A second look at the richest two. */
    int n = proto_encode(&in[1], buf, sizeof(buf));
    assert_int_equal(proto_decode(buf, (size_t)n, &out, err, sizeof(err)), 0);
    assert_int_equal(out.job, 42);
    assert_int_equal(out.u.job.loader_seed, in[1].u.job.loader_seed);
    assert_true(out.u.job.sched_total == 7.5);
    assert_string_equal(out.u.job.ckpt, "cwtd.visit.3.2");
    assert_int_equal(out.u.job.has_before, 1);
    assert_true(out.u.job.steps_before == 0x123456789ull);
    assert_memory_equal(&out.u.job.history, &in[1].u.job.history, sizeof(out.u.job.history));
    n = proto_encode(&in[3], buf, sizeof(buf));
    assert_int_equal(proto_decode(buf, (size_t)n, &out, err, sizeof(err)), 0);
    assert_int_equal(out.u.result.status, CWT_ENUMERIC);
    assert_true(out.u.result.steps_total == 0x987654321ull);
    assert_true(isnan(out.u.result.val_accuracy));
    assert_string_equal(out.u.result.message, "loss became NaN at step 9");
}

static void test_truncated_and_oversized_are_refused(void **state)
{
    uint8_t buf[PROTO_MAX_MSG + 64];
    struct proto_msg m = sample_job(), out;
    char err[CWT_ERRLEN];
    int n;

    (void)state;
    n = proto_encode(&m, buf, sizeof(buf));
    assert_true(n > 0);
    for (int cut = 0; cut < n; cut++)
        assert_int_equal(proto_decode(buf, (size_t)cut, &out, err, sizeof(err)), CWT_EFORMAT);
    /* One byte too many. */
    buf[n] = 0;
    assert_int_equal(proto_decode(buf, (size_t)n + 1, &out, err, sizeof(err)), CWT_EFORMAT);
    /* Larger than any message. */
    memset(buf, 0, sizeof(buf));
    assert_int_equal(proto_decode(buf, sizeof(buf), &out, err, sizeof(err)), CWT_EFORMAT);
    assert_non_null(strstr(err, "exceeds"));
    /* An encoder buffer that is too small. */
    assert_int_equal(proto_encode(&m, buf, 20), CWT_EINVAL);
}

static void test_bad_header_fields_are_refused(void **state)
{
    uint8_t buf[PROTO_MAX_MSG], copy[PROTO_MAX_MSG];
    struct proto_msg m = sample_job(), out;
    char err[CWT_ERRLEN];
    int n;

    (void)state;
    n = proto_encode(&m, buf, sizeof(buf));
    memcpy(copy, buf, (size_t)n);
    copy[0] ^= 1; /* magic */
    assert_int_equal(proto_decode(copy, (size_t)n, &out, err, sizeof(err)), CWT_EFORMAT);
    memcpy(copy, buf, (size_t)n);
    copy[4] = 2; /* version */
    assert_int_equal(proto_decode(copy, (size_t)n, &out, err, sizeof(err)), CWT_EFORMAT);
    assert_non_null(strstr(err, "version"));
    memcpy(copy, buf, (size_t)n);
    copy[6] = 99; /* type */
    assert_int_equal(proto_decode(copy, (size_t)n, &out, err, sizeof(err)), CWT_EFORMAT);
    memcpy(copy, buf, (size_t)n);
    copy[8] ^= 4; /* payload length */
    assert_int_equal(proto_decode(copy, (size_t)n, &out, err, sizeof(err)), CWT_EFORMAT);
}

static void test_bad_payload_fields_are_refused(void **state)
{
    uint8_t buf[PROTO_MAX_MSG];
    struct proto_msg m, out;
    char err[CWT_ERRLEN];
    double inf = INFINITY;
    int n;

    (void)state;
    /* Unknown job kind: the encoder refuses, and so does the decoder for forged bytes. */
    m = sample_job();
    m.u.job.kind = 9;
    assert_int_equal(proto_encode(&m, buf, sizeof(buf)), CWT_EINVAL);
    m = sample_job();
    n = proto_encode(&m, buf, sizeof(buf));
    buf[PROTO_HDR_LEN] = 9;
    assert_int_equal(proto_decode(buf, (size_t)n, &out, err, sizeof(err)), CWT_EFORMAT);
    /* A checkpoint name with a slash. */
    m = sample_job();
    strcpy(m.u.job.ckpt, "../x");
    assert_int_equal(proto_encode(&m, buf, sizeof(buf)), CWT_EINVAL);
    /* An infinite schedule offset. */
    m = sample_job();
    n = proto_encode(&m, buf, sizeof(buf));
    memcpy(buf + PROTO_HDR_LEN + 32, &inf, sizeof(inf));
    assert_int_equal(proto_decode(buf, (size_t)n, &out, err, sizeof(err)), CWT_EFORMAT);
    /* Text without its NUL (a result's message is its last field), and text with a control
     * character. */
    memset(&m, 0, sizeof(m));
    m.type = PROTO_RESULT;
    m.fd = -1;
    strcpy(m.u.result.message, "fine");
    n = proto_encode(&m, buf, sizeof(buf));
    assert_true(n > PROTO_TEXT_MAX + 1);
    memset(buf + n - (PROTO_TEXT_MAX + 1), 'a', PROTO_TEXT_MAX + 1);
    assert_int_equal(proto_decode(buf, (size_t)n, &out, err, sizeof(err)), CWT_EFORMAT);
    m = sample_job();
    m.type = PROTO_RESULT;
    memset(&m.u.result, 0, sizeof(m.u.result));
    strcpy(m.u.result.message, "a\nb");
    assert_int_equal(proto_encode(&m, buf, sizeof(buf)), CWT_EINVAL); /* never written */
    m = sample_job();
    m.u.job.history.sum = 3; /* more than n accuracies can add up to */
    assert_int_equal(proto_encode(&m, buf, sizeof(buf)), CWT_EINVAL);
    /* A positive status in a result. */
    memset(&m, 0, sizeof(m));
    m.type = PROTO_RESULT;
    m.u.result.status = 5;
    n = proto_encode(&m, buf, sizeof(buf));
    assert_int_equal(proto_decode(buf, (size_t)n, &out, err, sizeof(err)), CWT_EFORMAT);
}

static void test_garbage_never_decodes(void **state)
{
    uint8_t buf[PROTO_MAX_MSG];
    struct proto_msg out;
    char err[CWT_ERRLEN];
    unsigned seed = (unsigned)getpid();

    (void)state;
    srand(seed);
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = (size_t)rand() % sizeof(buf);
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)rand();
        if (proto_decode(buf, len, &out, err, sizeof(err)) == 0)
            fail_msg("random message decoded (seed %u, iteration %d)", seed, iter);
    }
}

static void test_socket_round_trip_with_weights(void **state)
{
    int sp[2], fd;
    struct proto_msg m = sample_job(), out;
    char err[CWT_ERRLEN];
    const uint8_t weights[] = "not really safetensors, but bytes";
    uint8_t *got;
    size_t got_len;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), 0);
    assert_int_equal(proto_weights_to_fd(weights, sizeof(weights), &fd), 0);
    m.fd = fd;
    assert_int_equal(proto_send(sp[0], &m), 0);
    close(fd);
    assert_int_equal(proto_recv(sp[1], &out, err, sizeof(err)), 0);
    assert_int_equal(out.type, PROTO_JOB);
    assert_true(out.fd >= 0);
    assert_int_equal(proto_weights_from_fd(out.fd, 1024, &got, &got_len, err, sizeof(err)), 0);
    assert_int_equal(got_len, sizeof(weights));
    assert_memory_equal(got, weights, sizeof(weights));
    free(got);
    /* Too large for the receiver's bound. */
    assert_int_equal(proto_weights_from_fd(out.fd, 4, &got, &got_len, err, sizeof(err)),
                     CWT_ETOOBIG);
    close(out.fd);

    /* The peer goes away. */
    close(sp[0]);
    assert_int_equal(proto_recv(sp[1], &out, err, sizeof(err)), CWT_ENOENT);
    close(sp[1]);
}

static void test_descriptor_on_wrong_type_is_refused(void **state)
{
    int sp[2], fd;
    struct proto_msg m, out;
    char err[CWT_ERRLEN];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), 0);
    memset(&m, 0, sizeof(m));
    m.type = PROTO_PAUSE;
    assert_int_equal(proto_weights_to_fd((const uint8_t *)"x", 1, &fd), 0);
    m.fd = fd;
    assert_int_equal(proto_send(sp[0], &m), 0);
    close(fd);
    assert_int_equal(proto_recv(sp[1], &out, err, sizeof(err)), CWT_EFORMAT);
    assert_non_null(strstr(err, "descriptor"));
    close(sp[0]);
    close(sp[1]);
}

static void test_raw_oversized_datagram_is_refused(void **state)
{
    int sp[2];
    uint8_t big[PROTO_MAX_MSG + 100];
    struct proto_msg m = sample_job(), out;
    char err[CWT_ERRLEN];
    int n;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), 0);
    memset(big, 0, sizeof(big));
    n = proto_encode(&m, big, sizeof(big));
    assert_true(n > 0);
    assert_int_equal(send(sp[0], big, sizeof(big), 0), (ssize_t)sizeof(big));
    assert_int_equal(proto_recv(sp[1], &out, err, sizeof(err)), CWT_EFORMAT);
    assert_non_null(strstr(err, "truncated"));
    /* The next, well-formed message still arrives: framing is per datagram. */
    m.fd = -1;
    assert_int_equal(proto_send(sp[0], &m), 0);
    assert_int_equal(proto_recv(sp[1], &out, err, sizeof(err)), 0);
    assert_int_equal(out.job, 42);
    close(sp[0]);
    close(sp[1]);
}

static void test_unsealed_memfd_is_refused(void **state)
{
    int fd = memfd_create("x", MFD_CLOEXEC);
    uint8_t *got;
    size_t len;
    char err[CWT_ERRLEN];

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "abc", 3), 3);
    assert_int_equal(proto_weights_from_fd(fd, 100, &got, &len, err, sizeof(err)), CWT_EFORMAT);
    assert_non_null(strstr(err, "sealed"));
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_type_round_trips),
        cmocka_unit_test(test_truncated_and_oversized_are_refused),
        cmocka_unit_test(test_bad_header_fields_are_refused),
        cmocka_unit_test(test_bad_payload_fields_are_refused),
        cmocka_unit_test(test_garbage_never_decodes),
        cmocka_unit_test(test_socket_round_trip_with_weights),
        cmocka_unit_test(test_descriptor_on_wrong_type_is_refused),
        cmocka_unit_test(test_raw_oversized_datagram_is_refused),
        cmocka_unit_test(test_unsealed_memfd_is_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
