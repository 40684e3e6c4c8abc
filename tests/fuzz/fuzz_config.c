/*
 * fuzz_config.c - libFuzzer harness for the site configuration parser: config_load on the
 * input written to a memfd (libconfig reads it by path), as fuzz_roster does for roster_load.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cwt_config *cfg = malloc(sizeof(*cfg));
    char path[64], err[CWT_ERRLEN];
    int fd;

    if (cfg == NULL)
        abort();
    fd = memfd_create("cwtd.conf", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    if (size > 0 && write(fd, data, size) != (ssize_t)size)
        abort();
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    if (config_load(path, cfg, err, sizeof(err)) == 0) {
        /* A loaded configuration holds a valid site id and absolute paths only. */
        if (!cwt_valid_id(cfg->site_id) || cfg->store_dir[0] != '/' || cfg->keys_dir[0] != '/' ||
            cfg->inbox_dir[0] != '/' || cfg->outbox_dir[0] != '/' || cfg->roster_path[0] != '/' ||
            cfg->socket_path[0] != '/')
            abort();
    }
    close(fd);
    free(cfg);
    return 0;
}
