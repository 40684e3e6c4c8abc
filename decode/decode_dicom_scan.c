/*
 * decode_dicom_scan.c - a flat walk over a DICOM file's elements that bounds how deeply
 * sequences nest, before DCMTK (which recurses once per level) sees the file.
 *
 * The walk keeps an explicit stack of open sequences and items, each with its end (an offset,
 * or "undefined length": until its delimiter). An element opens a sequence when its VR is SQ,
 * when it is UN of undefined length (DCMTK reads those as implicit-VR sequences), or, where
 * the VR is implicit, when it has undefined length or its value starts with an item tag (the
 * walk has no dictionary; counting a non-sequence as one only makes it stricter). Undefined-
 * length pixel data holds fragments, which are skipped. Whatever the walk cannot follow
 * (a length past the end, deflated data) ends it without a verdict: DCMTK judges the rest,
 * in the decoder child, where a crash costs one file.
 */
#include <string.h>

#include "decode/decode_internal.h"

#define UNDEFINED 0xffffffffu

enum { K_SEQ, K_ITEM, K_PIXELS };

struct level {
    size_t end; /* SIZE_MAX: undefined length */
    int kind;
    int implicit; /* VR encoding inside this level */
};

struct walk {
    const uint8_t *buf;
    size_t len, pos;
    int big; /* big-endian data set */
};

static uint16_t rd16(const struct walk *w, size_t at)
{
    const uint8_t *p = w->buf + at;
    return w->big ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[1] << 8 | p[0]);
}

