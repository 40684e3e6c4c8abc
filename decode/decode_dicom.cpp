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
#include "dcmtk/dcmdata/dcdict.h"
#include "dcmtk/dcmdata/dcerror.h"
#include "dcmtk/dcmdata/dcistrma.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcpixel.h"
#include "dcmtk/dcmdata/dcpixseq.h"
#include "dcmtk/dcmdata/dcpxitem.h"
#include "dcmtk/dcmdata/dcrledrg.h"
#include "dcmtk/dcmimage/diregist.h" /* colour image support for DicomImage */
#include "dcmtk/dcmimgle/dcmimage.h"
#include "dcmtk/dcmjpeg/djdecode.h"
#include "dcmtk/dcmjpls/djdecode.h"
#include "dcmtk/oflog/oflog.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

#include <sys/mman.h>
#include <unistd.h>

#include "decode/decode_internal.h"

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

/* DCMTK reads the file through a descriptor, never by path: the decoder child may not open
 * anything (decode/decoder.h). The producer reads with pread at its own position, so any
 * number of streams on one descriptor (DCMTK opens one per value it loads lazily) never
 * disturb each other. */
class FdProducer : public DcmProducer
{
  public:
    FdProducer(int fd, offile_off_t size, offile_off_t pos) : fd_(fd), size_(size), pos_(pos)
    {
        if (pos_ > size_)
            status_ = EC_InvalidStream;
    }
    OFBool good() const override
    {
        return status_.good();
    }
    OFCondition status() const override
    {
        return status_;
    }
    OFBool eos() override
    {
        return pos_ >= size_;
    }
    offile_off_t avail() override
    {
        return status_.good() ? size_ - pos_ : 0;
    }
    offile_off_t read(void *buf, offile_off_t buflen) override
    {
        offile_off_t want = buflen < avail() ? buflen : avail(), got = 0;
        while (got < want) {
            ssize_t n = pread(fd_, static_cast<char *>(buf) + got, static_cast<size_t>(want - got),
                              static_cast<off_t>(pos_ + got));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                status_ = EC_InvalidStream;
                break;
            }
            got += n;
        }
        pos_ += got;
        return got;
    }
    offile_off_t skip(offile_off_t skiplen) override
    {
        offile_off_t n = skiplen < avail() ? skiplen : avail();
        pos_ += n;
        return n;
    }
    void putback(offile_off_t num) override
    {
        if (num > pos_)
            status_ = EC_PutbackFailed;
        else
            pos_ -= num;
    }

  private:
    int fd_;
    offile_off_t size_, pos_;
    OFCondition status_ = EC_Normal;
};

class FdInputStream : public DcmInputStream
{
  public:
    /* The producer is a member built after the base; the base only stores its address
     * (as DcmInputFileStream does). */
    FdInputStream(int fd, offile_off_t size, offile_off_t start)
        : DcmInputStream(&producer_), producer_(fd, size, start), fd_(fd), size_(size),
          start_(start)
    {
    }
    DcmInputStreamFactory *newFactory() const override;

  private:
    FdProducer producer_;
    int fd_;
    offile_off_t size_, start_;
};

/* Re-creates a stream at a saved position, for values DCMTK loads when they are used. */
class FdStreamFactory : public DcmInputStreamFactory
{
  public:
    FdStreamFactory(int fd, offile_off_t size, offile_off_t pos) : fd_(fd), size_(size), pos_(pos)
    {
    }
    DcmInputStream *create() const override
    {
        return new FdInputStream(fd_, size_, pos_);
    }
    DcmInputStreamFactory *clone() const override
    {
        return new FdStreamFactory(*this);
    }
    /* DCMTK looks at the type only when it saves a file over the one it read; cwt never
     * saves. */
    DcmInputStreamFactoryType ident() const override
    {
        return DFT_DcmInputFileStreamFactory;
    }

  private:
    int fd_;
    offile_off_t size_, pos_;
};

DcmInputStreamFactory *FdInputStream::newFactory() const
{
    /* With a filter installed (deflated transfer syntax) positions are not file offsets:
     * DCMTK then loads every value at once, as for any stream without a factory. */
    if (currentProducer() != &producer_)
        return NULL;
    return new FdStreamFactory(fd_, size_, start_ + tell());
}

/* The memfd that holds the file while DCMTK reads it; closed when it goes out of scope. */
struct staged_file {
    int fd = -1;
    ~staged_file()
    {
        if (fd >= 0)
            close(fd);
    }
};

