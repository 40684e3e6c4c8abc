/*
 * keyproc.h - cwtd's key process: the only process of the daemon that holds the site's secret
 * keys (OpenSMTPD's ca.c). It does nothing else.
 *
 * cwtd forks it after the trainer supervisor (so no trainer ever holds a descriptor to it) and
 * before the monitor reads anything from outside. It loads sign.key and box.key into
 * sodium_malloc memory, then confines itself with the SANDBOX_KEYPROC role of sandbox.h (no
 * capability, Landlock with no file access at all, the seccomp list of the few calls its loop
 * needs; any other call kills it; a kernel without Landlock is refused unless
 * daemon.allow_no_landlock, as for the monitor and the trainer) and answers, over an
 * AF_UNIX SOCK_SEQPACKET socketpair in the proto.h framing, exactly two requests:
 *
 *   PROTO_KEY_SIGN {context, digest}  -> PROTO_KEY_SIGNATURE {status, Ed25519 signature}
 *       signs the 73-byte context message of crypto/keyops.h; the legacy (context-free) form
 *       is refused, so even a compromised monitor cannot get a signature that passes as
 *       another kind of file.
 *   PROTO_KEY_OPEN {recipient entry}  -> PROTO_KEY_CONTENT {status, content key}
 *       crypto_box_seal_open of one bundle's sealed content key. The content key is per
 *       bundle, not a long-term secret; the monitor decrypts the stream with it and wipes it.
 *
 * Start-up handshake: the key process's first message is PROTO_HELLO with its pid and its
 * Ed25519 public key in model_fp, or pid 0 and the refusal sentence in device when the keys
 * could not be loaded (a key file readable by others, a key that does not match site.pub...)
 * or its sandbox could not be applied (no Landlock and no override, say).
 *
 * It logs no key material and no digest: one line per request with the context and a running
 * count. Any message other than the two requests, or one that does not decode, is an
 * impossible state: it exits (fatalx). When the monitor's end closes, it exits 0.
 */
#ifndef CWT_KEYPROC_H
#define CWT_KEYPROC_H

#include <stdint.h>
#include <sys/types.h>

#include "config/config.h"
#include "crypto/keyops.h"
#include "crypto/keys.h"

/* The monitor's side of the key process. */
struct keyproc_client {
    int sock;
    pid_t pid;
    uint64_t n_sign, n_open; /* requests answered */
};

/* Forks the key process for cfg->keys_dir. In the child every descriptor but the new socket
 * (and stdin/stdout/stderr) is closed first, so it holds nothing of the trainer's. Fills kp
 * with the monitor's end and the child's pid; fatal() when the socketpair or fork fails. */
void keyproc_start(const struct cwt_config *cfg, struct keyproc_client *kp);

/* Reads the key process's start-up message. 0 when it loaded keys whose signing key is pub's;
 * otherwise CWT_EPERM/CWT_ECRYPTO/CWT_EIO with the sentence to report in err (the key
 * process's own refusal, or why the handshake failed). */
int keyproc_handshake(struct keyproc_client *kp, const struct site_keys *pub, char *err,
                      size_t errlen);

/* The key_ops (crypto/keyops.h) that send each request to the key process and wait for its
 * answer. ops->ctx points at kp. A key process that is gone or answers out of turn gives
 * CWT_EIO (logged); the monitor's SIGCHLD handler then stops cwtd. */
void keyproc_ops(struct keyproc_client *kp, struct key_ops *ops);

#endif
