/*
 * sim.h - library cwt_sim behind `cwtctl simulate`: the paper's experiment with virtual
 * institutions on one machine (docs/simulate.md defines every partition rule, heuristic and
 * modification exactly).
 *
 * Layers, bottom-up:
 *   sim_partition.c  partition rules, Gamma/Dirichlet sampling, dividing a split among
 *                    institutions (no engine: unit-tested without a GPU);
 *   sim_report.c     the results: table, CSV, JSON, and the two SVG plots;
 *   sim_bundle.c     virtual institutions' keys and roster, hand-over through sealed bundles;
 *   sim_fed.c        fedavg/fedprox arithmetic: weighted mean, round cut, proximal step
 *                    (no engine: unit-tested without a GPU);
 *   sim_run.c        the heuristics on the engine and training driver;
 *   cli/cmd_simulate.c  the command line (stays in cli/ with the other commands).
 */
#ifndef CWT_SIM_H
#define CWT_SIM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/cwt.h"
#include "config/config.h"
#include "crypto/bundle.h"
#include "engine/train/train.h"
#include "storage/store.h"

/* ------------------------------------------------------------ partitions */

enum sim_part_kind {
    SIM_PART_IID = 0,
    SIM_PART_LABEL_SKEW,
    SIM_PART_SIZE_SKEW,
    SIM_PART_COLUMN /* natural sites: one institution per value of a metadata column */
};

struct sim_part_rule {
    enum sim_part_kind kind;
    double alpha;                  /* label-skew: Dirichlet concentration, > 0 */
    uint32_t n_weights;            /* size-skew: one weight per institution */
    double weights[CWT_MAX_SITES]; /* size-skew: positive, any scale */
    /* by-column: the column, and its values in byte order (institution i = values[i]), set
     * by sim_column_values. */
    char column[STORE_IMETA_NAME_MAX + 1];
    uint32_t n_values;
    char values[CWT_MAX_SITES][STORE_IMETA_VALUE_MAX + 1];
};

/* Parses "iid", "label-skew:ALPHA" (0 < ALPHA <= 1e6), "size-skew:W1,W2,..." (exactly
 * n_inst positive weights) or "by-column:NAME" (a metadata column name; n_inst is not
 * checked, sim_column_values finds it). CWT_EINVAL with a sentence in err. */
int sim_part_rule_parse(const char *text, uint32_t n_inst, struct sim_part_rule *out, char *err,
                        size_t errlen);

/* Writes the rule back in the syntax sim_part_rule_parse reads. */
void sim_part_rule_format(const struct sim_part_rule *r, char *out, size_t len);

/* Natural log of one Gamma(shape, 1) draw (Marsaglia and Tsang 2000; for shape < 1 the
 * boost Gamma(shape) = Gamma(shape + 1) * U^(1/shape), kept in logs so that tiny shapes do not
 * underflow). shape > 0. */
double sim_log_gamma_draw(struct train_rng *rng, double shape);

/* One draw from the symmetric Dirichlet(alpha, ..., alpha) of dimension k into out[k] (sums
 * to 1; every entry >= 1e-12 then renormalised, so no class is impossible). */
void sim_dirichlet_draw(struct train_rng *rng, double alpha, uint32_t k, double *out);

/* The label mix of each institution, mix[i * classes + c]: label-skew draws one
 * Dirichlet(alpha) vector per institution from seed; iid and size-skew give 1 everywhere.
 * Draw it once per seed and use it for both the train and the val split. */
void sim_label_mix(const struct sim_part_rule *r, uint32_t n_inst, uint32_t classes, uint64_t seed,
                   double *mix);

/* The real-valued allocation target[i * classes + c] of class_counts[c] images of class c to
 * institution i: the matrix diag(a) * mix * diag(b) (Sinkhorn scaling) whose column sums are
 * the class counts and whose row sums are n * share_i (shares equal for iid and label-skew,
 * the normalised weights for size-skew). CWT_EINVAL if mix has a zero row or column where
 * images must go. */
int sim_partition_targets(const struct sim_part_rule *r, uint32_t n_inst, uint32_t classes,
                          const double *mix, const uint64_t *class_counts, double *target);

