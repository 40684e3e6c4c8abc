/*
 * bundle.h - the weight bundle (.cwtb): signed, encrypted model weights that travel from site
 * to site (DESIGN section 4; byte-level specification in docs/bundle-format.md).
 *
 *   "CWTB" | u16 version | u16 flags | u32 header_len | header (TLV)
 *   | u16 n | n x { recipient key id (8) | crypto_box_seal(content key) (80) }
 *   | secretstream header (24) | chunks of <= 1 MiB plaintext (+17), the last tagged FINAL
 *   | signer key id (8) | Ed25519 signature (64) over BLAKE2b-512 of every byte before it
 *
 * Integers are little-endian. Encrypt, then sign: an auditor verifies a bundle with public
 * keys alone. The header bytes are the associated data of every payload chunk, so header
 * and payload cannot be re-paired. Sealing and opening stream between files in chunks:
 * memory stays bounded (a few MiB) whatever the payload size.
 *
 * Numbering: a roster of n sites visits them in order; hop is the sender's index in the
 * roster's cycle order (0-based) and sequence = cycle * n + hop, for every kind.
 *
 * Rules that differ by kind: cycle and final bundles form the federation's chain (a rising
 * sequence, each one's parent the bundle it was trained from; only sequence 0 may lack a
 * parent). ensemble-member bundles are independent models sent to all sites: they arrive in
 * any order, so only the replay rule (bundle id) applies to them, not the sequence or parent
 * rules, and they do not move the ledger's last sequence.
 *
 * Errors: the CWT_EB_* codes of common/cwt.h, one per acceptance rule, with one sentence in
 * err naming the field, chunk or site; CWT_EIO / CWT_ENOMEM / CWT_ECRYPTO for local failures;
 * CWT_EINVAL / CWT_ECONFIG for bad arguments to bundle_seal.
 */
#ifndef CWT_BUNDLE_H
#define CWT_BUNDLE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "common/cwt.h"
#include "config/config.h"
#include "crypto/keys.h"

struct store;
struct st_file;
struct key_ops;

#define BUNDLE_MAGIC "CWTB"
/* Version 2 signs under the bundle signature context (crypto/keyops.h); version 1 signed the
 * bare digest and is still read. bundle_seal writes version 2. */
#define BUNDLE_VERSION     2
#define BUNDLE_VERSION_MIN 1
#define BUNDLE_CHUNK       (1u << 20)   /* plaintext bytes per chunk (the last may be less) */
#define BUNDLE_HEADER_MAX  16384u       /* bytes of header TLV */
#define BUNDLE_PAYLOAD_MAX (1ull << 40) /* 1 TiB of payload */
/* Smallest possible file: preamble, one recipient entry, an empty FINAL chunk, trailer. */
#define BUNDLE_MIN_SIZE (12u + 2u + 88u + 24u + 17u + 72u)
#define BUNDLE_EXT      ".cwtb"

enum bundle_kind {
    BUNDLE_KIND_CYCLE = 1,           /* one visit's result, to the next site */
    BUNDLE_KIND_FINAL = 2,           /* the finished model, to every site */
    BUNDLE_KIND_ENSEMBLE_MEMBER = 3, /* one site's model for an ensemble, to every site */
};

/* The sender's training summary (header tag 16). Metrics the sender did not measure are NaN;
 * infinities are refused. */
struct bundle_summary {
    double local_epochs;    /* epochs of the visit (fractional for step-based visits) */
    uint64_t local_steps;   /* optimizer steps of the visit */
    uint64_t train_samples; /* local training images */
    uint64_t val_samples;   /* local validation images */
    double train_loss, train_accuracy;
    double val_loss, val_accuracy, val_auc;
};

/* Every header field. bundle_seal's caller fills the logical fields (marked "caller"); seal
 * fills the rest. All strings are NUL-terminated valid ids (cwt_valid_id). */
struct bundle_header {
    uint8_t bundle_id[16];                          /* seal: random */
    char federation[CWT_ID_MAX + 1];                /* seal: roster's federation id */
    uint8_t roster_fp[32];                          /* seal: roster_fingerprint() */
    char sender[CWT_ID_MAX + 1];                    /* seal: the sender's site id */
    uint32_t n_recipients;                          /* caller: 1..CWT_MAX_SITES */
    char recipients[CWT_MAX_SITES][CWT_ID_MAX + 1]; /* caller: roster site ids, distinct */
    uint8_t kind;                                   /* caller: enum bundle_kind */
    uint64_t sequence;                              /* seal: cycle * n_sites + hop */
    uint32_t cycle;                                 /* caller */
    uint32_t hop;                                   /* caller: the sender's roster index */
    uint8_t has_parent;                             /* caller: 0 only for sequence 0 */
    uint8_t parent_hash[32];                        /* caller: bundle_hash_file() of parent */
    uint8_t model_fp[32];                           /* caller: eng_model_fingerprint() */
    int64_t created;          /* seal: now, unless the caller set it (non-zero; tests) */
    int64_t expires;          /* seal: created + recipe.bundle_ttl_days, unless set (non-zero) */
    uint8_t payload_hash[32]; /* seal: BLAKE2b-256 of the plaintext */
    uint64_t payload_len;     /* seal: plaintext bytes */
    struct bundle_summary summary; /* caller */
};

