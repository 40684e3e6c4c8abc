/*
 * fuzz_roster.c - libFuzzer harness for the roster parser: roster_load on the input written
 * to a memfd (libconfig reads it by path), then the fingerprint of whatever loaded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config/config.h"
#include "crypto/keys.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (crypto_init() != 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cwt_roster *r = malloc(sizeof(*r));
    char path[64], err[CWT_ERRLEN];
    uint8_t fp[32];
    int fd;

    if (r == NULL)
        abort();
    fd = memfd_create("roster", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    if (size > 0 && write(fd, data, size) != (ssize_t)size)
        abort();
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    if (roster_load(path, r, err, sizeof(err)) == 0)
        (void)roster_fingerprint(r, fp);
    close(fd);
    free(r);
    return 0;
}