/* One split divided among institutions: the ids of institution i are
 * ids[start[i] .. start[i + 1]), ascending, with their labels beside them. */
struct sim_part {
    uint32_t n_inst;
    size_t *start;    /* n_inst + 1 */
    uint64_t *ids;    /* every input id exactly once */
    uint32_t *labels; /* labels[j] belongs to ids[j] */
};

/* Divides ids[0..n) (labels < classes) among n_inst institutions: targets as above, rounded
 * to whole images so that every class total is exact and each institution's running total
 * stays within one image of its target; each class's images are shuffled (from seed and
 * stream) and dealt out in institution order. Deterministic in (rule, mix, ids, labels, seed,
 * stream). Release with sim_part_free(). */
int sim_partition(const struct sim_part_rule *r, uint32_t n_inst, uint32_t classes,
                  const double *mix, const uint64_t *ids, const uint32_t *labels, size_t n,
                  uint64_t seed, uint64_t stream, struct sim_part *out, char *err, size_t errlen);
void sim_part_free(struct sim_part *p);

/* by-column: reads the column of every image of the train and val splits (in a snapshot of
 * its own) and sets r->values / r->n_values to its distinct values in byte order. CWT_EINVAL
 * with a sentence naming the image when one has no value, when there is only one value or
 * more than CWT_MAX_SITES; store errors otherwise. */
int sim_column_values(struct store *st, struct sim_part_rule *r, char *err, size_t errlen);

/* by-column: inst[j] = the institution (index into r->values) of image ids[j], read inside a
 * read snapshot the caller holds. CWT_EINVAL with a sentence for an image without a value or
 * with a value not in r->values. */
int sim_column_inst(struct store *st, const struct sim_part_rule *r, const uint64_t *ids, size_t n,
                    uint32_t *inst, char *err, size_t errlen);

/* A fixed partition: image j (ids ascending) goes to institution inst[j] < n_inst, keeping
 * the order. Release with sim_part_free(). */
int sim_partition_fixed(uint32_t n_inst, const uint64_t *ids, const uint32_t *labels,
                        const uint32_t *inst, size_t n, struct sim_part *out, char *err,
                        size_t errlen);

/* Number of images of institution i. */
size_t sim_part_size(const struct sim_part *p, uint32_t i);

/* ------------------------------------------------------------ heuristics and results */

enum sim_heur {
    SIM_CENTRAL = 0,
    SIM_SINGLE,
    SIM_ENSEMBLE,
    SIM_SWT,
    SIM_CWT,
    SIM_CWT_PLUS,
    SIM_FEDAVG,
    SIM_FEDPROX,
    SIM_NHEUR
};

/* "central", "single", "ensemble", "swt", "cwt", "cwt+", "fedavg", "fedprox". */
const char *sim_heur_name(enum sim_heur h);

/* Largest FedProx MU accepted: beyond it lr * MU > 1 for any usual learning rate and the
 * proximal step overshoots the global model. */
#define SIM_PROX_MU_MAX 1000.0

/* Parses a comma-separated list of heuristic names into want[SIM_NHEUR] (1 = run it);
 * "fedprox:MU" (0 < MU <= SIM_PROX_MU_MAX) sets *mu. CWT_EINVAL naming the unknown entry. */
int sim_heur_parse(const char *text, int want[SIM_NHEUR], double *mu, char *err, size_t errlen);

/* The four cwt+ modifications (docs/simulate.md), as bits. */
#define SIM_PLUS_PROPORTIONAL 0x1 /* local steps proportional to local sample count */
#define SIM_PLUS_LOSS         0x2 /* class-weighted loss from local label frequencies */
#define SIM_PLUS_SAMPLING     0x4 /* class-balanced minibatch sampling per institution */
#define SIM_PLUS_CLR          0x8 /* cyclical learning rate, one triangle per CWT cycle */
#define SIM_PLUS_ALL          0xf

/* cwt+ without --plus: the best set measured in docs/results.md. */
#define SIM_PLUS_DEFAULT (SIM_PLUS_PROPORTIONAL | SIM_PLUS_SAMPLING | SIM_PLUS_CLR)

