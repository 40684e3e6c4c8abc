/*
 * decode_dicom.cpp - DICOM through DCMTK, rendered the way DCMTK's own dcm2pnm renders it:
 * modality transform (rescale slope/intercept), then the first VOI window when the file
 * carries one, else a min-max window; MONOCHROME1 comes out inverted (white is high);
 * colour (RGB, YBR, palette) comes out as RGB. Only the first frame is decoded.
 *
 * Transfer syntaxes: whatever dcmdata reads (explicit/implicit VR little endian, explicit
 * big endian, deflated) plus the registered decoders: JPEG baseline/extended/lossless
 * (dcmjpeg), JPEG-LS (dcmjpls) and RLE (dcmdata). JPEG 2000 is not in free DCMTK and is
 * reported as unsupported.
 */
#include "dcmtk/config/osconfig.h"

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcistrmb.h"
#include "dcmtk/dcmdata/dcrledrg.h"
#include "dcmtk/dcmimage/diregist.h" /* colour image support for DicomImage */
#include "dcmtk/dcmimgle/dcmimage.h"
#include "dcmtk/dcmjpeg/djdecode.h"
#include "dcmtk/dcmjpls/djdecode.h"
#include "dcmtk/oflog/oflog.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

#include "cli/decode_internal.h"

namespace
{

/* DCMTK keeps its codec list and logger configuration process-wide; they are set up once and
 * left in place until exit (dcm2pnm does the same). Its warnings would clutter the ingest
 * output, where every rejected file is already reported once. */
void dicom_setup()
{
    static std::once_flag once;
    std::call_once(once, [] {
        OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
        DJDecoderRegistration::registerCodecs();
        DJLSDecoderRegistration::registerCodecs();
        DcmRLEDecoderRegistration::registerCodecs();
    });
}

int render(const uint8_t *buf, size_t len, struct decoded_image *out, char *err, size_t errlen)
{
    DcmInputBufferStream stream;
    DcmFileFormat file;
    OFCondition cond;

    stream.setBuffer(buf, static_cast<offile_off_t>(len));
    stream.setEos();
    file.transferInit();
    /* A buffer stream cannot re-read values later, so every value is loaded now (the file is
     * already bounded by DECODE_MAX_FILE). */
    cond = file.read(stream, EXS_Unknown, EGL_noChange, 0xffffffffu);
    file.transferEnd();
    stream.releaseBuffer();
    if (cond.bad())
        return cwt_seterr(err, errlen, CWT_EDECODE, "corrupt or truncated DICOM: %s", cond.text());

    DcmDataset *ds = file.getDataset();
    if (ds == NULL)
        return cwt_seterr(err, errlen, CWT_EDECODE, "DICOM file has no data set");
    if (!ds->tagExistsWithValue(DCM_PixelData))
        return cwt_seterr(err, errlen, CWT_EUNSUPPORTED,
                          "DICOM file has no pixel data (not an image object)");
    Uint16 rows = 0, cols = 0;
    if (ds->findAndGetUint16(DCM_Rows, rows).bad() ||
        ds->findAndGetUint16(DCM_Columns, cols).bad() || rows == 0 || cols == 0)
        return cwt_seterr(err, errlen, CWT_EDECODE, "DICOM image has no valid Rows/Columns");
    /* Decompression bombs: refuse from the header, before DCMTK renders anything. */
    if (static_cast<uint64_t>(rows) * cols > DECODE_MAX_PIXELS)
        return cwt_seterr(
            err, errlen, CWT_ETOOBIG, "DICOM image of %ux%u pixels is over the limit of %u pixels",
            static_cast<unsigned>(cols), static_cast<unsigned>(rows), DECODE_MAX_PIXELS);

    /* Frame 0 only; partial access keeps a multi-frame file from being decoded whole. */
    DicomImage image(&file, ds->getOriginalXfer(), CIF_UsePartialAccessToPixelData, 0, 1);
    EI_Status status = image.getStatus();
    if (status != EIS_Normal) {
        int code = (status == EIS_NotSupportedValue) ? CWT_EUNSUPPORTED : CWT_EDECODE;
        return cwt_seterr(err, errlen, code, "DICOM pixel data cannot be rendered: %s",
                          DicomImage::getString(status));
    }
    uint32_t channels = image.isMonochrome() ? 1 : 3;
    if (image.isMonochrome()) {
        int ok = image.getWindowCount() > 0 ? image.setWindow(0) : image.setMinMaxWindow(0);
        if (!ok)
            return cwt_seterr(err, errlen, CWT_EDECODE, "DICOM VOI window cannot be applied");
    }
    unsigned long w = image.getWidth(), h = image.getHeight();
    size_t expect = static_cast<size_t>(w) * h * channels;
    const void *pixels = image.getOutputData(8, 0, 0);
    if (pixels == NULL || w == 0 || h == 0 || image.getOutputDataSize(8) != expect)
        return cwt_seterr(err, errlen, CWT_EDECODE, "DICOM pixel data cannot be rendered: %s",
                          DicomImage::getString(image.getStatus()));
    uint8_t *copy = static_cast<uint8_t *>(std::malloc(expect));
    if (copy == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory for a DICOM image");
    std::memcpy(copy, pixels, expect);
    out->h = static_cast<uint32_t>(h);
    out->w = static_cast<uint32_t>(w);
    out->c = channels;
    out->pixels = copy;
    return 0;
}

} // namespace

extern "C" int decode_dicom(const uint8_t *buf, size_t len, struct decoded_image *out, char *err,
                            size_t errlen)
{
    std::memset(out, 0, sizeof(*out));
    /* No C++ exception may cross into C. */
    try {
        dicom_setup();
        return render(buf, len, out, err, errlen);
    } catch (const std::bad_alloc &) {
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory decoding DICOM");
    } catch (...) {
        return cwt_seterr(err, errlen, CWT_EDECODE, "DICOM decoder failed");
    }
}
