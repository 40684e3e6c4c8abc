/*
 * decode_internal.h - the per-format decoders behind decode_memory() (cli/decode.c).
 *
 * Each takes a whole file in memory, refuses images over DECODE_MAX_PIXELS before allocating
 * their pixels, and fills *out with 8-bit grey (c = 1) or RGB (c = 3), pixels malloc'd. On
 * failure *out is left empty and err holds one sentence. Codes: CWT_EDECODE (corrupt or
 * truncated), CWT_ETOOBIG (over a limit), CWT_EUNSUPPORTED (valid but unusable, such as a
 * DICOM file without pixel data or a CMYK JPEG), CWT_ENOMEM.
 */
#ifndef CWT_DECODE_INTERNAL_H
#define CWT_DECODE_INTERNAL_H

#ifdef __cplusplus
extern "C" {
#endif

/* Plain C headers without their own extern "C" guards. */
#include "cli/decode.h"
#include "common/cwt.h"

int decode_png(const uint8_t *buf, size_t len, struct decoded_image *out, char *err, size_t errlen);
int decode_jpeg(const uint8_t *buf, size_t len, struct decoded_image *out, char *err,
                size_t errlen);
/* DICOM (DCMTK, cli/decode_dicom.cpp): the first frame, rescaled, windowed, MONOCHROME1
 * inverted. */
int decode_dicom(const uint8_t *buf, size_t len, struct decoded_image *out, char *err,
                 size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