/* Batch-norm tensors kept at each institution in cwt and cwt+ (docs/simulate.md, "Local
 * batch-norm"): none (all travel), the running statistics (SiloBN), or the statistics and the
 * affine parameters with their optimizer state (FedBN). */
enum sim_local_bn { SIM_BN_TRAVEL = 0, SIM_BN_STATS, SIM_BN_ALL };

/* Parses "none", "stats" or "all". CWT_EINVAL with a sentence in err. */
int sim_local_bn_parse(const char *text, enum sim_local_bn *out, char *err, size_t errlen);

/* Parses "all" or a comma-separated subset of "proportional,loss,sampling,clr". */
int sim_plus_parse(const char *text, unsigned *mods, char *err, size_t errlen);
/* "proportional+loss+sampling+clr" style text of mods. */
void sim_plus_format(unsigned mods, char *out, size_t len);

/* Parses `--augment LIST` (docs/simulate.md) into r's augmentation settings, which it
 * replaces: none, crop[:SMIN], pad:N, hflip, vflip, rot:DEG, jitter:X, brightness:X,
 * contrast:X. CWT_EINVAL with a sentence in err naming the bad entry. */
int sim_augment_parse(const char *text, struct cwt_recipe *r, char *err, size_t errlen);

/* Parses a comma-separated list of at most max positive numbers <= hi into out. */
int sim_parse_list(const char *text, double hi, double *out, uint32_t max, uint32_t *n, char *err,
                   size_t errlen);

/* A validation curve: value after `step` cumulative optimizer steps. */
struct sim_curve {
    size_t n, cap;
    uint64_t *step;
    double *value;
};
int sim_curve_add(struct sim_curve *c, uint64_t step, double value);
void sim_curve_free(struct sim_curve *c);

/* One heuristic (one visit length for cwt/cwt+, one institution for single) on one seed. */
struct sim_outcome {
    enum sim_heur heur;
    double visit; /* cwt, cwt+: visit length; fedavg, fedprox: local epochs per round;
                     0 otherwise */
    int inst;     /* single: the institution; -1 for the heuristic as a whole */
    uint32_t seed_index;
    uint64_t seed;
    double test_accuracy, test_balanced_accuracy, test_auc; /* balanced: mean recall over
                                                               the classes in test */
    uint64_t steps;                                         /* optimizer steps taken */
    uint64_t budget;                                        /* optimizer steps allowed */
    double wall_s;
    uint32_t cycles;       /* cwt/cwt+: cycles started; swt: institutions visited;
                              fedavg/fedprox: rounds started */
    uint64_t kept_step;    /* cumulative step at which the kept model was taken */
    double kept_val;       /* its validation score (see sim_selection_text) */
    char weights_hash[65]; /* BLAKE2b-256 (hex) of the kept model's weights; "" if none */
    char final_hash[65];   /* of the weights at the end of training; "" if none */
    struct sim_curve curve;
};

/* How the kept model of a heuristic is chosen, for the table and the files. */
const char *sim_selection_text(enum sim_heur h);

/* Everything the report needs. */
struct sim_report {
    uint32_t sites;
    char partition[CWT_MAX_SITES * 16 + 32];
    char plus[64];
    enum sim_local_bn local_bn;
    double prox_mu; /* fedprox's MU; 0 when fedprox does not run */
    /* by-column: the value of institution i (inst-i); n_names = 0 otherwise. */
    uint32_t n_names;
    char names[CWT_MAX_SITES][STORE_IMETA_VALUE_MAX + 1];
    double budget_epochs;
    uint64_t budget_steps;
    uint32_t batch;
    uint32_t n_seeds;
    uint64_t first_seed;
    int through_bundles;
    char model[CWT_NAME_MAX + 1];
    char device[256];
    uint64_t n_train, n_val, n_test; /* pooled images used */
    /* Per seed and institution: images of train and val (seed-major). */
    uint64_t *inst_train, *inst_val;
    double visits[16];
    uint32_t n_visits;
    size_t n, cap;
    struct sim_outcome *o;
    /* Provenance, printed in every plot and file. recipe is borrowed from the sim_setup
     * (valid while it lives; NULL leaves the recipe's fields out of results.json). */
    const struct cwt_recipe *recipe;
    char recipe_text[256]; /* "cnn-small, sgd lr 0.01 momentum 0.9, batch 16, 16x16x1, 3 classes" */
    char heuristics[128];  /* the --heuristics asked for, as given */
    char command[2048];    /* the command line, arguments shell-quoted where needed */
};

