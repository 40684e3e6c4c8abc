/*
 * bundle_bench.c - one step of the bundle benchmark per process, so that each step's peak
 * memory is its own (bench/bundle.sh runs them and writes bench/RESULTS.md):
 *
 *   bundle_bench gen FILE MIB     a safetensors file of MIB MiB (one F32 tensor)
 *   bundle_bench raw FILE         libsodium secretstream over the file's bytes in 1 MiB chunks,
 *                                 as fast as it goes: read into memory first, then encrypt
 *   bundle_bench blake FILE       BLAKE2b-512 of the same bytes, one core
 *   bundle_bench seal FILE OUT    bundle_seal from site-a to site-b
 *   bundle_bench verify OUT       bundle_verify (auditor)
 *   bundle_bench open OUT PLAIN   bundle_open as site-b (no ledger)
 *
 * Each prints "STEP seconds=S maxrss_kib=K". Keys come from fixed seeds
 * (tests/fuzz/fuzz_common.h).
 */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/cwt.h"
#include "common/fileio.h"
#include "crypto/bundle.h"
#include "storage/safetensors.h"
#include "tests/fuzz/fuzz_common.h"

#define MIB (1u << 20)

static void report(const char *step, double seconds)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    printf("%s seconds=%.4f maxrss_kib=%ld\n", step, seconds, ru.ru_maxrss);
}

static int gen(const char *path, unsigned mib)
{
    size_t header = 128, floats = ((size_t)mib * MIB - header) / 4;
    uint8_t *buf = malloc((size_t)mib * MIB + 4096);
    char json[256];
    int n, fd;

    if (buf == NULL)
        return 1;
    /* Pad the JSON so that the whole file is exactly mib MiB. */
    n = snprintf(json, sizeof(json),
                 "{\"w\":{\"dtype\":\"F32\",\"shape\":[%zu],\"data_offsets\":[0,%zu]}}", floats,
                 floats * 4);
    size_t hlen = (size_t)mib * MIB - 8 - floats * 4;
    memset(buf + 8, ' ', hlen);
    memcpy(buf + 8, json, (size_t)n);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    randombytes_buf(buf + 8 + hlen, floats * 4);
    for (size_t i = 0; i < floats; i++) {
        float *f = (float *)(void *)(buf + 8 + hlen) + i;
        if (!isfinite(*f))
            *f = 0.0f;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, buf, (size_t)mib * MIB) != (ssize_t)((size_t)mib * MIB))
        return 1;
    close(fd);
    free(buf);
    return 0;
}

static int raw(const char *path, int blake_only)
{
    crypto_secretstream_xchacha20poly1305_state ss;
    crypto_generichash_state gh;
    uint8_t key[32], hdr[24], *in, *out, digest[64];
    size_t len;
    double t0;

    if (file_read_all(path, (size_t)4 << 30, &in, &len, NULL, 0) != 0)
        return 1;
    out = malloc(MIB + 17);
    if (out == NULL)
        return 1;
    crypto_secretstream_xchacha20poly1305_keygen(key);
    t0 = cwt_monotonic();
    if (blake_only) {
        crypto_generichash_init(&gh, NULL, 0, 64);
        crypto_generichash_update(&gh, in, len);
        crypto_generichash_final(&gh, digest, 64);
        report("blake2b-512", cwt_monotonic() - t0);
    } else {
        crypto_secretstream_xchacha20poly1305_init_push(&ss, hdr, key);
        for (size_t off = 0; off < len; off += MIB) {
            size_t n = len - off < MIB ? len - off : MIB;
            crypto_secretstream_xchacha20poly1305_push(
                &ss, out, NULL, in + off, n, NULL, 0,
                off + n == len ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0);
        }
        report("raw-secretstream", cwt_monotonic() - t0);
    }
    free(in);
    free(out);
    return 0;
}

int main(int argc, char **argv)
{
    static struct site_keys keys[FUZZ_SITES];
    struct cwt_roster *r = calloc(1, sizeof(*r));
    struct bundle_info *info = calloc(1, sizeof(*info));
    struct bundle_header h;
    char err[CWT_ERRLEN];
    double t0;
    int rc;

    if (r == NULL || info == NULL || argc < 3 || crypto_init() != 0 || fuzz_roster(r, keys) != 0)
        return 2;
    if (strcmp(argv[1], "gen") == 0 && argc == 4)
        return gen(argv[2], (unsigned)atoi(argv[3]));
    if (strcmp(argv[1], "raw") == 0)
        return raw(argv[2], 0);
    if (strcmp(argv[1], "blake") == 0)
        return raw(argv[2], 1);
    t0 = cwt_monotonic();
    if (strcmp(argv[1], "seal") == 0 && argc == 4) {
        memset(&h, 0, sizeof(h));
        h.kind = BUNDLE_KIND_CYCLE;
        h.n_recipients = 1;
        snprintf(h.recipients[0], sizeof(h.recipients[0]), "site-b");
        h.summary.local_epochs = h.summary.train_loss = h.summary.train_accuracy = NAN;
        h.summary.val_loss = h.summary.val_accuracy = h.summary.val_auc = NAN;
        rc = bundle_seal(&keys[0], r, &h, argv[2], argv[3], info, err, sizeof(err));
    } else if (strcmp(argv[1], "verify") == 0) {
        rc = bundle_verify(r, argv[2], info, err, sizeof(err));
    } else if (strcmp(argv[1], "open") == 0 && argc == 4) {
        rc = bundle_open(&keys[1], r, NULL, argv[2], argv[3], NULL, info, err, sizeof(err));
    } else {
        fprintf(stderr, "usage: see the comment at the top of bench/bundle_bench.c\n");
        return 2;
    }
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", argv[1], err);
        return 1;
    }
    report(argv[1], cwt_monotonic() - t0);
    for (int i = 0; i < FUZZ_SITES; i++)
        keys_free(&keys[i]);
    free(r);
    free(info);
    return 0;
}
