/*
 * gen_corpus.c - writes the seed corpus of the fuzz harnesses (tests/fuzz/corpus/<harness>/):
 * small valid bundles sealed under the fixed roster of fuzz_common.h, safetensors files of
 * several dtypes, and the roster itself; tiny PNG, JPEG and DICOM images (the DICOM files
 * are written here byte by byte: explicit and implicit VR, 8 and 16 bits, grey and RGB, RLE
 * and JPEG encapsulated); ingest CSV files, IDX image/label pairs, cwtd.conf files, trainer
 * protocol messages, control requests and audit exports. Run by `tests/fuzz/run.sh corpus`;
 * the output is kept in the repository.
 */
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include "common/fileio.h"
#include "crypto/bundle.h"
#include "crypto/keyops.h"
#include "cycle/cycle.h"
#include "daemon/proto.h"
#include "fuzz_common.h"
#include "storage/safetensors.h"
#include "storage/store_audit.h"

/* A growing byte buffer; out of memory ends the generator. */
struct bytes {
    uint8_t *p;
    size_t len, cap;
};

static void put(struct bytes *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = (b->len + n) * 2 + 64;
        uint8_t *grown = realloc(b->p, cap);
        if (grown == NULL)
            abort();
        b->p = grown;
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put_u8(struct bytes *b, uint8_t v)
{
    put(b, &v, 1);
}

static void put_le16(struct bytes *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(b, x, 2);
}

static void put_le32(struct bytes *b, uint32_t v)
{
    put_le16(b, (uint16_t)v);
    put_le16(b, (uint16_t)(v >> 16));
}

static void set_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_be32(struct bytes *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, x, 4);
}

static int save(const char *dir, const char *sub, const char *name, const void *data, size_t len)
{
    char path[4096], err[CWT_ERRLEN];

    snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
    if (file_write_atomic(path, data, len, 0644, err, sizeof(err)) != 0) {
        fprintf(stderr, "gen_corpus: %s\n", err);
        return -1;
    }
    return 0;
}

static int save_text(const char *dir, const char *sub, const char *name, const char *text)
{
    return save(dir, sub, name, text, strlen(text));
}

/* --- images --- */

static void png_to_bytes(png_structp png, png_bytep data, size_t n)
{
    put(png_get_io_ptr(png), data, n);
}

static void png_no_flush(png_structp png)
{
    (void)png;
}

/* A w x h PNG whose samples follow a simple pattern. */
static int make_png(struct bytes *b, uint32_t w, uint32_t h, int color, int depth, int interlace)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png == NULL ? NULL : png_create_info_struct(png);
    int channels = color == PNG_COLOR_TYPE_GRAY         ? 1
                   : color == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                   : color == PNG_COLOR_TYPE_RGB        ? 3
                   : color == PNG_COLOR_TYPE_RGBA       ? 4
                                                        : 1;
    size_t row_bytes = (size_t)w * channels * (depth == 16 ? 2 : 1);
    uint8_t *rows = malloc(row_bytes * h);
    png_bytep *row_ptrs = malloc(h * sizeof(*row_ptrs));

    if (info == NULL || rows == NULL || row_ptrs == NULL || setjmp(png_jmpbuf(png)))
        return -1;
    for (uint32_t y = 0; y < h; y++) {
        row_ptrs[y] = rows + y * row_bytes;
        for (size_t i = 0; i < row_bytes; i++)
            row_ptrs[y][i] =
                (uint8_t)(color == PNG_COLOR_TYPE_PALETTE ? (i + y) % 3 : 37 * i + 11 * y);
    }
    png_set_write_fn(png, b, png_to_bytes, png_no_flush);
    png_set_IHDR(png, info, w, h, depth, color, interlace, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (color == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[3] = {{0, 0, 0}, {200, 30, 30}, {20, 220, 90}};
        png_byte alpha[1] = {128};
        png_set_PLTE(png, info, pal, 3);
        png_set_tRNS(png, info, alpha, 1, NULL);
    }
    png_write_info(png, info);
    png_write_image(png, row_ptrs);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    free(row_ptrs);
    return 0;
}

