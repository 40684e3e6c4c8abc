/*
 * safetensors.h - strict reader and writer for the safetensors format
 * (https://github.com/huggingface/safetensors): u64 LE header length, a JSON header
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
 * then the raw little-endian tensor bytes.
 *
 * The reader is a parser of outside input: the JSON header is bounded (ST_MAX_HEADER), only
 * known dtypes are accepted, shapes are checked for overflow, offsets must lie in the data
 * area, must not overlap, must match dtype x shape, and must cover the data area exactly.
 */
#ifndef CWT_SAFETENSORS_H
#define CWT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_HEADER  (16u << 20) /* 16 MiB of JSON */
#define ST_MAX_TENSORS 4096
#define ST_MAX_DIMS    8
#define ST_NAME_MAX    255
#define ST_META_MAX    64

enum st_dtype { ST_F32 = 0, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_U8, ST_I8, ST_BOOL };

struct st_tensor {
    char name[ST_NAME_MAX + 1];
    enum st_dtype dtype;
    uint32_t ndim;
    uint64_t shape[ST_MAX_DIMS];
    uint64_t begin, end; /* offsets relative to the start of the data area */
};

struct st_meta {
    char key[64];
    char value[256];
};

/* A parsed file: the table of tensors plus a pointer to the data area. */
struct st_file {
    uint32_t n;
    struct st_tensor *tensors; /* n entries, malloc'd */
    uint32_t n_meta;
    struct st_meta meta[ST_META_MAX];
    const uint8_t *data; /* points into the buffer given to st_parse */
    uint64_t data_len;
};

/* Size in bytes of one element of dtype. */
size_t st_dtype_size(enum st_dtype d);
const char *st_dtype_name(enum st_dtype d);

/* Parses a safetensors image held in memory. On success *f refers into buf (keep buf alive)
 * and must be released with st_free(). CWT_EFORMAT / CWT_ETOOBIG with a sentence in err. */
int st_parse(const uint8_t *buf, size_t len, struct st_file *f, char *err, size_t errlen);
void st_free(struct st_file *f);

/* Index of the tensor with this name, or -1. */
int st_find(const struct st_file *f, const char *name);

/* Checks every F32/F64 tensor for NaN/Inf. CWT_ENUMERIC names the tensor in err. */
int st_check_finite(const struct st_file *f, char *err, size_t errlen);

/* Writer: collect tensors, then serialise. Tensor data is copied on st_writer_add. */
struct st_writer;
int st_writer_new(struct st_writer **out);
int st_writer_meta(struct st_writer *w, const char *key, const char *value);
int st_writer_add(struct st_writer *w, const char *name, enum st_dtype dtype, uint32_t ndim,
                  const uint64_t *shape, const void *data);
/* Serialises into a malloc'd buffer (*out, caller frees). Tensors are sorted by name. */
int st_writer_finish(struct st_writer *w, uint8_t **out, size_t *outlen);
void st_writer_free(struct st_writer *w);

/* Added for streaming checks of payloads too large to hold in memory (crypto/bundle.c). */

/* Parses just the JSON header (json_len bytes, the part after the 8-byte length) of a file
 * whose data area is data_len bytes, with every check of st_parse. f->data is NULL. Release
 * with st_free(). CWT_EFORMAT / CWT_ETOOBIG / CWT_ENOMEM with a sentence in err. */
int st_parse_header(const uint8_t *json, size_t json_len, uint64_t data_len, struct st_file *f,
                    char *err, size_t errlen);

/* Strict parse plus finite check (F32, F64, F16 and BF16) of a whole file, read in 1 MiB
 * blocks so memory stays bounded whatever its size (the header itself is at most
 * ST_MAX_HEADER). st_check_fd reads fd with pread from offset 0. Errors as st_parse, plus
 * CWT_ENUMERIC naming the tensor, CWT_EIO, CWT_ENOENT (st_check_file: no such file). */
int st_check_fd(int fd, char *err, size_t errlen);
int st_check_file(const char *path, char *err, size_t errlen);

/* Parses just the header of the safetensors file open on fd (pread from offset 0; the data
 * area is not read): tensor table and metadata, with every check of st_parse_header. Release
 * with st_free(). Errors as st_parse_header, CWT_EIO when fd cannot be read. */
int st_header_fd(int fd, struct st_file *f, char *err, size_t errlen);

/* The value of metadata key in f, or NULL when absent. */
const char *st_meta_get(const struct st_file *f, const char *key);

/* Whether got holds exactly want's tensors: the same names (in any order), each with the same
 * dtype and shape, and no other. 0, or CWT_EFORMAT with a sentence naming the first
 * difference. */
int st_same_layout(const struct st_file *want, const struct st_file *got, char *err, size_t errlen);

#endif
