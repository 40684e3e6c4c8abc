/*
 * safetensors.c - strict reader and writer for safetensors files.
 *
 * The JSON header is parsed by jansson (strict RFC 8259: UTF-8 checked, no NUL in strings,
 * duplicate keys refused, nothing after the object), after a scan that bounds the number of
 * JSON values it may build (header_values), and then held to exactly the shape safetensors
 * uses: one object whose values are tensor objects {"dtype", "shape", "data_offsets"} or the
 * "__metadata__" object of strings. Anything else (other keys, nesting, fractions, negative
 * numbers) is refused.
 */
#include "storage/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "common/cwt.h"

#define ST_CHECK_BLOCK (1u << 20) /* bytes read at a time by st_check_file */

static const char *const dtype_names[] = {"F32", "F16", "BF16", "F64", "I64",
                                          "I32", "U8",  "I8",   "BOOL"};
static const size_t dtype_sizes[] = {4, 2, 2, 8, 8, 4, 1, 1, 1};
#define N_DTYPES (sizeof(dtype_names) / sizeof(dtype_names[0]))

size_t st_dtype_size(enum st_dtype d)
{
    return (unsigned)d < N_DTYPES ? dtype_sizes[d] : 0;
}

const char *st_dtype_name(enum st_dtype d)
{
    return (unsigned)d < N_DTYPES ? dtype_names[d] : "?";
}

/* ------------------------------------------------------------------ JSON reader */

/* Most separators (':', ',', '[', '{' outside strings) a valid header holds: per tensor its
 * name's ':' and ',', the object, three members and two arrays (at most 9 + ST_MAX_DIMS); the
 * metadata; the root. A header of more is refused before jansson builds a tree for it, so a
 * 16 MiB header of tiny values cannot make the reader allocate a value for each. */
#define ST_MAX_VALUES ((size_t)ST_MAX_TENSORS * (12 + ST_MAX_DIMS) + 4 * ST_META_MAX + 16)

/* 1 + the separators of text outside strings: an upper bound on its JSON values, since each
 * value but the first follows a ':', ',' or opening bracket. Counting stops past limit. */
static size_t header_values(const uint8_t *p, size_t len, size_t limit)
{
    size_t n = 1;
    int in_str = 0;

    for (size_t i = 0; i < len && n <= limit; i++) {
        uint8_t c = p[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == ':' || c == ',' || c == '[' || c == '{') {
            n++;
        }
    }
    return n;
}

/* The sentence for a jansson parse error: what and where, the reader's own words where the
 * error has a name. */
static int json_fail(const json_error_t *je, char *err, size_t errlen)
{
    const char *what = je->text;

    switch (json_error_code(je)) {
    case json_error_invalid_utf8:
        what = "invalid UTF-8";
        break;
    case json_error_numeric_overflow:
        what = "number too large";
        break;
    case json_error_end_of_input_expected:
        what = "trailing bytes after the header object";
        break;
    case json_error_null_character:
    case json_error_null_byte_in_key:
        what = "NUL in string";
        break;
    case json_error_duplicate_key:
        /* A tensor name, a tensor field or a metadata key given twice. */
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "safetensors header: duplicate key (a name appears twice in one "
                          "object: %s) at byte %d",
                          je->text, je->position);
    default:
        /* jansson stops a number at a leading zero and calls what follows a bad token. */
        if (strncmp(je->text, "invalid token near '0", 21) == 0)
            what = "leading zero in number";
        else if (strncmp(je->text, "invalid escape", 14) == 0)
            what = "unknown escape";
        break;
    }
    return cwt_seterr(err, errlen, CWT_EFORMAT, "safetensors header: %s at byte %d", what,
                      je->position);
}

/* A JSON integer in [0, INT64_MAX] (jansson's range; sizes and offsets beyond it are refused
 * as too large). */
static int get_uint(const json_t *v, uint64_t *out, const char *tensor, const char *what, char *err,
                    size_t errlen)
{
    if (!json_is_integer(v))
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "safetensors header: tensor \"%s\": %s expected an integer", tensor,
                          what);
    if (json_integer_value(v) < 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "safetensors header: tensor \"%s\": %s expected a non-negative integer",
                          tensor, what);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* Reads "[u, u, ...]" with at most max entries. */
