/*
 * bundle_pipe.h - private to crypto/bundle*.c: a small producer/consumer pipe that lets one
 * or two hashing threads digest a byte stream while the calling thread encrypts, decrypts or
 * reads the next block (the second core does the BLAKE2b work).
 *
 * The producer takes a slot with hash_pipe_slot(), fills at most HASH_PIPE_SLOT_BYTES into it,
 * and hands it over with hash_pipe_submit(); the slot stays readable by the producer until it
 * asks for a slot again PIPE_SLOTS times later. hash_pipe_finish() waits until every worker
 * has digested everything, after which the states in p->st may be finalised by the caller.
 */
#ifndef CWT_BUNDLE_PIPE_H
#define CWT_BUNDLE_PIPE_H

#include <pthread.h>
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>

#define HASH_PIPE_SLOTS      4
#define HASH_PIPE_SLOT_BYTES ((1u << 20) + 64u)

struct hash_pipe;

struct hash_pipe_arg {
    struct hash_pipe *pipe;
    int worker;
};

struct hash_pipe {
    crypto_generichash_state st[2]; /* first, so that the 64-byte alignment holds */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint8_t *buf[HASH_PIPE_SLOTS];
    size_t len[HASH_PIPE_SLOTS];
    unsigned pending[HASH_PIPE_SLOTS]; /* workers yet to digest the slot */
    uint64_t head;                     /* slots submitted */
    uint64_t next[2];                  /* slots digested, per worker */
    pthread_t thread[2];
    struct hash_pipe_arg arg[2];
    int nworkers, running, closing;
};

/* Starts nworkers (1 or 2) threads, worker k digesting with BLAKE2b of outlen[k] bytes.
 * *out is released with hash_pipe_free(). CWT_ENOMEM if memory or a thread is unavailable. */
int hash_pipe_new(int nworkers, const size_t *outlen, struct hash_pipe **out);
/* Returns the next free slot, waiting for the workers if all are in use. */
uint8_t *hash_pipe_slot(struct hash_pipe *p);
/* Hands the slot last returned by hash_pipe_slot() (len bytes filled) to every worker. */
void hash_pipe_submit(struct hash_pipe *p, size_t len);
/* Waits until every submitted slot is digested and stops the threads. */
void hash_pipe_finish(struct hash_pipe *p);
/* Stops the threads if needed, wipes the states and frees everything. NULL is fine. */
void hash_pipe_free(struct hash_pipe *p);

#endif
