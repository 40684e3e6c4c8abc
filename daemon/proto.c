/*
 * proto.c - framing, encoding and validation of monitor <-> trainer messages (proto.h).
 */
#include "daemon/proto.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cwt.h"

#define TEXT_FIELD (PROTO_TEXT_MAX + 1)
#define CKPT_FIELD 64

/* Exact payload size of each type; index = type. */
static const uint32_t payload_size[PROTO_TYPE_MAX + 1] = {
    [PROTO_HELLO] = 4 + 32 + TEXT_FIELD,
    [PROTO_JOB] = 6 * 4 + 8 + 2 * 8 + CKPT_FIELD + 3 * 4 + 2 * 8 + 4 + 8,
    [PROTO_PROGRESS] = 3 * 8 + 2 * 8,
    [PROTO_RESULT] = 4 + 4 * 8 + 6 * 8 + TEXT_FIELD,
    [PROTO_PAUSE] = 0,
    [PROTO_RESUME] = 0,
    [PROTO_DIED] = 8,
    [PROTO_KEY_SIGN] = 4 + 64,
    [PROTO_KEY_SIGNATURE] = 4 + 64,
    [PROTO_KEY_OPEN] = 80,
    [PROTO_KEY_CONTENT] = 4 + 32,
};

/* A bounded little-endian writer and reader over a byte buffer. */
struct cursor {
    uint8_t *w;       /* writing */
    const uint8_t *r; /* reading */
    size_t pos, len;
    int bad;
};

static void put_u32(struct cursor *c, uint32_t v)
{
    if (c->bad || c->len - c->pos < 4) {
        c->bad = 1;
        return;
    }
    for (int i = 0; i < 4; i++)
        c->w[c->pos++] = (uint8_t)(v >> (8 * i));
}

static void put_u64(struct cursor *c, uint64_t v)
{
    put_u32(c, (uint32_t)v);
    put_u32(c, (uint32_t)(v >> 32));
}

static void put_f64(struct cursor *c, double d)
{
    uint64_t v;

    memcpy(&v, &d, sizeof(v));
    put_u64(c, v);
}

static void put_bytes(struct cursor *c, const uint8_t *p, size_t n)
{
    if (c->bad || c->len - c->pos < n) {
        c->bad = 1;
        return;
    }
    memcpy(c->w + c->pos, p, n);
    c->pos += n;
}

static void get_bytes(struct cursor *c, uint8_t *p, size_t n)
{
    if (c->bad || c->len - c->pos < n) {
        c->bad = 1;
        return;
    }
    memcpy(p, c->r + c->pos, n);
    c->pos += n;
}

static void put_text(struct cursor *c, const char *s, size_t field)
{
    size_t n = strnlen(s, field);

    if (c->bad || n >= field || c->len - c->pos < field) {
        c->bad = 1;
        return;
    }
    /* The decoder refuses control characters; the encoder never writes them either. */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            c->bad = 1;
            return;
        }
    memset(c->w + c->pos, 0, field);
    memcpy(c->w + c->pos, s, n);
    c->pos += field;
}

static uint32_t get_u32(struct cursor *c)
{
    uint32_t v = 0;

    if (c->bad || c->len - c->pos < 4) {
        c->bad = 1;
        return 0;
    }
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)c->r[c->pos++] << (8 * i);
    return v;
}

static uint64_t get_u64(struct cursor *c)
{
    uint64_t lo = get_u32(c);

    return lo | (uint64_t)get_u32(c) << 32;
}

/* Doubles may be NaN (a metric not measured) but never infinite. */
static double get_f64(struct cursor *c)
{
    uint64_t v = get_u64(c);
    double d;

    memcpy(&d, &v, sizeof(d));
    if (isinf(d))
        c->bad = 1;
    return d;
}

/* A fixed field: printable text, NUL-terminated inside the field, zero padding after it. */
static void get_text(struct cursor *c, char *out, size_t field)
{
    size_t n;

    out[0] = '\0';
    if (c->bad || c->len - c->pos < field) {
        c->bad = 1;
        return;
    }
    n = strnlen((const char *)c->r + c->pos, field);
    if (n >= field) {
        c->bad = 1;
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (c->r[c->pos + i] < 0x20 || c->r[c->pos + i] == 0x7f)
            c->bad = 1;
    for (size_t i = n; i < field; i++)
        if (c->r[c->pos + i] != 0)
            c->bad = 1;
    if (!c->bad)
        memcpy(out, c->r + c->pos, n + 1);
    c->pos += field;
}

static int valid_ckpt_name(const char *s)
{
    if (s[0] == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '-' || *s == '_'))
            return 0;
    return 1;
}

