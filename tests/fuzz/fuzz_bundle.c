/*
 * fuzz_bundle.c - libFuzzer harness for the bundle parser: the input is a whole .cwtb file,
 * verified against the fixed roster (framing, header TLV, roster, signer, signature) from a
 * memfd, and its header region also fed straight to the TLV decoder.
 */
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "crypto/bundle.h"
#include "fuzz_common.h"

static struct cwt_roster *roster;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static struct site_keys keys[FUZZ_SITES];

    (void)argc;
    (void)argv;
    roster = calloc(1, sizeof(*roster));
    if (roster == NULL || crypto_init() != 0 || fuzz_roster(roster, keys) != 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bundle_info *info = malloc(sizeof(*info));
    struct bundle_header *h = malloc(sizeof(*h));
    char err[CWT_ERRLEN];
    int fd;

    if (info == NULL || h == NULL)
        abort();
    if (size > 12)
        (void)bundle_header_decode(data + 12, size - 12, h, err, sizeof(err));
    fd = memfd_create("bundle", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    if (size > 0 && write(fd, data, size) != (ssize_t)size)
        abort();
    if (bundle_verify_fd(roster, fd, info, err, sizeof(err)) == 0) {
        FILE *null = fopen("/dev/null", "w");
        if (null != NULL) {
            bundle_print(null, info, roster, 1);
            bundle_print(null, info, roster, 0);
            fclose(null);
        }
    }
    close(fd);
    free(info);
    free(h);
    return 0;
}
