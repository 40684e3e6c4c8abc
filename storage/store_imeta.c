/*
 * store_imeta.c - per-image metadata: short text columns from the ingest CSV (a hospital, a
 * scanner, ...), kept in the `imeta` database beside the images so the image records and
 * their format stay as they were (docs/ingest.md, "Store layout").
 */
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"
#include "storage/store_internal.h"

int store_imeta_name_ok(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > STORE_IMETA_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return 0;
    }
    return 1;
}

/* Well-formed UTF-8 (no overlong forms, no surrogates, at most U+10FFFF) and no control
 * character: values end up in terminals, JSON and SVG. */
int store_imeta_value_check(const char *value)
{
    const unsigned char *p = (const unsigned char *)value;
    size_t n = strlen(value);

    if (n == 0)
        return CWT_EINVAL;
    if (n > STORE_IMETA_VALUE_MAX)
        return CWT_ETOOBIG;
    /* UTF-8 by common/utf8.c's rules, the ones every JSON writer of cwt applies. */
    for (size_t i = 0; i < n;) {
        size_t len = cwt_utf8_len(p + i);
        if (len == 0)
            return CWT_EFORMAT;
        /* C0, DEL and C1 (U+0080..U+009F, encoded 0xc2 0x80..0x9f). */
        if (p[i] < 0x20 || p[i] == 0x7f || (p[i] == 0xc2 && p[i + 1] <= 0x9f))
            return CWT_EPERM;
        i += len;
    }
    return 0;
}

int store_imeta_set(struct store_imeta *m, const char *name, const char *value)
{
    uint32_t at = 0;

    if (!store_imeta_name_ok(name) || store_imeta_value_check(value) != 0)
        return CWT_EINVAL;
    while (at < m->n && strcmp(m->kv[at].name, name) < 0)
        at++;
    if (at < m->n && strcmp(m->kv[at].name, name) == 0)
        return CWT_EEXIST;
    if (m->n >= STORE_IMETA_MAX)
        return CWT_ETOOBIG;
    memmove(&m->kv[at + 1], &m->kv[at], (m->n - at) * sizeof(m->kv[0]));
    strcpy(m->kv[at].name, name);   /* lengths checked above */
    strcpy(m->kv[at].value, value); /* lengths checked above */
    m->n++;
    return 0;
}

const char *store_imeta_get(const struct store_imeta *m, const char *name)
{
    for (uint32_t i = 0; i < m->n; i++)
        if (strcmp(m->kv[i].name, name) == 0)
            return m->kv[i].value;
    return NULL;
}

int store_imeta_encode(const struct store_imeta *m, uint8_t *out, size_t cap, size_t *len)
{
    size_t used = 0;

    if (m->n > STORE_IMETA_MAX)
        return CWT_EINVAL;
    for (uint32_t i = 0; i < m->n; i++) {
        size_t nl = strlen(m->kv[i].name), vl = strlen(m->kv[i].value);
        if (nl == 0 || nl > STORE_IMETA_NAME_MAX || vl == 0 || vl > STORE_IMETA_VALUE_MAX)
            return CWT_EINVAL;
        if (cap - used < 2 + nl + vl)
            return CWT_ETOOBIG;
        out[used++] = (uint8_t)nl;
        memcpy(out + used, m->kv[i].name, nl);
        used += nl;
        out[used++] = (uint8_t)vl;
        memcpy(out + used, m->kv[i].value, vl);
        used += vl;
    }
    *len = used;
    return 0;
}

int store_imeta_decode(const uint8_t *buf, size_t len, struct store_imeta *out)
{
    size_t at = 0;

    memset(out, 0, sizeof(*out));
    while (at < len) {
        size_t nl, vl;
        if (out->n >= STORE_IMETA_MAX)
            return CWT_ESTORE;
        nl = buf[at++];
        if (nl == 0 || nl > STORE_IMETA_NAME_MAX || len - at < nl + 1)
            return CWT_ESTORE;
        memcpy(out->kv[out->n].name, buf + at, nl);
        at += nl;
        vl = buf[at++];
        if (vl == 0 || vl > STORE_IMETA_VALUE_MAX || len - at < vl)
            return CWT_ESTORE;
        memcpy(out->kv[out->n].value, buf + at, vl);
        at += vl;
        if (!store_imeta_name_ok(out->kv[out->n].name) ||
            store_imeta_value_check(out->kv[out->n].value) != 0 ||
            (out->n > 0 && strcmp(out->kv[out->n - 1].name, out->kv[out->n].name) >= 0))
            return CWT_ESTORE;
        out->n++;
    }
    return 0;
}

int store_get_image_meta(struct store *st, uint64_t id, struct store_imeta *out)
{
    uint8_t idkey[8];
    MDB_val k, v;
    int rc;

    if (st == NULL || out == NULL)
        return CWT_EINVAL;
    memset(out, 0, sizeof(*out));
    if (st->snapshot == NULL)
        return CWT_ESTATE;
    if (!st->has_imeta)
        return 0;
    store_be64(idkey, id);
    k.mv_data = idkey;
    k.mv_size = sizeof(idkey);
    rc = mdb_get(st->snapshot, st->imeta, &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return store_mdb_err(rc);
    return store_imeta_decode(v.mv_data, v.mv_size, out);
}

int store_each_image_meta(struct store *st,
                          int (*fn)(uint64_t id, const struct store_imeta *m, void *ctx), void *ctx)
{
    struct store_imeta *m;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    if (st == NULL || fn == NULL)
        return CWT_EINVAL;
    if (st->snapshot == NULL)
        return CWT_ESTATE;
    if (!st->has_imeta)
        return 0;
    if ((m = malloc(sizeof(*m))) == NULL)
        return CWT_ENOMEM;
    rc = mdb_cursor_open(st->snapshot, st->imeta, &cur);
    if (rc != 0) {
        free(m);
        return store_mdb_err(rc);
    }
    /* rc: the walk's result (CWT_E* or fn's); mrc: LMDB's. */
    rc = 0;
    for (int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (mrc == MDB_NOTFOUND)
            break;
        if (mrc != 0)
            rc = store_mdb_err(mrc);
        else if (k.mv_size != 8 || store_imeta_decode(v.mv_data, v.mv_size, m) != 0)
            rc = CWT_ESTORE;
        else
            rc = fn(store_rd_be64(k.mv_data), m, ctx);
    }
    mdb_cursor_close(cur);
    free(m);
    return rc;
}