int proto_encode(const struct proto_msg *msg, uint8_t *buf, size_t buflen)
{
    struct cursor c = {.w = buf, .len = buflen};
    uint32_t plen;

    if (msg->type == 0 || msg->type > PROTO_TYPE_MAX)
        return CWT_EINVAL;
    plen = payload_size[msg->type];
    put_u32(&c, PROTO_MAGIC);
    put_u32(&c, (uint32_t)PROTO_VERSION | (uint32_t)msg->type << 16);
    put_u32(&c, plen);
    put_u32(&c, msg->job);
    switch (msg->type) {
    case PROTO_HELLO:
        put_u32(&c, msg->u.hello.pid);
        put_bytes(&c, msg->u.hello.model_fp, 32);
        put_text(&c, msg->u.hello.device, TEXT_FIELD);
        break;
    case PROTO_JOB: {
        const struct proto_job *j = &msg->u.job;
        if (j->kind == 0 || j->kind > PROTO_JOB_KIND_MAX || !valid_ckpt_name(j->ckpt))
            return CWT_EINVAL;
        put_u32(&c, j->kind);
        put_u32(&c, j->cycle);
        put_u32(&c, j->hop);
        put_u32(&c, j->resume);
        put_u32(&c, j->has_weights);
        put_u32(&c, j->patience);
        put_u64(&c, j->loader_seed);
        put_f64(&c, j->sched_total);
        put_f64(&c, j->epochs_before);
        put_text(&c, j->ckpt, CKPT_FIELD);
        if (!cycle_history_valid(&j->history))
            return CWT_EINVAL;
        put_u32(&c, j->history.cur);
        put_u32(&c, j->history.n);
        put_u32(&c, j->history.bestc);
        put_f64(&c, j->history.sum);
        put_f64(&c, j->history.best);
        put_u32(&c, j->has_before);
        put_u64(&c, j->steps_before);
        break;
    }
    case PROTO_PROGRESS:
        put_u64(&c, msg->u.progress.step);
        put_u64(&c, msg->u.progress.steps);
        put_u64(&c, msg->u.progress.epoch);
        put_f64(&c, msg->u.progress.loss);
        put_f64(&c, msg->u.progress.images_per_s);
        break;
    case PROTO_RESULT: {
        const struct proto_result *r = &msg->u.result;
        put_u32(&c, (uint32_t)r->status);
        put_u64(&c, r->steps);
        put_u64(&c, r->train_samples);
        put_u64(&c, r->val_samples);
        put_u64(&c, r->steps_total);
        put_f64(&c, r->epochs);
        put_f64(&c, r->train_loss);
        put_f64(&c, r->train_accuracy);
        put_f64(&c, r->val_loss);
        put_f64(&c, r->val_accuracy);
        put_f64(&c, r->val_auc);
        put_text(&c, r->message, TEXT_FIELD);
        break;
    }
    case PROTO_DIED:
        put_u32(&c, (uint32_t)msg->u.died.wait_status);
        put_u32(&c, msg->u.died.pid);
        break;
    case PROTO_KEY_SIGN:
        put_u32(&c, msg->u.key_sign.context);
        put_bytes(&c, msg->u.key_sign.digest, 64);
        break;
    case PROTO_KEY_OPEN:
        put_bytes(&c, msg->u.key_open.entry, 80);
        break;
    case PROTO_KEY_SIGNATURE:
    case PROTO_KEY_CONTENT:
        put_u32(&c, (uint32_t)msg->u.key_reply.status);
        put_bytes(&c, msg->u.key_reply.bytes, msg->type == PROTO_KEY_CONTENT ? 32 : 64);
        break;
    default:
        break;
    }
    if (c.bad || c.pos != PROTO_HDR_LEN + plen)
        return CWT_EINVAL;
    return (int)c.pos;
}

