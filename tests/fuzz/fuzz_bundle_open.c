/*
 * fuzz_bundle_open.c - libFuzzer harness for everything bundle_open does after the signature
 * check: recipient and times rules, the content key, chunk decryption and authentication,
 * payload hash, model fingerprint, the strict safetensors check, the temp file and rename.
 *
 * A fuzzed file would never get past the signature, so the harness re-signs every input with
 * the fixture key of the sender its header names (site-a when the header does not decode):
 * trailer key id and an Ed25519 signature over the bytes before it, under the bundle context
 * (or over the bare digest for a version 1 file), as a roster member would. Then it opens the
 * file as the first recipient the header names (site-b otherwise). The clock is fixed at
 * FUZZ_BUNDLE_NOW (cwt_now is wrapped at link time, run.sh) so that the seeds, created at
 * FUZZ_BUNDLE_TIME, never expire.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "crypto/bundle.h"
#include "crypto/keyops.h"
#include "fuzz_common.h"

static struct cwt_roster *roster;
static struct site_keys keys[FUZZ_SITES];
static char out_path[64];

int64_t __wrap_cwt_now(void);
int64_t __wrap_cwt_now(void)
{
    return FUZZ_BUNDLE_NOW;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static char dir[] = "/tmp/fuzz_bundle_open.XXXXXX";

    (void)argc;
    (void)argv;
    roster = calloc(1, sizeof(*roster));
    if (roster == NULL || crypto_init() != 0 || fuzz_roster(roster, keys) != 0)
        abort();
    if (mkdtemp(dir) == NULL)
        abort();
    snprintf(out_path, sizeof(out_path), "%s/out.safetensors", dir);
    return 0;
}

static int site_index(const char *id, int fallback)
{
    int i = roster_find_site(roster, id);

    return i >= 0 ? i : fallback;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bundle_header *h = malloc(sizeof(*h));
    struct bundle_info *info = malloc(sizeof(*info));
    struct bundle_expect ex;
    uint8_t *buf, digest[KEYOPS_DIGEST_LEN], fp[32];
    char err[CWT_ERRLEN];
    int signer = 0, me = 1, fd;

    if (h == NULL || info == NULL)
        abort();
    if (size < BUNDLE_MIN_SIZE || size > (4u << 20)) {
        free(h);
        free(info);
        return 0;
    }
    if ((buf = malloc(size)) == NULL)
        abort();
    memcpy(buf, data, size);
    {
        uint32_t hlen = (uint32_t)buf[8] | (uint32_t)buf[9] << 8 | (uint32_t)buf[10] << 16 |
                        (uint32_t)buf[11] << 24;
        if (hlen <= size - 12 && bundle_header_decode(buf + 12, hlen, h, err, sizeof(err)) == 0) {
            signer = site_index(h->sender, 0);
            me = site_index(h->recipients[0], 1);
        }
    }
    memcpy(buf + size - 72, keys[signer].key_id, CWT_KEYID_LEN);
    crypto_generichash(digest, sizeof(digest), buf, size - 64, NULL, 0);
    if ((buf[4] | buf[5] << 8) == 1)
        crypto_sign_detached(buf + size - 64, NULL, digest, sizeof(digest), keys[signer].sign_sk);
    else if (keyops_sign_sk(keys[signer].sign_sk, KEYOPS_CTX_BUNDLE, digest, buf + size - 64) != 0)
        abort();

    fd = memfd_create("bundle", MFD_CLOEXEC);
    if (fd < 0 || write(fd, buf, size) != (ssize_t)size)
        abort();
    memset(fp, 0xab, sizeof(fp)); /* the seeds' model fingerprint */
    memset(&ex, 0, sizeof(ex));
    ex.model_fp = fp;
    (void)bundle_open_fd(&keys[me], roster, NULL, fd, "fuzz.cwtb", out_path, &ex, info, err,
                         sizeof(err));
    (void)unlink(out_path);
    close(fd);
    free(buf);
    free(h);
    free(info);
    return 0;
}
