/*
 * fuzz_proto.c - libFuzzer harness for the monitor <-> trainer message decoder: proto_decode
 * on the input, which must either refuse it or accept exactly what proto_encode writes back
 * from the decoded message (decoding accepts no message that encoding would not produce);
 * then proto_recv on the same bytes sent as one packet over a SOCK_SEQPACKET socket pair.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cwt.h"
#include "daemon/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proto_msg msg;
    uint8_t again[PROTO_MAX_MSG];
    char err[CWT_ERRLEN];
    int sv[2], n;

    if (proto_decode(data, size, &msg, err, sizeof(err)) == 0) {
        n = proto_encode(&msg, again, sizeof(again));
        if (n < 0 || (size_t)n != size || memcmp(again, data, size) != 0)
            abort();
    }
    /* Larger packets than a message plus one byte only test the kernel. */
    if (size > PROTO_MAX_MSG + 1)
        return 0;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    if (send(sv[0], data, size, MSG_NOSIGNAL) != (ssize_t)size)
        abort();
    if (proto_recv(sv[1], &msg, err, sizeof(err)) == 0 && msg.fd >= 0)
        abort(); /* no descriptor was sent */
    close(sv[0]);
    close(sv[1]);
    return 0;
}