int proto_decode(const uint8_t *buf, size_t len, struct proto_msg *msg, char *err, size_t errlen)
{
    struct cursor c = {.r = buf, .len = len};
    uint32_t magic, vt, plen;
    uint16_t version, type;

    memset(msg, 0, sizeof(*msg));
    msg->fd = -1;
    if (len < PROTO_HDR_LEN)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "message of %zu bytes is shorter than a "
                          "header",
                          len);
    if (len > PROTO_MAX_MSG)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "message of %zu bytes exceeds %u", len,
                          (unsigned)PROTO_MAX_MSG);
    magic = get_u32(&c);
    vt = get_u32(&c);
    plen = get_u32(&c);
    msg->job = get_u32(&c);
    version = (uint16_t)(vt & 0xffff);
    type = (uint16_t)(vt >> 16);
    if (magic != PROTO_MAGIC)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "message has a bad magic number");
    if (version != PROTO_VERSION)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "message version %u is not %u",
                          (unsigned)version, (unsigned)PROTO_VERSION);
    if (type == 0 || type > PROTO_TYPE_MAX)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "unknown message type %u", (unsigned)type);
    if (plen != payload_size[type] || len - PROTO_HDR_LEN != plen)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "message type %u has %zu payload bytes, "
                          "expected %u",
                          (unsigned)type, len - PROTO_HDR_LEN, (unsigned)payload_size[type]);
    msg->type = type;
    switch (type) {
    case PROTO_HELLO:
        msg->u.hello.pid = get_u32(&c);
        get_bytes(&c, msg->u.hello.model_fp, 32);
        get_text(&c, msg->u.hello.device, TEXT_FIELD);
        break;
    case PROTO_JOB: {
        struct proto_job *j = &msg->u.job;
        j->kind = get_u32(&c);
        j->cycle = get_u32(&c);
        j->hop = get_u32(&c);
        j->resume = get_u32(&c);
        j->has_weights = get_u32(&c);
        j->patience = get_u32(&c);
        j->loader_seed = get_u64(&c);
        j->sched_total = get_f64(&c);
        j->epochs_before = get_f64(&c);
        get_text(&c, j->ckpt, CKPT_FIELD);
        j->history.cur = get_u32(&c);
        j->history.n = get_u32(&c);
        j->history.bestc = get_u32(&c);
        j->history.sum = get_f64(&c);
        j->history.best = get_f64(&c);
        j->has_before = get_u32(&c);
        j->steps_before = get_u64(&c);
        if (!c.bad &&
            (!cycle_history_valid(&j->history) || j->kind == 0 || j->kind > PROTO_JOB_KIND_MAX ||
             j->resume > 1 || j->has_weights > 1 || j->has_before > 1 ||
             !valid_ckpt_name(j->ckpt) || !(j->sched_total >= 0) || !(j->epochs_before >= 0)))
            c.bad = 1;
        break;
    }
    case PROTO_PROGRESS:
        msg->u.progress.step = get_u64(&c);
        msg->u.progress.steps = get_u64(&c);
        msg->u.progress.epoch = get_u64(&c);
        msg->u.progress.loss = get_f64(&c);
        msg->u.progress.images_per_s = get_f64(&c);
        break;
    case PROTO_RESULT: {
        struct proto_result *r = &msg->u.result;
        r->status = (int32_t)get_u32(&c);
        r->steps = get_u64(&c);
        r->train_samples = get_u64(&c);
        r->val_samples = get_u64(&c);
        r->steps_total = get_u64(&c);
        r->epochs = get_f64(&c);
        r->train_loss = get_f64(&c);
        r->train_accuracy = get_f64(&c);
        r->val_loss = get_f64(&c);
        r->val_accuracy = get_f64(&c);
        r->val_auc = get_f64(&c);
        get_text(&c, r->message, TEXT_FIELD);
        if (!c.bad && (r->status > 0 || r->status < -100))
            c.bad = 1;
        break;
    }
    case PROTO_DIED:
        msg->u.died.wait_status = (int32_t)get_u32(&c);
        msg->u.died.pid = get_u32(&c);
        break;
    case PROTO_KEY_SIGN:
        /* Contexts 1 and 2 (crypto/keyops.h): the legacy context 0 is never signed. */
        msg->u.key_sign.context = get_u32(&c);
        get_bytes(&c, msg->u.key_sign.digest, 64);
        if (!c.bad && (msg->u.key_sign.context == 0 || msg->u.key_sign.context > 2))
            c.bad = 1;
        break;
    case PROTO_KEY_OPEN:
        get_bytes(&c, msg->u.key_open.entry, 80);
        break;
    case PROTO_KEY_SIGNATURE:
    case PROTO_KEY_CONTENT:
        msg->u.key_reply.status = (int32_t)get_u32(&c);
        get_bytes(&c, msg->u.key_reply.bytes, type == PROTO_KEY_CONTENT ? 32 : 64);
        if (!c.bad && (msg->u.key_reply.status > 0 || msg->u.key_reply.status < -100))
            c.bad = 1;
        break;
    default:
        break;
    }
    if (c.bad || c.pos != len)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "message type %u has a field out of range",
                          (unsigned)type);
    return 0;
}

