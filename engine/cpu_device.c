/*
 * cpu_device.c - the CPU backend's device (oneDNN).
 */
#include "common/cwt.h"
#include "engine/model.h"

int cpu_device_open(struct eng_device **out, char *err, size_t errlen)
{
    *out = NULL;
    return cwt_seterr(err, errlen, CWT_EUNSUPPORTED, "the CPU backend is not built yet");
}