/* A w x h JPEG (1 or 3 components), baseline or progressive. */
static int make_jpeg(struct bytes *b, uint32_t w, uint32_t h, int components, int progressive)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    unsigned char *mem = NULL;
    unsigned long memlen = 0;
    uint8_t *row = malloc((size_t)w * components);

    if (row == NULL)
        return -1;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &mem, &memlen);
    c.image_width = w;
    c.image_height = h;
    c.input_components = components;
    c.in_color_space = components == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 60, TRUE);
    if (progressive)
        jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < h) {
        for (size_t i = 0; i < (size_t)w * components; i++)
            row[i] = (uint8_t)(29 * i + 13 * c.next_scanline);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    put(b, mem, memlen);
    free(mem);
    free(row);
    return 0;
}

/* DICOM, written by hand. */
#define TS_IMPLICIT "1.2.840.10008.1.2"
#define TS_EXPLICIT "1.2.840.10008.1.2.1"
#define TS_JPEG     "1.2.840.10008.1.2.4.50"
#define TS_RLE      "1.2.840.10008.1.2.5"
#define SOP_SC      "1.2.840.10008.5.1.4.1.1.7" /* secondary capture */

struct dicom_image {
    const char *ts, *photometric;
    uint16_t rows, cols, samples, bits;
    const char *window_center, *window_width, *intercept, *slope; /* NULL: absent */
    const uint8_t *pixels; /* native: rows*cols*samples*(bits/8) bytes; else one fragment */
    size_t pixel_len;
    int encapsulated;
};

/* One element; values of odd length are padded (UI with NUL, text with a space). */
static void dcm_el(struct bytes *b, int explicit_vr, uint16_t group, uint16_t elem, const char *vr,
                   const void *val, size_t len)
{
    int long_form = strcmp(vr, "OB") == 0 || strcmp(vr, "OW") == 0;
    size_t padded = len + (len & 1);

    put_le16(b, group);
    put_le16(b, elem);
    if (explicit_vr || group == 0x0002) {
        put(b, vr, 2);
        if (long_form) {
            put_le16(b, 0);
            put_le32(b, (uint32_t)padded);
        } else {
            put_le16(b, (uint16_t)padded);
        }
    } else {
        put_le32(b, (uint32_t)padded);
    }
    put(b, val, len);
    if (len & 1)
        put_u8(b, strcmp(vr, "UI") == 0 || long_form ? 0 : ' ');
}

static void dcm_str(struct bytes *b, int ex, uint16_t g, uint16_t e, const char *vr, const char *s)
{
    dcm_el(b, ex, g, e, vr, s, strlen(s));
}

static void dcm_us(struct bytes *b, int ex, uint16_t g, uint16_t e, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    dcm_el(b, ex, g, e, "US", x, 2);
}

static void make_dicom(struct bytes *b, const struct dicom_image *im)
{
    struct bytes meta = {0};
    uint8_t version[2] = {0, 1}, zero[128] = {0};
    int ex = strcmp(im->ts, TS_IMPLICIT) != 0;

    dcm_el(&meta, 1, 0x0002, 0x0001, "OB", version, 2);
    dcm_str(&meta, 1, 0x0002, 0x0002, "UI", SOP_SC);
    dcm_str(&meta, 1, 0x0002, 0x0003, "UI", "1.2.826.0.1.3680043.10.1.1");
    dcm_str(&meta, 1, 0x0002, 0x0010, "UI", im->ts);
    dcm_str(&meta, 1, 0x0002, 0x0012, "UI", "1.2.826.0.1.3680043.10.1");
    put(b, zero, sizeof(zero));
    put(b, "DICM", 4);
    put_le16(b, 0x0002);
    put_le16(b, 0x0000);
    put(b, "UL", 2);
    put_le16(b, 4);
    put_le32(b, (uint32_t)meta.len);
    put(b, meta.p, meta.len);
    free(meta.p);

    dcm_str(b, ex, 0x0008, 0x0016, "UI", SOP_SC);
    dcm_str(b, ex, 0x0008, 0x0018, "UI", "1.2.826.0.1.3680043.10.1.1");
    dcm_us(b, ex, 0x0028, 0x0002, im->samples);
    dcm_str(b, ex, 0x0028, 0x0004, "CS", im->photometric);
    if (im->samples == 3)
        dcm_us(b, ex, 0x0028, 0x0006, 0);
    dcm_us(b, ex, 0x0028, 0x0010, im->rows);
    dcm_us(b, ex, 0x0028, 0x0011, im->cols);
    dcm_us(b, ex, 0x0028, 0x0100, im->bits);
    dcm_us(b, ex, 0x0028, 0x0101, im->bits == 16 ? 12 : im->bits);
    dcm_us(b, ex, 0x0028, 0x0102, im->bits == 16 ? 11 : im->bits - 1);
    dcm_us(b, ex, 0x0028, 0x0103, 0);
    if (im->window_center != NULL) {
        dcm_str(b, ex, 0x0028, 0x1050, "DS", im->window_center);
        dcm_str(b, ex, 0x0028, 0x1051, "DS", im->window_width);
    }
    if (im->intercept != NULL) {
        dcm_str(b, ex, 0x0028, 0x1052, "DS", im->intercept);
        dcm_str(b, ex, 0x0028, 0x1053, "DS", im->slope);
    }
    if (!im->encapsulated) {
        dcm_el(b, ex, 0x7fe0, 0x0010, im->bits == 16 ? "OW" : "OB", im->pixels, im->pixel_len);
        return;
    }
    /* Undefined length: an empty offset table item, one fragment, the sequence delimiter. */
    put_le16(b, 0x7fe0);
    put_le16(b, 0x0010);
    put(b, "OB", 2);
    put_le16(b, 0);
    put_le32(b, 0xffffffffu);
    put_le16(b, 0xfffe);
    put_le16(b, 0xe000);
    put_le32(b, 0);
    put_le16(b, 0xfffe);
    put_le16(b, 0xe000);
    put_le32(b, (uint32_t)(im->pixel_len + (im->pixel_len & 1)));
    put(b, im->pixels, im->pixel_len);
    if (im->pixel_len & 1)
        put_u8(b, 0);
    put_le16(b, 0xfffe);
    put_le16(b, 0xe0dd);
    put_le32(b, 0);
}

