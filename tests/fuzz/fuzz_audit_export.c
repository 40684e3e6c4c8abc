/*
 * fuzz_audit_export.c - libFuzzer harness for the audit export parser (storage/store_audit.c).
 *
 * The input is taken as the signed part of an export; the harness signs it with a fixed key
 * and appends the signature line, so the fuzzer reaches the line parser and the chain check
 * behind the signature instead of stopping at it. Raw inputs are also fed unsigned, which
 * exercises the framing checks.
 */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/keyops.h"
#include "storage/store_audit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t seed[crypto_sign_SEEDBYTES] = {1};
    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    uint8_t digest[crypto_generichash_BYTES_MAX], sig[crypto_sign_BYTES];
    char sig_hex[2 * crypto_sign_BYTES + 1], err[CWT_ERRLEN];
    struct audit_export_info info;
    struct audit_record *recs = NULL;
    size_t n = 0, total;
    uint8_t *buf;

    if (size > (1u << 20) || sodium_init() < 0)
        return 0;
    crypto_sign_seed_keypair(pk, sk, seed);
    (void)audit_export_verify(data, size, pk, &info, NULL, NULL, err, sizeof(err));

    crypto_generichash(digest, sizeof(digest), data, size, NULL, 0);
    /* Sign as the file's magic line asks (v2: the audit-export context; otherwise the bare
     * digest of v1), so the parser after the signature check is reached in both formats. */
    if (size > strlen(AUDIT_EXPORT_MAGIC) &&
        memcmp(data, AUDIT_EXPORT_MAGIC "\n", strlen(AUDIT_EXPORT_MAGIC) + 1) == 0) {
        if (keyops_sign_sk(sk, KEYOPS_CTX_AUDIT_EXPORT, digest, sig) != 0)
            return 0;
    } else {
        crypto_sign_detached(sig, NULL, digest, sizeof(digest), sk);
    }
    cwt_hex(sig, sizeof(sig), sig_hex);
    total = size + strlen("signature ") + sizeof(sig_hex);
    if ((buf = malloc(total)) == NULL)
        return 0;
    memcpy(buf, data, size);
    memcpy(buf + size, "signature ", 10);
    memcpy(buf + size + 10, sig_hex, 2 * crypto_sign_BYTES);
    buf[total - 1] = '\n';
    if (audit_export_verify(buf, total, pk, &info, &recs, &n, err, sizeof(err)) == 0)
        free(recs);
    free(buf);
    return 0;
}
