/*
 * cmd_init.c - `cwtctl init`: create a new site (configuration, starter roster, folders, keys).
 *
 * Two layouts. `init --dir DIR` makes a self-contained site owned by whoever runs it, with its
 * configuration in DIR/cwtd.conf. `init --system` (root) makes the packaged site: the site
 * folder (/var/lib/cwt) owned by the service user, made by a child process that has become
 * that user, so that no file in it can end up root's; and the configuration in
 * /etc/cwt/cwtd.conf, root:cwt 0640, which the daemon can read but not change.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/fileio.h"
#include "crypto/keys.h"

#define SYSTEM_DIR  "/var/lib/cwt"
#define SYSTEM_USER "cwt"
#define SYSTEM_SOCK "/run/cwt/cwtd.sock"

static void init_usage(FILE *f)
{
    fprintf(f,
            "usage: cwtctl init --site-id ID (--system [--dir DIR] [--user USER] | --dir DIR)\n"
            "                   [--input HxWxC] [--classes N | --class-names a,b,...]\n"
            "                   [--model cnn-small|resnet] [--federation ID] [--seed N]\n"
            "                   [--plain]\n\n"
            "--system (as root, for the Debian package) makes the site in %s (or DIR),\n"
            "owned by the service user %s (or USER), with this site alone in its starter\n"
            "roster, and writes the configuration to %s (or -c FILE), owner root, group\n"
            "of the service user, mode 0640; systemd then starts it (cwtd.service).\n"
            "--dir DIR makes a site of your own: DIR/cwtd.conf, a starter DIR/roster.conf\n"
            "holding the training recipe and an empty site list.\n"
            "Both make the folders store/ inbox/ outbox/ keys/ and the site's signing and\n"
            "encryption keys, and refuse to overwrite an existing site.\n"
            "The recipe is cwt+ (docs/daemon.md, \"A new federation's recipe\"): class-balanced\n"
            "sampling, a cyclical learning rate, quarter-epoch proportional visits; --plain\n"
            "writes plain cwt (constant lr, one-epoch visits, uniform sampling).\n",
            SYSTEM_DIR, SYSTEM_USER, CWT_DEFAULT_CONFIG);
}

/* A new federation's recipe: the cwt+ modifications measured best under heterogeneity
 * (docs/results.md, Fashion-MNIST label skew: cwt+ "proportional,sampling,clr" kept test
 * accuracy at 0.789 / 0.773 / 0.736 for 0.25 / 1 / 5-epoch visits where plain cwt fell to
 * 0.782 / 0.674 / 0.668; quarter-epoch visits were best), in the daemon's terms:
 * class-balanced sampling; proportional visits of a quarter of a local epoch at every site
 * (visit_length is steps per 1000 local images: 250 / batch); a triangular learning rate from
 * lr / 10 to lr and back once per cycle, which for 4 sites is 4 x 0.25 = 1 epoch, so
 * cycle_epochs (the half period) is 0.5: with N sites set it to N x 0.125. `loss` (class
 * weights) is left off: with balanced sampling it over-corrects. */
static void recipe_cwt_plus(struct cwt_recipe *r)
{
    r->balanced_sampling = 1;
    r->class_weighted_loss = 0;
    r->visit_unit = CWT_VISIT_PROPORTIONAL;
    r->visit_length = 250.0 / (double)(r->batch_size > 0 ? r->batch_size : 64);
    r->schedule = CWT_LR_CYCLICAL;
    r->lr_min = r->lr / 10.0;
    r->cycle_epochs = 0.5;
}

/* Parses "28x28x1". */
static int parse_input(const char *s, struct cwt_recipe *r)
{
    unsigned h, w, c;
    char tail;

    if (sscanf(s, "%ux%ux%u%c", &h, &w, &c, &tail) != 3 || h < 1 || w < 1 || h > 1024 || w > 1024 ||
        (c != 1 && c != 3))
        return CWT_EINVAL;
    r->input_h = h;
    r->input_w = w;
    r->input_c = c;
    return 0;
}

