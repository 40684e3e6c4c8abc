/*
 * keyproc.c - the key process and the monitor's client for it (daemon/keyproc.h).
 */
#include "daemon/keyproc.h"

#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cwt.h"
#include "common/log.h"
#include "daemon/proto.h"
#include "sandbox/sandbox.h"

/* The descriptor the key process keeps: its end of the socketpair. */
#define KEYPROC_FD 3

static const char *context_name(uint32_t c)
{
    switch (c) {
    case KEYOPS_CTX_BUNDLE:
        return "bundle";
    case KEYOPS_CTX_AUDIT_EXPORT:
        return "audit export";
    default:
        return "unknown";
    }
}

/* Leaves the confined process with the bare exit_group call: exit()'s handlers and a
 * sanitizer's _exit interceptor (its leak check) make calls outside the seccomp list. There
 * is nothing to flush (stderr is unbuffered) and the kernel frees the locked key pages. */
static void keyproc_exit(int code) __attribute__((noreturn));
static void keyproc_exit(int code)
{
    for (;;)
        (void)syscall(SYS_exit_group, code);
}

/* An impossible state in the confined loop: the reason, then keyproc_exit(1). */
static void keyproc_fatalx(const char *what, const char *detail) __attribute__((noreturn));
static void keyproc_fatalx(const char *what, const char *detail)
{
    log_warnx("key process: %s%s; exiting", what, detail);
    keyproc_exit(1);
}

static void send_or_exit(int sock, struct proto_msg *m)
{
    int rc = proto_send(sock, m);

    sodium_memzero(&m->u, sizeof(m->u));
    if (rc != 0)
        keyproc_exit(1); /* the monitor is gone */
}

/* The greeting that refuses: pid 0 and the reason, cut to the field and without control
 * characters; then exit 2. */
