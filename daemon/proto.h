/*
 * proto.h - messages between the monitor and the trainer, and between the monitor and the key
 * process (imsg-like framing; daemon/keyproc.h).
 *
 * Transport: an AF_UNIX SOCK_SEQPACKET socketpair, so one send is one message and a process
 * killed mid-send never leaves half a message behind (the trainer supervisor reports a dead
 * trainer on the same socket). Every message is
 *
 *   u32 magic "CWTP" | u16 version | u16 type | u32 payload length | u32 job id | payload
 *
 * little-endian, payload <= PROTO_MAX_PAYLOAD, and at most one file descriptor passed with
 * SCM_RIGHTS (model weights travel as a sealed memfd holding a safetensors image, so the
 * socket stays small and no plaintext weights touch the disk). Each type has an exact payload
 * size; decoding checks magic, version, type, length, the presence of a descriptor where the
 * type needs one, and the ranges of every field.
 */
#ifndef CWT_PROTO_H
#define CWT_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "cycle/cycle.h"

#define PROTO_MAGIC       0x50545743u /* "CWTP" read as a little-endian u32 */
#define PROTO_VERSION     1
#define PROTO_HDR_LEN     16
#define PROTO_MAX_PAYLOAD 1024
#define PROTO_MAX_MSG     (PROTO_HDR_LEN + PROTO_MAX_PAYLOAD)
#define PROTO_TEXT_MAX    255          /* device names and error sentences, NUL excluded */
#define PROTO_MAX_WEIGHTS (4ull << 30) /* largest weights image accepted through a memfd */

enum proto_type {
    PROTO_HELLO = 1,    /* trainer -> monitor: ready, with its device */
    PROTO_JOB = 2,      /* monitor -> trainer: train one visit (fd: input weights or none) */
    PROTO_PROGRESS = 3, /* trainer -> monitor: step s/S, loss, images/s */
    PROTO_RESULT = 4,   /* trainer -> monitor: finished job (fd: new weights on success) */
    PROTO_PAUSE = 5,    /* monitor -> trainer: hold between steps */
    PROTO_RESUME = 6,   /* monitor -> trainer: go on */
    PROTO_DIED = 7,     /* supervisor -> monitor: the trainer died; a new one is starting */
    /* The key process's socket carries these four and nothing else (daemon/keyproc.h). */
    PROTO_KEY_SIGN = 8,      /* monitor -> key process: sign a digest under a context */
    PROTO_KEY_SIGNATURE = 9, /* key process -> monitor: the signature, or an error status */
    PROTO_KEY_OPEN = 10,     /* monitor -> key process: open a sealed content key */
    PROTO_KEY_CONTENT = 11,  /* key process -> monitor: the content key, or an error status */
    PROTO_TYPE_MAX = 11,
};

enum proto_job_kind {
    PROTO_JOB_VISIT = 1,   /* train one visit from the weights given (or fresh if none) */
    PROTO_JOB_PLATEAU = 2, /* swt: train epoch by epoch until validation stops improving */
    PROTO_JOB_KIND_MAX = 2,
};

struct proto_hello {
    uint32_t pid;
    uint8_t model_fp[32]; /* fingerprint of the roster's model on this engine */
    char device[PROTO_TEXT_MAX + 1];
};

struct proto_job {
    uint32_t kind;                /* enum proto_job_kind */
    uint32_t cycle, hop;          /* which visit this is */
    uint32_t resume;              /* 1: continue from checkpoint ckpt if it exists */
    uint32_t has_weights;         /* 1: a descriptor with the input weights comes along */
    uint32_t patience;            /* PLATEAU: epochs without improvement before stopping */
    uint64_t loader_seed;         /* derived from the roster seed, cycle and hop */
    double sched_total;           /* length of the whole schedule in epochs (0 = this visit) */
    double epochs_before;         /* epochs trained before this visit: the schedule position */
    uint32_t has_before;          /* 1: steps_before is known (train_plan.has_before) */
    uint64_t steps_before;        /* steps of this site's visits before this one (cycle) */
    char ckpt[64];                /* checkpoint name in the store's models database */
    struct cycle_history history; /* patience bookkeeping, typed (never peer text) */
};