static int parse_class_names(const char *s, struct cwt_recipe *r)
{
    char buf[8192], *save = NULL;
    uint32_t n = 0;

    if (strlen(s) >= sizeof(buf))
        return CWT_ETOOBIG;
    strcpy(buf, s);
    for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        if (n >= CWT_MAX_CLASSES || tok[0] == '\0' || strlen(tok) > CWT_NAME_MAX)
            return CWT_EINVAL;
        for (uint32_t j = 0; j < n; j++)
            if (strcmp(r->class_names[j], tok) == 0)
                return CWT_EINVAL;
        snprintf(r->class_names[n], sizeof(r->class_names[n]), "%s", tok);
        n++;
    }
    if (n < 2)
        return CWT_EINVAL;
    r->n_class_names = n;
    r->classes = n;
    return 0;
}

struct init_args {
    const char *site_id, *dir, *federation;
    const struct cwt_recipe *recipe;
    int add_self; /* put this site into its own starter roster */
};

/* Makes the site folder with its roster and keys, as the calling user. Prints the error and
 * returns the exit code. */
static int make_site(const struct init_args *a)
{
    char err[CWT_ERRLEN], path[PATH_MAX], keys_dir[PATH_MAX], line[CWT_KEYLINE_MAX + 1];
    struct cwt_roster *r;
    struct site_keys k;
    int rc;

    rc = site_init(a->dir, a->site_id, a->recipe, err, sizeof(err));
    if (rc != 0)
        return cli_error(rc == CWT_EINVAL ? CLI_USAGE : CLI_FAIL, "%s", err);
    if (file_join(keys_dir, sizeof(keys_dir), a->dir, "keys") != 0 ||
        file_join(path, sizeof(path), a->dir, "roster.conf") != 0)
        return cli_error(CLI_FAIL, "%s: path too long", a->dir);
    if (crypto_init() != 0 || keys_generate(keys_dir, a->site_id, err, sizeof(err)) != 0)
        return cli_error(CLI_FAIL, "cannot make the site keys: %s", err);
    if (a->federation == NULL && !a->add_self)
        return CLI_OK;
    if ((r = calloc(1, sizeof(*r))) == NULL)
        return cli_error(CLI_FAIL, "out of memory");
    rc = roster_load(path, r, err, sizeof(err));
    if (rc == 0 && a->federation != NULL)
        snprintf(r->federation, sizeof(r->federation), "%s", a->federation);
    if (rc == 0 && a->add_self) {
        rc = keys_load_public(keys_dir, &k, err, sizeof(err));
        if (rc == 0)
            rc = keyline_format(k.site_id, k.sign_pk, k.box_pk, line, sizeof(line), NULL);
        if (rc == 0)
            rc = keyline_parse(line, &r->sites[0], err, sizeof(err));
        if (rc == 0)
            r->n_sites = 1;
    }
    if (rc == 0)
        rc = roster_save(path, r, err, sizeof(err));
    free(r);
    if (rc != 0)
        return cli_error(CLI_FAIL, "cannot write the starter roster %s: %s", path, err);
    return CLI_OK;
}

/* The lines about the trainer in a packaged site's configuration: where the package made the
 * user cwt-train, trainer_user names it, so that the trainer runs under a uid of its own
 * (docs/threat-model.md), and trainer_socket names the socket of cwtd-trainer.socket, since
 * the packaged cwtd.service holds no capability to start the trainer as another user and
 * gives it no GPU: the service manager starts it in cwtd-trainer@.service as cwt-train. Where
 * the user is missing both lines are left out, since cwtd refuses an unknown trainer_user and
 * trainer_socket needs one. */
static const char *trainer_line(void)
{
    /* getpwnam_r: the caller still holds getpwnam's static result for the service user. */
    struct passwd pwbuf, *pw = NULL;
    char buf[4096];

    if (getpwnam_r(CLI_SYSTEM_TRAINER_USER, &pwbuf, buf, sizeof(buf), &pw) != 0 || pw == NULL)
        return "";
    return "  trainer_user = \"" CLI_SYSTEM_TRAINER_USER
           "\";  # the trainer under a uid of its own (admin guide, section 8)\n"
           "  trainer_socket = \"" CLI_SYSTEM_TRAINER_SOCKET
           "\";  # cwtd-trainer.socket: systemd starts the trainer\n";
}