static int get_uint_array(const json_t *a, uint64_t *vals, uint32_t max, uint32_t *n,
                          const char *tensor, const char *what, char *err, size_t errlen)
{
    size_t i;
    const json_t *v;
    int rc;

    *n = 0;
    if (!json_is_array(a))
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "safetensors header: tensor \"%s\": %s expected '['", tensor, what);
    if (json_array_size(a) > max)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "safetensors header: tensor \"%s\": %s has more than %u entries", tensor,
                          what, max);
    json_array_foreach(a, i, v)
    {
        if ((rc = get_uint(v, &vals[i], tensor, what, err, errlen)) != 0)
            return rc;
    }
    *n = (uint32_t)json_array_size(a);
    return 0;
}

static int parse_dtype(const char *s, enum st_dtype *d)
{
    for (size_t i = 0; i < N_DTYPES; i++) {
        if (strcmp(s, dtype_names[i]) == 0) {
            *d = (enum st_dtype)i;
            return 0;
        }
    }
    return -1;
}

static int parse_tensor(const json_t *o, struct st_tensor *t, char *err, size_t errlen)
{
    const json_t *dtype, *shape, *offs, *v;
    const char *key;
    uint64_t off[2];
    uint32_t n;
    int rc;

    if (!json_is_object(o))
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "safetensors header: tensor \"%s\": expected '{'", t->name);
    json_object_foreach((json_t *)o, key, v)
    {
        if (strcmp(key, "dtype") != 0 && strcmp(key, "shape") != 0 &&
            strcmp(key, "data_offsets") != 0)
            return cwt_seterr(err, errlen, CWT_EFORMAT,
                              "safetensors header: tensor \"%s\" has unknown field \"%.32s\"",
                              t->name, key);
    }
    dtype = json_object_get(o, "dtype");
    shape = json_object_get(o, "shape");
    offs = json_object_get(o, "data_offsets");
    if (dtype == NULL || shape == NULL || offs == NULL)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "safetensors header: tensor \"%s\" lacks %s",
                          t->name,
                          dtype == NULL   ? "dtype"
                          : shape == NULL ? "shape"
                                          : "data_offsets");
    if (!json_is_string(dtype))
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "safetensors header: tensor \"%s\": dtype expected '\"'", t->name);
    if (parse_dtype(json_string_value(dtype), &t->dtype) != 0)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "safetensors header: tensor \"%s\" has unknown dtype \"%.15s\"", t->name,
                          json_string_value(dtype));
    if ((rc = get_uint_array(shape, t->shape, ST_MAX_DIMS, &t->ndim, t->name, "shape", err,
                             errlen)) != 0)
        return rc;
    if ((rc = get_uint_array(offs, off, 2, &n, t->name, "data_offsets", err, errlen)) != 0)
        return rc;
    if (n != 2)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "safetensors header: tensor \"%s\": data_offsets needs exactly two "
                          "numbers",
                          t->name);
    t->begin = off[0];
    t->end = off[1];
    return 0;
}

static int parse_metadata(const json_t *o, struct st_file *f, char *err, size_t errlen)
{
    const char *key;
    const json_t *v;

    if (!json_is_object(o))
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "safetensors header: __metadata__ expected '{'");
    if (json_object_size(o) > ST_META_MAX)
        return cwt_seterr(err, errlen, CWT_ETOOBIG,
                          "safetensors header: more than %d metadata entries", ST_META_MAX);
    json_object_foreach((json_t *)o, key, v)
    {
        struct st_meta *m = &f->meta[f->n_meta];
        if (!json_is_string(v))
            return cwt_seterr(err, errlen, CWT_EFORMAT,
                              "safetensors header: metadata \"%.63s\": expected '\"' (a string "
                              "value)",
                              key);
        if (strlen(key) >= sizeof(m->key) || json_string_length(v) >= sizeof(m->value))
            return cwt_seterr(
                err, errlen, CWT_ETOOBIG,
                "safetensors header: metadata \"%.63s\" is longer than %zu bytes", key,
                strlen(key) >= sizeof(m->key) ? sizeof(m->key) - 1 : sizeof(m->value) - 1);
        memcpy(m->key, key, strlen(key) + 1);
        memcpy(m->value, json_string_value(v), json_string_length(v) + 1);
        f->n_meta++;
    }
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const struct st_tensor *)a)->name, ((const struct st_tensor *)b)->name);
}

