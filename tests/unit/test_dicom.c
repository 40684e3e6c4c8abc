/*
 * test_dicom.c - DICOM decoding against DCMTK's own renderer: every file is decoded by
 * decode_file() and by `dcm2pnm` (same VOI choice: the first window when the file has one,
 * else min-max; first frame), and the two must agree within one grey level, before and
 * after the same resize. The files are the ones Debian's python3-pydicom installs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <cmocka.h>

#include <dirent.h>

#include "decode/decode.h"
#include "decode/decode_internal.h"
#include "common/cwt.h"
#include "common/fileio.h"
#include "tests/test_tmp.h"

#define PYDICOM_FILES "/usr/lib/python3/dist-packages/pydicom/data/test_files"

struct fixture {
    char dir[1024];
};

static int setup(void **state)
{
    static struct fixture fx;
    char err[CWT_ERRLEN];

    if (test_tmp_path(fx.dir, sizeof(fx.dir), "test_dicom") != 0)
        return -1;
    if (file_mkdir_p(fx.dir, 0700, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    *state = &fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;

    return test_tmp_remove(fx->dir) == 0 ? 0 : -1;
}

/* Runs a shell command, returns its exit status. */
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    int rc;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    rc = system(cmd);
    return rc == -1 ? -1 : WEXITSTATUS(rc);
}

/* Reads an 8-bit binary PGM (P5) or PPM (P6) into img. */
static int read_pnm(const char *path, struct decoded_image *img)
{
    uint8_t *buf = NULL;
    size_t len, pos = 2;
    unsigned vals[3];
    char err[CWT_ERRLEN];

    if (file_read_all(path, 1u << 28, &buf, &len, err, sizeof(err)) != 0)
        return -1;
    if (len < 2 || buf[0] != 'P' || (buf[1] != '5' && buf[1] != '6'))
        goto bad;
    for (int i = 0; i < 3; i++) {
        while (pos < len && (buf[pos] == ' ' || buf[pos] == '\n' || buf[pos] == '\r' ||
                             buf[pos] == '\t' || buf[pos] == '#')) {
            if (buf[pos] == '#')
                while (pos < len && buf[pos] != '\n')
                    pos++;
            else
                pos++;
        }
        vals[i] = 0;
        while (pos < len && buf[pos] >= '0' && buf[pos] <= '9')
            vals[i] = vals[i] * 10 + (unsigned)(buf[pos++] - '0');
    }
    pos++; /* one whitespace byte before the samples */
    img->w = vals[0];
    img->h = vals[1];
    img->c = buf[1] == '6' ? 3 : 1;
    if (vals[2] != 255 || len - pos != (size_t)img->w * img->h * img->c)
        goto bad;
    img->pixels = malloc(len - pos);
    if (img->pixels == NULL)
        goto bad;
    memcpy(img->pixels, buf + pos, len - pos);
    free(buf);
    return 0;
bad:
    free(buf);
    return -1;
}

static int max_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    int worst = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d > worst)
            worst = d;
    }
    return worst;
}

