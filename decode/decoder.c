/*
 * decoder.c - the sandboxed decoder child and the parent's side of it (decoder.h).
 *
 * Protocol on a SOCK_STREAM socketpair: the parent sends a struct dec_request with the image
 * descriptor attached (SCM_RIGHTS); the child answers a struct dec_reply, then, on success,
 * exactly h*w*c bytes of pixels. The parent trusts nothing in a reply: the code must be a
 * decode error, the length exactly what it asked for, the message is cut at its NUL and
 * control characters are replaced. A child that dies, answers out of protocol or takes longer
 * than DECODER_TIMEOUT_S (wall clock in the parent, CPU time in the child) is killed and
 * reaped; the next file starts a new one.
 */
#include "decode/decoder.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cwt.h"
#include "decode/decode_internal.h"
#include "sandbox/sandbox.h"

#define DEC_MAGIC 0x63776431u /* "cwd1" */
#define CHILD_FD  3           /* the child's end of the socketpair */

struct dec_request {
    uint32_t magic;
    uint32_t h, w, c;
    uint64_t len;       /* bytes of the image from offset 0; 0: the whole file */
    uint32_t timeout_s; /* CPU seconds for this file, 1..DECODER_TIMEOUT_S */
    uint32_t pad;
};

struct dec_reply {
    uint32_t magic;
    int32_t rc;
    uint32_t len; /* pixel bytes that follow */
    char msg[CWT_ERRLEN];
};

struct decoder {
    unsigned timeout_s; /* per-file limit, DECODER_TIMEOUT_S unless a test lowered it */
    pid_t pid;          /* the child, or -1 */
    int sock;           /* the parent's end, or -1 */
    int stage;          /* memfd for decoder_decode_memory(), reused: its pages stay allocated */
    size_t staged;      /* bytes the memfd holds (its size never shrinks) */
};

/* Set by decoder_test_limits() only (tests), read when a decoder is opened and, through
 * fork, by its children. A child executed anew starts from these defaults. */
static unsigned test_timeout_s = DECODER_TIMEOUT_S;
static const char *test_spin_marker;

void decoder_test_limits(unsigned timeout_s, const char *spin_marker)
{
    test_timeout_s =
        timeout_s == 0 || timeout_s > DECODER_TIMEOUT_S ? DECODER_TIMEOUT_S : timeout_s;
    test_spin_marker = spin_marker;
}

/* --- the child --- */

/* Writes all of buf; 0 or -1. */
static int write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads the whole regular file fd (at most DECODE_MAX_FILE bytes) into a malloc'd buffer. */
static int read_fd(int fd, uint64_t want, uint8_t **out, size_t *outlen, char *err, size_t errlen)
{
    struct stat sb;
    uint8_t *buf;
    size_t len, done = 0;

    if (fstat(fd, &sb) != 0)
        return cwt_seterr(err, errlen, CWT_EDECODE, "cannot stat the image: %s", strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return cwt_seterr(err, errlen, CWT_EFORMAT, "not a regular file");
    if ((unsigned long long)sb.st_size > DECODE_MAX_FILE)
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "file is larger than %u bytes",
                          DECODE_MAX_FILE);
    len = (size_t)sb.st_size;
    if (want > 0 && want < len)
        len = (size_t)want; /* a reused staging memfd is longer than this image */
    buf = malloc(len > 0 ? len : 1);
    if (buf == NULL)
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "file of %zu bytes does not fit in memory",
                          len);
    while (done < len) {
        ssize_t n = pread(fd, buf + done, len - done, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* shrunk underneath: decode what is there */
        done += (size_t)n;
    }
    *out = buf;
    *outlen = done;
    return 0;
}