/* What verifying or opening found out about a file, besides its header. */
struct bundle_info {
    struct bundle_header hdr;
    uint16_t version, flags;
    uint64_t file_size;
    uint64_t declared_size; /* the size the header declares (0 when not read that far) */
    uint8_t file_hash[32];  /* BLAKE2b-256 of the whole file: the next bundle's parent */
    uint8_t signer_key_id[CWT_KEYID_LEN];
    int sender_index;   /* sender's index in the roster, -1 when not checked/found */
    uint32_t n_chunks;  /* payload chunks, FINAL included */
    uint32_t n_entries; /* recipient entries */
    uint8_t entry_key_ids[CWT_MAX_SITES][CWT_KEYID_LEN];
};

/* Name of a kind ("cycle", "final", "ensemble-member"; "unknown" otherwise) and its inverse
 * (CWT_EINVAL for an unknown name). */
const char *bundle_kind_name(uint8_t kind);
int bundle_kind_parse(const char *name, uint8_t *kind);

/* Seals payload_path (a safetensors file, checked strictly and for finite values first) for
 * hdr->recipients. sender must hold its secret keys and be in roster with the same key id;
 * hdr must satisfy the numbering rules above (hop == sender's index, distinct recipients in
 * the roster, a parent unless sequence 0 or ensemble-member); CWT_EINVAL otherwise. Writes
 * out_path as temp file + fsync + rename + folder fsync; on any failure nothing is left at
 * out_path. *out (may be NULL) receives the complete header, file hash and size. Does not
 * touch any ledger: record a sent bundle with bundle_record_sent(). */
int bundle_seal(const struct site_keys *sender, const struct cwt_roster *roster,
                const struct bundle_header *hdr, const char *payload_path, const char *out_path,
                struct bundle_info *out, char *err, size_t errlen);

/* bundle_seal with the signature made by ops (crypto/keyops.h) under KEYOPS_CTX_BUNDLE:
 * sender needs only its public keys and site id (cwtd's monitor holds no secret key; its ops
 * ask the key process). A failed signature is CWT_EIO when the key holder could not be
 * reached, CWT_ECRYPTO otherwise. */
int bundle_seal_ops(const struct key_ops *ops, const struct site_keys *sender,
                    const struct cwt_roster *roster, const struct bundle_header *hdr,
                    const char *payload_path, const char *out_path, struct bundle_info *out,
                    char *err, size_t errlen);

/* Auditor's check with public keys only: size and framing, magic and version, header syntax,
 * roster fingerprint, signer in roster and equal to the named sender, signature, then the
 * header's consistency with the roster (recipients and their key ids, hop, sequence). Returns
 * 0 or the first failing rule's CWT_EB_* code; *out (may be NULL) is filled as far as parsing
 * got (always zeroed first). Reads the file once; decrypts nothing. */
int bundle_verify(const struct cwt_roster *roster, const char *path, struct bundle_info *out,
                  char *err, size_t errlen);
/* The same on an open file descriptor (read with pread from offset 0; used by the fuzzer). */
int bundle_verify_fd(const struct cwt_roster *roster, int fd, struct bundle_info *out, char *err,
                     size_t errlen);

/* Framing, magic, version and header syntax only, no roster, plus the file hash: for
 * `bundle inspect`. Nothing is authenticated: print it as claims, not facts. */
int bundle_inspect(const char *path, struct bundle_info *out, char *err, size_t errlen);

/* Opens a bundle addressed to me with every acceptance rule in DESIGN order: bundle_verify's
 * checks, this site is a recipient, not expired, then (if st != NULL) not a replay, sequence
 * above the ledger's last, parent consistent with the ledger's bundles, then every chunk
 * authenticates, payload hash, model fingerprint (if expected_model_fp != NULL), and the
 * payload is a strict, finite safetensors file. The signature is verified in a first pass
 * before anything is decrypted. The plaintext goes to a temp file beside payload_out_path
 * that is renamed into place only after every rule passed; on failure nothing is left there.
 * The ledger is only read here: call bundle_accept() once the caller has committed whatever
 * depends on the payload. */
