/*
 * test_m3_layout.c - issue 18, M3: a roster member seals a payload of one 16-byte U8 tensor
 * under a header that carries the correct model fingerprint. Opened against the roster
 * model's tensor table (what cwtd gets from its trainer and `cwtctl bundle open` builds), it
 * must be refused by the model rule before anything is recorded: no payload file, ledger
 * unchanged. So must a payload with the model's tensors but a wrong shape, or with the right
 * tensors but another "fingerprint" in its metadata; the model's own layout opens.
 */
#include "tests/security/sec_fixture.h"

static const uint8_t model_fp[32] = {
    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42};

/* A weights image: conv.weight [rows x 3] and conv.bias [rows] (F32), or (u8 != 0) one
 * 16-byte U8 tensor, with "fingerprint" metadata fp_hex. */
static void weights_image(uint32_t rows, int u8, const char *fp_hex, uint8_t **buf, size_t *len)
{
    struct st_writer *w;
    float f[64] = {0};
    uint8_t bytes[16] = {0};
    uint64_t sw[2] = {rows, 3}, sb[1] = {rows}, su[1] = {16};

    assert_int_equal(st_writer_new(&w), 0);
    if (u8) {
        assert_int_equal(st_writer_add(w, "x", ST_U8, 1, su, bytes), 0);
    } else {
        assert_int_equal(st_writer_add(w, "conv.weight", ST_F32, 2, sw, f), 0);
        assert_int_equal(st_writer_add(w, "conv.bias", ST_F32, 1, sb, f), 0);
    }
    assert_int_equal(st_writer_meta(w, "fingerprint", fp_hex), 0);
    assert_int_equal(st_writer_finish(w, buf, len), 0);
    st_writer_free(w);
}

/* Seals image from site-a to site-b (header fingerprint model_fp) and opens it at site-b
 * against layout; returns the open's code. */
static int seal_and_open(struct sec_fixture *fx, const uint8_t *img, size_t len,
                         const struct st_file *layout, char *err, size_t errlen)
{
    struct bundle_header h;
    struct bundle_info info;
    struct bundle_expect ex = {.model_fp = model_fp, .layout = layout, .layout_alt = NULL};
    int fd, rc;

    assert_int_equal(file_write_atomic(fx->weights, img, len, 0600, NULL, 0), 0);
    sec_header(&h, model_fp);
    assert_int_equal(
        bundle_seal(&fx->keys[0], &fx->roster, &h, fx->weights, fx->bundle, &info, err, errlen), 0);
    fd = open(fx->bundle, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    rc = bundle_open_fd(&fx->keys[1], &fx->roster, fx->st, fd, "b.cwtb", fx->out, &ex, &info, err,
                        errlen);
    close(fd);
    return rc;
}

static void check(void **state, uint32_t rows, int u8, const char *fp_hex, int want,
                  const char *needle)
{
    struct sec_fixture *fx = *state;
    struct st_file layout;
    uint8_t *ref, *img;
    size_t ref_len, img_len;
    char hex[65], err[CWT_ERRLEN];
    int rc;

    cwt_hex(model_fp, 32, hex);
    weights_image(4, 0, hex, &ref, &ref_len);
    assert_int_equal(st_parse(ref, ref_len, &layout, err, sizeof(err)), 0);
    weights_image(rows, u8, fp_hex != NULL ? fp_hex : hex, &img, &img_len);
    rc = seal_and_open(fx, img, img_len, &layout, err, sizeof(err));
    if (rc != want || (needle != NULL && strstr(err, needle) == NULL))
        fail_msg("want %d with \"%s\", got %d: %s", want, needle ? needle : "", rc, err);
    if (want != 0) {
        assert_false(sec_exists(fx->out));
        assert_int_equal(sec_ledger_count(fx), 0);
    } else {
        assert_true(sec_exists(fx->out));
    }
    st_free(&layout);
    free(ref);
    free(img);
}

static void test_one_u8_tensor_is_refused(void **state)
{
    check(state, 4, 1, NULL, CWT_EB_MODEL, "tensors are not the roster model's");
}

static void test_wrong_shape_is_refused(void **state)
{
    check(state, 5, 0, NULL, CWT_EB_MODEL, "shape");
}

static void test_wrong_payload_fingerprint_is_refused(void **state)
{
    check(state, 4, 0, "00", CWT_EB_MODEL, "fingerprint");
}

static void test_the_model_opens(void **state)
{
    check(state, 4, 0, NULL, 0, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_u8_tensor_is_refused, sec_setup, sec_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_shape_is_refused, sec_setup, sec_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_payload_fingerprint_is_refused, sec_setup,
                                        sec_teardown),
        cmocka_unit_test_setup_teardown(test_the_model_opens, sec_setup, sec_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