/* Decodes one image into pixels (h*w*c bytes, caller-owned). */
static int child_decode(int fd, const struct dec_request *rq, uint8_t *pixels, char *err,
                        size_t errlen)
{
    struct decoded_image img;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc;

    rc = read_fd(fd, rq->len, &buf, &len, err, errlen);
    if (rc != 0)
        return rc;
    /* decoder_test_limits(): an image that stands for one that makes a decoder spin. */
    if (test_spin_marker != NULL && len >= strlen(test_spin_marker) &&
        memcmp(buf, test_spin_marker, strlen(test_spin_marker)) == 0) {
        volatile unsigned long long spins = 0;
        for (;;)
            spins++;
    }
    rc = decode_memory_fd(buf, len, fd, &img, err, errlen);
    free(buf);
    if (rc != 0)
        return rc;
    rc = image_prepare(&img, rq->h, rq->w, rq->c, pixels);
    decode_free(&img);
    if (rc != 0)
        return cwt_seterr(err, errlen, rc, "cannot convert the image: %s", cwt_strerror(rc));
    return 0;
}

/* Serves requests until the parent closes its end. Never returns. */
static void __attribute__((noreturn)) child_serve(int sock)
{
    for (;;) {
        struct dec_request rq;
        struct dec_reply rp;
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } ctl;
        struct iovec iov = {&rq, sizeof(rq)};
        struct msghdr mh = {0};
        struct cmsghdr *cm;
        uint8_t *pixels = NULL;
        size_t want = 0;
        ssize_t n;
        int fd = -1;

        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = ctl.buf;
        mh.msg_controllen = sizeof(ctl.buf);
        do
            n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
        while (n < 0 && errno == EINTR);
        if (n == 0)
            _exit(0);
        if (n != (ssize_t)sizeof(rq) || rq.magic != DEC_MAGIC)
            _exit(3);
        for (cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm))
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
                cm->cmsg_len == CMSG_LEN(sizeof(int)))
                memcpy(&fd, CMSG_DATA(cm), sizeof(int));
        memset(&rp, 0, sizeof(rp));
        rp.magic = DEC_MAGIC;
        if (fd < 0 || (mh.msg_flags & MSG_CTRUNC) != 0 || rq.h == 0 || rq.w == 0 ||
            (rq.c != 1 && rq.c != 3) || cwt_mul_size(rq.h, rq.w, &want) != 0 ||
            want > DECODE_MAX_PIXELS) {
            rp.rc = cwt_seterr(rp.msg, sizeof(rp.msg), CWT_EINVAL, "bad decode request");
        } else if (sandbox_rlimit_cpu(rq.timeout_s >= 1 && rq.timeout_s <= DECODER_TIMEOUT_S
                                          ? rq.timeout_s
                                          : DECODER_TIMEOUT_S,
                                      rp.msg, sizeof(rp.msg)) != 0) {
            rp.rc = CWT_EIO;
        } else if ((pixels = malloc(want * rq.c)) == NULL) {
            rp.rc = cwt_seterr(rp.msg, sizeof(rp.msg), CWT_ETOOBIG, "out of memory");
        } else {
            rp.rc = child_decode(fd, &rq, pixels, rp.msg, sizeof(rp.msg));
            if (rp.rc == 0)
                rp.len = (uint32_t)(want * rq.c);
        }
        if (fd >= 0)
            close(fd);
        if (write_all(sock, &rp, sizeof(rp)) != 0 ||
            (rp.len > 0 && write_all(sock, pixels, rp.len) != 0))
            _exit(0);
        free(pixels);
    }
}

/* Bytes of address space mapped now (the parent's store map, say, which a fork inherits), or
 * 0 when /proc cannot tell. */
static unsigned long long mapped_now(void)
{
    unsigned long long pages = 0;
    FILE *f = fopen("/proc/self/statm", "re");

    if (f == NULL)
        return 0;
    if (fscanf(f, "%llu", &pages) != 1)
        pages = 0;
    fclose(f);
    return pages * (unsigned long long)sysconf(_SC_PAGESIZE);
}

