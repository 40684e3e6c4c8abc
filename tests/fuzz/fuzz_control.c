/*
 * fuzz_control.c - libFuzzer harness for the control socket's request reader:
 * control_read_request on the input written into a stream socket pair whose writing end is
 * then shut down, so the reader sees the bytes followed by the client hanging up. A request
 * it accepts names a command of lower-case letters only.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cwt.h"
#include "daemon/daemon.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char cmd[CONTROL_CMD_MAX + 1], err[CWT_ERRLEN];
    int sv[2];

    /* The reader stops at CONTROL_LINE_MAX bytes; what lies beyond is never read. */
    if (size > 2 * CONTROL_LINE_MAX)
        size = 2 * CONTROL_LINE_MAX;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    if (size > 0 && send(sv[0], data, size, MSG_NOSIGNAL) != (ssize_t)size)
        abort();
    if (shutdown(sv[0], SHUT_WR) != 0)
        abort();
    if (control_read_request(sv[1], 1000, cmd, err, sizeof(err)) == 0) {
        size_t n = strlen(cmd);
        if (n == 0 || n > CONTROL_CMD_MAX || strspn(cmd, "abcdefghijklmnopqrstuvwxyz") != n)
            abort();
    }
    close(sv[0]);
    close(sv[1]);
    return 0;
}