static void keyproc_refuse(int sock, const char *why) __attribute__((noreturn));
static void keyproc_refuse(int sock, const char *why)
{
    struct proto_msg m;

    memset(&m, 0, sizeof(m));
    m.type = PROTO_HELLO;
    m.fd = -1;
    snprintf(m.u.hello.device, sizeof(m.u.hello.device), "%.*s", PROTO_TEXT_MAX, why);
    for (char *p = m.u.hello.device; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    (void)proto_send(sock, &m);
    _exit(2);
}

/* RLIMIT_CORE 0 (soft and hard, so it cannot be raised again) and PR_SET_DUMPABLE 0, checked
 * back with PR_GET_DUMPABLE. Returns 0, or -1 when either call fails. */
static int keyproc_no_dumps(void)
{
    struct rlimit rl = {0, 0};

    if (setrlimit(RLIMIT_CORE, &rl) != 0)
        return -1;
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return -1;
    return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0 ? 0 : -1;
}

static void keyproc_main(const struct cwt_config *cfg, int sock) __attribute__((noreturn));
static void keyproc_main(const struct cwt_config *cfg, int sock)
{
    struct site_keys k = {0};
    struct proto_msg m;
    char err[CWT_ERRLEN];
    uint64_t n_sign = 0, n_open = 0;

    /* Signals for the daemon are the monitor's: the key process ends when its socket does. */
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    /* Before any key is read: not dumpable, so no process of the same uid may open
     * /proc/PID/mem or ptrace it (only CAP_SYS_PTRACE can), and no core file. The key process
     * sets this itself instead of inheriting cwtd's setting: keyproc_start has other callers
     * (the tests), and a credential change in a parent would reset the flag. */
    if (keyproc_no_dumps() != 0)
        keyproc_refuse(sock, "key process: cannot turn off core dumps and memory access");
    if (crypto_init() != 0)
        keyproc_refuse(sock, "cannot initialise libsodium");
    if (keys_load(cfg->keys_dir, &k, err, sizeof(err)) != 0)
        keyproc_refuse(sock, err);
    /* The key process's sandbox (sandbox.h, SANDBOX_KEYPROC): no capability, Landlock with no
     * file at all, the shortest seccomp list. A kernel without Landlock is refused unless
     * daemon.allow_no_landlock, as for every role of cwtd; the refusal reaches the admin
     * through the monitor's handshake. */
    if (sandbox_apply(SANDBOX_KEYPROC, NULL, cfg->allow_no_landlock ? SANDBOX_ALLOW_NO_LANDLOCK : 0,
                      err, sizeof(err)) != 0) {
        char why[CWT_ERRLEN + 32];
        keys_free(&k);
        snprintf(why, sizeof(why), "key process: %s", err);
        keyproc_refuse(sock, why);
    }
    memset(&m, 0, sizeof(m));
    m.type = PROTO_HELLO;
    m.fd = -1;
    m.u.hello.pid = (uint32_t)getpid();
    memcpy(m.u.hello.model_fp, k.sign_pk, 32);
    snprintf(m.u.hello.device, sizeof(m.u.hello.device), "key process");
    send_or_exit(sock, &m);

    for (;;) {
        struct proto_msg r;
        int rc = proto_recv(sock, &m, err, sizeof(err));

        if (rc == CWT_ENOENT)
            keyproc_exit(0);
        if (rc != 0)
            keyproc_fatalx("a request from the monitor is malformed: ", err);
        memset(&r, 0, sizeof(r));
        r.fd = -1;
        r.job = m.job;
        switch (m.type) {
        case PROTO_KEY_SIGN:
            r.type = PROTO_KEY_SIGNATURE;
            r.u.key_reply.status = keyops_sign_sk(k.sign_sk, (uint8_t)m.u.key_sign.context,
                                                  m.u.key_sign.digest, r.u.key_reply.bytes);
            n_sign++;
            log_info("key process: signature %llu (%s)%s", (unsigned long long)n_sign,
                     context_name(m.u.key_sign.context),
                     r.u.key_reply.status == 0 ? "" : " refused");
            break;
        case PROTO_KEY_OPEN:
            r.type = PROTO_KEY_CONTENT;
            r.u.key_reply.status =
                keyops_open_sk(k.box_pk, k.box_sk, m.u.key_open.entry, r.u.key_reply.bytes);
            n_open++;
            log_debug("key process: content key %llu %s", (unsigned long long)n_open,
                      r.u.key_reply.status == 0 ? "opened" : "does not open");
            break;
        default:
            keyproc_fatalx("a message that is not a key request arrived", "");
        }
        if (r.u.key_reply.status != 0)
            sodium_memzero(r.u.key_reply.bytes, sizeof(r.u.key_reply.bytes));
        sodium_memzero(&m.u, sizeof(m.u));
        send_or_exit(sock, &r);
    }
}

void keyproc_start(const struct cwt_config *cfg, struct keyproc_client *kp)
{
    int sp[2];
    pid_t pid;

    memset(kp, 0, sizeof(*kp));
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0)
        fatal("socketpair");
    pid = fork();
    if (pid < 0)
        fatal("fork");
    if (pid == 0) {
        /* Keep stdin, stdout, stderr (the log) and the socket, nothing else: not the
         * monitor's end of the trainer socket, not a store or a control socket. */
        if (sp[1] != KEYPROC_FD && dup2(sp[1], KEYPROC_FD) < 0)
            _exit(1);
        if (syscall(SYS_close_range, KEYPROC_FD + 1, ~0U, 0) != 0)
            for (int fd = KEYPROC_FD + 1; fd < 1024; fd++)
                (void)close(fd);
        keyproc_main(cfg, KEYPROC_FD);
    }
    close(sp[1]);
    kp->sock = sp[0];
    kp->pid = pid;
}