int decoder_confine(char *err, size_t errlen)
{
    struct sandbox_limits lim = {
        .stack = DECODER_MAX_STACK,
        .open_files = 16,
    };
    unsigned long long mapped = mapped_now();
    int rc;

    /* DECODER_MAX_AS on top of what the parent had mapped; without /proc, no limit rather
     * than one that the inherited mappings alone might exceed. */
    lim.address_space = mapped > 0 ? mapped + DECODER_MAX_AS : 0;
    /* Buffers of a few hundred KiB come and go with every image: from the heap and kept
     * there, they are faulted in once rather than mapped and zeroed per file. */
    (void)mallopt(M_MMAP_THRESHOLD, 64 << 20);
    (void)mallopt(M_TRIM_THRESHOLD, 256 << 20);
    rc = decode_dicom_warm_up(err, errlen);
    if (rc == 0)
        rc = sandbox_rlimit_apply(&lim, err, errlen);
    if (rc == 0)
        rc = sandbox_apply(SANDBOX_DECODER, NULL, 0, err, errlen);
    return rc;
}

/* Set once by decoder_main() at the top of main(), read-only afterwards: children are then
 * started by executing the program anew rather than as a copy of the parent. */
static int exec_self;

/* Confines the child and serves on fd. Never returns. */
static void __attribute__((noreturn)) child_run(int fd)
{
    char err[CWT_ERRLEN];

    signal(SIGPIPE, SIG_DFL);
    if (decoder_confine(err, sizeof(err)) != 0) {
        fprintf(stderr, "cwtctl: decoder: %s\n", err);
        _exit(5);
    }
    child_serve(fd);
}

/* In the new child: keep the socket (as CHILD_FD), stderr (sanitizer reports) and nothing
 * else the parent held (its store, its terminal on stdin and stdout); then, in a program that
 * called decoder_main(), execute it anew, so that the decoder starts with an address space of
 * its own instead of a copy of the parent's (its store map, its GPU driver). */
static void __attribute__((noreturn)) child_main(int sock)
{
    int high, null;

    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        _exit(4);
    /* Out of the way of 0-3 first: a parent started with stdin closed has its socket there. */
    high = fcntl(sock, F_DUPFD_CLOEXEC, CHILD_FD + 1);
    null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (high < 0 || null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(null, STDOUT_FILENO) < 0 ||
        dup2(high, CHILD_FD) < 0)
        _exit(4);
    if (close_range(CHILD_FD + 1, ~0u, 0) != 0)
        _exit(4);
    if (exec_self) {
        /* dup2 left CHILD_FD without FD_CLOEXEC: it is the one descriptor that survives.
         * PR_SET_PDEATHSIG survives too. */
        char *const argv[] = {"cwtctl-decoder", DECODER_CHILD_ARG, NULL};
        execv("/proc/self/exe", argv);
        /* No /proc, or the program was replaced on disk: go on in this copy. */
    }
    child_run(CHILD_FD);
}

void decoder_main(int argc, char **argv)
{
    struct stat sb;

    if (argc == 2 && strcmp(argv[1], DECODER_CHILD_ARG) == 0) {
        if (fstat(CHILD_FD, &sb) != 0 || !S_ISSOCK(sb.st_mode)) {
            fprintf(stderr, "%s: %s is for cwtctl's own use\n", argv[0], DECODER_CHILD_ARG);
            _exit(2);
        }
        child_run(CHILD_FD);
    }
    exec_self = 1;
}

/* --- the parent --- */

int decoder_open(struct decoder **out)
{
    struct decoder *d = calloc(1, sizeof(*d));

    if (d == NULL)
        return CWT_ENOMEM;
    d->timeout_s = test_timeout_s;
    d->pid = -1;
    d->sock = -1;
    d->stage = -1;
    *out = d;
    return 0;
}

static int spawn(struct decoder *d, char *err, size_t errlen)
{
    int sv[2];
    pid_t pid;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "cannot start the decoder: socketpair: %s",
                          strerror(errno));
    fflush(NULL); /* nothing buffered is written twice */
    pid = fork();
    if (pid < 0) {
        int saved = errno;
        close(sv[0]);
        close(sv[1]);
        return cwt_seterr(err, errlen, CWT_EIO, "cannot start the decoder: fork: %s",
                          strerror(saved));
    }
    if (pid == 0) {
        close(sv[0]);
        child_main(sv[1]);
    }
    close(sv[1]);
    d->pid = pid;
    d->sock = sv[0];
    return 0;
}

int decoder_start(struct decoder *d, char *err, size_t errlen)
{
    if (d == NULL)
        return cwt_seterr(err, errlen, CWT_EINVAL, "no decoder");
    return d->pid > 0 ? 0 : spawn(d, err, errlen);
}