static uint32_t rd32(const struct walk *w, size_t at)
{
    const uint8_t *p = w->buf + at;
    if (w->big)
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* VRs with a 2-byte reserved field and a 4-byte length in explicit encoding. */
static int long_vr(const uint8_t *vr)
{
    static const char *const l[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ",
                                    "SV", "UC", "UN", "UR", "UT", "UV"};
    for (size_t i = 0; i < sizeof(l) / sizeof(l[0]); i++)
        if (vr[0] == (uint8_t)l[i][0] && vr[1] == (uint8_t)l[i][1])
            return 1;
    return 0;
}

/* Finds the transfer syntax in the meta group (always explicit VR little endian) and leaves
 * w->pos at the data set. Returns 0, or -1 when the walk cannot go on (left to DCMTK). */
static int read_meta(struct walk *w, int *implicit)
{
    char uid[65] = "";

    w->pos = 132;
    while (w->pos + 8 <= w->len && rd16(w, w->pos) == 0x0002) {
        uint16_t elem = rd16(w, w->pos + 2);
        const uint8_t *vr = w->buf + w->pos + 4;
        size_t hdr = 8;
        uint32_t vlen;
        if (long_vr(vr)) {
            if (w->pos + 12 > w->len)
                return -1;
            vlen = rd32(w, w->pos + 8);
            hdr = 12;
        } else {
            vlen = rd16(w, w->pos + 6);
        }
        if (vlen == UNDEFINED || vlen > w->len - w->pos - hdr)
            return -1;
        if (elem == 0x0010 && vlen < sizeof(uid)) {
            size_t n = vlen;
            memcpy(uid, w->buf + w->pos + hdr, n);
            uid[n] = '\0';
            while (n > 0 && (uid[n - 1] == '\0' || uid[n - 1] == ' '))
                uid[--n] = '\0';
        }
        w->pos += hdr + vlen;
    }
    if (strcmp(uid, "1.2.840.10008.1.2") == 0) {
        *implicit = 1;
    } else if (strcmp(uid, "1.2.840.10008.1.2.2") == 0) {
        w->big = 1;
        *implicit = 0;
    } else if (strcmp(uid, "1.2.840.10008.1.2.1.99") == 0) {
        return -1; /* deflated: DCMTK inflates it; the child's stack limit is the bound */
    } else {
        *implicit = uid[0] == '\0'; /* no meta transfer syntax: DCMTK guesses; so do we */
    }
    return 0;
}

int decode_dicom_scan(const uint8_t *buf, size_t len, unsigned max_depth, char *err, size_t errlen)
{
    struct level stack[72]; /* a sequence and an item per level, pixel data */
    struct walk w = {buf, len, 0, 0};
    unsigned depth = 0, n = 0; /* sequences open; levels on the stack */
    int implicit = 0;

    if (max_depth > 32)
        max_depth = 32; /* what the stack holds */
    if (len < 132 || read_meta(&w, &implicit) != 0)
        return 0;
    while (w.pos + 8 <= w.len) {
        const struct level *top = n > 0 ? &stack[n - 1] : NULL;
        int imp = top != NULL ? top->implicit : implicit;
        uint16_t group, elem;
        uint32_t vlen;
        size_t hdr = 8, value;
        int opens = 0, open_imp = imp;

        /* Close the defined-length levels that end here. */
        if (top != NULL && top->end != SIZE_MAX && w.pos >= top->end) {
            if (top->kind == K_SEQ)
                depth--;
            n--;
            continue;
        }
        group = rd16(&w, w.pos);
        elem = rd16(&w, w.pos + 2);
        if (group == 0xfffe) {
            vlen = rd32(&w, w.pos + 4);
            w.pos += 8;
            if (elem == 0xe00d || elem == 0xe0dd) { /* item or sequence delimiter */
                if (n > 0 && stack[n - 1].end == SIZE_MAX) {
                    if (stack[n - 1].kind == K_SEQ)
                        depth--;
                    n--;
                }
                continue;
            }
            if (elem != 0xe000)
                return 0;
            if (top != NULL && top->kind == K_PIXELS) { /* a fragment: skip it */
                if (vlen == UNDEFINED || vlen > w.len - w.pos)
                    return 0;
                w.pos += vlen;
                continue;
            }
            if (n == sizeof(stack) / sizeof(stack[0]))
                return 0;
            if (vlen != UNDEFINED && vlen > w.len - w.pos)
                return 0;
            stack[n].end = vlen == UNDEFINED ? SIZE_MAX : w.pos + vlen;
            stack[n].kind = K_ITEM;
            stack[n].implicit = imp;
            n++;
            continue;
        }
        if (imp) {
            vlen = rd32(&w, w.pos + 4);
        } else {
            const uint8_t *vr = w.buf + w.pos + 4;
            if (long_vr(vr)) {
                if (w.pos + 12 > w.len)
                    return 0;
                vlen = rd32(&w, w.pos + 8);
                hdr = 12;
                if (vr[0] == 'S' && vr[1] == 'Q')
                    opens = 1;
                if (vr[0] == 'U' && vr[1] == 'N' && vlen == UNDEFINED) {
                    opens = 1;
                    open_imp = 1;
                }
            } else {
                vlen = rd16(&w, w.pos + 6);
            }
        }
        value = w.pos + hdr;
        if (vlen != UNDEFINED && vlen > w.len - value)
            return 0;
        if (group == 0x7fe0 && elem == 0x0010 && vlen == UNDEFINED) {
            if (n == sizeof(stack) / sizeof(stack[0]))
                return 0;
            stack[n].end = SIZE_MAX;
            stack[n].kind = K_PIXELS;
            stack[n].implicit = imp;
            n++;
            w.pos = value;
            continue;
        }
        if (imp && (vlen == UNDEFINED ||
                    (vlen >= 4 && rd16(&w, value) == 0xfffe && rd16(&w, value + 2) == 0xe000)))
            opens = 1;
        if (!opens) {
            if (vlen == UNDEFINED)
                return 0;
            w.pos = value + vlen;
            continue;
        }
        if (++depth > max_depth)
            return cwt_seterr(err, errlen, CWT_EDECODE,
                              "DICOM sequences nest deeper than %u levels (at byte %zu)", max_depth,
                              w.pos);
        if (n == sizeof(stack) / sizeof(stack[0]))
            return 0;
        stack[n].end = vlen == UNDEFINED ? SIZE_MAX : value + vlen;
        stack[n].kind = K_SEQ;
        stack[n].implicit = open_imp;
        n++;
        w.pos = value;
    }
    return 0;
}