static int cmp_offset(const void *a, const void *b)
{
    const struct st_tensor *x = *(const struct st_tensor *const *)a;
    const struct st_tensor *y = *(const struct st_tensor *const *)b;

    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

/* Checks each tensor's size against dtype x shape, then that the tensors tile
 * [0, data_len) exactly: in range, no overlap, no hole. Sorts f->tensors by name. */
static int check_layout(struct st_file *f, uint64_t data_len, char *err, size_t errlen)
{
    struct st_tensor **order;
    uint64_t pos = 0;

    for (uint32_t i = 0; i < f->n; i++) {
        const struct st_tensor *t = &f->tensors[i];
        uint64_t bytes = st_dtype_size(t->dtype);
        for (uint32_t d = 0; d < t->ndim; d++) {
            if (t->shape[d] != 0 && bytes > UINT64_MAX / t->shape[d])
                return cwt_seterr(err, errlen, CWT_EFORMAT,
                                  "safetensors: tensor \"%s\" has a shape whose size overflows",
                                  t->name);
            bytes *= t->shape[d];
        }
        if (t->begin > t->end || t->end > data_len)
            return cwt_seterr(err, errlen, CWT_EFORMAT,
                              "safetensors: tensor \"%s\" has offsets [%llu, %llu] outside the "
                              "data area of %llu bytes",
                              t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                              (unsigned long long)data_len);
        if (t->end - t->begin != bytes)
            return cwt_seterr(err, errlen, CWT_EFORMAT,
                              "safetensors: tensor \"%s\" spans %llu bytes but its dtype and "
                              "shape need %llu",
                              t->name, (unsigned long long)(t->end - t->begin),
                              (unsigned long long)bytes);
    }
    if (f->n > 1) /* qsort wants a non-NULL base even for no elements */
        qsort(f->tensors, f->n, sizeof(f->tensors[0]), cmp_name);
    for (uint32_t i = 1; i < f->n; i++)
        if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0)
            return cwt_seterr(err, errlen, CWT_EFORMAT, "safetensors: tensor \"%s\" appears twice",
                              f->tensors[i].name);
    order = malloc((f->n ? f->n : 1) * sizeof(*order));
    if (order == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "safetensors: out of memory");
    for (uint32_t i = 0; i < f->n; i++)
        order[i] = &f->tensors[i];
    if (f->n > 1)
        qsort(order, f->n, sizeof(*order), cmp_offset);
    for (uint32_t i = 0; i < f->n; i++) {
        if (order[i]->begin != pos) {
            int rc =
                cwt_seterr(err, errlen, CWT_EFORMAT, "safetensors: tensor \"%s\" at offset %llu %s",
                           order[i]->name, (unsigned long long)order[i]->begin,
                           order[i]->begin < pos ? "overlaps another tensor"
                                                 : "leaves a hole in the data area");
            free(order);
            return rc;
        }
        pos = order[i]->end;
    }
    free(order);
    if (pos != data_len)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "safetensors: tensors cover %llu of %llu data bytes",
                          (unsigned long long)pos, (unsigned long long)data_len);
    return 0;
}

