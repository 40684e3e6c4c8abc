/*
 * cycle.h - the rules of the cycle and the codec of the persistent cycle state (library
 * cwt_cycle, linked by cwtd and by cwtctl, which reads the state while the daemon is down).
 *
 * Rule for every text this module writes (the saved state, the "cwt.history" metadata): it is
 * formatted from parsed numbers and validated ids only, never copied from a peer's text, and
 * both the encoder and the decoder refuse control characters. A peer's "cwt.history" is
 * parsed strictly into struct cycle_history (cycle_history_parse) and the bundle is refused
 * when it does not parse: a signed bundle once carried "...\ncycle=1000" in it, which the
 * daemon copied into its state (issue 18, H1).
 */
#ifndef CWT_CYCLE_H
#define CWT_CYCLE_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cwt.h"

#define CWTD_META_STATE   "cwtd.state"
#define CWTD_STATE_MAX    4096 /* bytes of the state text */
#define CWTD_HISTORY_MAX  255  /* bytes of the history text */
#define CWTD_MAX_METRICS  256  /* validation metrics kept for status (one per visit) */
#define CWTD_HISTORY_NMAX 1000000u

enum cwtd_phase {
    CWTD_IDLE = 0, /* not started (first site before `start`; others before a bundle) */
    CWTD_WAITING,  /* waiting for the bundle from the predecessor (or ensemble members) */
    CWTD_TRAINING, /* a visit is being trained from CWTD_CKPT_INPUT (or from scratch) */
    CWTD_SEALING,  /* the result is committed; the outgoing bundle is not sealed yet */
    CWTD_FINISHED, /* the final model is installed */
};

/* Patience bookkeeping (carried in the weights' metadata as "cwt.history"): the running sum
 * of validation accuracies of cycle cur (n values), and the best mean of a full cycle so far
 * (best < 0: none yet) reached in cycle bestc. */
struct cycle_history {
    uint32_t cur, n, bestc;
    double sum, best;
};

/* The site's place in the federation, kept across restarts (meta CWTD_META_STATE). */
struct cycle_state {
    enum cwtd_phase phase;
    uint32_t cycle, hop; /* the visit being trained, or the last one done here */
    int has_input;       /* the visit starts from CWTD_CKPT_INPUT, else from scratch */
    int has_parent;      /* the visit's input came in a bundle with this hash */
    uint8_t parent_hash[32];
    uint8_t in_bundle_id[16]; /* the bundle the visit came from (all zero if none) */
    double epochs_before;     /* epochs of training before this visit */
    /* Fractional visits (train_plan_steps): the visits this site trained since `start`, and
     * their steps. The next visit carries the remainder from them when it is visit number
     * carry_visits (its cycle), else it derives the steps before from its cycle alone. Local
     * facts only: counted here at each committed visit. */
    uint32_t carry_visits;
    uint64_t carry_steps;
    struct cycle_history history; /* patience bookkeeping, see cycle_history_update */
    char waiting_from[CWT_ID_MAX + 1];
    int64_t since; /* when the current phase began */
    int paused;    /* `cwtctl pause` holds training until `resume`, across restarts too */
    /* the last outgoing bundle */
    int has_out;
    uint64_t out_seq;
    char out_name[NAME_MAX + 1]; /* file name in the outbox and in the private folder */
    int out_written;             /* copied to the outbox at least once */
    uint8_t out_kind;
    /* the final model */
    uint8_t final_hash[32]; /* BLAKE2b-256 of the installed safetensors image */
    /* one validation accuracy per visit trained here, for status */
    uint32_t n_metrics;
    struct {
        uint32_t cycle;
        double val_accuracy;
    } metrics[CWTD_MAX_METRICS];
    uint32_t ensemble_mask_lo, ensemble_mask_hi; /* members present (bit = roster index) */
    /* the training summary of the visit's result, for the outgoing bundle's header */
    uint64_t sum_steps, sum_train_n, sum_val_n;
    double sum_epochs, sum_train_loss, sum_train_acc, sum_val_loss, sum_val_acc, sum_val_auc;
};

/* Encodes the state as text (NUL-terminated, at most CWTD_STATE_MAX bytes with the NUL), from
 * its numbers and validated names only. Returns the length, CWT_ETOOBIG, or CWT_EINVAL when a
 * name field is not valid (an id, or a file name with a control character or a slash). */
int cycle_state_encode(const struct cycle_state *cs, char *out, size_t outlen);
/* Parses the text written by cycle_state_encode (strict: known keys, bounded values, no
 * control characters). CWT_EFORMAT with a sentence in err. */
int cycle_state_decode(const char *text, size_t len, struct cycle_state *cs, char *err,
                       size_t errlen);
const char *cycle_phase_name(enum cwtd_phase p);

/* An empty history (no cycle summed, no best yet). */
void cycle_history_init(struct cycle_history *h);
/* Whether h holds values a history can take: n <= CWTD_HISTORY_NMAX, 0 <= sum <= n (each
 * accuracy is in [0, 1]), best == -1 or 0 <= best <= 1, all finite. */