/* DICOM RLE of one 8-bit plane: the 64-byte header naming one segment, then literal runs. */
static void rle_frame(struct bytes *b, const uint8_t *plane, size_t n)
{
    put_le32(b, 1);
    put_le32(b, 64);
    for (int i = 2; i < 16; i++)
        put_le32(b, 0);
    for (size_t i = 0; i < n; i += 128) {
        size_t run = n - i < 128 ? n - i : 128;
        put_u8(b, (uint8_t)(run - 1));
        put(b, plane + i, run);
    }
}

static int gen_images(const char *dir)
{
    static const struct {
        const char *name;
        uint32_t w, h;
        int color, depth, interlace;
    } pngs[] = {
        {"grey8.png", 5, 3, PNG_COLOR_TYPE_GRAY, 8, PNG_INTERLACE_NONE},
        {"grey1.png", 9, 2, PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE},
        {"rgb16.png", 3, 2, PNG_COLOR_TYPE_RGB, 16, PNG_INTERLACE_NONE},
        {"palette.png", 4, 4, PNG_COLOR_TYPE_PALETTE, 8, PNG_INTERLACE_NONE},
        {"ga-adam7.png", 6, 5, PNG_COLOR_TYPE_GRAY_ALPHA, 8, PNG_INTERLACE_ADAM7},
        {"rgba8.png", 2, 7, PNG_COLOR_TYPE_RGBA, 8, PNG_INTERLACE_NONE},
    };
    uint8_t grey16[8 * 8 * 2], grey8[6 * 6], rgb[4 * 3 * 3];
    struct bytes b = {0}, frag = {0};
    int rc = 0;

    for (size_t i = 0; i < sizeof(pngs) / sizeof(pngs[0]) && rc == 0; i++) {
        b.len = 0;
        rc = make_png(&b, pngs[i].w, pngs[i].h, pngs[i].color, pngs[i].depth, pngs[i].interlace);
        if (rc == 0)
            rc = save(dir, "decode", pngs[i].name, b.p, b.len);
    }
    b.len = 0;
    if (rc == 0 && (rc = make_jpeg(&b, 8, 8, 1, 0)) == 0)
        rc = save(dir, "decode", "grey.jpg", b.p, b.len);
    b.len = 0;
    if (rc == 0 && (rc = make_jpeg(&b, 16, 8, 3, 1)) == 0)
        rc = save(dir, "decode", "rgb-progressive.jpg", b.p, b.len);

    for (size_t i = 0; i < sizeof(grey16) / 2; i++) {
        grey16[2 * i] = (uint8_t)(i * 60);
        grey16[2 * i + 1] = (uint8_t)((i * 60) >> 8 & 0x0f); /* 12 bits stored */
    }
    for (size_t i = 0; i < sizeof(grey8); i++)
        grey8[i] = (uint8_t)(7 * i);
    for (size_t i = 0; i < sizeof(rgb); i++)
        rgb[i] = (uint8_t)(23 * i);
    if (rc == 0) {
        struct dicom_image im = {TS_EXPLICIT, "MONOCHROME2",  8,      8,       1,
                                 16,          "1500",         "3000", "-1024", "1",
                                 grey16,      sizeof(grey16), 0};
        b.len = 0;
        make_dicom(&b, &im);
        rc = save(dir, "decode", "mono2-16bit-explicit.dcm", b.p, b.len);
        /* Regression: pixel data declaring 3 GB in a file of a few hundred bytes (DCMTK
         * allocated the declared length before reading it). */
        set_le32(b.p + b.len - sizeof(grey16) - 4, 0xbdb70002u);
        if (rc == 0)
            rc = save(dir, "decode", "regress-huge-length.dcm", b.p, b.len);
    }
    if (rc == 0) {
        struct dicom_image im = {TS_IMPLICIT, "MONOCHROME1", 6, 6, 1, 8, NULL, NULL, NULL, NULL,
                                 grey8,       sizeof(grey8), 0};
        b.len = 0;
        make_dicom(&b, &im);
        rc = save(dir, "decode", "mono1-8bit-implicit.dcm", b.p, b.len);
    }
    if (rc == 0) {
        struct dicom_image im = {TS_EXPLICIT, "RGB", 3,    4,   3,           8, NULL,
                                 NULL,        NULL,  NULL, rgb, sizeof(rgb), 0};
        b.len = 0;
        make_dicom(&b, &im);
        rc = save(dir, "decode", "rgb-explicit.dcm", b.p, b.len);
    }
    if (rc == 0) {
        rle_frame(&frag, grey8, sizeof(grey8));
        struct dicom_image im = {TS_RLE, "MONOCHROME2", 6,   6,      1,        8, "100",
                                 "200",  "0",           "2", frag.p, frag.len, 1};
        b.len = 0;
        make_dicom(&b, &im);
        rc = save(dir, "decode", "mono2-rle.dcm", b.p, b.len);
        /* Regression: a segment offset far past the fragment (DCMTK's RLE decoder read
         * there). */
        frag.p[4] = 0x40;
        frag.p[7] = 0x10;
        b.len = 0;
        make_dicom(&b, &im);
        if (rc == 0)
            rc = save(dir, "decode", "regress-rle-offset.dcm", b.p, b.len);
    }
    frag.len = 0;
    if (rc == 0 && (rc = make_jpeg(&frag, 8, 8, 1, 0)) == 0) {
        struct dicom_image im = {TS_JPEG, "MONOCHROME2", 8,    8,      1,        8, NULL,
                                 NULL,    NULL,          NULL, frag.p, frag.len, 1};
        b.len = 0;
        make_dicom(&b, &im);
        rc = save(dir, "decode", "mono2-jpeg.dcm", b.p, b.len);
    }
    free(b.p);
    free(frag.p);
    return rc;
}