/* Ends the child (killed unless it exited already) and describes how it ended; *xcpu (when
 * not NULL) is set when its CPU-time limit ended it (SIGXCPU: only the soft limit is set,
 * see sandbox_rlimit_cpu). */
static void reap(struct decoder *d, int kill_it, char *how, size_t howlen, int *xcpu)
{
    int status = 0;
    pid_t got;

    if (d->sock >= 0)
        close(d->sock);
    d->sock = -1;
    if (d->pid <= 0)
        return;
    if (kill_it)
        kill(d->pid, SIGKILL);
    do
        got = waitpid(d->pid, &status, 0);
    while (got < 0 && errno == EINTR);
    d->pid = -1;
    if (xcpu != NULL)
        *xcpu = got > 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGXCPU;
    if (how == NULL)
        return;
    if (got < 0)
        snprintf(how, howlen, "lost");
    else if (WIFSIGNALED(status))
        snprintf(how, howlen, "signal %d", WTERMSIG(status));
    else
        snprintf(how, howlen, "exit status %d", WEXITSTATUS(status));
}

/* Reads exactly len bytes before the deadline; 0, or -1 (EOF or error) or -2 (timeout). */
static int read_until(int fd, void *buf, size_t len, double deadline)
{
    uint8_t *p = buf;

    while (len > 0) {
        struct pollfd pfd = {fd, POLLIN, 0};
        double left = deadline - cwt_monotonic();
        ssize_t n;
        int r;

        if (left <= 0)
            return -2;
        r = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            continue;
        n = read(fd, p, len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int send_request(int sock, int fd, const struct dec_request *rq)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {(void *)rq, sizeof(*rq)};
    struct msghdr mh = {0};
    struct cmsghdr *cm;
    ssize_t n;

    memset(&ctl, 0, sizeof(ctl));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl.buf;
    mh.msg_controllen = sizeof(ctl.buf);
    cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    do
        n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof(*rq) ? 0 : -1;
}

/* A decode error code from the child, or CWT_EDECODE for anything else it might claim. */
static int reply_code(int32_t rc)
{
    switch (rc) {
    case CWT_EFORMAT:
    case CWT_ETOOBIG:
    case CWT_EUNSUPPORTED:
    case CWT_EDECODE:
        return rc;
    case CWT_ENOMEM:
        return CWT_ETOOBIG; /* the child's memory limit, not the parent's */
    default:
        return CWT_EDECODE;
    }
}

/* decoder_decode_fd() of the first len bytes of fd (0: all of it). */
static int decode_fd_len(struct decoder *d, int fd, uint64_t len, const char *name, uint32_t h,
                         uint32_t w, uint32_t c, uint8_t *out, char *err, size_t errlen)
{
    struct dec_request rq = {DEC_MAGIC, h, w, c, len, 0, 0};
    struct dec_reply rp;
    char how[64];
    size_t want;
    double deadline;
    int rc, xcpu = 0;

    if (d == NULL || fd < 0 || out == NULL || h == 0 || w == 0 || (c != 1 && c != 3) ||
        cwt_mul_size(h, w, &want) != 0 || want > DECODE_MAX_PIXELS)
        return cwt_seterr(err, errlen, CWT_EINVAL, "bad decode request for %s", name);
    want *= c;
    rq.timeout_s = d->timeout_s;
    /* A child that died between files (or was never started) is replaced first. */
    for (int attempt = 0;; attempt++) {
        if (d->pid <= 0) {
            rc = spawn(d, err, errlen);
            if (rc != 0)
                return rc;
        }
        if (send_request(d->sock, fd, &rq) == 0)
            break;
        reap(d, 1, NULL, 0, NULL);
        if (attempt > 0)
            return cwt_seterr(err, errlen, CWT_EIO, "cannot hand %s to the decoder: %s", name,
                              strerror(errno));
    }
    deadline = cwt_monotonic() + d->timeout_s;
    rc = read_until(d->sock, &rp, sizeof(rp), deadline);
    if (rc == 0 &&
        (rp.magic != DEC_MAGIC || (rp.rc == 0 && rp.len != want) || (rp.rc != 0 && rp.len != 0)))
        rc = -3;
    if (rc == 0 && rp.rc == 0)
        rc = read_until(d->sock, out, want, deadline);
    if (rc == -2) {
        reap(d, 1, NULL, 0, NULL);
        return cwt_seterr(err, errlen, CWT_EDECODE, "decoder timed out on %s after %u s", name,
                          d->timeout_s);
    }
    if (rc == -3) {
        reap(d, 1, NULL, 0, NULL);
        return cwt_seterr(err, errlen, CWT_EDECODE, "decoder sent a malformed reply for %s", name);
    }
    if (rc != 0) {
        reap(d, 0, how, sizeof(how), &xcpu);
        if (xcpu)
            return cwt_seterr(err, errlen, CWT_EDECODE,
                              "decoder timed out on %s after %u s of CPU time", name, d->timeout_s);
        return cwt_seterr(err, errlen, CWT_EDECODE, "decoder crashed on %s (%s)", name, how);
    }
    if (rp.rc == 0)
        return 0;
    rp.msg[sizeof(rp.msg) - 1] = '\0';
    for (char *p = rp.msg; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return cwt_seterr(err, errlen, reply_code(rp.rc), "%s", rp.msg);
}

int decoder_decode_fd(struct decoder *d, int fd, const char *name, uint32_t h, uint32_t w,
                      uint32_t c, uint8_t *out, char *err, size_t errlen)
{
    return decode_fd_len(d, fd, 0, name, h, w, c, out, err, errlen);
}

int decoder_decode_memory(struct decoder *d, const uint8_t *buf, size_t len, const char *name,
                          uint32_t h, uint32_t w, uint32_t c, uint8_t *out, char *err,
                          size_t errlen)
{
    size_t done = 0;

    if (d == NULL || (buf == NULL && len > 0))
        return cwt_seterr(err, errlen, CWT_EINVAL, "bad decode request for %s", name);
    if (len == 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "empty file");
    if (d->stage < 0) {
        d->stage = memfd_create("cwt-image", MFD_CLOEXEC);
        if (d->stage < 0)
            return cwt_seterr(err, errlen, CWT_EIO, "cannot stage %s for the decoder: %s", name,
                              strerror(errno));
    }
    /* Overwritten in place, never truncated: the child is told how many bytes are this
     * image's. */
    while (done < len) {
        ssize_t n = pwrite(d->stage, buf + done, len - done, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int saved = errno;
            close(d->stage);
            d->stage = -1;
            return cwt_seterr(err, errlen, CWT_EIO, "cannot stage %s for the decoder: %s", name,
                              n < 0 ? strerror(saved) : "short write");
        }
        done += (size_t)n;
    }
    return decode_fd_len(d, d->stage, len, name, h, w, c, out, err, errlen);
}

int decoder_decode_file(struct decoder *d, const char *path, uint32_t h, uint32_t w, uint32_t c,
                        uint8_t *out, char *err, size_t errlen)
{
    char msg[CWT_ERRLEN];
    struct stat sb;
    int fd, rc;

    /* O_NONBLOCK: a FIFO in place of an image must not hang the open. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return cwt_seterr(err, errlen, errno == ENOENT ? CWT_ENOENT : CWT_EIO, "%s: %s", path,
                          strerror(errno));
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return cwt_seterr(err, errlen, CWT_EFORMAT, "%s: not a regular file", path);
    }
    rc = decoder_decode_fd(d, fd, path, h, w, c, out, msg, sizeof(msg));
    close(fd);
    if (rc != 0 && strstr(msg, path) == NULL)
        return cwt_seterr(err, errlen, rc, "%s: %s", path, msg);
    if (rc != 0)
        return cwt_seterr(err, errlen, rc, "%s", msg);
    return 0;
}

void decoder_close(struct decoder *d)
{
    if (d == NULL)
        return;
    /* The child exits when its socket closes; SIGKILL covers one stuck in a decode. */
    reap(d, 1, NULL, 0, NULL);
    if (d->stage >= 0)
        close(d->stage);
    free(d);
}