/* Appends a copy of *o (the curve's ownership moves into the report). */
int sim_report_add(struct sim_report *r, struct sim_outcome *o);
void sim_report_free(struct sim_report *r);

/* Label of an outcome's row: "central", "single", "single inst-2", "cwt v=0.25", ... */
void sim_outcome_label(const struct sim_outcome *o, char *out, size_t len);

/* The comparison table (mean +- sd over seeds) as text. */
void sim_report_table(const struct sim_report *r, FILE *f);
/* results.csv: one line per outcome. results.json: settings, partition sizes, outcomes,
 * summary rows. Both written to f. */
void sim_report_csv(const struct sim_report *r, FILE *f);
/* results.json (schema SIM_RESULTS_SCHEMA, docs/simulate.md) as one line of JSON text; the
 * caller frees it. NULL when out of memory. sim_report_json writes it and a newline to f:
 * 0, CWT_ENOMEM, or CWT_EIO when f fails. */
#define SIM_RESULTS_SCHEMA "cwt.simulate-results/1"
char *sim_report_json_text(const struct sim_report *r);
int sim_report_json(const struct sim_report *r, FILE *f);
/* Round axis ticks over [lo, hi]: the step is 1, 2 or 5 times a power of ten, the first that
 * needs at most max_ticks ticks (max_ticks >= 2, at most 64); integer_steps keeps the step at
 * least 1. The axis widens to the ticks around the range: *lo_out and *hi_out are the first
 * and last tick. Returns the number of ticks written to ticks. */
size_t sim_nice_ticks(double lo, double hi, size_t max_ticks, int integer_steps, double *ticks,
                      double *lo_out, double *hi_out);

/* cwt's version and the git commit it was built from ("unknown" outside a git checkout). */
const char *sim_build_commit(void);

/* Validation score against cumulative steps, one line per heuristic (first seed), and CWT
 * test accuracy against visit length (mean +- sd over seeds). */
void sim_svg_curves(const struct sim_report *r, FILE *f);
void sim_svg_visits(const struct sim_report *r, FILE *f);

/* Writes every file of the report into dir (results.csv, results.json, val-curves.svg,
 * cwt-visits.svg), each atomically. */
int sim_report_write(const struct sim_report *r, const char *dir, char *err, size_t errlen);

/* ------------------------------------------------------------ federated averaging */

/* Adds w * x[0..numel) to the double accumulator acc (FedAvg's sample-weighted sum). */
void sim_avg_add(double *acc, const float *x, size_t numel, double w);

/* out[j] = acc[j] / wsum, rounded once to float: with sim_avg_add over the models k in order,
 * the sample-weighted mean sum_k w_k x_k / sum_k w_k. CWT_EINVAL unless wsum > 0. */
int sim_avg_finish(const double *acc, size_t numel, double wsum, float *out);

/* The steps of each institution in one FedAvg round: full[i] planned, `left` budget steps
 * remaining. With sum(full) <= left, out = full; otherwise out[i] = floor(left * full[i] /
 * sum(full)) and the steps still missing go one each to institutions 0, 1, ... (never above
 * full[i]), so the round spends exactly `left`. */
void sim_round_steps(const uint64_t *full, uint32_t n, uint64_t left, uint64_t *out);

/* FedProx through a plain SGD step (docs/simulate.md, "fedprox"): after the engine took the
 * step with gradient g, this turns it into the step with g + p, p = mu * (w_prev - w_glob):
 * buf += p (momentum buffer; NULL without momentum) and w -= lr * k * p, k = 1 + momentum
 * for Nesterov, else 1. w_prev: the weights before the step; w_glob: the round's global
 * weights. Exact in real arithmetic because SGD with momentum is linear in the gradient. */
