/*
 * decode.h - image decoding for ingest and predict (cwtctl only; the daemon never decodes).
 *
 * PNG (libpng: 8/16-bit, grey/RGB/alpha, palette), JPEG (libjpeg-turbo) and DICOM (DCMTK).
 * Every decoder refuses images over DECODE_MAX_PIXELS before allocating (decompression
 * bombs). The result is converted to the federation's channel count and resized to its
 * input size with an anti-aliased filter (area averaging when shrinking).
 */
#ifndef CWT_DECODE_H
#define CWT_DECODE_H

#include <stddef.h>
#include <stdint.h>

#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define DECODE_MAX_PIXELS (64u * 1024u * 1024u) /* 64 Mpixel */
#else
/* The fuzz harnesses run under ASan within a 2 GB RSS limit, where DCMTK's buffers for one
 * few-byte input declaring 64 Mpixel come close to the limit on their own: fuzzing walks
 * the same code with images 16 times smaller. */
#define DECODE_MAX_PIXELS (4u * 1024u * 1024u)
#endif
#define DECODE_MAX_FILE (1024u * 1024u * 1024u)
/* One uncompressed DICOM frame: 64 Mpixel at 16-bit grey or 8-bit RGB fit. */
#define DECODE_MAX_FRAME_BYTES (4ull * DECODE_MAX_PIXELS)
/* DICOM sequences nested deeper than this are refused before DCMTK parses them: real images
 * nest a handful of levels, DCMTK recurses once per level. */
#define DECODE_MAX_DICOM_DEPTH 32

/* A decoded image, 8-bit, interleaved HWC. pixels is malloc'd; free with decode_free(). */
struct decoded_image {
    uint32_t h, w, c; /* c is 1 or 3 */
    uint8_t *pixels;
};

/* Decodes a file by content (PNG signature, JPEG SOI, DICOM "DICM" preamble) into 8-bit grey
 * or RGB. DICOM: rescale slope/intercept, window centre/width when present else min-max,
 * MONOCHROME1 inverted, first frame. CWT_EDECODE / CWT_ETOOBIG / CWT_EFORMAT with a sentence
 * in err. */
int decode_file(const char *path, struct decoded_image *out, char *err, size_t errlen);
int decode_memory(const uint8_t *buf, size_t len, struct decoded_image *out, char *err,
                  size_t errlen);
/* As decode_memory(), with fd a descriptor that holds the same bytes from offset 0 (or -1):
 * DICOM is then read through it rather than staged in a new memfd. */
int decode_memory_fd(const uint8_t *buf, size_t len, int fd, struct decoded_image *out, char *err,
                     size_t errlen);
void decode_free(struct decoded_image *img);

/* Converts to c_out channels (grey <-> RGB, ITU-R BT.601 luma) and resizes to h_out x w_out
 * into out (h_out*w_out*c_out bytes, caller-owned). */
int image_prepare(const struct decoded_image *in, uint32_t h_out, uint32_t w_out, uint32_t c_out,
                  uint8_t *out);

#endif