int cycle_history_valid(const struct cycle_history *h);
/* Strict parse of "cur=C sum=S n=K best=B bestc=BC" (as cycle_history_format writes it;
 * the empty text is an empty history). CWT_EFORMAT with a sentence in err for anything else. */
int cycle_history_parse(const char *text, struct cycle_history *h, char *err, size_t errlen);
/* Formats h (CWTD_HISTORY_MAX + 1 bytes are enough). CWT_EINVAL if h is not valid. */
int cycle_history_format(const struct cycle_history *h, char *out, size_t outlen);
/* Adds this visit's val (ignored if NaN) for cycle; at the last hop of a cycle
 * (last_hop != 0) folds the cycle's mean into best. */
void cycle_history_update(const struct cycle_history *in, uint32_t cycle, double val, int last_hop,
                          struct cycle_history *out);
/* Whether the federation stops after the last hop of `cycle`: the roster's cycle count is
 * reached, or (patience > 0) no cycle mean improved on the best for `patience` cycles. */
int cycle_should_stop(const struct cycle_history *h, uint32_t cycle, uint32_t cycles,
                      uint32_t patience);

/* Federation-wide normalisation (docs/daemon.md, "Normalisation"): in cycle 0 every site adds
 * the integer pixel statistics of its training split (pixels per channel, per-channel sums of
 * the values 0..255 and of their squares) to the weights' metadata "cwt.normsum", in hop
 * order; from cycle 1 on, every site trains with the mean and std pooled from all n_sites
 * contributions. The text is "sites=K pixels=P sum=S0[,S1..] sumsq=Q0[,Q1..]", parsed
 * strictly into numbers and formatted from them: a peer's text is never copied. */
#define CWTD_NORMSUM_MAX      255 /* bytes of the text (a safetensors metadata value) */
#define CWTD_NORMSUM_CHANNELS 4
struct cycle_normsum {
    uint32_t sites;    /* contributions summed (0: none, the text is absent) */
    uint32_t channels; /* 1..CWTD_NORMSUM_CHANNELS */
    uint64_t pixels;   /* pixels per channel */
    uint64_t sum[CWTD_NORMSUM_CHANNELS], sumsq[CWTD_NORMSUM_CHANNELS];
};
/* Strict parse (the empty text is sites == 0). Values must be consistent: sites <= max_sites,
 * 0 < pixels, sum <= 255 * pixels, sumsq <= 255^2 * pixels, the same count of sums and sums of
 * squares. CWT_EFORMAT with a sentence in err. */
int cycle_normsum_parse(const char *text, uint32_t max_sites, struct cycle_normsum *ns, char *err,
                        size_t errlen);
/* Formats ns (sites > 0; CWTD_NORMSUM_MAX + 1 bytes are enough). CWT_EINVAL if ns is empty or
 * out of range. */
int cycle_normsum_format(const struct cycle_normsum *ns, char *out, size_t outlen);
/* acc += one site's statistics (sites + 1). CWT_EINVAL when the channel counts differ,
 * CWT_ETOOBIG when a total would leave the range cycle_normsum_parse accepts. */
int cycle_normsum_add(struct cycle_normsum *acc, const struct cycle_normsum *site);

/* What a bundle of (kind, cycle, sender hop) means for the site at index me of n: the visit
 * it should train next. Returns 0 and sets *cycle_out (the hop is me), or CWT_ESTATE with a
 * sentence in err when the bundle is not for this place in the cycle (wrong sender). */
int cycle_next_visit(uint32_t n_sites, uint32_t me, uint32_t sender_hop, uint32_t cycle,
                     uint32_t *cycle_out, char *err, size_t errlen);

/* The numbering rule (crypto/bundle.h): sequence = cycle * n_sites + hop. */
uint64_t cycle_sequence(uint32_t n_sites, uint32_t cycle, uint32_t hop);
/* The next visit of the site at hop after the bundle with sequence parent_seq: the cycle of
 * the smallest sequence above parent_seq at that hop. CWT_EINVAL when out of range. */
int cycle_after(uint32_t n_sites, uint32_t hop, uint64_t parent_seq, uint32_t *cycle_out);

/* Seed of the data loader for a visit: a pure function of the roster seed, cycle and hop. */
uint64_t cycle_loader_seed(uint64_t roster_seed, uint32_t cycle, uint32_t hop);

/* Name of the trainer checkpoint of a visit (fits proto_job.ckpt). */
void cycle_ckpt_name(uint32_t cycle, uint32_t hop, char *out, size_t outlen);

/* Outgoing bundle file name: "<federation>-c<cycle>-h<hop>-<kind>-to-<site or all>.cwtb". */
int cycle_bundle_name(const char *federation, uint32_t cycle, uint32_t hop, const char *kind,
                      const char *to, char *out, size_t outlen);

#endif
