/*
 * control.c - the control socket: one request line {"cmd":"NAME"}, one reply line (JSON).
 * Peers are checked with SO_PEERCRED and SO_PEERGROUPS.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cwt.h"
#include "common/utf8.h"
#include "daemon/daemon.h"

int control_listen(const char *path, gid_t gid, int *fd_out, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    struct stat sb;
    int fd, saved;
    mode_t old_mask;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa.sun_path))
        return cwt_seterr(err, errlen, CWT_ETOOBIG,
                          "control socket path %s is longer than "
                          "%zu bytes",
                          path, sizeof(sa.sun_path) - 1);
    strcpy(sa.sun_path, path);
    if (lstat(path, &sb) == 0) {
        if (!S_ISSOCK(sb.st_mode))
            return cwt_seterr(err, errlen, CWT_EEXIST, "%s exists and is not a socket", path);
        /* Someone answering there means another cwtd serves this site. */
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return cwt_seterr(err, errlen, CWT_EIO, "socket: %s", strerror(errno));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            close(fd);
            return cwt_seterr(err, errlen, CWT_EEXIST, "another cwtd is listening on %s", path);
        }
        close(fd);
        if (unlink(path) != 0)
            return cwt_seterr(err, errlen, CWT_EIO, "cannot remove the stale socket %s: %s", path,
                              strerror(errno));
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return cwt_seterr(err, errlen, CWT_EIO, "socket: %s", strerror(errno));
    /* The socket file is born 0660 - no window in which others could connect. */
    old_mask = umask(0117);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        saved = errno;
        umask(old_mask);
        close(fd);
        return cwt_seterr(err, errlen, CWT_EIO, "cannot bind %s: %s", path, strerror(saved));
    }
    umask(old_mask);
    /* The group is changed only where bind() did not give it already: cwtd.service runs as
     * cwt with group cwt, and its system call filter has no chown then (@privileged). */
    if (gid != (gid_t)-1 && lstat(path, &sb) == 0 && S_ISSOCK(sb.st_mode) && sb.st_gid == gid)
        gid = (gid_t)-1;
    if ((gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) != 0) || chmod(path, 0660) != 0 ||
        listen(fd, 16) != 0) {
        saved = errno;
        close(fd);
        unlink(path);
        return cwt_seterr(err, errlen, CWT_EIO, "cannot set up %s: %s", path, strerror(saved));
    }
    *fd_out = fd;
    return 0;
}

/* Whether gid is among the peer's supplementary groups. The kernel fills the buffer only
 * when it is large enough (ERANGE otherwise, with the size it needs in *len): a peer in more
 * groups than the first buffer holds gets one retry with a buffer of the size asked for, and
 * only what the kernel wrote is read. A peer with 300 groups once made the check read an
 * uninitialised array (issue 18, L1). */
static int peer_in_group(int fd, gid_t gid)
{
    gid_t small[64], *groups = small;
    socklen_t glen = sizeof(small);
    int found = 0;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) != 0) {
        if (errno != ERANGE || glen == 0 || glen > CONTROL_GROUPS_MAX * sizeof(gid_t) ||
            glen % sizeof(gid_t) != 0)
            return 0;
        groups = malloc(glen);
        if (groups == NULL)
            return 0;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) != 0) {
            free(groups);
            return 0; /* the groups changed in between: refuse, the client may retry */
        }
    }
    for (size_t i = 0; i < glen / sizeof(gid_t); i++)
        if (groups[i] == gid)
            found = 1;
    if (groups != small)
        free(groups);
    return found;
}

int control_peer_allowed(int fd, gid_t gid, struct ucred *peer, char *err, size_t errlen)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);

    memset(peer, 0, sizeof(*peer));
    peer->pid = -1;
    peer->uid = (uid_t)-1;
    peer->gid = (gid_t)-1;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof(cred))
        return cwt_seterr(err, errlen, CWT_EIO, "cannot read peer credentials: %s",
                          strerror(errno));
    *peer = cred;
    if (cred.uid == 0 || cred.uid == geteuid())
        return 1;
    if (gid != (gid_t)-1 && (cred.gid == gid || peer_in_group(fd, gid)))
        return 1;
    cwt_seterr(err, errlen, CWT_EPERM, "peer uid %u gid %u (pid %d) is not allowed",
               (unsigned)cred.uid, (unsigned)cred.gid, (int)cred.pid);
    return 0;
}

/* Waits for fd to be ready for events within the time left until deadline (monotonic s). */
static int wait_fd(int fd, short events, double deadline)
{
    for (;;) {
        double left = deadline - cwt_monotonic();
        struct pollfd p = {.fd = fd, .events = events};
        int rc;

        if (left <= 0)
            return CWT_EIO;
        rc = poll(&p, 1, (int)(left * 1000) + 1);
        if (rc > 0)
            return 0;
        if (rc < 0 && errno != EINTR)
            return CWT_EIO;
    }
}