int keyproc_handshake(struct keyproc_client *kp, const struct site_keys *pub, char *err,
                      size_t errlen)
{
    struct proto_msg m;
    char sub[CWT_ERRLEN];
    int rc = proto_recv(kp->sock, &m, sub, sizeof(sub));

    if (rc == CWT_ENOENT || rc == CWT_EIO)
        return cwt_seterr(err, errlen, CWT_EIO, "the key process exited during start-up");
    if (rc != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "the key process's first message: %s", sub);
    if (m.type != PROTO_HELLO)
        return cwt_seterr(err, errlen, CWT_EIO,
                          "the key process's first message is of type %u, not its greeting",
                          (unsigned)m.type);
    if (m.u.hello.pid == 0)
        return cwt_seterr(err, errlen, CWT_EPERM, "%s", m.u.hello.device);
    if (sodium_memcmp(m.u.hello.model_fp, pub->sign_pk, 32) != 0)
        return cwt_seterr(err, errlen, CWT_ECRYPTO,
                          "the key process loaded a signing key that is not this site's "
                          "site.pub");
    return 0;
}

/* One request, one answer of the expected type. */
static int roundtrip(struct keyproc_client *kp, struct proto_msg *req, uint16_t want,
                     struct proto_msg *ans)
{
    char err[CWT_ERRLEN];
    int rc;

    req->fd = -1;
    rc = proto_send(kp->sock, req);
    sodium_memzero(&req->u, sizeof(req->u));
    if (rc != 0) {
        log_warnx("the key process cannot be reached");
        return CWT_EIO;
    }
    rc = proto_recv(kp->sock, ans, err, sizeof(err));
    if (rc != 0) {
        log_warnx("no answer from the key process: %s",
                  rc == CWT_ENOENT ? "it exited" : (rc == CWT_EIO ? "read failed" : err));
        return CWT_EIO;
    }
    if (ans->type != want) {
        sodium_memzero(&ans->u, sizeof(ans->u));
        log_warnx("the key process answered with message type %u instead of %u",
                  (unsigned)ans->type, (unsigned)want);
        return CWT_EIO;
    }
    return 0;
}

static int ipc_sign(void *ctx, uint8_t context, const uint8_t digest[KEYOPS_DIGEST_LEN],
                    uint8_t sig[KEYOPS_SIG_LEN])
{
    struct keyproc_client *kp = ctx;
    struct proto_msg req, ans;
    int rc;

    if (context == KEYOPS_CTX_LEGACY || context > KEYOPS_CTX_MAX)
        return CWT_EINVAL;
    memset(&req, 0, sizeof(req));
    req.type = PROTO_KEY_SIGN;
    req.u.key_sign.context = context;
    memcpy(req.u.key_sign.digest, digest, KEYOPS_DIGEST_LEN);
    if ((rc = roundtrip(kp, &req, PROTO_KEY_SIGNATURE, &ans)) != 0)
        return rc;
    kp->n_sign++;
    if (ans.u.key_reply.status != 0)
        return ans.u.key_reply.status;
    memcpy(sig, ans.u.key_reply.bytes, KEYOPS_SIG_LEN);
    return 0;
}

static int ipc_open_key(void *ctx, const uint8_t entry[KEYOPS_ENTRY_LEN],
                        uint8_t key_out[KEYOPS_KEY_LEN])
{
    struct keyproc_client *kp = ctx;
    struct proto_msg req, ans;
    int rc;

    memset(&req, 0, sizeof(req));
    req.type = PROTO_KEY_OPEN;
    memcpy(req.u.key_open.entry, entry, KEYOPS_ENTRY_LEN);
    if ((rc = roundtrip(kp, &req, PROTO_KEY_CONTENT, &ans)) != 0)
        return rc;
    kp->n_open++;
    rc = ans.u.key_reply.status;
    if (rc == 0)
        memcpy(key_out, ans.u.key_reply.bytes, KEYOPS_KEY_LEN);
    sodium_memzero(&ans.u, sizeof(ans.u));
    return rc;
}

void keyproc_ops(struct keyproc_client *kp, struct key_ops *ops)
{
    ops->ctx = kp;
    ops->sign = ipc_sign;
    ops->open_key = ipc_open_key;
}
