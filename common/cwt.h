/*
 * cwt.h - error codes and small helpers shared by every cwt module.
 *
 * Every function in cwt returns an int: 0 on success, a negative CWT_E* code on
 * failure. Results come back through out-parameters. Where a person needs detail,
 * callers pass an error buffer (char *err, size_t errlen) that the callee fills with
 * one sentence naming the file, field or peer.
 */
#ifndef CWT_H
#define CWT_H

#include <stddef.h>
#include <stdint.h>

#define CWT_VERSION "0.1.0"

/* Sizes that bound identifiers everywhere (config, roster, bundle headers). */
#define CWT_ID_MAX      63 /* site and federation ids, without the NUL */
#define CWT_MAX_SITES   64
#define CWT_MAX_CLASSES 256
#define CWT_ERRLEN      512 /* a comfortable size for error buffers */

enum cwt_error {
    CWT_OK = 0,
    CWT_ENOMEM = -1,        /* out of memory */
    CWT_EIO = -2,           /* system call failed (errno says why) */
    CWT_EINVAL = -3,        /* invalid argument */
    CWT_ENOENT = -4,        /* no such item */
    CWT_EEXIST = -5,        /* item exists already */
    CWT_EFORMAT = -6,       /* malformed input */
    CWT_ETOOBIG = -7,       /* input exceeds a bound */
    CWT_ECONFIG = -8,       /* configuration or roster error */
    CWT_ESTORE = -9,        /* LMDB store error */
    CWT_ECRYPTO = -10,      /* libsodium failure */
    CWT_EPERM = -11,        /* unsafe permissions or not allowed */
    CWT_EVULKAN = -12,      /* Vulkan error */
    CWT_EUNSUPPORTED = -13, /* valid but unsupported input */
    CWT_EDECODE = -14,      /* image could not be decoded */
    CWT_EDUPLICATE = -15,   /* already present (idempotent skip) */
    CWT_ESTATE = -16,       /* operation not valid in this state */
    CWT_ENUMERIC = -17,     /* NaN or Inf where finite values are required */
    /* Bundle acceptance rules, in the order they are checked (DESIGN section 4). */
    CWT_EB_FRAMING = -30,   /* size and framing */
    CWT_EB_MAGIC = -31,     /* magic or version */
    CWT_EB_HEADER = -32,    /* header syntax */
    CWT_EB_ROSTER = -33,    /* roster fingerprint mismatch */
    CWT_EB_SIGNER = -34,    /* signer not in roster or not the sender */
    CWT_EB_SIGNATURE = -35, /* signature does not verify */
    CWT_EB_RECIPIENT = -36, /* this site is not a recipient */
    CWT_EB_EXPIRED = -37,   /* bundle expired */
    CWT_EB_REPLAY = -38,    /* bundle id seen before */
    CWT_EB_ROLLBACK = -39,  /* sequence number not greater than last accepted */
    CWT_EB_PARENT = -40,    /* parent hash does not match the known chain */
    CWT_EB_DECRYPT = -41,   /* a chunk fails to decrypt or authenticate */
    CWT_EB_PAYLOAD = -42,   /* payload hash mismatch */
    CWT_EB_MODEL = -43,     /* model fingerprint mismatch */
    CWT_EB_TENSORS = -44,   /* tensors not sane (NaN/Inf, bad safetensors) */
    CWT_EB_TIME = -45,      /* created in the future, or a lifetime beyond the roster's TTL */
};

/* Returns a static, human-readable description of a CWT_E* code. Never NULL. */
const char *cwt_strerror(int err);

/* Returns a static, stable machine name of a CWT_E* code ("ok", "io", "bundle-signature"),
 * for JSON output and logs that programs read: the names never change meaning, the numbers
 * are internal. Never NULL ("unknown" for a code not in the table). */
const char *cwt_errname(int err);

/* Formats a message into err (if err != NULL and errlen > 0), printf-style. Returns code,
 * so callers can write `return cwt_seterr(err, errlen, CWT_EFORMAT, "...", ...)`. */
int cwt_seterr(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Checked size arithmetic: return 0 and store the result, or CWT_ETOOBIG on overflow. */
int cwt_mul_size(size_t a, size_t b, size_t *out);
int cwt_add_size(size_t a, size_t b, size_t *out);

/* Lower-case hex of len bytes into out (needs 2*len+1 bytes). */
void cwt_hex(const uint8_t *in, size_t len, char *out);

/* Parses exactly 2*len hex digits into out. Returns 0 or CWT_EFORMAT. */
int cwt_unhex(const char *in, uint8_t *out, size_t len);

/* Parses a decimal integer in [min, max] with nothing after it. Returns 0 or CWT_EINVAL. */
int cwt_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);

/* Parses a finite double in [min, max] with nothing after it. Returns 0 or CWT_EINVAL. */
int cwt_parse_double(const char *s, double min, double max, double *out);

/* Returns 1 if id is a valid site or federation id: 1..CWT_ID_MAX chars of
 * [A-Za-z0-9._-], not starting with '.' or '-'. */
int cwt_valid_id(const char *id);

/* Wall-clock seconds since the epoch, and a monotonic clock in seconds. */
int64_t cwt_now(void);
double cwt_monotonic(void);

#endif