int st_parse_header(const uint8_t *json, size_t json_len, uint64_t data_len, struct st_file *f,
                    char *err, size_t errlen)
{
    json_error_t je;
    json_t *root;
    const json_t *v;
    const char *name;
    int rc = 0;

    memset(f, 0, sizeof(*f));
    if (json_len > ST_MAX_HEADER)
        return cwt_seterr(err, errlen, CWT_ETOOBIG,
                          "safetensors: header of %zu bytes exceeds the limit of %u", json_len,
                          ST_MAX_HEADER);
    if (header_values(json, json_len, ST_MAX_VALUES) > ST_MAX_VALUES)
        return cwt_seterr(err, errlen, CWT_ETOOBIG,
                          "safetensors header: more than %zu JSON values (at most %d tensors "
                          "of %d dimensions)",
                          ST_MAX_VALUES, ST_MAX_TENSORS, ST_MAX_DIMS);
    {
        size_t i = 0;
        while (i < json_len &&
               (json[i] == ' ' || json[i] == '\t' || json[i] == '\n' || json[i] == '\r'))
            i++;
        if (i == json_len || json[i] != '{')
            return cwt_seterr(err, errlen, CWT_EFORMAT,
                              "safetensors header: expected '{' at byte %zu", i);
    }
    root = json_loadb((const char *)json, json_len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL)
        return json_fail(&je, err, errlen);
    if (!json_is_object(root)) {
        json_decref(root);
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "safetensors header: expected '{' (the header is one JSON object)");
    }
    if (json_object_size(root) > (size_t)ST_MAX_TENSORS + 1) {
        json_decref(root);
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "safetensors: more than %d tensors",
                          ST_MAX_TENSORS);
    }
    f->tensors =
        malloc((json_object_size(root) ? json_object_size(root) : 1) * sizeof(*f->tensors));
    if (f->tensors == NULL) {
        json_decref(root);
        return cwt_seterr(err, errlen, CWT_ENOMEM, "safetensors: out of memory");
    }
    json_object_foreach(root, name, v)
    {
        struct st_tensor *t;
        if (strcmp(name, "__metadata__") == 0) {
            if ((rc = parse_metadata(v, f, err, errlen)) != 0)
                goto fail;
            continue;
        }
        if (name[0] == '\0') {
            rc = cwt_seterr(err, errlen, CWT_EFORMAT, "safetensors header: empty tensor name");
            goto fail;
        }
        if (strlen(name) > ST_NAME_MAX) {
            rc = cwt_seterr(err, errlen, CWT_ETOOBIG,
                            "safetensors header: tensor name \"%.40s...\" is longer than %d bytes",
                            name, ST_NAME_MAX);
            goto fail;
        }
        if (f->n == ST_MAX_TENSORS) {
            rc = cwt_seterr(err, errlen, CWT_ETOOBIG, "safetensors: more than %d tensors",
                            ST_MAX_TENSORS);
            goto fail;
        }
        t = &f->tensors[f->n];
        memset(t, 0, sizeof(*t));
        memcpy(t->name, name, strlen(name) + 1);
        if ((rc = parse_tensor(v, t, err, errlen)) != 0)
            goto fail;
        f->n++;
    }
    json_decref(root);
    root = NULL;
    if ((rc = check_layout(f, data_len, err, errlen)) != 0)
        goto fail;
    f->data_len = data_len;
    return 0;
fail:
    json_decref(root);
    st_free(f);
    return rc;
}

static uint64_t rd_le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

int st_parse(const uint8_t *buf, size_t len, struct st_file *f, char *err, size_t errlen)
{
    uint64_t hlen;
    int rc;

    memset(f, 0, sizeof(*f));
    if (len < 8)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "safetensors: file of %zu bytes is too "
                          "short",
                          len);
    hlen = rd_le64(buf);
    if (hlen > ST_MAX_HEADER)
        return cwt_seterr(err, errlen, CWT_ETOOBIG,
                          "safetensors: header length %llu exceeds the limit of %u",
                          (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > len - 8)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "safetensors: header length %llu is larger than the file",
                          (unsigned long long)hlen);
    rc = st_parse_header(buf + 8, (size_t)hlen, len - 8 - hlen, f, err, errlen);
    if (rc == 0)
        f->data = buf + 8 + hlen;
    return rc;
}

void st_free(struct st_file *f)
{
    if (f == NULL)
        return;
    free(f->tensors);
    f->tensors = NULL;
    f->n = 0;
}

int st_find(const struct st_file *f, const char *name)
{
    /* check_layout leaves the table sorted by name. */
    uint32_t lo = 0, hi = f->n;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->tensors[mid].name);
        if (c == 0)
            return (int)mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

/* Index of the first non-finite element in n elements of a float dtype, or -1. F16 and BF16
 * are non-finite when their exponent bits are all ones. */
static int64_t first_nonfinite(enum st_dtype d, const uint8_t *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        switch (d) {
        case ST_F32: {
            uint32_t v;
            memcpy(&v, p + 4 * i, 4);
            if ((v & 0x7f800000u) == 0x7f800000u)
                return (int64_t)i;
            break;
        }
        case ST_F64: {
            uint64_t v;
            memcpy(&v, p + 8 * i, 8);
            if ((v & 0x7ff0000000000000ull) == 0x7ff0000000000000ull)
                return (int64_t)i;
            break;
        }
        case ST_F16:
            if ((p[2 * i + 1] & 0x7c) == 0x7c)
                return (int64_t)i;
            break;
        case ST_BF16:
            if ((p[2 * i + 1] & 0x7f) == 0x7f && (p[2 * i] & 0x80))
                return (int64_t)i;
            break;
        default:
            return -1;
        }
    }
    return -1;
}