/* --- ingest: CSV and IDX --- */

static int gen_csv(const char *dir)
{
    if (save_text(dir, "csv", "simple.csv", "path,label\na.png,0\nsub/b.jpg,benign\n") != 0)
        return -1;
    /* Metadata columns around the split column: UTF-8, an empty value, a short row, a
     * control character and bytes that are not UTF-8. */
    if (save_text(dir, "csv", "meta.csv",
                  "path,label,site,split,scanner\n"
                  "a.png,0,Z\xc3\xbcrich,train,X1\n"
                  "sub/b.jpg,1,north,,\n"
                  "a.png,2,south\n"
                  "a.png,0,a\tb,val,X\n"
                  "a.png,0,\xff\xfe,test,X\n") != 0)
        return -1;
    /* Byte order mark, CRLF, quoting, and one row for each reason a row is refused. */
    return save_text(dir, "csv", "mixed.csv",
                     "\xef\xbb\xbfpath,label,split\r\n"
                     "\"a.png\",normal,val\r\n"
                     "\"sub/b.jpg\",2,\r\n"
                     "\"sub/\"\"q\"\".jpg\", malignant ,test\r\n"
                     "\r\n"
                     "../x.png,1,train\r\n"
                     "out/etc/hostname,0,test\r\n"
                     "/abs.png,1\r\n"
                     ",1\r\n"
                     "a.png\r\n"
                     "a.png,9\r\n"
                     "a.png,0,bogus\r\n"
                     "a.png,0,train,extra\r\n"
                     "\"a.png,0\r\n"
                     "missing.png,benign\r\n");
}