int proto_send(int sock, const struct proto_msg *msg)
{
    uint8_t buf[PROTO_MAX_MSG];
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    struct iovec iov;
    struct msghdr mh;
    int n;

    n = proto_encode(msg, buf, sizeof(buf));
    if (n < 0)
        return n;
    iov.iov_base = buf;
    iov.iov_len = (size_t)n;
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (msg->fd >= 0) {
        struct cmsghdr *cm;
        memset(&control, 0, sizeof(control));
        mh.msg_control = control.buf;
        mh.msg_controllen = sizeof(control.buf);
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &msg->fd, sizeof(int));
    }
    for (;;) {
        ssize_t sent = sendmsg(sock, &mh, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR)
            continue;
        /* Content keys travel in PROTO_KEY_CONTENT: no copy stays on the stack. */
        explicit_bzero(buf, sizeof(buf));
        return sent == n ? 0 : CWT_EIO;
    }
}

/* Closes every descriptor carried by a control message. */
static void close_passed_fds(struct msghdr *mh)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm != NULL; cm = CMSG_NXTHDR(mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
            cm->cmsg_len < CMSG_LEN(0))
            continue;
        size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfd; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            close(fd);
        }
    }
}

int proto_recv(int sock, struct proto_msg *msg, char *err, size_t errlen)
{
    uint8_t buf[PROTO_MAX_MSG + 1]; /* one spare byte: a longer message shows as truncated */
    /* Room for several descriptors, so a peer that sends more is detected and they are
     * closed rather than silently dropped by the kernel into MSG_CTRUNC. */
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(8 * sizeof(int))];
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
    struct msghdr mh;
    ssize_t n;
    int fd = -1, nfds = 0, rc;

    memset(msg, 0, sizeof(*msg));
    msg->fd = -1;
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control.buf;
    mh.msg_controllen = sizeof(control.buf);
    do
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return CWT_EIO;
    if (n == 0 && mh.msg_controllen == 0)
        return CWT_ENOENT;
    if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        close_passed_fds(&mh);
        return cwt_seterr(err, errlen, CWT_EFORMAT, "message or its descriptors truncated");
    }
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
            close_passed_fds(&mh);
            return cwt_seterr(err, errlen, CWT_EFORMAT,
                              "message carries an unexpected "
                              "control record");
        }
        nfds += (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        if (nfds == 1)
            memcpy(&fd, CMSG_DATA(cm), sizeof(int));
    }
    if (nfds > 1) {
        close_passed_fds(&mh);
        return cwt_seterr(err, errlen, CWT_EFORMAT, "message carries %d descriptors", nfds);
    }
    rc = proto_decode(buf, (size_t)n, msg, err, errlen);
    explicit_bzero(buf, sizeof(buf)); /* it may have held a content key */
    if (rc == 0 && fd >= 0 && msg->type != PROTO_JOB && msg->type != PROTO_RESULT)
        rc = cwt_seterr(err, errlen, CWT_EFORMAT, "message type %u carries a descriptor",
                        (unsigned)msg->type);
    if (rc != 0) {
        if (fd >= 0)
            close(fd);
        return rc;
    }
    msg->fd = fd;
    return 0;
}

#define WEIGHT_SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

int proto_weights_to_fd(const uint8_t *buf, size_t len, int *fd_out)
{
    int fd = memfd_create("cwt-weights", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    size_t done = 0;

    if (fd < 0)
        return CWT_EIO;
    while (done < len) {
        ssize_t n = write(fd, buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(fd);
            return CWT_EIO;
        }
        done += (size_t)n;
    }
    if (fcntl(fd, F_ADD_SEALS, WEIGHT_SEALS) != 0) {
        close(fd);
        return CWT_EIO;
    }
    *fd_out = fd;
    return 0;
}

int proto_weights_from_fd(int fd, uint64_t max, uint8_t **out, size_t *outlen, char *err,
                          size_t errlen)
{
    struct stat sb;
    uint8_t *buf;
    size_t len, done = 0;
    int seals = fcntl(fd, F_GET_SEALS);

    *out = NULL;
    *outlen = 0;
    if (seals < 0 || (seals & WEIGHT_SEALS) != WEIGHT_SEALS)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "weights descriptor is not a sealed memfd");
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "weights descriptor is not a file");
    if ((uint64_t)sb.st_size > max || (uint64_t)sb.st_size > SIZE_MAX - 1)
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "weights of %lld bytes exceed %llu",
                          (long long)sb.st_size, (unsigned long long)max);
    len = (size_t)sb.st_size;
    buf = malloc(len + 1);
    if (buf == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory for %zu bytes of weights", len);
    while (done < len) {
        ssize_t n = pread(fd, buf + done, len - done, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            free(buf);
            return cwt_seterr(err, errlen, CWT_EIO, "cannot read the weights descriptor");
        }
        done += (size_t)n;
    }
    *out = buf;
    *outlen = len;
    return 0;
}
