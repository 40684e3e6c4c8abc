/*
 * keys.c - a site's Ed25519 and X25519 key pairs: generation, files, loading.
 *
 * Secret material (the keys and their base64 text) only ever sits in sodium_malloc'd memory,
 * which libsodium locks into RAM (sodium_mlock) and fences with guard pages; it is wiped by
 * sodium_free. Secret files are checked on the open descriptor (fstat), so the file that was
 * checked is the file that is read.
 */
#include "crypto/keys.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "storage/store.h"

#define SIGN_KEY_FILE "sign.key"
#define BOX_KEY_FILE  "box.key"
#define PUB_KEY_FILE  "site.pub"
#define SIGN_MAGIC    "cwt-sign-v1"
#define BOX_MAGIC     "cwt-box-v1"

/* A key file is a magic line and one base64 line; anything longer is not ours. */
#define KEY_FILE_MAX 512

int crypto_init(void)
{
    /* sodium_init() is itself idempotent and thread-safe: 0 first time, 1 afterwards. */
    return sodium_init() < 0 ? CWT_ECRYPTO : 0;
}

void keys_id_hex(const uint8_t key_id[CWT_KEYID_LEN], char out[2 * CWT_KEYID_LEN + 1])
{
    cwt_hex(key_id, CWT_KEYID_LEN, out);
}

void keys_free(struct site_keys *k)
{
    if (k == NULL)
        return;
    sodium_free(k->sign_sk); /* sodium_free wipes before unmapping; NULL is fine */
    sodium_free(k->box_sk);
    k->sign_sk = NULL;
    k->box_sk = NULL;
}

/* Writes "MAGIC\n<base64(secret)>\n" to path, created 0600 with O_EXCL. The text is built in
 * sodium_malloc'd memory because it is the secret in another spelling. */