/* gzip of data, made with zlib. */
static int gzip_bytes(struct bytes *out, const uint8_t *data, size_t len)
{
    z_stream z;
    uint8_t chunk[4096];
    int rc;

    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)len;
    do {
        z.next_out = chunk;
        z.avail_out = sizeof(chunk);
        rc = deflate(&z, Z_FINISH);
        put(out, chunk, sizeof(chunk) - z.avail_out);
    } while (rc == Z_OK);
    deflateEnd(&z);
    return rc == Z_STREAM_END ? 0 : -1;
}

/* The fuzz_idx input: one byte k, the labels file (k bytes), then the images file. */
static int save_idx(const char *dir, const char *name, uint32_t n, uint32_t rows, uint32_t cols,
                    const uint8_t *labels, int gzipped)
{
    struct bytes lab = {0}, img = {0}, out = {0};
    int rc = 0;

    put_be32(&lab, 0x00000801);
    put_be32(&lab, n);
    put(&lab, labels, n);
    put_be32(&img, 0x00000803);
    put_be32(&img, n);
    put_be32(&img, rows);
    put_be32(&img, cols);
    for (size_t i = 0; i < (size_t)n * rows * cols; i++)
        put_u8(&img, (uint8_t)(i * 31 + i / 7));
    if (gzipped) {
        struct bytes zl = {0}, zi = {0};
        if (gzip_bytes(&zl, lab.p, lab.len) != 0 || gzip_bytes(&zi, img.p, img.len) != 0)
            rc = -1;
        free(lab.p);
        free(img.p);
        lab = zl;
        img = zi;
    }
    if (rc == 0 && lab.len > 255)
        rc = -1;
    if (rc == 0) {
        put_u8(&out, (uint8_t)lab.len);
        put(&out, lab.p, lab.len);
        put(&out, img.p, img.len);
        rc = save(dir, "idx", name, out.p, out.len);
    }
    free(lab.p);
    free(img.p);
    free(out.p);
    return rc;
}

static int gen_idx(const char *dir)
{
    static const uint8_t four[4] = {0, 1, 2, 3}, six[6] = {5, 5, 12, 0, 9, 1};

    if (save_idx(dir, "four-8x8.idx", 4, 8, 8, four, 0) != 0 ||
        save_idx(dir, "six-3x5-badlabel.idx", 6, 3, 5, six, 0) != 0 ||
        save_idx(dir, "four-10x6-gzip.idx", 4, 10, 6, four, 1) != 0)
        return -1;
    return 0;
}

/* --- cwtd.conf --- */

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    return remove(path);
}

