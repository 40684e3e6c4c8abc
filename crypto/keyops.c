/*
 * keyops.c - signature contexts and the in-process key operations (crypto/keyops.h).
 */
#include "crypto/keyops.h"

#include <sodium.h>
#include <string.h>

#include "common/cwt.h"
#include "crypto/keys.h"

int keyops_sign_sk(const uint8_t *sign_sk, uint8_t context, const uint8_t digest[KEYOPS_DIGEST_LEN],
                   uint8_t sig[KEYOPS_SIG_LEN])
{
    uint8_t msg[KEYOPS_MSG_LEN];

    if (sign_sk == NULL)
        return CWT_EINVAL;
    if (keyops_message(context, digest, msg) != 0)
        return CWT_EINVAL;
    if (crypto_sign_detached(sig, NULL, msg, sizeof(msg), sign_sk) != 0)
        return CWT_ECRYPTO;
    return 0;
}

int keyops_open_sk(const uint8_t box_pk[32], const uint8_t *box_sk,
                   const uint8_t entry[KEYOPS_ENTRY_LEN], uint8_t key_out[KEYOPS_KEY_LEN])
{
    if (box_sk == NULL)
        return CWT_EINVAL;
    if (crypto_box_seal_open(key_out, entry, KEYOPS_ENTRY_LEN, box_pk, box_sk) != 0) {
        sodium_memzero(key_out, KEYOPS_KEY_LEN);
        return CWT_EB_DECRYPT;
    }
    return 0;
}

static int local_sign(void *ctx, uint8_t context, const uint8_t digest[KEYOPS_DIGEST_LEN],
                      uint8_t sig[KEYOPS_SIG_LEN])
{
    const struct site_keys *k = ctx;

    return keyops_sign_sk(k->sign_sk, context, digest, sig);
}

static int local_open_key(void *ctx, const uint8_t entry[KEYOPS_ENTRY_LEN],
                          uint8_t key_out[KEYOPS_KEY_LEN])
{
    const struct site_keys *k = ctx;

    return keyops_open_sk(k->box_pk, k->box_sk, entry, key_out);
}

void keyops_local(const struct site_keys *k, struct key_ops *ops)
{
    ops->ctx = (void *)(uintptr_t)k;
    ops->sign = local_sign;
    ops->open_key = local_open_key;
}