int bundle_open(const struct site_keys *me, const struct cwt_roster *roster, struct store *st,
                const char *path, const char *payload_out_path, const uint8_t expected_model_fp[32],
                struct bundle_info *out, char *err, size_t errlen);

/* What the payload of an opened bundle must be, beyond a strict finite safetensors file. */
struct bundle_expect {
    /* The roster model's fingerprint: the header's model fingerprint must equal it (NULL: not
     * checked). */
    const uint8_t *model_fp;
    /* The roster model's tensors: the payload must hold exactly the names of layout (or of
     * layout_alt, when not NULL: weights alone or with the optimizer state), each with its
     * dtype and shape, and its "fingerprint" metadata must be model_fp (NULL: not checked;
     * bundle_open() checks no layout). cwtd gets it from its trainer, cwtctl builds it. */
    const struct st_file *layout;
    const struct st_file *layout_alt;
};

/* Largest step of a sender's clock ahead of this site's that is accepted: a bundle created
 * later than now + BUNDLE_CLOCK_SKEW is refused (CWT_EB_TIME), and so is one whose lifetime
 * (expires - created) exceeds the roster's bundle_ttl_days (30 when unset) + the skew. */
#define BUNDLE_CLOCK_SKEW (24 * 3600)

/* bundle_open on a file the caller has opened (read with pread/lseek; not closed here), with
 * the payload checks of ex (may be NULL). name is used in error sentences only. cwtd opens
 * an inbox file once (O_NOFOLLOW|O_NONBLOCK, a regular file by fstat) and passes the fd on. */
int bundle_open_fd(const struct site_keys *me, const struct cwt_roster *roster, struct store *st,
                   int fd, const char *name, const char *payload_out_path,
                   const struct bundle_expect *ex, struct bundle_info *out, char *err,
                   size_t errlen);

/* bundle_open_fd with the content key opened by ops->open_key (crypto/keyops.h): me needs
 * only its public keys and site id. A key holder that cannot be reached gives CWT_EIO (a
 * local error: the file is kept and retried), a key that does not open CWT_EB_DECRYPT. */
int bundle_open_fd_ops(const struct key_ops *ops, const struct site_keys *me,
                       const struct cwt_roster *roster, struct store *st, int fd, const char *name,
                       const char *payload_out_path, const struct bundle_expect *ex,
                       struct bundle_info *out, char *err, size_t errlen);

/* bundle_inspect on an open file (read with pread/lseek from offset 0; not closed here). */
int bundle_inspect_fd(int fd, struct bundle_info *out, char *err, size_t errlen);

/* Records an opened bundle in the ledger as received (one LMDB transaction): its id becomes a
 * replay, and for cycle/final kinds the federation's last sequence rises to its sequence.
 * CWT_EB_REPLAY if it was recorded already (e.g. by a concurrent open). */
int bundle_accept(struct store *st, const struct bundle_info *info);

/* Records a sealed bundle in the ledger as sent (peer = first recipient). */
int bundle_record_sent(struct store *st, const struct bundle_info *info);

/* BLAKE2b-256 of a whole file (a bundle's hash, the parent field of its successor). */
int bundle_hash_file(const char *path, uint8_t out[32], char *err, size_t errlen);

/* Header TLV codec (used by seal/verify, by the tests and the fuzzer). encode: CWT_ETOOBIG if
 * buf is too small, CWT_EINVAL if a field is out of range; *outlen gets the byte count.
 * decode: strict (known tags only, strictly ascending so each at most once, exact lengths,
 * every required tag present, valid ids); CWT_EB_HEADER with a sentence in err. */
int bundle_header_encode(const struct bundle_header *hdr, uint8_t *buf, size_t buflen,
                         size_t *outlen);
int bundle_header_decode(const uint8_t *buf, size_t len, struct bundle_header *hdr, char *err,
                         size_t errlen);

/* Every header field and the file facts as a new JSON object (the "bundle" member of
 * cwt.bundle/1, cwt.bundle-verify/1 and cwt.chain-verify/1: docs/schemas/bundle-header.json);
 * strings from the header are UTF-8-clean. roster may be NULL (no site name for the signer's
 * key id). NULL when out of memory; the caller owns the reference. */
json_t *bundle_json(const struct bundle_info *info, const struct cwt_roster *roster);

/* Prints every header field and the file facts, as aligned text for people or (json != 0)
 * bundle_json's object on one line without a trailing newline. roster may be NULL. 0, or
 * CWT_ENOMEM / CWT_EIO. */
int bundle_print(FILE *f, const struct bundle_info *info, const struct cwt_roster *roster,
                 int json);

#endif