static int is_float(enum st_dtype d)
{
    return d == ST_F32 || d == ST_F64 || d == ST_F16 || d == ST_BF16;
}

int st_check_finite(const struct st_file *f, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < f->n; i++) {
        const struct st_tensor *t = &f->tensors[i];
        uint64_t esz = st_dtype_size(t->dtype);
        int64_t bad;
        if (!is_float(t->dtype))
            continue;
        bad = first_nonfinite(t->dtype, f->data + t->begin, (t->end - t->begin) / esz);
        if (bad >= 0)
            return cwt_seterr(err, errlen, CWT_ENUMERIC,
                              "tensor \"%s\" holds a NaN or Inf at element %lld", t->name,
                              (long long)bad);
    }
    return 0;
}

static int pread_full(int fd, uint8_t *buf, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pread(fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int st_check_fd(int fd, char *err, size_t errlen)
{
    struct stat sb;
    struct st_file f;
    uint8_t lenbuf[8], *buf = NULL;
    uint64_t hlen, size;
    int rc;

    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        return cwt_seterr(err, errlen, CWT_EIO, "safetensors: not a regular file");
    size = (uint64_t)sb.st_size;
    if (size < 8)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "safetensors: file of %llu bytes is too short",
                          (unsigned long long)size);
    if (pread_full(fd, lenbuf, 8, 0) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "safetensors: cannot read: %s", strerror(errno));
    hlen = rd_le64(lenbuf);
    if (hlen > ST_MAX_HEADER)
        return cwt_seterr(err, errlen, CWT_ETOOBIG,
                          "safetensors: header length %llu exceeds the limit of %u",
                          (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > size - 8)
        return cwt_seterr(err, errlen, CWT_EFORMAT,
                          "safetensors: header length %llu is larger than the file",
                          (unsigned long long)hlen);
    buf = malloc(hlen > ST_CHECK_BLOCK ? hlen : ST_CHECK_BLOCK);
    if (buf == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "safetensors: out of memory");
    if (pread_full(fd, buf, (size_t)hlen, 8) != 0) {
        free(buf);
        return cwt_seterr(err, errlen, CWT_EIO, "safetensors: cannot read: %s", strerror(errno));
    }
    rc = st_parse_header(buf, (size_t)hlen, size - 8 - hlen, &f, err, errlen);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    for (uint32_t i = 0; i < f.n && rc == 0; i++) {
        const struct st_tensor *t = &f.tensors[i];
        uint64_t esz = st_dtype_size(t->dtype), pos = t->begin;
        if (!is_float(t->dtype))
            continue;
        while (pos < t->end) {
            /* Blocks are a multiple of every element size, so no element straddles two. */
            uint64_t n = t->end - pos < ST_CHECK_BLOCK ? t->end - pos : ST_CHECK_BLOCK;
            int64_t bad;
            if (pread_full(fd, buf, (size_t)n, 8 + hlen + pos) != 0) {
                rc = cwt_seterr(err, errlen, CWT_EIO, "safetensors: cannot read: %s",
                                strerror(errno));
                break;
            }
            bad = first_nonfinite(t->dtype, buf, n / esz);
            if (bad >= 0) {
                rc = cwt_seterr(err, errlen, CWT_ENUMERIC,
                                "tensor \"%s\" holds a NaN or Inf at element %llu", t->name,
                                (unsigned long long)((pos - t->begin) / esz + (uint64_t)bad));
                break;
            }
            pos += n;
        }
    }
    st_free(&f);
    free(buf);
    return rc;
}

int st_check_file(const char *path, char *err, size_t errlen)
{
    char sub[CWT_ERRLEN];
    int fd, rc;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cwt_seterr(err, errlen, errno == ENOENT ? CWT_ENOENT : CWT_EIO,
                          "%s: cannot open: %s", path, strerror(errno));
    rc = st_check_fd(fd, sub, sizeof(sub));
    close(fd);
    if (rc != 0)
        cwt_seterr(err, errlen, rc, "%s: %s", path, sub);
    return rc;
}

/* ------------------------------------------------------------------ writer */

struct st_wtensor {
    char name[ST_NAME_MAX + 1];
    enum st_dtype dtype;
    uint32_t ndim;
    uint64_t shape[ST_MAX_DIMS];
    size_t bytes;
    uint8_t *data;
};

struct st_writer {
    struct st_wtensor *t;
    uint32_t n, cap;
    uint32_t n_meta;
    struct st_meta meta[ST_META_MAX];
};

int st_writer_new(struct st_writer **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : CWT_ENOMEM;
}

void st_writer_free(struct st_writer *w)
{
    if (w == NULL)
        return;
    for (uint32_t i = 0; i < w->n; i++)
        free(w->t[i].data);
    free(w->t);
    free(w);
}

int st_writer_meta(struct st_writer *w, const char *key, const char *value)
{
    if (w->n_meta == ST_META_MAX)
        return CWT_ETOOBIG;
    if (strlen(key) >= sizeof(w->meta[0].key) || strlen(value) >= sizeof(w->meta[0].value))
        return CWT_ETOOBIG;
    for (uint32_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta[i].key, key) == 0)
            return CWT_EEXIST;
    strcpy(w->meta[w->n_meta].key, key);
    strcpy(w->meta[w->n_meta].value, value);
    w->n_meta++;
    return 0;
}

int st_writer_add(struct st_writer *w, const char *name, enum st_dtype dtype, uint32_t ndim,
                  const uint64_t *shape, const void *data)
{
    struct st_wtensor *t;
    size_t bytes = st_dtype_size(dtype);

    if (bytes == 0 || ndim > ST_MAX_DIMS || name[0] == '\0' || strlen(name) > ST_NAME_MAX ||
        strcmp(name, "__metadata__") == 0)
        return CWT_EINVAL;
    if (w->n == ST_MAX_TENSORS)
        return CWT_ETOOBIG;
    for (uint32_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return CWT_EEXIST;
    for (uint32_t d = 0; d < ndim; d++)
        if (cwt_mul_size(bytes, shape[d], &bytes) != 0 || shape[d] > SIZE_MAX)
            return CWT_ETOOBIG;
    if (w->n == w->cap) {
        uint32_t ncap = w->cap ? w->cap * 2 : 16;
        struct st_wtensor *nt = realloc(w->t, ncap * sizeof(*nt));
        if (nt == NULL)
            return CWT_ENOMEM;
        w->t = nt;
        w->cap = ncap;
    }
    t = &w->t[w->n];
    memset(t, 0, sizeof(*t));
    t->data = malloc(bytes ? bytes : 1);
    if (t->data == NULL)
        return CWT_ENOMEM;
    if (bytes > 0)
        memcpy(t->data, data, bytes);
    strcpy(t->name, name);
    t->dtype = dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, ndim * sizeof(uint64_t));
    t->bytes = bytes;
    w->n++;
    return 0;
}

/* A growing text buffer for the JSON header. */
struct sbuf {
    char *p;
    size_t len, cap;
    int failed;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        char *np;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        np = realloc(b->p, ncap);
        if (np == NULL) {
            b->failed = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void sb_fmt(struct sbuf *b, const char *fmt, unsigned long long v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), fmt, v);

    sb_put(b, tmp, (size_t)n);
}

static void sb_str(struct sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
        } else if (c < 0x20) {
            sb_fmt(b, "\\u%04llx", c);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int cmp_wname(const void *a, const void *b)
{
    return strcmp(((const struct st_wtensor *)a)->name, ((const struct st_wtensor *)b)->name);
}

int st_writer_finish(struct st_writer *w, uint8_t **out, size_t *outlen)
{
    struct sbuf hb = {0};
    size_t data_len = 0, total, pad, pos;
    uint64_t off = 0;
    uint8_t *buf;

    *out = NULL;
    *outlen = 0;
    if (w->n > 1)
        qsort(w->t, w->n, sizeof(w->t[0]), cmp_wname);
    sb_put(&hb, "{", 1);
    if (w->n_meta > 0) {
        sb_put(&hb, "\"__metadata__\":{", 16);
        for (uint32_t i = 0; i < w->n_meta; i++) {
            if (i > 0)
                sb_put(&hb, ",", 1);
            sb_str(&hb, w->meta[i].key);
            sb_put(&hb, ":", 1);
            sb_str(&hb, w->meta[i].value);
        }
        sb_put(&hb, "}", 1);
    }
    for (uint32_t i = 0; i < w->n; i++) {
        const struct st_wtensor *t = &w->t[i];
        if (i > 0 || w->n_meta > 0)
            sb_put(&hb, ",", 1);
        sb_str(&hb, t->name);
        sb_put(&hb, ":{\"dtype\":", 10);
        sb_str(&hb, st_dtype_name(t->dtype));
        sb_put(&hb, ",\"shape\":[", 10);
        for (uint32_t d = 0; d < t->ndim; d++)
            sb_fmt(&hb, d ? ",%llu" : "%llu", t->shape[d]);
        sb_fmt(&hb, "],\"data_offsets\":[%llu", off);
        sb_fmt(&hb, ",%llu]}", off + t->bytes);
        off += t->bytes;
        if (cwt_add_size(data_len, t->bytes, &data_len) != 0) {
            free(hb.p);
            return CWT_ETOOBIG;
        }
    }
    sb_put(&hb, "}", 1);
    if (hb.failed) {
        free(hb.p);
        return CWT_ENOMEM;
    }
    /* The data area starts 8-byte aligned: pad the JSON with spaces, as the format allows. */
    pad = (8 - (8 + hb.len) % 8) % 8;
    if (hb.len + pad > ST_MAX_HEADER || cwt_add_size(8 + hb.len + pad, data_len, &total) != 0) {
        free(hb.p);
        return CWT_ETOOBIG;
    }
    buf = malloc(total ? total : 1);
    if (buf == NULL) {
        free(hb.p);
        return CWT_ENOMEM;
    }
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)(hb.len + pad) >> (8 * i));
    memcpy(buf + 8, hb.p, hb.len);
    memset(buf + 8 + hb.len, ' ', pad);
    pos = 8 + hb.len + pad;
    for (uint32_t i = 0; i < w->n; i++) {
        if (w->t[i].bytes > 0)
            memcpy(buf + pos, w->t[i].data, w->t[i].bytes);
        pos += w->t[i].bytes;
    }
    free(hb.p);
    *out = buf;
    *outlen = total;
    return 0;
}

