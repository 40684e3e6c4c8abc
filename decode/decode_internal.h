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
#include "decode/decode.h"
#include "common/cwt.h"

int decode_png(const uint8_t *buf, size_t len, struct decoded_image *out, char *err, size_t errlen);
int decode_jpeg(const uint8_t *buf, size_t len, struct decoded_image *out, char *err,
                size_t errlen);
/* DICOM (DCMTK, cli/decode_dicom.cpp): the first frame, rescaled, windowed, MONOCHROME1
 * inverted. */
int decode_dicom(const uint8_t *buf, size_t len, struct decoded_image *out, char *err,
                 size_t errlen);
/* As decode_dicom(), reading the same bytes through fd (a regular file or memfd holding
 * them from offset 0) instead of staging buf in a memfd of its own. */
int decode_dicom_fd(const uint8_t *buf, size_t len, int fd, struct decoded_image *out, char *err,
                    size_t errlen);
/* Sets DCMTK up (codecs, logging) and reads its data dictionary: what DCMTK would otherwise
 * do from disk on the first file. 0, or CWT_EIO with a sentence in err. */
int decode_dicom_warm_up(char *err, size_t errlen);
/* Walks a DICOM Part 10 file's elements without recursion and refuses it when sequences nest
 * deeper than max_depth (DCMTK parses them recursively: thousands of levels exhaust the
 * stack). Only the nesting is judged; anything it cannot follow is left to DCMTK. 0, or
 * CWT_EDECODE with a sentence in err. */
int decode_dicom_scan(const uint8_t *buf, size_t len, unsigned max_depth, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