static int gen_config(const char *dir)
{
    char tmp[] = "/tmp/cwt-gen-corpus.XXXXXX", path[4096], err[CWT_ERRLEN];
    struct cwt_recipe recipe;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc;

    /* The file a new site gets, as `cwtctl init` writes it. */
    if (mkdtemp(tmp) == NULL)
        return -1;
    recipe_defaults(&recipe);
    snprintf(path, sizeof(path), "%s/site", tmp);
    rc = site_init(path, "site-a", &recipe, err, sizeof(err));
    if (rc == 0) {
        snprintf(path, sizeof(path), "%s/site/cwtd.conf", tmp);
        rc = file_read_all(path, 1 << 20, &buf, &len, err, sizeof(err));
    }
    if (rc == 0)
        rc = save(dir, "config", "init.conf", buf, len);
    else
        fprintf(stderr, "gen_corpus: %s\n", err);
    free(buf);
    (void)nftw(tmp, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    if (rc != 0)
        return -1;
    /* Every key, absolute and relative paths, a GPU by index. */
    return save_text(dir, "config", "full.conf",
                     "site_id = \"hospital-b\";\n"
                     "dirs = { site = \"/srv/cwt\"; store = \"db\"; keys = \"/etc/cwt/keys\";\n"
                     "         inbox = \"in\"; outbox = \"out\"; };\n"
                     "socket = \"/run/cwt/cwtd.sock\";\n"
                     "roster = \"roster.conf\";\n"
                     "gpu = { device = 1; };\n"
                     "daemon = { user = \"cwt\"; group = \"cwt\"; rescan_seconds = 5; };\n"
                     "limits = { store_max_gb = 2; max_bundle_mb = 512; };\n");
}

/* --- daemon: trainer messages and control requests --- */

/* Saved daemon states (cycle_state_encode) and patience histories. */
static int gen_state(const char *dir)
{
    static struct cycle_state cs;
    char text[CWTD_STATE_MAX], hist[CWTD_HISTORY_MAX + 1];
    struct cycle_history h = {.cur = 2, .n = 2, .bestc = 1, .sum = 1.25, .best = 0.625};
    int n;

    memset(&cs, 0, sizeof(cs));
    cycle_history_init(&cs.history);
    cs.since = 1700000000;
    n = cycle_state_encode(&cs, text, sizeof(text));
    if (n < 0 || save(dir, "state", "idle.txt", text, (size_t)n) != 0)
        return -1;
    cs.phase = CWTD_WAITING;
    cs.cycle = 3;
    cs.hop = 1;
    cs.has_input = cs.has_parent = 1;
    memset(cs.parent_hash, 0x5a, 32);
    memset(cs.in_bundle_id, 0x11, 16);
    cs.epochs_before = 4.5;
    cs.carry_visits = 3;
    cs.carry_steps = 11;
    cs.history = h;
    snprintf(cs.waiting_from, sizeof(cs.waiting_from), "site-a");
    cs.has_out = 1;
    cs.out_seq = 10;
    snprintf(cs.out_name, sizeof(cs.out_name), "fed-c3-h1-cycle-to-site-c.cwtb");
    cs.out_kind = 1;
    cs.n_metrics = 2;
    cs.metrics[0].cycle = 2;
    cs.metrics[0].val_accuracy = 0.5;
    cs.metrics[1].cycle = 3;
    cs.metrics[1].val_accuracy = 0.75;
    cs.sum_steps = 100;
    cs.sum_epochs = 1.5;
    cs.sum_train_loss = 0.25;
    cs.sum_val_auc = NAN;
    n = cycle_state_encode(&cs, text, sizeof(text));
    if (n < 0 || save(dir, "state", "waiting.txt", text, (size_t)n) != 0)
        return -1;
    if (cycle_history_format(&h, hist, sizeof(hist)) != 0 ||
        save_text(dir, "state", "history.txt", hist) != 0)
        return -1;
    /* A state of version 1 (before the fractional-visit carry) still decodes. */
    if (save_text(dir, "state", "version1.txt",
                  "version=1\nphase=waiting\ncycle=3\nhop=1\nhas_input=1\nepochs_before=4.5\n"
                  "waiting_from=site-a\n") != 0)
        return -1;
    return 0;
}

static int gen_proto(const char *dir)
{
    struct proto_msg m;
    uint8_t buf[PROTO_MAX_MSG];
    char name[32];
    int n;

    for (uint16_t type = 1; type <= PROTO_TYPE_MAX; type++) {
        memset(&m, 0, sizeof(m));
        m.type = type;
        m.job = 3;
        m.fd = -1;
        switch (type) {
        case PROTO_HELLO:
            m.u.hello.pid = 4242;
            memset(m.u.hello.model_fp, 0xab, 32);
            snprintf(m.u.hello.device, sizeof(m.u.hello.device), "llvmpipe (LLVM 15.0.6)");
            break;
        case PROTO_JOB:
            m.u.job.kind = PROTO_JOB_VISIT;
            m.u.job.cycle = 2;
            m.u.job.hop = 1;
            m.u.job.has_weights = 1;
            m.u.job.patience = 3;
            m.u.job.loader_seed = 0x1234567890abcdefull;
            m.u.job.sched_total = 30;
            m.u.job.epochs_before = 4.5;
            m.u.job.has_before = 1;
            m.u.job.steps_before = 11;
            snprintf(m.u.job.ckpt, sizeof(m.u.job.ckpt), "visit-2.1");
            m.u.job.history = (struct cycle_history){.cur = 2, .n = 1, .sum = 0.5, .best = -1};
            break;
        case PROTO_PROGRESS:
            m.u.progress.step = 10;
            m.u.progress.steps = 100;
            m.u.progress.epoch = 1;
            m.u.progress.loss = 0.75;
            m.u.progress.images_per_s = 1234.5;
            break;
        case PROTO_RESULT:
            m.u.result.status = -5;
            m.u.result.steps = 100;
            m.u.result.train_samples = 6400;
            m.u.result.val_samples = 640;
            m.u.result.steps_total = 311;
            m.u.result.epochs = 1;
            m.u.result.train_loss = 0.5;
            m.u.result.train_accuracy = 0.8;
            m.u.result.val_loss = NAN;
            m.u.result.val_accuracy = 0.75;
            m.u.result.val_auc = NAN;
            snprintf(m.u.result.message, sizeof(m.u.result.message), "device lost");
            break;
        case PROTO_DIED:
            m.u.died.wait_status = 9;
            m.u.died.pid = 4242;
            break;
        default:
            break;
        }
        n = proto_encode(&m, buf, sizeof(buf));
        if (n < 0)
            return -1;
        snprintf(name, sizeof(name), "type-%u.msg", (unsigned)type);
        if (save(dir, "proto", name, buf, (size_t)n) != 0)
            return -1;
    }
    return 0;
}

static int gen_control(const char *dir)
{
    if (save_text(dir, "control", "status.req", "{\"cmd\":\"status\"}\n") != 0 ||
        save_text(dir, "control", "pause-crlf.req", "{\"cmd\":\"pause\"}\r\n") != 0)
        return -1;
    return 0;
}

/* --- audit exports (fuzz_audit_export signs its input with the key of seed {1}) --- */

static int gen_audit(const char *dir)
{
    static const uint8_t seed[crypto_sign_SEEDBYTES] = {1};
    static const char *const events[] = {"key-load", "bundle-rejected", "ingest"};
    static const char *const details[] = {"site-a key 0123456789abcdef",
                                          "seq3.cwtb: signature does not verify \\ \x01", ""};
    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES], box[32] = {7};
    uint8_t key_id[CWT_KEYID_LEN], *out = NULL;
    struct audit_record recs[3];
    struct site_keys k = {.sign_sk = sk};
    struct key_ops ops;
    char key_line[CWT_KEYLINE_MAX + 1], err[CWT_ERRLEN], name[32];
    size_t len;

    crypto_sign_seed_keypair(pk, sk, seed);
    keyops_local(&k, &ops);
    if (keyline_format("site-a", pk, box, key_line, sizeof(key_line), key_id) != 0)
        return -1;
    memset(recs, 0, sizeof(recs));
    for (int i = 0; i < 3; i++) {
        recs[i].seq = (uint64_t)i + 1;
        recs[i].time = 1700000000 + 60 * i;
        snprintf(recs[i].event, sizeof(recs[i].event), "%s", events[i]);
        snprintf(recs[i].details, sizeof(recs[i].details), "%s", details[i]);
        if (i > 0)
            memcpy(recs[i].prev_hash, recs[i - 1].hash, 32);
        if (audit_record_hash(&recs[i], recs[i].hash) != 0)
            return -1;
    }
    for (size_t n = 0; n <= 3; n += 3) {
        if (audit_export_encode(recs, n, key_line, &ops, 1700000500, &out, &len, err,
                                sizeof(err)) != 0) {
            fprintf(stderr, "gen_corpus: %s\n", err);
            return -1;
        }
        /* The signed part only: the harness appends its own signature line. */
        if (len < 139)
            return -1;
        snprintf(name, sizeof(name), "records-%zu.txt", n);
        if (save(dir, "audit_export", name, out, len - 139) != 0)
            return -1;
        free(out);
        out = NULL;
    }
    return 0;
}

