/*
 * notify.c - systemd readiness notification (Type=notify) without libsystemd: one datagram
 * per message to the AF_UNIX socket named in $NOTIFY_SOCKET ('@' = abstract namespace).
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/daemon.h"

int notify_open(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa;
    size_t len;
    int fd;

    if (path == NULL || (path[0] != '/' && path[0] != '@'))
        return -1;
    len = strlen(path);
    if (len < 2 || len >= sizeof(sa.sun_path))
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, len);
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = '\0';
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa,
                (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

void notify_send(int fd, const char *msg)
{
    if (fd >= 0)
        (void)send(fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT);
}

double notify_watchdog_interval(void)
{
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    unsigned long long v;
    char *end;

    if (usec == NULL)
        return 0;
    if (pid != NULL) {
        errno = 0;
        v = strtoull(pid, &end, 10);
        if (errno != 0 || *end != '\0' || v != (unsigned long long)getpid())
            return 0;
    }
    errno = 0;
    v = strtoull(usec, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0)
        return 0;
    /* Half the period, as sd_watchdog_enabled(3) advises: a late tick is not a dead monitor. */
    return (double)v / 2e6;
}