static int write_secret_file(const char *path, const char *magic, const uint8_t *secret,
                             size_t secret_len, char *err, size_t errlen)
{
    size_t b64_len = sodium_base64_ENCODED_LEN(secret_len, sodium_base64_VARIANT_ORIGINAL);
    size_t magic_len = strlen(magic);
    size_t text_cap = magic_len + 1 + b64_len + 1;
    char *text;
    size_t len;
    int rc;

    text = sodium_malloc(text_cap);
    if (text == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of locked memory for a secret key");
    memcpy(text, magic, magic_len);
    text[magic_len] = '\n';
    sodium_bin2base64(text + magic_len + 1, b64_len, secret, secret_len,
                      sodium_base64_VARIANT_ORIGINAL);
    len = strlen(text);
    text[len++] = '\n';
    rc = file_write_new(path, text, len, 0600, err, errlen);
    sodium_free(text);
    return rc;
}

static int key_path(char *out, size_t outlen, const char *keys_dir, const char *name, char *err,
                    size_t errlen)
{
    if (file_join(out, outlen, keys_dir, name) != 0)
        return cwt_seterr(err, errlen, CWT_ETOOBIG, "%s: path too long", keys_dir);
    return 0;
}

int keys_generate(const char *keys_dir, const char *site_id, char *err, size_t errlen)
{
    char sign_path[PATH_MAX], box_path[PATH_MAX], pub_path[PATH_MAX];
    char line[CWT_KEYLINE_MAX + 2];
    uint8_t sign_pk[crypto_sign_PUBLICKEYBYTES], box_pk[crypto_box_PUBLICKEYBYTES];
    uint8_t key_id[CWT_KEYID_LEN];
    uint8_t *sign_sk = NULL, *box_sk = NULL;
    const char *paths[3];
    struct stat sb;
    size_t len;
    int rc;

    if (!cwt_valid_id(site_id))
        return cwt_seterr(err, errlen, CWT_EINVAL, "'%s' is not a valid site id", site_id);
    if (crypto_init() != 0)
        return cwt_seterr(err, errlen, CWT_ECRYPTO, "libsodium failed to initialise");
    if ((rc = key_path(sign_path, sizeof(sign_path), keys_dir, SIGN_KEY_FILE, err, errlen)) != 0 ||
        (rc = key_path(box_path, sizeof(box_path), keys_dir, BOX_KEY_FILE, err, errlen)) != 0 ||
        (rc = key_path(pub_path, sizeof(pub_path), keys_dir, PUB_KEY_FILE, err, errlen)) != 0)
        return rc;
    /* Check all three first so that an existing key is never half replaced. */
    paths[0] = sign_path;
    paths[1] = box_path;
    paths[2] = pub_path;
    for (int i = 0; i < 3; i++)
        if (lstat(paths[i], &sb) == 0)
            return cwt_seterr(err, errlen, CWT_EEXIST,
                              "%s exists already; refusing to overwrite a site key", paths[i]);
    if ((rc = file_mkdir_p(keys_dir, 0700, err, errlen)) != 0)
        return rc;

    sign_sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    box_sk = sodium_malloc(crypto_box_SECRETKEYBYTES);
    if (sign_sk == NULL || box_sk == NULL) {
        rc = cwt_seterr(err, errlen, CWT_ENOMEM, "out of locked memory for secret keys");
        goto out;
    }
    if (crypto_sign_keypair(sign_pk, sign_sk) != 0 || crypto_box_keypair(box_pk, box_sk) != 0) {
        rc = cwt_seterr(err, errlen, CWT_ECRYPTO, "key generation failed");
        goto out;
    }
    rc = keyline_format(site_id, sign_pk, box_pk, line, sizeof(line), key_id);
    if (rc != 0) {
        rc = cwt_seterr(err, errlen, rc, "cannot format the public key line for '%s'", site_id);
        goto out;
    }
    len = strlen(line);
    line[len++] = '\n';

    rc = write_secret_file(sign_path, SIGN_MAGIC, sign_sk, crypto_sign_SECRETKEYBYTES, err, errlen);
    if (rc != 0)
        goto out;
    rc = write_secret_file(box_path, BOX_MAGIC, box_sk, crypto_box_SECRETKEYBYTES, err, errlen);
    if (rc != 0) {
        unlink(sign_path);
        goto out;
    }
    rc = file_write_new(pub_path, line, len, 0644, err, errlen);
    if (rc != 0) {
        unlink(sign_path);
        unlink(box_path);
    }
out:
    sodium_free(sign_sk);
    sodium_free(box_sk);
    return rc;
}

/* Describes which of group/others may touch a file, for the refusal sentence. */
static const char *loose_mode_words(mode_t mode)
{
    int group = (mode & 070) != 0, other = (mode & 007) != 0;

    if (mode & 044)
        return group && other ? "readable by group and others"
               : group        ? "readable by its group"
                              : "readable by others";
    if (mode & 022)
        return group && other ? "writable by group and others"
               : group        ? "writable by its group"
                              : "writable by others";
    return "accessible by group or others";
}

/* Reads a secret key file: "MAGIC\n<base64>\n" decoding to exactly secret_len bytes, into
 * secret (sodium_malloc'd by the caller). Refuses loose permissions and foreign owners, as ssh
 * does. The file's text is read into locked memory too. */
static int read_secret_file(const char *path, const char *magic, uint8_t *secret, size_t secret_len,
                            char *err, size_t errlen)
{
    size_t magic_len = strlen(magic), got = 0, decoded = 0;
    const char *b64_end = NULL;
    struct stat sb;
    char *text;
    int fd, rc = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return cwt_seterr(err, errlen, CWT_ENOENT, "%s: no such secret key file", path);
        return cwt_seterr(err, errlen, CWT_EIO, "%s: cannot open: %s", path, strerror(errno));
    }
    if (fstat(fd, &sb) != 0) {
        rc = cwt_seterr(err, errlen, CWT_EIO, "%s: cannot stat: %s", path, strerror(errno));
        goto close_fd;
    }
    if (!S_ISREG(sb.st_mode)) {
        rc = cwt_seterr(err, errlen, CWT_EPERM, "%s is not a regular file", path);
        goto close_fd;
    }
    if (sb.st_uid != geteuid()) {
        /* Act as the keys' owner rather than take the keys: a chown would lock the service
         * user out of its own keys. (No user-name lookup: the daemon's sandbox has no NSS.) */
        rc = cwt_seterr(err, errlen, CWT_EPERM,
                        "%s is owned by uid %ld, not by the user loading it (uid %ld); run the "
                        "command as that user (as root: runuser -u USER -- cwtctl ...)",
                        path, (long)sb.st_uid, (long)geteuid());
        goto close_fd;
    }
    if ((sb.st_mode & 077) != 0) {
        rc = cwt_seterr(err, errlen, CWT_EPERM, "%s is %s (mode %04o); run chmod 600 %s", path,
                        loose_mode_words(sb.st_mode), (unsigned)(sb.st_mode & 07777), path);
        goto close_fd;
    }
    if (sb.st_size > KEY_FILE_MAX) {
        rc = cwt_seterr(err, errlen, CWT_EFORMAT, "%s is too large to be a cwt key file", path);
        goto close_fd;
    }

    text = sodium_malloc(KEY_FILE_MAX + 1);
    if (text == NULL) {
        rc = cwt_seterr(err, errlen, CWT_ENOMEM, "out of locked memory for a secret key");
        goto close_fd;
    }
    while (got < KEY_FILE_MAX) {
        ssize_t n = read(fd, text + got, KEY_FILE_MAX - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = cwt_seterr(err, errlen, CWT_EIO, "%s: cannot read: %s", path, strerror(errno));
            goto free_text;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    text[got] = '\0';
    if (got < magic_len + 1 || memcmp(text, magic, magic_len) != 0 || text[magic_len] != '\n') {
        rc = cwt_seterr(err, errlen, CWT_EFORMAT, "%s does not start with '%s'", path, magic);
        goto free_text;
    }
    /* Exactly one base64 line after the magic, with an optional final newline. */
    if (sodium_base642bin(secret, secret_len, text + magic_len + 1, got - magic_len - 1, NULL,
                          &decoded, &b64_end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
        decoded != secret_len ||
        (*b64_end != '\0' && !(b64_end[0] == '\n' && b64_end[1] == '\0'))) {
        rc = cwt_seterr(err, errlen, CWT_EFORMAT,
                        "%s: the key is not %zu bytes of base64 on one line", path, secret_len);
        sodium_memzero(secret, secret_len);
    }
free_text:
    sodium_free(text);
close_fd:
    close(fd);
    return rc;
}

int keys_load_public(const char *keys_dir, struct site_keys *k, char *err, size_t errlen)
{
    struct cwt_roster_site site;
    char path[PATH_MAX], why[CWT_ERRLEN];
    uint8_t *text = NULL;
    size_t len;
    int rc;

    memset(k, 0, sizeof(*k));
    if ((rc = key_path(path, sizeof(path), keys_dir, PUB_KEY_FILE, err, errlen)) != 0)
        return rc;
    rc = file_read_all(path, CWT_KEYLINE_MAX + 2, &text, &len, err, errlen);
    if (rc == CWT_ETOOBIG)
        return cwt_seterr(err, errlen, CWT_EFORMAT, "%s is too long for a public key line", path);
    if (rc != 0)
        return rc;
    if (len > 0 && text[len - 1] == '\n')
        text[--len] = '\0';
    if (strlen((const char *)text) != len) {
        free(text);
        return cwt_seterr(err, errlen, CWT_EFORMAT, "%s contains a NUL byte", path);
    }
    rc = keyline_parse((const char *)text, &site, why, sizeof(why));
    free(text);
    if (rc != 0)
        return cwt_seterr(err, errlen, rc, "%s: %s", path, why);
    memcpy(k->site_id, site.id, sizeof(k->site_id));
    memcpy(k->sign_pk, site.sign_pk, sizeof(k->sign_pk));
    memcpy(k->box_pk, site.box_pk, sizeof(k->box_pk));
    memcpy(k->key_id, site.key_id, sizeof(k->key_id));
    return 0;
}

/* Checks that the secret keys belong to the public keys in site.pub. The Ed25519 secret key is
 * seed || public key, so the pair is rebuilt from the seed rather than trusting its copy. */
static int check_pairs(const struct site_keys *k, const char *keys_dir, char *err, size_t errlen)
{
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    uint8_t *rebuilt;
    int same;

    rebuilt = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    if (rebuilt == NULL)
        return cwt_seterr(err, errlen, CWT_ENOMEM, "out of locked memory for a secret key");
    if (crypto_sign_seed_keypair(pk, rebuilt, k->sign_sk) != 0) {
        sodium_free(rebuilt);
        return cwt_seterr(err, errlen, CWT_ECRYPTO, "cannot derive the signing public key");
    }
    same = sodium_memcmp(rebuilt, k->sign_sk, crypto_sign_SECRETKEYBYTES) == 0 &&
           sodium_memcmp(pk, k->sign_pk, sizeof(pk)) == 0;
    sodium_free(rebuilt);
    if (!same)
        return cwt_seterr(err, errlen, CWT_ECRYPTO,
                          "%s/%s does not belong to the public key in %s/%s", keys_dir,
                          SIGN_KEY_FILE, keys_dir, PUB_KEY_FILE);
    if (crypto_scalarmult_base(pk, k->box_sk) != 0 || sodium_memcmp(pk, k->box_pk, sizeof(pk)) != 0)
        return cwt_seterr(err, errlen, CWT_ECRYPTO,
                          "%s/%s does not belong to the public key in %s/%s", keys_dir,
                          BOX_KEY_FILE, keys_dir, PUB_KEY_FILE);
    return 0;
}

int keys_load(const char *keys_dir, struct site_keys *k, char *err, size_t errlen)
{
    char path[PATH_MAX];
    int rc;

    if (crypto_init() != 0)
        return cwt_seterr(err, errlen, CWT_ECRYPTO, "libsodium failed to initialise");
    if ((rc = keys_load_public(keys_dir, k, err, errlen)) != 0)
        return rc;
    k->sign_sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    k->box_sk = sodium_malloc(crypto_box_SECRETKEYBYTES);
    if (k->sign_sk == NULL || k->box_sk == NULL) {
        rc = cwt_seterr(err, errlen, CWT_ENOMEM, "out of locked memory for secret keys");
        goto fail;
    }
    if ((rc = key_path(path, sizeof(path), keys_dir, SIGN_KEY_FILE, err, errlen)) != 0 ||
        (rc = read_secret_file(path, SIGN_MAGIC, k->sign_sk, crypto_sign_SECRETKEYBYTES, err,
                               errlen)) != 0)
        goto fail;
    if ((rc = key_path(path, sizeof(path), keys_dir, BOX_KEY_FILE, err, errlen)) != 0 ||
        (rc = read_secret_file(path, BOX_MAGIC, k->box_sk, crypto_box_SECRETKEYBYTES, err,
                               errlen)) != 0)
        goto fail;
    if ((rc = check_pairs(k, keys_dir, err, errlen)) != 0)
        goto fail;
    return 0;
fail:
    keys_free(k);
    return rc;
}

int keys_audit_load(struct store *st, const struct site_keys *k, const char *purpose)
{
    char id[2 * CWT_KEYID_LEN + 1];

    keys_id_hex(k->key_id, id);
    return audit_append(st, "key-load", "site %s key %s loaded%s for %s", k->site_id, id,
                        k->sign_sk != NULL ? " with secret keys" : " (public only)", purpose);
}

int keys_rotate(const char *keys_dir, const char *site_id, char *err, size_t errlen)
{
    static const char *const names[3] = {SIGN_KEY_FILE, BOX_KEY_FILE, PUB_KEY_FILE};
    char cur[3][PATH_MAX], old[3][PATH_MAX], sub[CWT_ERRLEN];
    struct stat sb;
    int moved = 0, rc = 0;

    for (int i = 0; i < 3; i++) {
        if ((rc = key_path(cur[i], sizeof(cur[i]), keys_dir, names[i], err, errlen)) != 0)
            return rc;
        if (snprintf(old[i], sizeof(old[i]), "%s.old", cur[i]) >= (int)sizeof(old[i]))
            return cwt_seterr(err, errlen, CWT_ETOOBIG, "%s: path too long", keys_dir);
        /* One generation of old keys at a time: an earlier rotation's are never overwritten. */
        if (lstat(old[i], &sb) == 0)
            return cwt_seterr(err, errlen, CWT_EEXIST,
                              "%s exists from an earlier rotation; move it out of %s first", old[i],
                              keys_dir);
        if (lstat(cur[i], &sb) != 0 || !S_ISREG(sb.st_mode))
            return cwt_seterr(err, errlen, CWT_ENOENT, "%s is missing; nothing to rotate", cur[i]);
    }
    for (; moved < 3; moved++)
        if (rename(cur[moved], old[moved]) != 0) {
            rc = cwt_seterr(err, errlen, CWT_EIO, "cannot move %s aside: %s", cur[moved],
                            strerror(errno));
            break;
        }
    if (rc == 0) {
        rc = keys_generate(keys_dir, site_id, sub, sizeof(sub));
        if (rc != 0) {
            cwt_seterr(err, errlen, rc, "%s", sub);
            /* Remove what was half written, so the old keys can come back under their names. */
            for (int i = 0; i < 3; i++)
                (void)unlink(cur[i]);
        }
    }
    if (rc != 0)
        for (int i = moved - 1; i >= 0; i--)
            (void)rename(old[i], cur[i]);
    if (file_fsync_dir(keys_dir) != 0 && rc == 0)
        rc = cwt_seterr(err, errlen, CWT_EIO, "cannot sync %s: %s", keys_dir, strerror(errno));
    return rc;
}