static int write_st(const char *path, int variant)
{
    struct st_writer *w;
    float f[6] = {0.5f, -1.0f, 2.0f, 0.0f, 3.5f, 1e-3f};
    uint16_t h[2] = {0x3c00, 0xc000};
    int64_t i64[1] = {42};
    uint64_t s2[2] = {2, 3}, s1[1] = {2}, s0[1] = {1};
    uint8_t *buf;
    size_t len;
    int rc;

    if (st_writer_new(&w) != 0)
        return -1;
    if (variant >= 1)
        st_writer_add(w, "layer.weight", ST_F32, 2, s2, f);
    if (variant >= 2) {
        st_writer_add(w, "layer.bias", ST_F16, 1, s1, h);
        st_writer_add(w, "step", ST_I64, 1, s0, i64);
        st_writer_meta(w, "fingerprint",
                       "abababababababababababababababababababababababababababababababab");
    }
    rc = st_writer_finish(w, &buf, &len);
    st_writer_free(w);
    if (rc != 0)
        return -1;
    rc = file_write_atomic(path, buf, len, 0644, NULL, 0);
    free(buf);
    return rc;
}

int main(int argc, char **argv)
{
    static struct site_keys keys[FUZZ_SITES];
    struct cwt_roster *r = calloc(1, sizeof(*r));
    struct bundle_info *parent = calloc(1, sizeof(*parent));
    struct bundle_header h;
    char path[4096], weights[4096], err[CWT_ERRLEN];
    const char *dir;

    if (argc != 2 || r == NULL || parent == NULL) {
        fprintf(stderr, "usage: gen_corpus DIR\n");
        return 2;
    }
    dir = argv[1];
    if (crypto_init() != 0 || fuzz_roster(r, keys) != 0)
        return 1;
    for (int v = 0; v < 3; v++) {
        snprintf(path, sizeof(path), "%s/safetensors/seed-%d.safetensors", dir, v);
        if (write_st(path, v) != 0)
            return 1;
    }
    snprintf(path, sizeof(path), "%s/roster/roster.conf", dir);
    if (roster_save(path, r, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    snprintf(weights, sizeof(weights), "%s/safetensors/seed-2.safetensors", dir);
    /* sequence 0 a -> b; sequence 1 b -> c with parent; an ensemble member to two sites: in
     * bundle/ created now, in bundle_open/ at a fixed creation time (fuzz_bundle_open's clock
     * is fixed). */
    memset(&h, 0, sizeof(h));
    memset(h.model_fp, 0xab, 32);
    h.summary.local_epochs = 1;
    h.summary.val_accuracy = 0.5;
    h.summary.train_loss = h.summary.train_accuracy = h.summary.val_loss = NAN;
    h.summary.val_auc = NAN;
    static const char *const folders[2] = {"bundle", "bundle_open"};
    for (int k = 0; k < 2; k++) {
        h.hop = 0;
        h.kind = BUNDLE_KIND_CYCLE;
        h.has_parent = 0;
        h.n_recipients = 1;
        snprintf(h.recipients[0], sizeof(h.recipients[0]), "site-b");
        if (k == 1)
            h.created = FUZZ_BUNDLE_TIME;
        snprintf(path, sizeof(path), "%s/%s/seq0.cwtb", dir, folders[k]);
        if (bundle_seal(&keys[0], r, &h, weights, path, parent, err, sizeof(err)) != 0)
            goto fail;
        h.hop = 1;
        snprintf(h.recipients[0], sizeof(h.recipients[0]), "site-c");
        h.has_parent = 1;
        memcpy(h.parent_hash, parent->file_hash, 32);
        snprintf(path, sizeof(path), "%s/%s/seq1.cwtb", dir, folders[k]);
        if (bundle_seal(&keys[1], r, &h, weights, path, NULL, err, sizeof(err)) != 0)
            goto fail;
        h.hop = 2;
        h.kind = BUNDLE_KIND_ENSEMBLE_MEMBER;
        h.has_parent = 0;
        h.n_recipients = 2;
        snprintf(h.recipients[0], sizeof(h.recipients[0]), "site-a");
        snprintf(h.recipients[1], sizeof(h.recipients[1]), "site-b");
        snprintf(path, sizeof(path), "%s/%s/ensemble.cwtb", dir, folders[k]);
        if (bundle_seal(&keys[2], r, &h, weights, path, NULL, err, sizeof(err)) != 0)
            goto fail;
    }
    for (int i = 0; i < FUZZ_SITES; i++)
        keys_free(&keys[i]);
    free(r);
    free(parent);
    if (gen_images(dir) != 0 || gen_csv(dir) != 0 || gen_idx(dir) != 0 || gen_config(dir) != 0 ||
        gen_proto(dir) != 0 || gen_control(dir) != 0 || gen_audit(dir) != 0 ||
        gen_state(dir) != 0) {
        fprintf(stderr, "gen_corpus: cannot write the parser seeds\n");
        return 1;
    }
    return 0;
fail:
    fprintf(stderr, "gen_corpus: %s\n", err);
    return 1;
}