/* Decodes path and compares it with dcm2pnm's rendering, full size and resized. */
static void check_against_dcm2pnm(struct fixture *fx, const char *path)
{
    struct decoded_image ours, ref = {0};
    char err[CWT_ERRLEN], pnm[1200], wc[1300];
    uint8_t a[24 * 20 * 3], b[24 * 20 * 3];
    int rc, has_window;

    rc = decode_file(path, &ours, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s: %s", path, err);
    snprintf(pnm, sizeof(pnm), "%s/ref.pnm", fx->dir);
    snprintf(wc, sizeof(wc), "%s/wc.txt", fx->dir);
    assert_int_equal(run("dcmdump -q +P WindowCenter '%s' > '%s' 2>/dev/null", path, wc) >= 0, 1);
    has_window = run("test -s '%s'", wc) == 0;
    /* dcm2pnm registers no JPEG-LS decoder and fails on some JPEG extended files that
     * dcmdjpeg decompresses: those go through DCMTK's decompressors first. */
    for (int attempt = 0; attempt < 3; attempt++) {
        static const char *const pre[] = {NULL, "dcmdjpeg", "dcmdjpls"};
        const char *voi = ours.c == 1 ? (has_window ? "+Wi 1" : "+Wm") : "";
        if (pre[attempt] == NULL)
            rc = run("dcm2pnm -q +op +F 1 %s '%s' '%s' 2>/dev/null", voi, path, pnm);
        else
            rc = run("%s '%s' '%s/plain.dcm' 2>/dev/null && "
                     "dcm2pnm -q +op +F 1 %s '%s/plain.dcm' '%s' 2>/dev/null",
                     pre[attempt], path, fx->dir, voi, fx->dir, pnm);
        if (rc == 0)
            break;
    }
    if (rc != 0)
        fail_msg("dcm2pnm failed on %s", path);
    assert_int_equal(read_pnm(pnm, &ref), 0);
    assert_int_equal(ours.h, ref.h);
    assert_int_equal(ours.w, ref.w);
    assert_int_equal(ours.c, ref.c);
    if (max_diff(ours.pixels, ref.pixels, (size_t)ours.h * ours.w * ours.c) > 1)
        fail_msg("%s: decoded pixels differ from dcm2pnm by more than 1", path);
    /* Resized to an odd shape, both ways of channel conversion. */
    for (uint32_t c = 1; c <= 3; c += 2) {
        assert_int_equal(image_prepare(&ours, 20, 24, c, a), 0);
        assert_int_equal(image_prepare(&ref, 20, 24, c, b), 0);
        if (max_diff(a, b, (size_t)20 * 24 * c) > 1)
            fail_msg("%s: resized pixels differ from dcm2pnm's by more than 1", path);
    }
    decode_free(&ours);
    decode_free(&ref);
}

static void test_transfer_syntaxes_match_dcm2pnm(void **state)
{
    static const char *const files[] = {
        "CT_small.dcm",                     /* explicit VR LE, rescale, no window: min-max */
        "MR_small.dcm",                     /* explicit VR LE, window */
        "MR_small_implicit.dcm",            /* implicit VR LE */
        "MR_small_bigendian.dcm",           /* explicit VR BE */
        "MR_small_expb.dcm",                /* explicit VR BE */
        "MR_small_RLE.dcm",                 /* RLE */
        "MR_small_jpeg_ls_lossless.dcm",    /* JPEG-LS */
        "JPGExtended.dcm",                  /* JPEG extended (12-bit) */
        "JPEG-lossy.dcm",                   /* JPEG extended */
        "SC_rgb_jpeg_gdcm.dcm",             /* JPEG lossless, RGB */
        "SC_rgb_jpeg_dcmtk.dcm",            /* JPEG baseline, YBR_FULL */
        "SC_rgb_dcmtk_+eb+cy+np.dcm",       /* JPEG baseline, YBR_FULL_422 */
        "SC_rgb_rle.dcm",                   /* RLE, RGB */
        "SC_rgb_rle_2frame.dcm",            /* multi-frame: first frame */
        "SC_ybr_full_422_uncompressed.dcm", /* YBR to RGB */
        "ExplVR_BigEnd.dcm",                /* big endian RGB */
        "rtdose.dcm",                       /* 15 frames, 32-bit, min-max */
        "image_dfl.dcm",                    /* deflated explicit VR LE */
    };
    struct fixture *fx = *state;
    char path[1024];

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", PYDICOM_FILES, files[i]);
        check_against_dcm2pnm(fx, path);
    }
}

