/*
 * cpu_device.c - the CPU backend's device: a oneDNN CPU engine and stream, the thread count,
 * and what eng_device_get_info reports (the CPU model, oneDNN's version and ISA).
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cwt.h"
#include "engine/cpu.h"

int cpu_dnnl_err(dnnl_status_t st, const char *what, char *err, size_t errlen)
{
    return cwt_seterr(err, errlen, st == dnnl_out_of_memory ? CWT_ENOMEM : CWT_EUNSUPPORTED,
                      "oneDNN: %s failed (status %d)", what, (int)st);
}

static const char *isa_name(dnnl_cpu_isa_t isa)
{
    switch (isa) {
    case dnnl_cpu_isa_sse41:
        return "sse4.1";
    case dnnl_cpu_isa_avx:
        return "avx";
    case dnnl_cpu_isa_avx2:
        return "avx2";
    case dnnl_cpu_isa_avx512_core:
        return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni:
        return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16:
        return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx:
        return "avx512_core_amx";
    default:
        return "other";
    }
}

/* The CPU's model name from /proc/cpuinfo ("CPU" where it cannot be read, e.g. in a sandbox). */
static void cpu_model_name(char *out, size_t len)
{
    snprintf(out, len, "CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "model name", 10) != 0)
            continue;
        const char *v = strchr(line, ':');
        if (!v)
            break;
        v++;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t n = strcspn(v, "\n");
        snprintf(out, len, "%.*s", (int)(n < len ? n : len - 1), v);
        break;
    }
    fclose(f);
}

void cpu_device_close(struct eng_device *d)
{
    struct cpu_device *c = d->cpu;
    if (!c)
        return;
    if (c->stream)
        dnnl_stream_destroy(c->stream);
    if (c->eng)
        dnnl_engine_destroy(c->eng);
    free(c);
    d->cpu = NULL;
}

int cpu_device_open(struct eng_device **out, char *err, size_t errlen)
{
    *out = NULL;
    struct eng_device *d = calloc(1, sizeof(*d));
    struct cpu_device *c = calloc(1, sizeof(*c));
    if (!d || !c) {
        free(d);
        free(c);
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory opening the CPU device");
    }
    d->be = &eng_backend_cpu;
    d->cpu = c;
    /* CWT_CPU_THREADS: a fixed thread count (results are bit-identical run to run for one
     * count; docs/engine.md "Determinism"). Default: OpenMP's, all cores. */
    const char *th = getenv("CWT_CPU_THREADS");
    int64_t nth = 0;
    if (th && *th) {
        if (cwt_parse_i64(th, 1, 1024, &nth) != 0) {
            cpu_device_close(d);
            free(d);
            return cwt_seterr(err, errlen, CWT_EINVAL, "CWT_CPU_THREADS must be in 1..1024");
        }
        omp_set_num_threads((int)nth);
    }
    c->threads = omp_get_max_threads();
    dnnl_status_t st = dnnl_engine_create(&c->eng, dnnl_cpu, 0);
    if (st == dnnl_success)
        st = dnnl_stream_create(&c->stream, c->eng, dnnl_stream_default_flags);
    if (st != dnnl_success) {
        cpu_device_close(d);
        free(d);
        return cpu_dnnl_err(st, "creating the CPU engine", err, errlen);
    }
    struct eng_device_info *in = &d->info;
    cpu_model_name(in->name, sizeof(in->name));
    const dnnl_version_t *v = dnnl_version();
    snprintf(in->driver, sizeof(in->driver), "oneDNN %d.%d.%d (%s, %d threads)", v->major, v->minor,
             v->patch, isa_name(dnnl_get_effective_cpu_isa()), c->threads);
    snprintf(in->type, sizeof(in->type), "cpu");
    snprintf(in->backend, sizeof(in->backend), "cpu");
    in->max_storage_buffer_range = UINT64_MAX;
    *out = d;
    return 0;
}
