/*
 * cwt.c - error strings and small parsing helpers.
 */
#include "common/cwt.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *cwt_strerror(int err)
{
    switch (err) {
    case CWT_OK:
        return "success";
    case CWT_ENOMEM:
        return "out of memory";
    case CWT_EIO:
        return "input/output error";
    case CWT_EINVAL:
        return "invalid argument";
    case CWT_ENOENT:
        return "not found";
    case CWT_EEXIST:
        return "already exists";
    case CWT_EFORMAT:
        return "malformed input";
    case CWT_ETOOBIG:
        return "input exceeds a limit";
    case CWT_ECONFIG:
        return "configuration error";
    case CWT_ESTORE:
        return "store error";
    case CWT_ECRYPTO:
        return "cryptographic library failure";
    case CWT_EPERM:
        return "unsafe permissions or not allowed";
    case CWT_EVULKAN:
        return "Vulkan error";
    case CWT_EUNSUPPORTED:
        return "unsupported";
    case CWT_EDECODE:
        return "image could not be decoded";
    case CWT_EDUPLICATE:
        return "duplicate";
    case CWT_ESTATE:
        return "not valid in the current state";
    case CWT_ENUMERIC:
        return "non-finite value";
    case CWT_EB_FRAMING:
        return "bundle size or framing is wrong";
    case CWT_EB_MAGIC:
        return "not a cwt bundle or unsupported version";
    case CWT_EB_HEADER:
        return "bundle header is malformed";
    case CWT_EB_ROSTER:
        return "bundle belongs to a different roster";
    case CWT_EB_SIGNER:
        return "bundle signer is not the sender in the roster";
    case CWT_EB_SIGNATURE:
        return "bundle signature does not verify";
    case CWT_EB_RECIPIENT:
        return "this site is not a recipient of the bundle";
    case CWT_EB_EXPIRED:
        return "bundle has expired";
    case CWT_EB_REPLAY:
        return "bundle was accepted before (replay)";
    case CWT_EB_ROLLBACK:
        return "bundle sequence is not newer than the last accepted (rollback)";
    case CWT_EB_PARENT:
        return "bundle parent does not match the known chain";
    case CWT_EB_DECRYPT:
        return "bundle payload fails to decrypt or authenticate";
    case CWT_EB_PAYLOAD:
        return "bundle payload hash does not match";
    case CWT_EB_MODEL:
        return "bundle model does not match the roster's model (fingerprint or tensors)";
    case CWT_EB_TENSORS:
        return "bundle tensors are malformed or not finite";
    case CWT_EB_TIME:
        return "bundle times are not plausible (created in the future or lives too long)";
    default:
        return "unknown error";
    }
}

/* One row per CWT_E* code; docs/json.md lists the names. */
static const struct {
    int code;
    const char *name;
} errnames[] = {
    {CWT_OK, "ok"},
    {CWT_ENOMEM, "no-memory"},
    {CWT_EIO, "io"},
    {CWT_EINVAL, "invalid"},
    {CWT_ENOENT, "not-found"},
    {CWT_EEXIST, "exists"},
    {CWT_EFORMAT, "format"},
    {CWT_ETOOBIG, "too-big"},
    {CWT_ECONFIG, "config"},
    {CWT_ESTORE, "store"},
    {CWT_ECRYPTO, "crypto"},
    {CWT_EPERM, "permission"},
    {CWT_EVULKAN, "vulkan"},
    {CWT_EUNSUPPORTED, "unsupported"},
    {CWT_EDECODE, "decode"},
    {CWT_EDUPLICATE, "duplicate"},
    {CWT_ESTATE, "state"},
    {CWT_ENUMERIC, "numeric"},
    {CWT_EB_FRAMING, "bundle-framing"},
    {CWT_EB_MAGIC, "bundle-magic"},
    {CWT_EB_HEADER, "bundle-header"},
    {CWT_EB_ROSTER, "bundle-roster"},
    {CWT_EB_SIGNER, "bundle-signer"},
    {CWT_EB_SIGNATURE, "bundle-signature"},
    {CWT_EB_RECIPIENT, "bundle-recipient"},
    {CWT_EB_EXPIRED, "bundle-expired"},
    {CWT_EB_REPLAY, "bundle-replay"},
    {CWT_EB_ROLLBACK, "bundle-rollback"},
    {CWT_EB_PARENT, "bundle-parent"},
    {CWT_EB_DECRYPT, "bundle-decrypt"},
    {CWT_EB_PAYLOAD, "bundle-payload"},
    {CWT_EB_MODEL, "bundle-model"},
    {CWT_EB_TENSORS, "bundle-tensors"},
    {CWT_EB_TIME, "bundle-time"},
};

const char *cwt_errname(int err)
{
    for (size_t i = 0; i < sizeof(errnames) / sizeof(errnames[0]); i++)
        if (errnames[i].code == err)
            return errnames[i].name;
    return "unknown";
}

int cwt_seterr(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

int cwt_mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return CWT_ETOOBIG;
    *out = a * b;
    return 0;
}

int cwt_add_size(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a)
        return CWT_ETOOBIG;
    *out = a + b;
    return 0;
}

void cwt_hex(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0xf];
    }
    out[2 * len] = '\0';
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int cwt_unhex(const char *in, uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        int hi, lo;

        if (in[2 * i] == '\0' || in[2 * i + 1] == '\0')
            return CWT_EFORMAT;
        hi = hexval((unsigned char)in[2 * i]);
        lo = hexval((unsigned char)in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return CWT_EFORMAT;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return in[2 * len] == '\0' ? 0 : CWT_EFORMAT;
}

int cwt_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    long long v;

    if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
        return CWT_EINVAL;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return CWT_EINVAL;
    *out = v;
    return 0;
}

int cwt_parse_double(const char *s, double min, double max, double *out)
{
    char *end;
    double v;

    if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
        return CWT_EINVAL;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) || v < min || v > max)
        return CWT_EINVAL;
    *out = v;
    return 0;
}

int cwt_valid_id(const char *id)
{
    size_t n = strlen(id);

    if (n == 0 || n > CWT_ID_MAX || id[0] == '.' || id[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return 0;
    }
    return 1;
}

int64_t cwt_now(void)
{
    return (int64_t)time(NULL);
}

double cwt_monotonic(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0.0;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
