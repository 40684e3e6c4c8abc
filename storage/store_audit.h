/*
 * store_audit.h - the audit log beyond store.h: the record hash and the signed export an
 * auditor checks with nothing but the site's public key line (docs/audit-format.md).
 *
 * The chain itself (audit_append, audit_list, audit_verify) is declared in storage/store.h.
 */
#ifndef CWT_STORE_AUDIT_H
#define CWT_STORE_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "storage/store.h"

/* v2 signs under the audit-export signature context (crypto/keyops.h); v1 signed the bare
 * digest and still verifies. audit_export_encode writes v2. */
#define AUDIT_EXPORT_MAGIC    "cwt-audit-export-v2"
#define AUDIT_EXPORT_MAGIC_V1 "cwt-audit-export-v1"
#define AUDIT_EXPORT_MAX      (1024u * 1024u * 1024u) /* largest export a verifier reads */
#define AUDIT_KEYLINE_MAX     255

/* What a verified export says about itself. */
struct audit_export_info {
    char key_line[AUDIT_KEYLINE_MAX + 1]; /* the signer's public key line, as written */
    int64_t created;                      /* when the export was made */
    uint64_t n_records;
    uint8_t head_hash[32]; /* hash of the last record (zeros when there is none) */
};

/* BLAKE2b-256 over the canonical encoding of r: seq u64 BE | time i64 BE | u16 BE length +
 * event | u16 BE length + details | prev_hash (32). Reads seq, time, event, details and
 * prev_hash; r->hash is not read. CWT_EINVAL if event or details are too long. */
int audit_record_hash(const struct audit_record *r, uint8_t out[32]);

/* Checks that recs[0..n) form an intact chain: sequence 1, 2, ... n, the first prev_hash zero,
 * every prev_hash equal to the previous record's hash and every hash equal to the recomputed
 * one. 0, or CWT_EFORMAT with the first bad sequence named in err. */
int audit_chain_check(const struct audit_record *recs, size_t n, char *err, size_t errlen);

/* Encodes recs[0..n) as a signed export (text, docs/audit-format.md, v2): key_line is the
 * site's public key line; ops (crypto/keyops.h) signs under KEYOPS_CTX_AUDIT_EXPORT. *out is
 * malloc'd (caller frees). CWT_EINVAL for a bad key line or record, CWT_ENOMEM, CWT_ECRYPTO
 * (or the error ops->sign returned). */
struct key_ops;
int audit_export_encode(const struct audit_record *recs, size_t n, const char *key_line,
                        const struct key_ops *ops, int64_t created, uint8_t **out, size_t *outlen,
                        char *err, size_t errlen);

/* Verifies an export read from a file: framing, the Ed25519 signature with sign_pk (the key the
 * auditor trusts, not the one written in the file; v1 exports under their bare-digest
 * signature, v2 under the audit-export context), then the record chain. On success fills
 * *info and, if recs != NULL, a malloc'd copy of the records (*recs, *n; caller frees).
 * Errors: CWT_EFORMAT (malformed, or chain broken: the first bad sequence is named),
 * CWT_EB_SIGNATURE (the signature does not verify with sign_pk), CWT_ETOOBIG, CWT_ENOMEM. */
int audit_export_verify(const uint8_t *buf, size_t len, const uint8_t sign_pk[32],
                        struct audit_export_info *info, struct audit_record **recs, size_t *n,
                        char *err, size_t errlen);

#endif