void sim_prox_correct(float *w, float *buf, const float *w_prev, const float *w_glob, size_t numel,
                      float mu, float lr, float momentum, int nesterov);

/* Whole steps of the k-th (0-based) visit of length x steps (real-valued, x > 0) at one
 * institution, carrying the fractions: round((k+1) x) - round(k x) for x >= 1, so k visits
 * take round(k x) steps together; 1 for x < 1 (a visit is at least one step). */
uint64_t sim_visit_steps(double x, uint64_t k);

/* ------------------------------------------------------------ hand-over through bundles */

struct sim_fed;

/* The virtual federation of --through-bundles: institution K is site "inst-K" with its own
 * keys in dir/inst-K/keys (generated on first use, re-used afterwards), all in one roster
 * (federation "simulate", the site's recipe) that is also written to dir/roster.conf so an
 * auditor can check the bundles with `cwtctl bundle verify`. Release with sim_fed_close(). */
int sim_fed_open(const char *dir, uint32_t n_inst, const struct cwt_recipe *recipe,
                 struct sim_fed **out, char *err, size_t errlen);
void sim_fed_close(struct sim_fed *f);

/* Starts a new chain: the next hand-over has sequence cycle * n + hop and no parent if it is
 * the first. */
void sim_fed_new_chain(struct sim_fed *f);

/* Moves the model from institution `from` (hop `from` of cycle `cycle`) to `to` through the
 * real exchange path: train_state_save(TRAIN_SAVE_ALL) into a safetensors payload, sealed for
 * `to` by `from`'s keys, verified with public keys, opened with `to`'s keys (model fingerprint
 * checked), and loaded into m after m was reset to reset_state (so every value that continues
 * training has come through the bundle). The files are removed afterwards. */
int sim_fed_handover(struct sim_fed *f, struct eng_model *m, const struct eng_model_spec *spec,
                     const struct train_norm *norm, const uint8_t *reset_state, size_t reset_len,
                     uint32_t from, uint32_t to, uint32_t cycle,
                     const struct bundle_summary *summary, char *err, size_t errlen);

/* ------------------------------------------------------------ running the experiment */

/* Where the experiment stands, for a progress line. The ETA counts steps: every run of a
 * heuristic has the same budget (single's institutions share one), so steps done over steps
 * planned is the fraction of the work done. */
struct sim_progress {
    uint32_t run, runs;   /* 1-based run in progress, runs in all (seeds included) */
    const char *label;    /* the run: "central", "single 2", "cwt+ x1" */
    uint32_t seed_index;  /* 0-based */
    uint64_t step, steps; /* in this run */
    uint64_t done, total; /* steps over all runs */
    double loss;          /* mean training loss so far in the epoch */
    int finished;         /* the run just ended (the caller clears its line) */
};
typedef void (*sim_progress_fn)(const struct sim_progress *p, void *ctx);

/* What cmd_simulate decided; sim_run reads it only. */
struct sim_setup {
    struct store *st; /* the site store, opened read-only */
    struct eng_device *dev;
    struct cwt_recipe recipe; /* the roster's recipe */
    uint32_t sites;
    struct sim_part_rule rule;
    int want[SIM_NHEUR];
    double visits[16];
    uint32_t n_visits;
    double budget_epochs;
    uint32_t n_seeds;
    unsigned plus;  /* SIM_PLUS_* bits of cwt+ */
    double prox_mu; /* fedprox: MU of the proximal term */
    enum sim_local_bn local_bn;
    int through_bundles;
    const char *out_dir;                 /* bundles and keys go under it */
    size_t max_train, max_val, max_test; /* 0 = every image of the split */
    sim_progress_fn on_progress;         /* after every step and run; NULL = none */
    void *progress_ctx;
    int verbose; /* one line per finished run on stderr */
};

/* Runs every requested heuristic for every seed and fills rep (release with
 * sim_report_free). Errors: CWT_ENOENT (no images), CWT_EINVAL (an institution without
 * training images), engine, store and bundle errors, each with a sentence in err. */
int sim_run(const struct sim_setup *s, struct sim_report *rep, char *err, size_t errlen);

#endif