struct proto_progress {
    uint64_t step, steps, epoch;
    double loss, images_per_s;
};

struct proto_result {
    int32_t status; /* 0, or a negative CWT_E* code with the sentence in message */
    uint64_t steps, train_samples, val_samples;
    uint64_t steps_total; /* steps of this site's visits up to and with this one */
    double epochs, train_loss, train_accuracy, val_loss, val_accuracy, val_auc;
    char message[PROTO_TEXT_MAX + 1];
};

struct proto_died {
    int32_t wait_status; /* as from waitpid */
    uint32_t pid;
};

struct proto_key_sign {
    uint32_t context;   /* enum keyops_context, 1..KEYOPS_CTX_MAX (never legacy) */
    uint8_t digest[64]; /* BLAKE2b-512 of the signed file */
};

struct proto_key_open {
    uint8_t entry[80]; /* a recipient entry's crypto_box_seal of the content key */
};

/* PROTO_KEY_SIGNATURE (64 bytes) and PROTO_KEY_CONTENT (the first 32 bytes; a content key,
 * which sender and receiver wipe after use). status: 0 or a negative CWT_E* code, with the
 * bytes zero. */
struct proto_key_reply {
    int32_t status;
    uint8_t bytes[64];
};

/* A decoded message. fd is the descriptor that came with it (-1 if none); the receiver owns
 * it and must close it. */
struct proto_msg {
    uint16_t type;
    uint32_t job;
    int fd;
    union {
        struct proto_hello hello;
        struct proto_job job;
        struct proto_progress progress;
        struct proto_result result;
        struct proto_died died;
        struct proto_key_sign key_sign;
        struct proto_key_open key_open;
        struct proto_key_reply key_reply;
    } u;
};

/* Encodes msg (type, job and the union member of the type) into buf (PROTO_MAX_MSG bytes).
 * Strings must be NUL-terminated within their arrays. Returns the length, or CWT_EINVAL
 * for an unknown type or a field out of range. msg->fd is not part of the bytes. */
int proto_encode(const struct proto_msg *msg, uint8_t *buf, size_t buflen);

/* Decodes len bytes into *msg (msg->fd set to -1). CWT_EFORMAT with a sentence in err for a
 * truncated, oversized or malformed message, a bad magic or an unknown version or type. */
int proto_decode(const uint8_t *buf, size_t len, struct proto_msg *msg, char *err, size_t errlen);

/* Sends msg on a SOCK_SEQPACKET socket, with msg->fd attached when it is >= 0 (the caller
 * keeps its own copy of the descriptor). Blocks; retries on EINTR. CWT_EIO on failure. */
int proto_send(int sock, const struct proto_msg *msg);

/* Receives one message. Returns 0 with *msg filled, CWT_ENOENT when the peer closed the
 * socket, CWT_EFORMAT (err filled) for a message that was truncated, carried more than one
 * descriptor or anything but a descriptor, or does not decode; the descriptors of a refused
 * message are closed. CWT_EIO for a failed recvmsg (EAGAIN included on a non-blocking
 * socket). */
int proto_recv(int sock, struct proto_msg *msg, char *err, size_t errlen);

/* Weights in memory: creates a memfd holding len bytes of buf, sealed against any further
 * change, and returns its descriptor in *fd. CWT_EIO on failure. */
int proto_weights_to_fd(const uint8_t *buf, size_t len, int *fd);

/* Reads a weights memfd received from the peer into a malloc'd buffer (*out, caller frees).
 * Refuses a descriptor that is not a sealed memfd (the sender could still change it) or that
 * is larger than max bytes: CWT_EFORMAT / CWT_ETOOBIG with err filled. */
int proto_weights_from_fd(int fd, uint64_t max, uint8_t **out, size_t *outlen, char *err,
                          size_t errlen);

#endif
