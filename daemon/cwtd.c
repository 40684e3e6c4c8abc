/*
 * cwtd - the cwt site daemon: a monitor (keys, bundles, ledger, control socket) and a trainer
 * (Vulkan) that talk over a socketpair. See daemon/daemon.h for the files and docs/daemon.md
 * for operations.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "common/fileio.h"
#include "common/log.h"
#include "config/config.h"
#include "crypto/keys.h"
#include "daemon/daemon.h"
#include "daemon/keyproc.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cwtd [-c FILE] [-f] [-d]\n"
            "  -c FILE   site configuration (default: $CWT_CONFIG, else %s)\n"
            "  -f        stay in the foreground (systemd: Type=notify)\n"
            "  -d        debug logging\n"
            "  --help    this text\n"
            "  --version the version\n",
            CWT_DEFAULT_CONFIG);
}

/* Started as root with a configured user: become that user (groups first) for good. Root
 * without daemon.user (or with a daemon.user that is root) is a start-up error: it would run
 * the bundle parser and the key holder with every capability and no sandbox over the
 * supervisor (issue 18, L6). daemon.allow_root = true overrides it; the monitor audits that. */
static void drop_privileges(const struct cwt_config *cfg)
{
    struct passwd *pw = NULL;

    if (geteuid() != 0)
        return;
    if (cfg->user[0] != '\0') {
        pw = getpwnam(cfg->user);
        if (pw == NULL)
            fatalx("user %s (daemon.user in %s) does not exist", cfg->user, cfg->path);
    }
    if (pw == NULL || pw->pw_uid == 0) {
        if (!cfg->allow_root)
            fatalx("cwtd refuses to run as root: set daemon.user in %s (the packaged service "
                   "runs as cwt), or daemon.allow_root = true to run as root on purpose",
                   cfg->path);
        log_warnx("running as root: daemon.allow_root is set in %s", cfg->path);
        return;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0)
        fatal("cannot become user %s", cfg->user);
    if (setuid(0) == 0 || geteuid() != pw->pw_uid)
        fatalx("privileges could not be dropped for good");
    log_info("running as user %s", cfg->user);
}

/* No core dumps: they would hold secret keys and patient-derived weights. */
static void no_core_dumps(void)
{
    struct rlimit rl = {0, 0};

    if (setrlimit(RLIMIT_CORE, &rl) != 0)
        fatal("setrlimit(RLIMIT_CORE)");
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        fatal("prctl(PR_SET_DUMPABLE)");
}

/* recipe.init: the initial weights beside the roster, whose BLAKE2b-256 must be the one the
 * roster names (it is part of the roster fingerprint, so every site starts from the same
 * bytes). Returns 0 with *out NULL when the recipe has none; 2 (the exit code) after logging
 * which hash the file has and which the roster wants. */
static int load_init(const struct cwt_roster *r, uint8_t **out, size_t *outlen)
{
    char path[PATH_MAX], err[CWT_ERRLEN], have[65], want[65];
    uint8_t hash[32];

    *out = NULL;
    *outlen = 0;
    if (!r->recipe.has_init)
        return 0;
    if (roster_init_path(r, path, sizeof(path)) != 0) {
        log_errorx("the path of recipe.init.file is too long");
        return 2;
    }
    if (file_read_all(path, (size_t)1 << 32, out, outlen, err, sizeof(err)) != 0) {
        log_errorx("cannot read the roster's initial weights: %s", err);
        return 2;
    }
    crypto_generichash(hash, 32, *out, *outlen, NULL, 0);
    if (sodium_memcmp(hash, r->recipe.init_hash, 32) != 0) {
        cwt_hex(hash, 32, have);
        cwt_hex(r->recipe.init_hash, 32, want);
        log_errorx("the initial weights %s have BLAKE2b %s but the roster %s wants %s; install "
                   "the federation's file",
                   path, have, r->path, want);
        free(*out);
        *out = NULL;
        return 2;
    }
    return 0;
}

static void daemonize(void)
{
    pid_t pid = fork();
    int fd;

    if (pid < 0)
        fatal("fork");
    if (pid > 0)
        _exit(0);
    if (setsid() < 0)
        fatal("setsid");
    if (chdir("/") != 0)
        fatal("chdir /");
    fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        fatal("/dev/null");
    /* stderr stays: it is the log (journald, or whatever the caller redirected it to). */
    if (dup2(fd, STDIN_FILENO) < 0 || dup2(fd, STDOUT_FILENO) < 0)
        fatal("dup2");
    close(fd);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"foreground", no_argument, NULL, 'f'},
        {"debug", no_argument, NULL, 'd'},        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},      {NULL, 0, NULL, 0},
    };
    static struct cwt_config cfg;
    static struct cwt_roster roster;
    struct site_keys pub = {0};
    struct keyproc_client kp;
    const char *config_path = NULL;
    char err[CWT_ERRLEN];
    int foreground = 0, debug = 0, opt, sp[2];
    uint8_t *init = NULL;
    size_t init_len = 0;
    pid_t pid;

    while ((opt = getopt_long(argc, argv, "c:fdh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 'f':
            foreground = 1;
            break;
        case 'd':
            debug = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("cwtd %s\n", CWT_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    log_init("cwtd", debug);
    config_path = config_default_path(config_path);
    /* Refusals to start are errors (priority err), exit 2: the configuration is at fault. */
    if (config_load(config_path, &cfg, err, sizeof(err)) != 0) {
        log_errorx("%s", err);
        return 2;
    }
    if (roster_load(cfg.roster_path, &roster, err, sizeof(err)) != 0) {
        log_errorx("%s", err);
        return 2;
    }
    /* The keys name the site; a configuration that names it otherwise is what to fix, not the
     * roster. An unreadable site.pub is reported when the keys are loaded. */
    if (keys_load_public(cfg.keys_dir, &pub, err, sizeof(err)) == 0 &&
        strcmp(pub.site_id, cfg.site_id) != 0) {
        log_errorx("the keys in %s belong to site %s but %s says site_id = \"%s\"; set site_id "
                   "= \"%s\" in %s",
                   cfg.keys_dir, pub.site_id, cfg.path, cfg.site_id, pub.site_id, cfg.path);
        return 2;
    }
    if (roster_find_site(&roster, cfg.site_id) < 0) {
        log_errorx("site %s is not in the roster %s; add it with 'cwtctl roster add' and this "
                   "site's 'cwtctl key show' line, or install the federation's roster",
                   cfg.site_id, cfg.roster_path);
        return 2;
    }
    drop_privileges(&cfg);
    if (load_init(&roster, &init, &init_len) != 0)
        return 2;
    no_core_dumps();
    if (!foreground)
        daemonize();
    signal(SIGPIPE, SIG_IGN);
    /* A write past RLIMIT_FSIZE must fail with EFBIG (a local error that holds the inbox
     * file), not kill the daemon. */
    signal(SIGXFSZ, SIG_IGN);

    /* The trainer side is forked before any secret key is loaded. */
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0)
        fatal("socketpair");
    pid = fork();
    if (pid < 0)
        fatal("fork");
    if (pid == 0) {
        close(sp[0]);
        trainer_supervisor_main(&cfg, &roster, sp[1]);
    }
    close(sp[1]);
    /* The key process is forked after the trainer supervisor, so that no trainer ever holds
     * a descriptor to it, and it alone loads the secret keys. */
    keyproc_start(&cfg, &kp);
    return monitor_main(&cfg, &roster, sp[0], pid, &kp, foreground, init, init_len);
}
