/*
 * cmd_train.c - `cwtctl train`: train the site's model on its local training split.
 *
 * The run's full state is checkpointed to the store (TRAIN_CKPT_RESUME) at every epoch end
 * and every K steps, so `--resume` after a crash or kill continues to the same weights an
 * uninterrupted run reaches. The best model by validation accuracy becomes the site's model
 * (TRAIN_CKPT_MODEL), which eval, predict and model export use.
 */
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "engine/train/train.h"

#define DEFAULT_CKPT_STEPS 200
/* The JSON Lines stream of `train --json` (docs/json.md, docs/schemas/train*.json). */
#define TRAIN_PROGRESS_SCHEMA "cwt.train-progress/1"
#define TRAIN_SCHEMA          "cwt.train/1"
/* Tags the loader's seed so that shuffling is independent of the weight initialisation. */
#define LOADER_SEED_TAG 0x6c6f61646572ull /* "loader" */

struct train_ui {
    const struct cli_globals *g;
    struct progress prog; /* "epoch e/E, step s/S, loss x, ETA" on a terminal */
    int seen_step;        /* prog.base is set */
    uint64_t spe;         /* steps per epoch, for the epoch count */
    uint64_t epochs;      /* planned */
    sigset_t stop_signals;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cwtctl train [--epochs N] [--resume] [--checkpoint-every K] [--json]\n\n"
            "  --epochs N            epochs to train (default: the recipe's)\n"
            "  --resume              continue the interrupted run from its checkpoint, to the\n"
            "                        length it was started with\n"
            "  --checkpoint-every K  also checkpoint every K steps (default %d; 0 = epoch "
            "ends only)\n"
            "  --json                JSON Lines: one object per epoch, then the outcome\n\n"
            "The best model by validation accuracy becomes the site's model.\n",
            DEFAULT_CKPT_STEPS);
}

static void clear_live_line(struct train_ui *ui)
{
    progress_clear(&ui->prog);
}

/* Stops the run (checkpoint first) on SIGINT/SIGTERM: they are blocked and polled here, so no
 * signal handler and no global flag are needed. */
static int on_progress(const struct train_progress *p, void *ctx)
{
    struct train_ui *ui = ctx;
    sigset_t pending;

    /* A resumed run's first report sets the base: steps done before it do not count in the
     * rate. */
    if (!ui->seen_step) {
        ui->prog.base = p->step > 0 ? p->step - 1 : 0;
        ui->seen_step = 1;
    }
    progress_draw(&ui->prog, 0, p->step, p->steps, "epoch %llu/%llu, step %llu/%llu, loss %.4f",
                  (unsigned long long)p->epoch, (unsigned long long)ui->epochs,
                  (unsigned long long)p->step, (unsigned long long)p->steps, p->loss);
    if (sigpending(&pending) == 0 &&
        (sigismember(&pending, SIGINT) == 1 || sigismember(&pending, SIGTERM) == 1))
        return 1;
    return 0;
}

/* A number; null when not finite (no validation split: val_loss, val_accuracy). */
static json_t *json_num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static int on_epoch(const struct train_epoch_result *r, void *ctx)
{
    struct train_ui *ui = ctx;

    clear_live_line(ui);
    if (ui->g->json) {
        /* One line of the cwt.train-progress/1 stream (docs/json.md). */
        json_t *o = cli_json_doc(TRAIN_PROGRESS_SCHEMA, 1);
        int bad = o == NULL;
        if (!bad) {
            bad |= cli_json_set(o, "epoch", json_integer((json_int_t)r->epoch));
            bad |= cli_json_set(o, "train_loss", json_num(r->train_loss));
            bad |= cli_json_set(o, "train_accuracy", json_num(r->train_accuracy));
            bad |= cli_json_set(o, "val_loss", json_num(r->val_loss));
            bad |= cli_json_set(o, "val_accuracy", json_num(r->val_accuracy));
            bad |= cli_json_set(o, "images_per_s", json_num(r->images_per_s));
            bad |= cli_json_set(o, "seconds", json_num(r->seconds));
            bad |= cli_json_set(o, "lr", json_num(r->lr));
            bad |= cli_json_set(o, "step", json_integer((json_int_t)r->step));
            bad |= cli_json_set(o, "best", json_boolean(r->best));
        }
        if (bad) {
            json_decref(o);
            o = NULL;
        }
        cli_json_stream(o);
    } else {
        printf("epoch %llu/%llu  train loss %.4f acc %.2f%%", (unsigned long long)r->epoch,
               (unsigned long long)ui->epochs, r->train_loss, 100.0 * r->train_accuracy);
        if (isfinite(r->val_accuracy))
            printf("  val loss %.4f acc %.2f%%", r->val_loss, 100.0 * r->val_accuracy);
        printf("  %.0f images/s  %.1f s%s\n", r->images_per_s, r->seconds,
               r->best && isfinite(r->val_accuracy) ? "  (best)" : "");
    }
    fflush(stdout);
    return 0;
}

