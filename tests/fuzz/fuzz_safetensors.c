/*
 * fuzz_safetensors.c - libFuzzer harness for the strict safetensors reader: st_parse on the
 * input in memory (plus the finite check and a lookup when it parses), and the streamed
 * st_check_fd on the same bytes from a memfd.
 */
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/cwt.h"
#include "storage/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct st_file f;
    char err[CWT_ERRLEN];
    int fd;

    if (st_parse(data, size, &f, err, sizeof(err)) == 0) {
        (void)st_check_finite(&f, err, sizeof(err));
        if (f.n > 0)
            (void)st_find(&f, f.tensors[f.n - 1].name);
        st_free(&f);
    }
    fd = memfd_create("st", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    if (size > 0 && write(fd, data, size) != (ssize_t)size)
        abort();
    (void)st_check_fd(fd, err, sizeof(err));
    close(fd);
    return 0;
}
