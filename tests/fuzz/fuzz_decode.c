/*
 * fuzz_decode.c - libFuzzer harness for image decoding: decode_memory on the input (PNG,
 * JPEG or DICOM by content; DICOM goes through DCMTK), then, when it decodes, image_prepare
 * to a grey and a colour target of a size taken from the input's last bytes, so that both
 * the shrinking and the enlarging filters see decoded images of every shape.
 */
#include <stdint.h>
#include <stdlib.h>

#include "decode/decode.h"
#include "common/cwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct decoded_image img;
    char err[CWT_ERRLEN];
    uint8_t *out;
    uint32_t h = 7, w = 5;

    if (decode_memory(data, size, &img, err, sizeof(err)) != 0)
        return 0;
    if (img.h == 0 || img.w == 0 || (img.c != 1 && img.c != 3) || img.pixels == NULL)
        abort(); /* decode_memory promised an image */
    if (size >= 2) {
        h = 1 + data[size - 1] % 48;
        w = 1 + data[size - 2] % 48;
    }
    out = malloc((size_t)h * w * 3);
    if (out == NULL)
        abort();
    (void)image_prepare(&img, h, w, 1, out);
    (void)image_prepare(&img, h, w, 3, out);
    free(out);
    decode_free(&img);
    return 0;
}