static void test_monochrome1_is_inverted(void **state)
{
    struct fixture *fx = *state;
    struct decoded_image m1, m2;
    char path[1200], err[CWT_ERRLEN];

    /* No test file is MONOCHROME1; make one from MR_small with DCMTK's dcmodify. */
    snprintf(path, sizeof(path), "%s/mono1.dcm", fx->dir);
    assert_int_equal(run("cp '%s/MR_small.dcm' '%s' && dcmodify -nb -q -m "
                         "'(0028,0004)=MONOCHROME1' '%s'",
                         PYDICOM_FILES, path, path),
                     0);
    check_against_dcm2pnm(fx, path);
    assert_int_equal(decode_file(path, &m1, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/MR_small.dcm", PYDICOM_FILES);
    assert_int_equal(decode_file(path, &m2, err, sizeof(err)), 0);
    for (size_t i = 0; i < (size_t)m1.h * m1.w; i++)
        assert_true(abs((int)m1.pixels[i] - (255 - (int)m2.pixels[i])) <= 1);
    decode_free(&m1);
    decode_free(&m2);
}

static void test_bad_dicom_is_refused(void **state)
{
    struct fixture *fx = *state;
    struct decoded_image img;
    char path[1200], err[CWT_ERRLEN];
    int rc;

    snprintf(path, sizeof(path), "%s/rtplan.dcm", PYDICOM_FILES);
    rc = decode_file(path, &img, err, sizeof(err));
    assert_int_equal(rc, CWT_EUNSUPPORTED);
    assert_non_null(strstr(err, "no pixel data"));
    assert_null(img.pixels);

    snprintf(path, sizeof(path), "%s/MR_truncated.dcm", PYDICOM_FILES);
    rc = decode_file(path, &img, err, sizeof(err));
    assert_true(rc != 0);
    assert_null(img.pixels);

    /* CT_small cut in the middle of its pixel data. */
    snprintf(path, sizeof(path), "%s/ct_cut.dcm", fx->dir);
    assert_int_equal(run("head -c 30000 '%s/CT_small.dcm' > '%s'", PYDICOM_FILES, path), 0);
    rc = decode_file(path, &img, err, sizeof(err));
    assert_true(rc == CWT_EDECODE);
    assert_null(img.pixels);

    /* A JPEG frame header in the pixel module declaring 65528 bits allocated: DCMTK would
     * size the decompressed frame at 13 GB before decoding; refused from the header. The
     * same for 0 bits stored, a high bit outside the sample, and dimensions that are not the
     * JPEG frame's. */
    static const char *const bad_modules[][3] = {
        {"BitsAllocated=65528; d.Rows=65529", "bits allocated", "bits.dcm"},
        {"BitsStored=0", "bits stored", "stored.dcm"},
        {"HighBit=16", "high bit", "high.dcm"},
        {"SamplesPerPixel=2", "samples per pixel", "samples.dcm"},
        /* a small JPEG under a header declaring 64 Mpixel RGB: DCMTK would size its frame
         * buffer from the header */
        {"Rows=8192; d.Columns=8192", "does not match the DICOM header", "dims.dcm"},
    };
    for (size_t i = 0; i < sizeof(bad_modules) / sizeof(bad_modules[0]); i++) {
        struct rusage ru;

        snprintf(path, sizeof(path), "%s/%s", fx->dir, bad_modules[i][2]);
        assert_int_equal(run("/usr/bin/python3 -c \"import pydicom; d = pydicom.dcmread('%s/"
                             "SC_rgb_jpeg_dcmtk.dcm'); d.%s; d.save_as('%s')\"",
                             PYDICOM_FILES, bad_modules[i][0], path),
                         0);
        rc = decode_file(path, &img, err, sizeof(err));
        assert_int_equal(rc, CWT_EDECODE);
        assert_non_null(strstr(err, bad_modules[i][1]));
        assert_null(img.pixels);
        assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
        assert_true(ru.ru_maxrss < 512 * 1024); /* KiB */
    }

    /* JPEG 2000 is not in free DCMTK: a clear error, not a crash. */
    snprintf(path, sizeof(path), "%s/MR_small_jp2klossless.dcm", PYDICOM_FILES);
    rc = decode_file(path, &img, err, sizeof(err));
    assert_true(rc == CWT_EUNSUPPORTED || rc == CWT_EDECODE);
    assert_null(img.pixels);
}

/* A Part 10 file (explicit VR little endian) whose data set is depth nested undefined-length
 * sequences; *len gets its size. Caller frees. */
static uint8_t *nested(unsigned depth, size_t *len)
{
    static const uint8_t meta[] = {/* (0002,0010) UI "1.2.840.10008.1.2.1\0" */
                                   0x02, 0x00, 0x10, 0x00, 'U', 'I', 20,  0,   '1', '.',
                                   '2',  '.',  '8',  '4',  '0', '.', '1', '0', '0', '0',
                                   '8',  '.',  '1',  '.',  '2', '.', '1', 0};
    static const uint8_t open_level[] = {0x08, 0x00, 0x15, 0x11, 'S',  'Q',  0,
                                         0,    0xff, 0xff, 0xff, 0xff, 0xfe, 0xff,
                                         0x00, 0xe0, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t close_level[] = {0xfe, 0xff, 0x0d, 0xe0, 0, 0, 0, 0,
                                          0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0};
    size_t n = 132 + sizeof(meta) + depth * (sizeof(open_level) + sizeof(close_level));
    uint8_t *b = calloc(1, n), *p;

    assert_non_null(b);
    memcpy(b + 128, "DICM", 4);
    memcpy(b + 132, meta, sizeof(meta));
    p = b + 132 + sizeof(meta);
    for (unsigned i = 0; i < depth; i++, p += sizeof(open_level))
        memcpy(p, open_level, sizeof(open_level));
    for (unsigned i = 0; i < depth; i++, p += sizeof(close_level))
        memcpy(p, close_level, sizeof(close_level));
    *len = n;
    return b;
}

/* Issue 18, M4: nesting over DECODE_MAX_DICOM_DEPTH is refused before DCMTK parses it (6000
 * levels crashed it), nesting up to it is not, and no real file is refused. */
static void test_deep_nesting_is_refused_before_dcmtk(void **state)
{
    struct decoded_image img;
    char err[CWT_ERRLEN], path[1024];
    struct dirent *e;
    size_t len;
    uint8_t *b;
    DIR *dir;
    int files = 0;

    (void)state;
    b = nested(DECODE_MAX_DICOM_DEPTH, &len);
    assert_int_equal(decode_dicom_scan(b, len, DECODE_MAX_DICOM_DEPTH, err, sizeof(err)), 0);
    free(b);
    b = nested(DECODE_MAX_DICOM_DEPTH + 1, &len);
    assert_int_equal(decode_dicom_scan(b, len, DECODE_MAX_DICOM_DEPTH, err, sizeof(err)),
                     CWT_EDECODE);
    free(b);
    b = nested(6000, &len);
    assert_int_equal(decode_memory(b, len, &img, err, sizeof(err)), CWT_EDECODE);
    assert_non_null(strstr(err, "nest deeper than 32 levels"));
    assert_null(img.pixels);
    free(b);

    dir = opendir(PYDICOM_FILES);
    assert_non_null(dir);
    while ((e = readdir(dir)) != NULL) {
        size_t n = strlen(e->d_name);
        uint8_t *buf = NULL;
        if (n < 4 || strcmp(e->d_name + n - 4, ".dcm") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", PYDICOM_FILES, e->d_name);
        if (file_read_all(path, DECODE_MAX_FILE, &buf, &len, NULL, 0) != 0)
            continue;
        if (decode_dicom_scan(buf, len, DECODE_MAX_DICOM_DEPTH, err, sizeof(err)) != 0)
            fail_msg("%s refused: %s", path, err);
        free(buf);
        files++;
    }
    closedir(dir);
    assert_true(files > 50);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transfer_syntaxes_match_dcm2pnm),
        cmocka_unit_test(test_monochrome1_is_inverted),
        cmocka_unit_test(test_bad_dicom_is_refused),
        cmocka_unit_test(test_deep_nesting_is_refused_before_dcmtk),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