int st_header_fd(int fd, struct st_file *f, char *err, size_t errlen)
{
    struct stat sb;
    uint8_t lenbuf[8], *buf;
    uint64_t hlen, size;
    int rc;

    memset(f, 0, sizeof(*f));
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        return cwt_seterr(err, errlen, CWT_EIO, "safetensors: not a regular file");
    size = (uint64_t)sb.st_size;
    if (size < 8)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "safetensors: file of %llu bytes is too short",
                          (unsigned long long)size);
    if (pread_full(fd, lenbuf, 8, 0) != 0)
        return cwt_seterr(err, errlen, CWT_EIO, "safetensors: cannot read: %s", strerror(errno));
    hlen = rd_le64(lenbuf);
    if (hlen > ST_MAX_HEADER || hlen > size - 8)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "safetensors: header length %llu is invalid",
                          (unsigned long long)hlen);
    buf = malloc(hlen > 0 ? (size_t)hlen : 1);
    if (buf == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "safetensors: out of memory");
    if (pread_full(fd, buf, (size_t)hlen, 8) != 0) {
        free(buf);
        return cwt_seterr(err, errlen, CWT_EIO, "safetensors: cannot read: %s", strerror(errno));
    }
    rc = st_parse_header(buf, (size_t)hlen, size - 8 - hlen, f, err, errlen);
    free(buf);
    return rc;
}

const char *st_meta_get(const struct st_file *f, const char *key)
{
    for (uint32_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0)
            return f->meta[i].value;
    return NULL;
}

int st_same_layout(const struct st_file *want, const struct st_file *got, char *err, size_t errlen)
{
    if (got->n != want->n)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "%u tensors where the model has %u", got->n,
                          want->n);
    for (uint32_t i = 0; i < want->n; i++) {
        const struct st_tensor *w = &want->tensors[i];
        int j = st_find(got, w->name);
        const struct st_tensor *g;
        if (j < 0)
            return cwt_seterr(err, errlen, CWT_EFORMAT, "tensor \"%s\" of the model is missing",
                              w->name);
        g = &got->tensors[j];
        if (g->dtype != w->dtype)
            return cwt_seterr(err, errlen, CWT_EFORMAT, "tensor \"%s\" is %s, not %s", w->name,
                              st_dtype_name(g->dtype), st_dtype_name(w->dtype));
        if (g->ndim != w->ndim || memcmp(g->shape, w->shape, sizeof(g->shape[0]) * w->ndim) != 0)
            return cwt_seterr(err, errlen, CWT_EFORMAT,
                              "tensor \"%s\" does not have the model's shape", w->name);
    }
    return 0;
}