static void print_device(const struct eng_device *dev, FILE *f)
{
    struct eng_device_info di;

    eng_device_get_info(dev, &di);
    fprintf(f,
            "device: %s (%s, %s); subgroup %u, shared memory %u KiB, workgroup %u, "
            "storage buffer %llu MiB\n",
            di.name, di.type, di.driver, di.subgroup_size, di.max_shared_memory / 1024,
            di.max_workgroup_invocations, (unsigned long long)(di.max_storage_buffer_range >> 20));
    fflush(f);
}

struct train_args {
    int64_t epochs; /* 0 = the recipe's */
    int resume;
    int64_t ckpt_steps;
};

static int parse_args(int argc, char **argv, struct train_args *a)
{
    static const struct option opts[] = {
        {"epochs", required_argument, NULL, 'e'},
        {"resume", no_argument, NULL, 'r'},
        {"checkpoint-every", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;

    a->epochs = 0;
    a->resume = 0;
    a->ckpt_steps = DEFAULT_CKPT_STEPS;
    optind = 0;
    while ((ch = cli_getopt(argc, argv, "h", opts, "train")) != -1) {
        switch (ch) {
        case 'e':
            if (cwt_parse_i64(optarg, 1, 100000, &a->epochs) != 0)
                return cli_error(CLI_USAGE, "--epochs needs a whole number from 1 to 100000");
            break;
        case 'r':
            a->resume = 1;
            break;
        case 'k':
            if (cwt_parse_i64(optarg, 0, 100000000, &a->ckpt_steps) != 0)
                return cli_error(CLI_USAGE, "--checkpoint-every needs a whole number >= 0");
            break;
        case 'h':
            usage(stdout);
            return -1;
        default:
            return CLI_USAGE;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return cli_error(CLI_USAGE, "unexpected argument '%s'", argv[optind]);
    }
    return 0;
}

/* Everything a run holds, released by train_cleanup. */
struct train_run {
    struct cwt_config cfg;
    struct cwt_roster roster;
    struct store *st;
    struct eng_device *dev;
    struct eng_model *model;
    struct train_loader *loader;
    struct train_session *session;
    uint64_t *train_ids, *val_ids;
    size_t n_train, n_val;
};

/* The last line of `train --json`: cwt.train/1, the run's outcome. 0 or CLI_FAIL. */
static int print_train_json(const struct train_run *r, uint64_t epochs)
{
    double best = train_session_best_val(r->session);
    json_t *o = cli_json_doc(TRAIN_SCHEMA, 1);
    int bad = o == NULL;

    if (!bad) {
        bad |= cli_json_set_str(o, "model", r->roster.recipe.model);
        bad |= cli_json_set(o, "epochs", json_integer((json_int_t)epochs));
        bad |= cli_json_set(o, "steps",
                            json_integer((json_int_t)train_session_steps_done(r->session)));
        bad |= cli_json_set(o, "train_images", json_integer((json_int_t)r->n_train));
        bad |= cli_json_set(o, "val_images", json_integer((json_int_t)r->n_val));
        bad |= cli_json_set(o, "best_val_accuracy", best >= 0 ? json_real(best) : json_null());
        bad |= cli_json_set_str(o, "kept", best >= 0 ? "best" : "last");
    }
    if (bad) {
        json_decref(o);
        o = NULL;
    }
    return cli_json_emit(o, 0);
}

static void train_cleanup(struct train_run *r)
{
    train_session_free(r->session);
    train_loader_free(r->loader);
    eng_model_free(r->model);
    if (r->dev != NULL)
        eng_device_close(r->dev);
    if (r->st != NULL)
        store_close(r->st);
    free(r->train_ids);
    free(r->val_ids);
    free(r);
}

static int list_splits(struct train_run *r, char *err, size_t errlen)
{
    int rc;

    if ((rc = store_read_begin(r->st)) != 0)
        return cwt_seterr(err, errlen, rc, "cannot read the store: %s", cwt_strerror(rc));
    rc = store_list(r->st, STORE_TRAIN, &r->train_ids, &r->n_train);
    if (rc == 0)
        rc = store_list(r->st, STORE_VAL, &r->val_ids, &r->n_val);
    store_read_end(r->st);
    if (rc != 0)
        return cwt_seterr(err, errlen, rc, "cannot list the store's images: %s", cwt_strerror(rc));
    if (r->n_train == 0)
        return cwt_seterr(err, errlen, CWT_ENOENT,
                          "the training split is empty; ingest images first");
    return 0;
}

static int check_shape(struct train_run *r, char *err, size_t errlen)
{
    const struct cwt_recipe *rec = &r->roster.recipe;
    uint32_t h, w, c;
    int rc = store_get_shape(r->st, &h, &w, &c);

    if (rc == CWT_ENOENT)
        return cwt_seterr(err, errlen, rc, "the store holds no images yet; ingest images first");
    if (rc != 0)
        return cwt_seterr(err, errlen, rc, "cannot read the store's shape: %s", cwt_strerror(rc));
    if (h != rec->input_h || w != rec->input_w || c != rec->input_c)
        return cwt_seterr(err, errlen, CWT_ECONFIG,
                          "the store holds %ux%ux%u images but the recipe's model takes "
                          "%ux%ux%u",
                          h, w, c, rec->input_h, rec->input_w, rec->input_c);
    return 0;
}

int cmd_train(int argc, char **argv, const struct cli_globals *g)
{
    struct train_args args;
    struct train_run *r;
    struct train_ui ui;
    struct train_loader_opts lo;
    struct train_session_opts so;
    struct eng_model_spec spec;
    struct eng_optim_spec ospec;
    struct train_norm norm;
    const struct cwt_recipe *rec;
    char err[CWT_ERRLEN];
    int rc, code = CLI_FAIL;

    if ((rc = parse_args(argc, argv, &args)) != 0)
        return rc < 0 ? CLI_OK : rc;
    /* struct cwt_roster holds every class name: too big for the stack. */
    if ((r = calloc(1, sizeof(*r))) == NULL)
        return cli_error(CLI_FAIL, "out of memory");
    if (cli_load_site(g, &r->cfg, &r->roster) != 0) {
        free(r);
        return CLI_USAGE;
    }
    rec = &r->roster.recipe;
    memset(&ui, 0, sizeof(ui));
    ui.g = g;
    progress_start(&ui.prog, isatty(STDERR_FILENO));
    sigemptyset(&ui.stop_signals);
    sigaddset(&ui.stop_signals, SIGINT);
    sigaddset(&ui.stop_signals, SIGTERM);

    rc = store_open(r->cfg.store_dir, 0, r->cfg.store_max_bytes, &r->st, err, sizeof(err));
    if (rc != 0) {
        code = rc == CWT_ENOENT ? CLI_USAGE : CLI_FAIL;
        goto fail;
    }
    if ((rc = check_shape(r, err, sizeof(err))) != 0 ||
        (rc = list_splits(r, err, sizeof(err))) != 0 ||
        (rc = train_norm_ensure(r->st, &norm, err, sizeof(err))) != 0 ||
        (rc = train_specs_from_recipe(rec, &spec, &ospec, err, sizeof(err))) != 0) {
        code = rc == CWT_ECONFIG || rc == CWT_EUNSUPPORTED ? CLI_USAGE : CLI_FAIL;
        goto fail;
    }
    /* Blocked before the device starts its threads (which inherit the mask): a process-wide
     * SIGINT/SIGTERM then stays pending until on_progress sees it and the run stops with a
     * checkpoint after the current step. */
    sigprocmask(SIG_BLOCK, &ui.stop_signals, NULL);
    if ((rc = eng_device_open(r->cfg.gpu_device, 0, &r->dev, err, sizeof(err))) != 0)
        goto fail;
    print_device(r->dev, g->json ? stderr : stdout);
    if ((rc = train_model_from_recipe(r->dev, rec, &r->model, err, sizeof(err))) != 0)
        goto fail;

    memset(&lo, 0, sizeof(lo));
    lo.batch_size = rec->batch_size;
    lo.seed = train_hash3(rec->seed, LOADER_SEED_TAG, 0);
    lo.shuffle = 1;
    lo.balanced = rec->balanced_sampling;
    train_loader_augment_from_recipe(rec, &lo);
    lo.norm = norm;
    rc = train_loader_new(r->st, r->train_ids, r->n_train, rec->classes, &lo, &r->loader, err,
                          sizeof(err));
    if (rc != 0)
        goto fail;

    memset(&so, 0, sizeof(so));
    so.recipe = rec;
    so.plan.unit = CWT_VISIT_EPOCHS;
    so.plan.length = (double)(args.epochs > 0 ? (uint64_t)args.epochs : rec->epochs);
    so.val_ids = r->val_ids;
    so.n_val = r->n_val;
    so.ckpt_name = TRAIN_CKPT_RESUME;
    so.ckpt_every_steps = (uint32_t)args.ckpt_steps;
    so.best_name = TRAIN_CKPT_MODEL;
    so.on_progress = on_progress;
    so.on_epoch = on_epoch;
    so.ctx = &ui;
    rc = train_session_new(r->model, &spec, r->loader, r->st, &so, &r->session, err, sizeof(err));
    if (rc != 0)
        goto fail;
    if (args.resume) {
        rc = train_session_resume(r->session, TRAIN_CKPT_RESUME, err, sizeof(err));
        if (rc == CWT_ENOENT) {
            fprintf(stderr, "cwtctl: no checkpoint to resume from; starting a new run\n");
        } else if (rc != 0) {
            goto fail;
        } else if (train_session_steps_done(r->session) >=
                   train_session_steps_planned(r->session)) {
            fprintf(stderr, "cwtctl: the checkpointed run is complete; nothing to resume\n");
            code = g->json ? print_train_json(r, (train_session_steps_done(r->session) +
                                                  train_loader_batches_per_epoch(r->loader) - 1) /
                                                     train_loader_batches_per_epoch(r->loader))
                           : CLI_OK;
            train_cleanup(r);
            return code;
        } else {
            fprintf(stderr, "cwtctl: resuming at step %llu of %llu\n",
                    (unsigned long long)train_session_steps_done(r->session),
                    (unsigned long long)train_session_steps_planned(r->session));
        }
    }
    ui.spe = train_loader_batches_per_epoch(r->loader);
    ui.epochs = (train_session_steps_planned(r->session) + ui.spe - 1) / ui.spe;
    if (!g->json)
        printf("training %s on %zu images (%zu for validation), %llu epochs of %llu steps, "
               "batch %u\n",
               rec->model, r->n_train, r->n_val, (unsigned long long)ui.epochs,
               (unsigned long long)ui.spe, rec->batch_size);
    fflush(stdout);

    rc = train_session_run(r->session, err, sizeof(err));
    clear_live_line(&ui);
    {
        /* Take a pending Ctrl-C off the queue; unblocked it would kill us before the
         * message below. */
        struct timespec zero = {0, 0};
        while (sigtimedwait(&ui.stop_signals, NULL, &zero) > 0)
            ;
    }
    sigprocmask(SIG_UNBLOCK, &ui.stop_signals, NULL);
    if (rc == CWT_ESTATE) {
        cli_fail(CLI_FAIL, "state", "%s; checkpoint saved, continue with 'cwtctl train --resume'",
                 err);
        train_cleanup(r);
        return CLI_FAIL;
    }
    if (rc != 0)
        goto fail;
    if (g->json) {
        code = print_train_json(r, ui.epochs);
        train_cleanup(r);
        return code;
    } else {
        double best = train_session_best_val(r->session);
        if (best >= 0)
            printf("best validation accuracy %.2f%%; kept as the site's model\n", 100.0 * best);
        else
            printf("no validation split; the last epoch's model is kept as the site's model\n");
    }
    train_cleanup(r);
    return CLI_OK;
fail:
    clear_live_line(&ui);
    train_cleanup(r);
    return cli_error(code, "%s", err);
}