/* The configuration of a packaged site (the layout of cwtd.conf.example). */
static int system_config(const char *site_id, const char *dir, const char *user, const char *group,
                         char *out, size_t outlen)
{
    int n = snprintf(out, outlen,
                     "# cwtd.conf - written by 'cwtctl init --system'; every key is described in\n"
                     "# cwtd.conf(5). Owner root, group %s, mode 0640: the daemon reads it and\n"
                     "# cannot change it.\n\n"
                     "site_id = \"%s\";  # the id in %s/keys/site.pub and in the roster\n\n"
                     "dirs = {\n"
                     "  site = \"%s\";\n"
                     "  store = \"store\";\n"
                     "  keys = \"keys\";\n"
                     "  inbox = \"inbox\";\n"
                     "  outbox = \"outbox\";\n"
                     "};\n\n"
                     "socket = \"%s\";\n"
                     "roster = \"roster.conf\";\n\n"
                     "gpu = {\n"
                     "  device = \"auto\";  # \"auto\", an index 0-63, or a name substring\n"
                     "};\n\n"
                     "daemon = {\n"
                     "  user = \"%s\";\n"
                     "  group = \"%s\";  # members may use the control socket\n"
                     "%s"
                     "  rescan_seconds = 30;\n"
                     "};\n\n"
                     "limits = {\n"
                     "  store_max_gb = 16;\n"
                     "  max_bundle_mb = 4096;\n"
                     "};\n",
                     group, site_id, dir, dir, SYSTEM_SOCK, user, group, trainer_line());

    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* Runs make_site as user pw in a child process: every file of the site is the service user's
 * from the start, with no chown afterwards that a crash could leave half done. */
static int make_site_as(const struct init_args *a, const struct passwd *pw)
{
    int status;
    pid_t pid;

    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0)
        return cli_error(CLI_FAIL, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* Groups first: after setuid there is no right left to change them. */
        if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
            setuid(pw->pw_uid) != 0 || getuid() != pw->pw_uid || geteuid() != pw->pw_uid)
            _exit(cli_error(CLI_FAIL, "cannot become user %s: %s", pw->pw_name, strerror(errno)));
        umask(027);
        _exit(make_site(a));
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return cli_error(CLI_FAIL, "waitpid: %s", strerror(errno));
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return cli_error(CLI_FAIL, "making the site as user %s died with signal %d", pw->pw_name,
                     WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* init --system: the site as the service user, the configuration as root. */
static int init_system(struct init_args *a, const char *user, const char *config_path)
{
    char err[CWT_ERRLEN], path[PATH_MAX], conf[2048], etc[PATH_MAX];
    const struct passwd *pw;
    const struct group *gr;
    struct stat sb;
    char *slash;
    int rc;

    if (geteuid() != 0)
        return cli_error(CLI_USAGE,
                         "init --system needs root (it makes files for user %s); run "
                         "it as root, or make a site of your own with --dir DIR",
                         user);
    if ((pw = getpwnam(user)) == NULL)
        return cli_error(CLI_USAGE,
                         "user %s does not exist; install the cwt package (it makes the user) "
                         "or name the service user with --user",
                         user);
    if ((gr = getgrgid(pw->pw_gid)) == NULL)
        return cli_error(CLI_USAGE, "the group %u of user %s has no name", (unsigned)pw->pw_gid,
                         user);
    if (a->dir[0] != '/')
        return cli_error(CLI_USAGE, "--dir %s: give an absolute path for a system site", a->dir);
    if (stat(config_path, &sb) == 0)
        return cli_error(CLI_FAIL, "%s exists already; refusing to overwrite an existing site",
                         config_path);
    if (file_join(path, sizeof(path), a->dir, "keys/site.pub") != 0)
        return cli_error(CLI_USAGE, "%s: path too long", a->dir);
    if (stat(path, &sb) == 0)
        return cli_error(CLI_FAIL, "%s holds a site already (%s); refusing to overwrite it", a->dir,
                         path);
    if (system_config(a->site_id, a->dir, pw->pw_name, gr->gr_name, conf, sizeof(conf)) != 0)
        return cli_error(CLI_FAIL, "configuration too long");

    /* The site folder: made here for the service user if tmpfiles.d has not made it. */
    if (stat(a->dir, &sb) != 0) {
        /* Folders above it 0755: the service user must pass through them. */
        snprintf(etc, sizeof(etc), "%s", a->dir);
        slash = strrchr(etc, '/');
        if (slash != NULL && slash != etc) {
            *slash = '\0';
            if (file_mkdir_p(etc, 0755, err, sizeof(err)) != 0)
                return cli_error(CLI_FAIL, "%s", err);
        }
        if (file_mkdir_p(a->dir, 0750, err, sizeof(err)) != 0)
            return cli_error(CLI_FAIL, "%s", err);
        if (chown(a->dir, pw->pw_uid, pw->pw_gid) != 0)
            return cli_error(CLI_FAIL, "cannot hand %s to user %s: %s", a->dir, user,
                             strerror(errno));
        if (stat(a->dir, &sb) != 0)
            return cli_error(CLI_FAIL, "%s: %s", a->dir, strerror(errno));
    }
    if (!S_ISDIR(sb.st_mode))
        return cli_error(CLI_FAIL, "%s is not a folder", a->dir);
    if (sb.st_uid != pw->pw_uid)
        return cli_error(CLI_FAIL,
                         "%s belongs to uid %u, not to user %s; run 'chown %s:%s %s' or choose "
                         "another --dir",
                         a->dir, (unsigned)sb.st_uid, user, user, gr->gr_name, a->dir);

    a->add_self = 1;
    if ((rc = make_site_as(a, pw)) != 0)
        return rc;

    /* The configuration folder (the package makes /etc/cwt), then the file itself. */
    snprintf(etc, sizeof(etc), "%s", config_path);
    slash = strrchr(etc, '/');
    if (slash != NULL && slash != etc) {
        *slash = '\0';
        if (file_mkdir_p(etc, 0755, err, sizeof(err)) != 0)
            return cli_error(CLI_FAIL, "%s", err);
    }
    if (file_write_new(config_path, conf, strlen(conf), 0640, err, sizeof(err)) != 0)
        return cli_error(CLI_FAIL, "the site in %s is made, but its configuration is not: %s",
                         a->dir, err);
    if (chown(config_path, 0, pw->pw_gid) != 0)
        return cli_error(CLI_FAIL, "cannot give %s to group %s: %s", config_path, gr->gr_name,
                         strerror(errno));
    /* init's own DIR/cwtd.conf would be a second, unused configuration: the one in use is
     * config_path. */
    if (file_join(path, sizeof(path), a->dir, "cwtd.conf") != 0 ||
        (unlink(path) != 0 && errno != ENOENT))
        return cli_error(CLI_FAIL, "cannot remove %s: %s", path, strerror(errno));
    return CLI_OK;
}

int cmd_init(int argc, char **argv, const struct cli_globals *g)
{
    static const struct option opts[] = {{"site-id", required_argument, NULL, 's'},
                                         {"dir", required_argument, NULL, 'd'},
                                         {"system", no_argument, NULL, 'Y'},
                                         {"user", required_argument, NULL, 'u'},
                                         {"input", required_argument, NULL, 'i'},
                                         {"classes", required_argument, NULL, 'k'},
                                         {"class-names", required_argument, NULL, 'n'},
                                         {"model", required_argument, NULL, 'm'},
                                         {"federation", required_argument, NULL, 'f'},
                                         {"seed", required_argument, NULL, 'S'},
                                         {"plain", no_argument, NULL, 'P'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *site_id = NULL, *dir = NULL, *federation = NULL, *user = NULL;
    struct init_args a = {0};
    struct cwt_recipe *recipe;
    int have_classes = 0, have_names = 0, sys = 0, plain = 0, ch, rc = CLI_USAGE;
    int64_t v;

    recipe = calloc(1, sizeof(*recipe));
    if (recipe == NULL)
        return cli_error(CLI_FAIL, "out of memory");
    recipe_defaults(recipe);
    optind = 0;
    while ((ch = cli_getopt(argc, argv, "h", opts, "init")) != -1) {
        switch (ch) {
        case 's':
            site_id = optarg;
            break;
        case 'd':
            dir = optarg;
            break;
        case 'Y':
            sys = 1;
            break;
        case 'u':
            user = optarg;
            break;
        case 'f':
            federation = optarg;
            break;
        case 'i':
            if (parse_input(optarg, recipe) != 0) {
                cli_error(CLI_USAGE, "--input %s: expected HxWxC, e.g. 28x28x1 (C is 1 or 3)",
                          optarg);
                goto out;
            }
            break;
        case 'k':
            if (cwt_parse_i64(optarg, 2, CWT_MAX_CLASSES, &v) != 0) {
                cli_error(CLI_USAGE, "--classes %s: expected a number from 2 to %d", optarg,
                          CWT_MAX_CLASSES);
                goto out;
            }
            recipe->classes = (uint32_t)v;
            have_classes = 1;
            break;
        case 'n':
            if (parse_class_names(optarg, recipe) != 0) {
                cli_error(CLI_USAGE,
                          "--class-names: expected 2-%d distinct names of at most %d "
                          "characters, separated by commas",
                          CWT_MAX_CLASSES, CWT_NAME_MAX);
                goto out;
            }
            have_names = 1;
            break;
        case 'm':
            if (strcmp(optarg, "cnn-small") != 0 && strcmp(optarg, "resnet") != 0) {
                cli_error(CLI_USAGE, "--model %s: expected cnn-small or resnet", optarg);
                goto out;
            }
            snprintf(recipe->model, sizeof(recipe->model), "%s", optarg);
            break;
        case 'P':
            plain = 1;
            break;
        case 'S':
            if (cwt_parse_i64(optarg, 0, INT64_MAX, &v) != 0) {
                cli_error(CLI_USAGE, "--seed %s: expected a non-negative integer", optarg);
                goto out;
            }
            recipe->seed = (uint64_t)v;
            break;
        case 'h':
            init_usage(stdout);
            rc = CLI_OK;
            goto out;
        default:
            goto out;
        }
    }
    if (optind != argc || site_id == NULL || (dir == NULL && !sys)) {
        cli_error(CLI_USAGE, "init needs --site-id ID and --system or --dir DIR (see 'cwtctl "
                             "init --help')");
        goto out;
    }
    if (user != NULL && !sys) {
        cli_error(CLI_USAGE, "--user goes with --system: a site made with --dir belongs to "
                             "whoever runs init");
        goto out;
    }
    if (have_classes && have_names) {
        cli_error(CLI_USAGE, "give either --classes or --class-names, not both");
        goto out;
    }
    if (federation != NULL && !cwt_valid_id(federation)) {
        cli_error(CLI_USAGE, "--federation %s: use 1-63 letters, digits, '.', '_' or '-'",
                  federation);
        goto out;
    }
    if (!cwt_valid_id(site_id)) {
        cli_error(CLI_USAGE,
                  "site id \"%s\" is not valid: use 1-63 letters, digits, '.', '_' "
                  "or '-'",
                  site_id);
        goto out;
    }
    if (!plain)
        recipe_cwt_plus(recipe);
    a.site_id = site_id;
    a.dir = dir != NULL ? dir : SYSTEM_DIR;
    a.federation = federation;
    a.recipe = recipe;
    rc = sys ? init_system(&a, user != NULL ? user : SYSTEM_USER, g->config_path) : make_site(&a);
    if (rc != CLI_OK)
        goto out;
    if (g->json) {
        json_t *o = cli_json_doc("cwt.init/1", 1);
        if (o != NULL && (cli_json_set_str(o, "site_id", site_id) != 0 ||
                          cli_json_set_str(o, "dir", a.dir) != 0 ||
                          (sys && cli_json_set_str(o, "config", g->config_path) != 0))) {
            json_decref(o);
            o = NULL;
        }
        if (cli_json_emit(o, 0) != 0)
            rc = CLI_FAIL;
    } else if (sys) {
        printf("Created site %s in %s, configuration %s\n", site_id, a.dir, g->config_path);
        printf("  next: 'systemctl enable --now cwtd' starts it; 'cwtctl doctor' checks it;\n"
               "        send 'cwtctl key show' to the coordinator and install the roster it\n"
               "        sends back (admin guide, section 1)\n");
    } else {
        printf("Created site %s in %s\n", site_id, a.dir);
        printf("  next: share 'cwtctl -c %s/cwtd.conf key show' with the other sites,\n", a.dir);
        printf("        add theirs with 'cwtctl roster add', then compare 'cwtctl roster check'\n");
    }
out:
    free(recipe);
    return rc;
}
