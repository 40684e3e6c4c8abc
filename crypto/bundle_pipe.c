/*
 * bundle_pipe.c - hashing threads fed by a ring of slots (see bundle_pipe.h).
 */
#include "crypto/bundle_pipe.h"

#include <stdlib.h>
#include <string.h>

#include "common/cwt.h"

static void *worker_main(void *opaque)
{
    struct hash_pipe_arg *arg = opaque;
    struct hash_pipe *p = arg->pipe;
    int k = arg->worker;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        unsigned s;
        while (p->next[k] == p->head && !p->closing)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->next[k] == p->head)
            break;
        s = (unsigned)(p->next[k] % HASH_PIPE_SLOTS);
        pthread_mutex_unlock(&p->mu);
        crypto_generichash_update(&p->st[k], p->buf[s], p->len[s]);
        pthread_mutex_lock(&p->mu);
        p->pending[s]--;
        p->next[k]++;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int hash_pipe_new(int nworkers, const size_t *outlen, struct hash_pipe **out)
{
    struct hash_pipe *p;
    size_t size = (sizeof(*p) + 63) / 64 * 64;

    *out = NULL;
    if (nworkers < 1 || nworkers > 2)
        return CWT_EINVAL;
    /* crypto_generichash_state asks for 64-byte alignment, more than malloc promises. */
    p = aligned_alloc(64, size);
    if (p == NULL)
        return CWT_ENOMEM;
    memset(p, 0, sizeof(*p));
    p->nworkers = nworkers;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return CWT_ENOMEM;
    }
    if (pthread_cond_init(&p->cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return CWT_ENOMEM;
    }
    for (int s = 0; s < HASH_PIPE_SLOTS; s++) {
        p->buf[s] = malloc(HASH_PIPE_SLOT_BYTES);
        if (p->buf[s] == NULL) {
            hash_pipe_free(p);
            return CWT_ENOMEM;
        }
    }
    for (int k = 0; k < nworkers; k++) {
        if (crypto_generichash_init(&p->st[k], NULL, 0, outlen[k]) != 0) {
            hash_pipe_free(p);
            return CWT_ECRYPTO;
        }
    }
    for (int k = 0; k < nworkers; k++) {
        p->arg[k].pipe = p;
        p->arg[k].worker = k;
        if (pthread_create(&p->thread[k], NULL, worker_main, &p->arg[k]) != 0) {
            hash_pipe_free(p);
            return CWT_ENOMEM;
        }
        p->running = k + 1;
    }
    *out = p;
    return 0;
}

uint8_t *hash_pipe_slot(struct hash_pipe *p)
{
    unsigned s;

    pthread_mutex_lock(&p->mu);
    s = (unsigned)(p->head % HASH_PIPE_SLOTS);
    while (p->pending[s] > 0)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return p->buf[s];
}

void hash_pipe_submit(struct hash_pipe *p, size_t len)
{
    unsigned s;

    pthread_mutex_lock(&p->mu);
    s = (unsigned)(p->head % HASH_PIPE_SLOTS);
    p->len[s] = len;
    p->pending[s] = (unsigned)p->nworkers;
    p->head++;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void hash_pipe_finish(struct hash_pipe *p)
{
    pthread_mutex_lock(&p->mu);
    p->closing = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int k = 0; k < p->running; k++)
        pthread_join(p->thread[k], NULL);
    p->running = 0;
}

void hash_pipe_free(struct hash_pipe *p)
{
    if (p == NULL)
        return;
    if (p->running > 0)
        hash_pipe_finish(p);
    for (int s = 0; s < HASH_PIPE_SLOTS; s++) {
        if (p->buf[s] != NULL)
            sodium_memzero(p->buf[s], HASH_PIPE_SLOT_BYTES);
        free(p->buf[s]);
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    sodium_memzero(p->st, sizeof(p->st));
    free(p);
}