uint32_t le32(const Uint8 *p)
{
    return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
           static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

/* The encapsulated pixel sequence of ds for xfer, or NULL. The PixelData element is a
 * DcmPixelData only where its VR made DCMTK create one: a file can give the tag another VR
 * (found by tests/fuzz/fuzz_decode, where the cast below was then undefined behaviour). */
DcmPixelSequence *encapsulated_pixels(DcmDataset *ds, E_TransferSyntax xfer)
{
    DcmElement *elem = NULL;
    DcmPixelSequence *seq = NULL;

    if (ds->findAndGetElement(DCM_PixelData, elem).bad() || elem == NULL ||
        elem->ident() != EVR_PixelData ||
        static_cast<DcmPixelData *>(elem)->getEncapsulatedRepresentation(xfer, NULL, seq).bad())
        return NULL;
    return seq;
}

/* DCMTK 3.6.7's RLE decoder trusts the segment offsets of a frame's 64-byte RLE header and
 * reads far past the fragment when one points beyond it (found by tests/fuzz/fuzz_decode).
 * Every RLE frame is exactly one fragment (PS3.5 A.4.2), so each fragment's header is
 * checked before DCMTK decodes anything: 1-15 segments, offsets ascending, from 64 up to the
 * fragment's end. */
int check_rle_headers(DcmDataset *ds, char *err, size_t errlen)
{
    DcmPixelSequence *seq;

    if (ds->getOriginalXfer() != EXS_RLELossless)
        return 0;
    if ((seq = encapsulated_pixels(ds, EXS_RLELossless)) == NULL)
        return cwt_seterr(err, errlen, CWT_EDECODE, "RLE DICOM without encapsulated pixel data");
    /* Item 0 is the basic offset table. */
    for (unsigned long i = 1; i < seq->card(); i++) {
        DcmPixelItem *item = NULL;
        Uint8 *frag = NULL;
        uint32_t flen, segments, prev = 64;

        if (seq->getItem(item, i).bad() || item == NULL || item->getUint8Array(frag).bad() ||
            frag == NULL || (flen = item->getLength()) < 64)
            return cwt_seterr(err, errlen, CWT_EDECODE, "RLE fragment %lu is truncated", i);
        segments = le32(frag);
        if (segments == 0 || segments > 15)
            return cwt_seterr(err, errlen, CWT_EDECODE, "RLE fragment %lu has %u segments", i,
                              segments);
        for (uint32_t k = 0; k < segments; k++) {
            uint32_t offset = le32(frag + 4 + 4 * k);
            if (offset < prev || offset > flen)
                return cwt_seterr(err, errlen, CWT_EDECODE,
                                  "RLE fragment %lu has segment offset %u outside its %u bytes", i,
                                  offset, flen);
            prev = offset;
        }
    }
    return 0;
}

/* The frame header (SOFn segment at frag + off) must describe the image the DICOM header
 * does: DCMTK sizes its frame buffer from Rows x Columns x SamplesPerPixel, so a small JPEG
 * under a header declaring 64 Mpixel RGB would otherwise cost hundreds of MB before the decoder
 * notices the mismatch. Layout (ITU T.81 B.2.2): length, precision, lines, samples per line,
 * components. Zero lines (height given later by a DNL marker) is refused: dcmjpeg reads the
 * height from here. */
int check_jpeg_frame_header(const Uint8 *frag, uint32_t flen, uint32_t off, Uint16 rows,
                            Uint16 cols, Uint16 samples, char *err, size_t errlen)
{
    if (flen - off < 10)
        return cwt_seterr(err, errlen, CWT_EDECODE, "JPEG frame header is truncated");
    unsigned lines = static_cast<unsigned>(frag[off + 5]) << 8 | frag[off + 6];
    unsigned width = static_cast<unsigned>(frag[off + 7]) << 8 | frag[off + 8];
    unsigned components = frag[off + 9];
    if (lines != rows || width != cols || components != samples)
        return cwt_seterr(err, errlen, CWT_EDECODE,
                          "JPEG frame of %ux%u pixels, %u components, does not match the DICOM "
                          "header's %ux%u pixels, %u samples",
                          width, lines, components, static_cast<unsigned>(cols),
                          static_cast<unsigned>(rows), static_cast<unsigned>(samples));
    return 0;
}

/* DCMTK 3.6.7 scans each JPEG fragment for its bit depth before decoding, and its scanner
 * never advances past a TEM marker (0xFF01): a fragment with TEM before the frame header loops
 * forever (found by tests/fuzz/fuzz_decode). The same walk is done here, bounded, over the
 * first fragment of every JPEG-process (dcmjpeg) transfer syntax: SOI/RSTn/EOI take 2 bytes,
 * segments their length + 2, fill bytes 1; a TEM or any other marker before a SOFn, or
 * running off the end, refuses the file. The SOFn found is checked against the header. */
int check_jpeg_fragments(DcmDataset *ds, Uint16 rows, Uint16 cols, char *err, size_t errlen)
{
    E_TransferSyntax xfer = ds->getOriginalXfer();
    DcmPixelSequence *seq;
    DcmPixelItem *item = NULL;
    Uint8 *frag = NULL;
    uint32_t flen, off = 0;

    /* every JPEG process dcmjpeg may be asked to decode, the retired ones included: the
     * progressive syntax (1.2.840.10008.1.2.4.55) hung the same way (fuzz/decode again) */
    if (xfer < EXS_JPEGProcess1 || xfer > EXS_JPEGProcess14SV1)
        return 0;
    if ((seq = encapsulated_pixels(ds, xfer)) == NULL || seq->card() < 2 ||
        seq->getItem(item, 1).bad() || item == NULL || item->getUint8Array(frag).bad() ||
        frag == NULL)
        return cwt_seterr(err, errlen, CWT_EDECODE, "JPEG DICOM without encapsulated pixel data");
    flen = item->getLength();
    while (off + 4 < flen) {
        unsigned marker = static_cast<unsigned>(frag[off]) << 8 | frag[off + 1];

        if (marker >= 0xffc0 && marker <= 0xffcf && marker != 0xffc4 && marker != 0xffc8 &&
            marker != 0xffcc) {
            Uint16 samples = 0;
            /* check_pixel_module() has read it already */
            (void)ds->findAndGetUint16(DCM_SamplesPerPixel, samples);
            return check_jpeg_frame_header(frag, flen, off, rows, cols, samples, err, errlen);
        }
        if (marker == 0xffd8 || marker == 0xffd9 || (marker >= 0xffd0 && marker <= 0xffd7))
            off += 2;
        else if (marker == 0xffff)
            off += 1;
        else if (marker >= 0xffc4 && marker != 0xff01)
            off += (static_cast<uint32_t>(frag[off + 2]) << 8 | frag[off + 3]) + 2u;
        else
            return cwt_seterr(err, errlen, CWT_EDECODE,
                              "JPEG fragment has marker 0x%04x before its frame header", marker);
    }
    return cwt_seterr(err, errlen, CWT_EDECODE, "JPEG fragment has no frame header");
}

/* DCMTK sizes a compressed frame's buffer from the image pixel module before it decodes a
 * byte: Rows x Columns x SamplesPerPixel x BitsAllocated / 8. A 838-byte JPEG DICOM
 * declaring 65528 bits allocated made it allocate 4.29 GB (found by tests/fuzz/fuzz_decode).
 * The module is checked here first: 1, 3 or 4 samples; 1, 8, 16 or 32 bits allocated;
 * 1 <= BitsStored <= BitsAllocated; HighBit < BitsAllocated; and one frame at most
 * DECODE_MAX_FRAME_BYTES. */
int check_pixel_module(DcmDataset *ds, Uint16 rows, Uint16 cols, char *err, size_t errlen)
{
    Uint16 samples = 0, allocated = 0, stored = 0, high = 0;

    if (ds->findAndGetUint16(DCM_SamplesPerPixel, samples).bad() ||
        (samples != 1 && samples != 3 && samples != 4))
        return cwt_seterr(err, errlen, CWT_EDECODE,
                          "DICOM image has %u samples per pixel (1, 3 or 4 expected)",
                          static_cast<unsigned>(samples));
    if (ds->findAndGetUint16(DCM_BitsAllocated, allocated).bad() ||
        (allocated != 1 && allocated != 8 && allocated != 16 && allocated != 32))
        return cwt_seterr(err, errlen, CWT_EDECODE,
                          "DICOM image has %u bits allocated (1, 8, 16 or 32 expected)",
                          static_cast<unsigned>(allocated));
    if (ds->findAndGetUint16(DCM_BitsStored, stored).bad() || stored == 0 || stored > allocated)
        return cwt_seterr(err, errlen, CWT_EDECODE,
                          "DICOM image has %u bits stored of %u allocated",
                          static_cast<unsigned>(stored), static_cast<unsigned>(allocated));
    if (ds->findAndGetUint16(DCM_HighBit, high).bad() || high >= allocated)
        return cwt_seterr(err, errlen, CWT_EDECODE, "DICOM image has high bit %u of %u allocated",
                          static_cast<unsigned>(high), static_cast<unsigned>(allocated));
    uint64_t frame = (static_cast<uint64_t>(rows) * cols * samples * allocated + 7) / 8;
    if (frame > DECODE_MAX_FRAME_BYTES)
        return cwt_seterr(err, errlen, CWT_ETOOBIG,
                          "DICOM frame of %llu bytes is over the limit of %llu bytes",
                          static_cast<unsigned long long>(frame),
                          static_cast<unsigned long long>(DECODE_MAX_FRAME_BYTES));
    return 0;
}

int render(const uint8_t *buf, size_t len, int fd, struct decoded_image *out, char *err,
           size_t errlen)
{
    /* DCMTK allocates a value's declared length before reading it. Reading from a file, it
     * first checks that length against the bytes left and loads values over maxReadLength only
     * when they are used; from a buffer stream it must load every value at once, so a few
     * bytes declaring a 3 GB value would allocate 3 GB. The buffer is therefore handed to
     * DCMTK as a file: a memfd read through FdInputStream. Declared first, so it outlives the
     * readers. */
    staged_file staged;
    size_t done = 0;

    /* A caller that holds the file as a descriptor already (the decoder child, which may not
     * write files: RLIMIT_FSIZE is 0) passes it; otherwise the buffer is staged. */
    if (fd < 0) {
        staged.fd = memfd_create("cwt-dicom", MFD_CLOEXEC);
        if (staged.fd < 0)
            return cwt_seterr(err, errlen, CWT_EIO, "cannot stage the DICOM file: %s",
                              std::strerror(errno));
        while (done < len) {
            ssize_t n = write(staged.fd, buf + done, len - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return cwt_seterr(err, errlen, CWT_EIO, "cannot stage the DICOM file: %s",
                                  n < 0 ? std::strerror(errno) : "short write");
            done += static_cast<size_t>(n);
        }
        fd = staged.fd;
    }

    DcmFileFormat file;
    FdInputStream stream(fd, static_cast<offile_off_t>(len), 0);
    OFCondition cond = stream.status();
    if (cond.good()) {
        file.transferInit();
        cond = file.read(stream, EXS_Unknown, EGL_noChange, DCM_MaxReadLength);
        file.transferEnd();
    }
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

    int rc = check_pixel_module(ds, rows, cols, err, errlen);

    if (rc == 0)
        rc = check_rle_headers(ds, err, errlen);
    if (rc == 0)
        rc = check_jpeg_fragments(ds, rows, cols, err, errlen);
    if (rc != 0)
        return rc;

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

extern "C" int decode_dicom_warm_up(char *err, size_t errlen)
{
    try {
        dicom_setup();
        /* The data dictionary is read from disk on first use: now, before the decoder child
         * loses the right to open files. */
        if (!dcmDataDict.isDictionaryLoaded())
            return cwt_seterr(err, errlen, CWT_EIO, "DCMTK cannot load its data dictionary");
        return 0;
    } catch (...) {
        return cwt_seterr(err, errlen, CWT_EIO, "DCMTK cannot be set up");
    }
}

extern "C" int decode_dicom(const uint8_t *buf, size_t len, struct decoded_image *out, char *err,
                            size_t errlen)
{
    return decode_dicom_fd(buf, len, -1, out, err, errlen);
}

extern "C" int decode_dicom_fd(const uint8_t *buf, size_t len, int fd, struct decoded_image *out,
                               char *err, size_t errlen)
{
    std::memset(out, 0, sizeof(*out));
    /* No C++ exception may cross into C. */
    try {
        dicom_setup();
        return render(buf, len, fd, out, err, errlen);
    } catch (const std::bad_alloc &) {
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of memory decoding DICOM");
    } catch (...) {
        return cwt_seterr(err, errlen, CWT_EDECODE, "DICOM decoder failed");
    }
}
