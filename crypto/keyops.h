/*
 * keyops.h - the two operations that need a site's secret keys, behind one interface, and the
 * signature contexts that keep a bundle signature from ever passing as an audit-export
 * signature (or the reverse).
 *
 * Only two things in cwt need a secret key: signing a digest (bundles, audit exports) and
 * opening the content key sealed to this site in a bundle's recipient entry. bundle_seal,
 * bundle_open and audit_export_encode reach the keys through a struct key_ops, so the process
 * that parses bundles need not hold them: cwtctl uses keyops_local() over keys it loaded
 * itself; cwtd's monitor uses an implementation that asks the key process (daemon/keyproc.h).
 *
 * Signed message (format version 2 of bundles, v2 of audit exports): Ed25519 over
 *
 *     "CWT-SIG\0" (8 bytes) | u8 context | 64-byte BLAKE2b-512 digest      = 73 bytes
 *
 * Version 1 files were signed over the bare 64-byte digest; they still verify
 * (keyops_verify with KEYOPS_CTX_LEGACY), but nothing signs that way any more: the key
 * process refuses KEYOPS_CTX_LEGACY, so a stolen monitor cannot obtain a context-free
 * signature. A 73-byte message never equals a 64-byte one, so a legacy signature cannot pass
 * as a v2 one either.
 */
#ifndef CWT_KEYOPS_H
#define CWT_KEYOPS_H

#include <stddef.h>
#include <sodium.h>
#include <stdint.h>
#include <string.h>

#include "common/cwt.h"

struct site_keys;

#define KEYOPS_DIGEST_LEN 64        /* BLAKE2b-512 */
#define KEYOPS_SIG_LEN    64        /* Ed25519 */
#define KEYOPS_ENTRY_LEN  80        /* crypto_box_seal of a 32-byte key: 48 + 32 */
#define KEYOPS_KEY_LEN    32        /* a bundle's content key */
#define KEYOPS_MSG_PREFIX "CWT-SIG" /* 7 characters and a NUL: 8 bytes */
#define KEYOPS_MSG_LEN    (8 + 1 + KEYOPS_DIGEST_LEN)

/* What a signature is for. Values are part of the signed bytes: never renumber. */
enum keyops_context {
    KEYOPS_CTX_LEGACY = 0,       /* verify only: v1 files, signed over the bare digest */
    KEYOPS_CTX_BUNDLE = 1,       /* a weight bundle (docs/bundle-format.md) */
    KEYOPS_CTX_AUDIT_EXPORT = 2, /* an audit export (docs/audit-format.md) */
    KEYOPS_CTX_MAX = 2,
};

struct key_ops {
    void *ctx;
    /* Signs digest under context (KEYOPS_CTX_BUNDLE or KEYOPS_CTX_AUDIT_EXPORT) with the
     * site's Ed25519 key. 0, or CWT_EINVAL for another context, CWT_ECRYPTO / CWT_EIO. */
    int (*sign)(void *ctx, uint8_t context, const uint8_t digest[KEYOPS_DIGEST_LEN],
                uint8_t sig[KEYOPS_SIG_LEN]);
    /* Opens a recipient entry's sealed content key (crypto_box_seal_open with the site's
     * X25519 key) into key_out, which the caller allocated with sodium_malloc and wipes.
     * CWT_EB_DECRYPT if it does not open with this site's key, CWT_EIO if the holder of the
     * key cannot be reached. */
    int (*open_key)(void *ctx, const uint8_t entry[KEYOPS_ENTRY_LEN],
                    uint8_t key_out[KEYOPS_KEY_LEN]);
};

/* Builds the signed message for context and digest into msg. CWT_EINVAL for
 * KEYOPS_CTX_LEGACY or an unknown context. (Inline, like keyops_verify: the storage library,
 * which signs and verifies audit exports, does not link the crypto library.) */
static inline int keyops_message(uint8_t context, const uint8_t digest[KEYOPS_DIGEST_LEN],
                                 uint8_t msg[KEYOPS_MSG_LEN])
{
    if (context == KEYOPS_CTX_LEGACY || context > KEYOPS_CTX_MAX)
        return CWT_EINVAL;
    memcpy(msg, KEYOPS_MSG_PREFIX, 8); /* the prefix and its NUL */
    msg[8] = context;
    memcpy(msg + 9, digest, KEYOPS_DIGEST_LEN);
    return 0;
}

/* Checks sig over digest under context with sign_pk (KEYOPS_CTX_LEGACY: the bare digest, for
 * version 1 files). 0 if it verifies, CWT_EB_SIGNATURE otherwise. */
static inline int keyops_verify(uint8_t context, const uint8_t digest[KEYOPS_DIGEST_LEN],
                                const uint8_t sig[KEYOPS_SIG_LEN], const uint8_t sign_pk[32])
{
    uint8_t msg[KEYOPS_MSG_LEN];

    if (context == KEYOPS_CTX_LEGACY)
        return crypto_sign_verify_detached(sig, digest, KEYOPS_DIGEST_LEN, sign_pk) == 0
                   ? 0
                   : CWT_EB_SIGNATURE;
    if (keyops_message(context, digest, msg) != 0)
        return CWT_EB_SIGNATURE;
    return crypto_sign_verify_detached(sig, msg, sizeof(msg), sign_pk) == 0 ? 0 : CWT_EB_SIGNATURE;
}

/* Signs with an Ed25519 secret key held in this process (the key process and keyops_local
 * use it). Refuses KEYOPS_CTX_LEGACY and unknown contexts (CWT_EINVAL). */
int keyops_sign_sk(const uint8_t *sign_sk, uint8_t context, const uint8_t digest[KEYOPS_DIGEST_LEN],
                   uint8_t sig[KEYOPS_SIG_LEN]);

/* Opens entry with box_pk/box_sk held in this process. CWT_EB_DECRYPT if it does not open. */
int keyops_open_sk(const uint8_t box_pk[32], const uint8_t *box_sk,
                   const uint8_t entry[KEYOPS_ENTRY_LEN], uint8_t key_out[KEYOPS_KEY_LEN]);

/* The in-process implementation over keys loaded with keys_load(): ops->ctx points at k,
 * which must outlive ops. An operation whose secret key k lacks returns CWT_EINVAL. */
void keyops_local(const struct site_keys *k, struct key_ops *ops);

#endif