int control_read_request(int fd, int timeout_ms, char cmd[CONTROL_CMD_MAX + 1], char *err,
                         size_t errlen)
{
    char line[CONTROL_LINE_MAX + 1];
    size_t len = 0, n;
    double deadline = cwt_monotonic() + timeout_ms / 1000.0;
    const char *p;
    static const char prefix[] = "{\"cmd\":\"";

    for (;;) {
        ssize_t got;
        if (wait_fd(fd, POLLIN, deadline) != 0)
            return cwt_seterr(err, errlen, CWT_EFORMAT, "no complete request within %d ms",
                              timeout_ms);
        got = recv(fd, line + len, CONTROL_LINE_MAX - len, MSG_DONTWAIT);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0)
            return cwt_seterr(err, errlen, CWT_EFORMAT, "client closed before a full request");
        len += (size_t)got;
        if (memchr(line, '\n', len) != NULL)
            break;
        if (len >= CONTROL_LINE_MAX)
            return cwt_seterr(err, errlen, CWT_EFORMAT, "request longer than %d bytes",
                              CONTROL_LINE_MAX);
    }
    line[len] = '\0';
    /* Exactly one line: {"cmd":"NAME"} and a newline, nothing after it. */
    if (strlen(line) != len || strchr(line, '\n') != line + len - 1)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "request is not a single line");
    line[len - 1] = '\0';
    if (len >= 2 && line[len - 2] == '\r')
        line[len - 2] = '\0';
    if (strncmp(line, prefix, sizeof(prefix) - 1) != 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "request is not {\"cmd\":\"NAME\"}");
    p = line + sizeof(prefix) - 1;
    for (n = 0; p[n] >= 'a' && p[n] <= 'z'; n++)
        ;
    if (n == 0 || n > CONTROL_CMD_MAX || strcmp(p + n, "\"}") != 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "request is not {\"cmd\":\"NAME\"}");
    memcpy(cmd, p, n);
    cmd[n] = '\0';
    return 0;
}

int control_write_reply(int fd, int timeout_ms, const char *line)
{
    double deadline = cwt_monotonic() + timeout_ms / 1000.0;
    size_t len = strlen(line), done = 0;
    int nl = 0;

    while (!nl) {
        const char *p = done < len ? line + done : "\n";
        size_t left = done < len ? len - done : 1;
        ssize_t n;

        if (wait_fd(fd, POLLOUT, deadline) != 0)
            return CWT_EIO;
        n = send(fd, p, left, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return CWT_EIO;
        if (done < len)
            done += (size_t)n;
        else
            nl = 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ JSON text */

void jb_init(struct jbuf *j)
{
    memset(j, 0, sizeof(*j));
}

void jb_free(struct jbuf *j)
{
    if (j->depth > 0)
        json_decref(j->stack[0]);
    memset(j, 0, sizeof(*j));
}

char *jb_text(struct jbuf *j)
{
    if (j->bad || j->depth == 0)
        return NULL;
    return json_dumps(j->stack[0], JSON_COMPACT | JSON_PRESERVE_ORDER);
}

/* Adds v (taking the reference) to the innermost container, under key in an object. */
static void jb_add(struct jbuf *j, const char *key, json_t *v)
{
    json_t *top;
    int rc;

    if (v == NULL || j->bad || j->depth == 0) {
        j->bad = 1;
        json_decref(v);
        return;
    }
    top = j->stack[j->depth - 1];
    if (json_is_object(top))
        rc = key != NULL ? json_object_set_new(top, key, v) : (json_decref(v), -1);
    else
        rc = json_array_append_new(top, v);
    if (rc != 0)
        j->bad = 1;
}

void jb_str(struct jbuf *j, const char *key, const char *val)
{
    /* Invalid UTF-8 (a file name in the inbox may hold any bytes) becomes U+FFFD. */
    jb_add(j, key, cwt_json_str(val));
}

void jb_num(struct jbuf *j, const char *key, double val)
{
    jb_add(j, key, isfinite(val) ? json_real(val) : json_null());
}

void jb_int(struct jbuf *j, const char *key, int64_t val)
{
    jb_add(j, key, json_integer((json_int_t)val));
}

void jb_bool(struct jbuf *j, const char *key, int val)
{
    jb_add(j, key, json_boolean(val));
}

void jb_open(struct jbuf *j, const char *key, char bracket)
{
    json_t *c;

    if (j->bad)
        return;
    if (j->depth >= JB_DEPTH) {
        j->bad = 1;
        return;
    }
    c = bracket == '[' ? json_array() : json_object();
    if (c == NULL) {
        j->bad = 1;
        return;
    }
    if (j->depth > 0) {
        jb_add(j, key, json_incref(c));
        if (j->bad) {
            json_decref(c);
            return;
        }
        json_decref(c); /* the parent holds it; the stack borrows */
    }
    j->stack[j->depth++] = c;
}

void jb_close(struct jbuf *j, char bracket)
{
    (void)bracket;
    /* The root stays on the stack for jb_text. */
    if (!j->bad && j->depth > 1)
        j->depth--;
}
