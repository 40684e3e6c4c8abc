/*
 * keys.h - a site's key pairs (libsodium): Ed25519 for signing, X25519 for receiving
 * bundles. Secret keys live in sodium_malloc'd memory (guarded, locked, wiped on free).
 *
 * Files in the keys folder:
 *   sign.key  (0600)  "cwt-sign-v1" line then base64 of the 64-byte Ed25519 secret key
 *   box.key   (0600)  "cwt-box-v1" line then base64 of the 32-byte X25519 secret key
 *   site.pub  (0644)  the public key line "cwt-site-v1 <site-id> <base64(sign_pk||box_pk)>"
 */
#ifndef CWT_KEYS_H
#define CWT_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct site_keys {
    char site_id[CWT_ID_MAX + 1];
    uint8_t sign_pk[32];
    uint8_t box_pk[32];
    uint8_t key_id[CWT_KEYID_LEN];
    uint8_t *sign_sk; /* 64 bytes, sodium_malloc; NULL when only public keys are loaded */
    uint8_t *box_sk;  /* 32 bytes, sodium_malloc */
};

/* Initialises libsodium once per process (safe to call again). CWT_ECRYPTO on failure. */
int crypto_init(void);

/* Generates both key pairs for site_id and writes them into keys_dir; refuses to overwrite
 * (CWT_EEXIST). */
int keys_generate(const char *keys_dir, const char *site_id, char *err, size_t errlen);

/* Rotation: moves sign.key, box.key and site.pub to sign.key.old, box.key.old and
 * site.pub.old (kept for reading what was sealed to the old key, and as evidence), then
 * generates new pairs for site_id as keys_generate() does. Refuses (CWT_EEXIST) while an
 * earlier rotation's *.old files are still there, CWT_ENOENT when a current file is missing;
 * on any failure the old files are back under their names. The roster still lists the old key:
 * the new key line goes to every site (cwtctl roster replace-key, docs/keys.md). */
int keys_rotate(const char *keys_dir, const char *site_id, char *err, size_t errlen);

/* Loads the public and secret keys. Refuses (CWT_EPERM) a secret key file that is readable or
 * writable by group or others, or not owned by the caller, with a sentence naming the file, its
 * mode and the chmod to run. CWT_ECRYPTO if a secret key does not belong to site.pub,
 * CWT_EFORMAT for a damaged file, CWT_ENOENT if one is missing. Release with keys_free().
 * keys_load does not write the audit log (it has no store): a caller that holds the store
 * calls keys_audit_load() right after a successful keys_load(). */
int keys_load(const char *keys_dir, struct site_keys *k, char *err, size_t errlen);

/* Loads only the public key line (no secret touched). */
int keys_load_public(const char *keys_dir, struct site_keys *k, char *err, size_t errlen);

/* Wipes and frees the secret parts. Safe on a zeroed struct. */
void keys_free(struct site_keys *k);

/* Key id as lower-case hex (17 bytes). */
void keys_id_hex(const uint8_t key_id[CWT_KEYID_LEN], char out[2 * CWT_KEYID_LEN + 1]);

struct store;
/* Appends the "key-load" audit record for k (site, key id, whether secrets were loaded, and
 * purpose, e.g. "audit export"). Returns audit_append()'s result. */
int keys_audit_load(struct store *st, const struct site_keys *k, const char *purpose);

#endif
