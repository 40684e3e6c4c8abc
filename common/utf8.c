/*
 * utf8.c - UTF-8 validation and cleaning for text that leaves cwt as JSON (file names from an
 * inbox, paths from a CSV): JSON must be valid UTF-8, and such text may hold any bytes.
 */
#include "common/utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF), or 0. */
size_t cwt_utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80 ? 4 : 0;
    }
    return 0;
}

char *cwt_utf8_clean(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s), cap, o = 0;
    char *out;

    /* Each bad byte grows to 3 (U+FFFD): 3 * len + 1 bounds the result. */
    if (len > (SIZE_MAX - 1) / 3)
        return NULL;
    cap = 3 * len + 1;
    out = malloc(cap);
    if (out == NULL)
        return NULL;
    while (*p != '\0') {
        size_t n = cwt_utf8_len(p);
        if (n == 0) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            p++;
        } else {
            memcpy(out + o, p, n);
            o += n;
            p += n;
        }
    }
    out[o] = '\0';
    return out;
}

json_t *cwt_json_str(const char *s)
{
    char *clean;
    json_t *v;

    if (s == NULL)
        return json_null();
    clean = cwt_utf8_clean(s);
    if (clean == NULL)
        return NULL;
    v = json_string(clean);
    free(clean);
    return v;
}
