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
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <sodium.h>

#include "common/fileio.h"
#include "common/log.h"
#include "config/config.h"
#include "crypto/keys.h"
#include "daemon/daemon.h"
#include "daemon/keyproc.h"
#include "sandbox/sandbox.h"
#include "storage/store.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cwtd [-c FILE] [-f] [-d]\n"
            "       cwtd [-c FILE] --prepare-store\n"
            "       cwtd [-c FILE] --trainer\n"
            "  -c FILE   site configuration (default: $CWT_CONFIG, else %s)\n"
            "  -f        stay in the foreground (systemd: Type=notify)\n"
            "  -d        debug logging\n"
            "  --prepare-store  as root: give the store's files the owners and modes that\n"
            "            daemon.trainer_user needs, then exit (cwtd.service's ExecStartPre=)\n"
            "  --trainer the trainer supervisor for one connection to daemon.trainer_socket,\n"
            "            as the service manager starts it (cwtd-trainer@.service)\n"
            "  --help    this text\n"
            "  --version the version\n",
            CWT_DEFAULT_CONFIG);
}

/* The users cwtd becomes when started privileged (as root, or holding CAP_SETUID and
 * CAP_SETGID): daemon.user for the monitor and the key process, daemon.trainer_user (when
 * set) for the trainer supervisor and its trainers. */
struct run_as {
    int drop;         /* started privileged with a non-root daemon.user: become it */
    uid_t uid;        /* daemon.user */
    gid_t gid;        /* its primary group: the group of the store, shared with the trainer */
    int trainer;      /* daemon.trainer_user is set: the store's checkpoints/ are its */
    int fork_trainer; /* this process forks the trainer supervisor as trainer_user */
    uid_t trainer_uid;
};

/* Whether this process holds CAP_SETUID and CAP_SETGID in its effective set: the packaged
 * cwtd.service starts cwtd as cwt with these two (and CAP_SETPCAP) as ambient capabilities,
 * so that it can start the trainer as daemon.trainer_user without being root. */
static int holds_setid_caps(void)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

    memset(data, 0, sizeof(data));
    if (syscall(SYS_capget, &hdr, data) != 0)
        fatal("capget");
    return (data[CAP_TO_INDEX(CAP_SETUID)].effective & CAP_TO_MASK(CAP_SETUID)) != 0 &&
           (data[CAP_TO_INDEX(CAP_SETGID)].effective & CAP_TO_MASK(CAP_SETGID)) != 0;
}

/* daemon.trainer_user's uid into ra, refused (-1 after one sentence) when the user does not
 * exist, is root, or has uid other_uid (the uid the monitor runs as): either would make the
 * separation void. */
static int resolve_trainer(const struct cwt_config *cfg, uid_t other_uid, const char *other,
                           struct run_as *ra)
{
    struct passwd *tpw = getpwnam(cfg->trainer_user);

    if (tpw == NULL) {
        log_errorx("user %s (daemon.trainer_user in %s) does not exist", cfg->trainer_user,
                   cfg->path);
        return -1;
    }
    if (tpw->pw_uid == 0) {
        log_errorx("daemon.trainer_user = \"%s\" in %s is root: name a user of its own for the "
                   "trainer (the package makes cwt-train), or remove the key",
                   cfg->trainer_user, cfg->path);
        return -1;
    }
    if (tpw->pw_uid == other_uid) {
        log_errorx("daemon.trainer_user = \"%s\" in %s has the uid of %s: name a user of its "
                   "own for the trainer (the package makes cwt-train), or remove the key",
                   cfg->trainer_user, cfg->path, other);
        return -1;
    }
    ra->trainer = 1;
    ra->trainer_uid = tpw->pw_uid;
    return 0;
}

/* Decides who runs what, before anything is done, and refuses what must not start (returns
 * -1 after logging one sentence). Root without daemon.user (or with a daemon.user that is
 * root) is refused: it would run the bundle parser and the key holder with every capability
 * and no sandbox over the supervisor (issue 18, L6); daemon.allow_root = true overrides it
 * and the monitor audits that. A cwtd that is not root but holds CAP_SETUID and CAP_SETGID
 * (cwtd.service) is privileged too, and must name a daemon.user other than root: those
 * capabilities must not buy a root monitor. daemon.trainer_user needs cwtd privileged at
 * start (only a privileged process can give the trainer a uid of its own), a daemon.user to
 * share the store's group with, and a uid that is neither root nor daemon.user's (either
 * would make the separation void); unless daemon.trainer_socket is set, where the service
 * manager starts the trainer as that user and cwtd needs no privilege for it. */
static int resolve_users(const struct cwt_config *cfg, struct run_as *ra)
{
    struct passwd *pw = NULL;
    int root = geteuid() == 0, privileged = root || holds_setid_caps();

    memset(ra, 0, sizeof(*ra));
    if (cfg->trainer_user[0] != '\0' && cfg->trainer_socket[0] == '\0' && !privileged) {
        log_errorx("daemon.trainer_user = \"%s\" in %s needs cwtd to be started as root or with "
                   "CAP_SETUID and CAP_SETGID, or daemon.trainer_socket for a trainer that the "
                   "service manager starts (as the packaged cwtd.service does); start cwtd so, "
                   "or remove daemon.trainer_user",
                   cfg->trainer_user, cfg->path);
        return -1;
    }
    if (!privileged)
        return cfg->trainer_socket[0] == '\0' ? 0
                                              : resolve_trainer(cfg, geteuid(), "cwtd's user", ra);
    if (cfg->user[0] != '\0') {
        pw = getpwnam(cfg->user);
        if (pw == NULL) {
            log_errorx("user %s (daemon.user in %s) does not exist", cfg->user, cfg->path);
            return -1;
        }
    }
    if (!root && (pw == NULL || pw->pw_uid == 0)) {
        log_errorx("cwtd holds CAP_SETUID but %s names no daemon.user other than root: set "
                   "daemon.user (the packaged service runs as cwt)",
                   cfg->path);
        return -1;
    }
    if (pw == NULL || pw->pw_uid == 0) {
        if (!cfg->allow_root) {
            log_errorx("cwtd refuses to run as root: set daemon.user in %s (the packaged service "
                       "runs as cwt), or daemon.allow_root = true to run as root on purpose",
                       cfg->path);
            return -1;
        }
        if (cfg->trainer_user[0] != '\0') {
            log_errorx("daemon.trainer_user = \"%s\" in %s needs a daemon.user other than root: "
                       "the trainer reads the store through daemon.user's group",
                       cfg->trainer_user, cfg->path);
            return -1;
        }
        return 0;
    }
    ra->drop = 1;
    ra->uid = pw->pw_uid;
    ra->gid = pw->pw_gid;
    if (cfg->trainer_user[0] == '\0')
        return 0;
    if (resolve_trainer(cfg, ra->uid, "daemon.user", ra) != 0)
        return -1;
    ra->fork_trainer = cfg->trainer_socket[0] == '\0';
    return 0;
}

/* Empties the bounding set while CAP_SETPCAP is held, before the change of user: afterwards
 * no capability is left to do it with, and an empty bounding set is what a capability
 * check of /proc (or a later exec) must find. */
static void drop_bounding_set(const char *who)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

    memset(data, 0, sizeof(data));
    if (syscall(SYS_capget, &hdr, data) != 0)
        fatal("%scapget", who);
    if ((data[CAP_TO_INDEX(CAP_SETPCAP)].effective & CAP_TO_MASK(CAP_SETPCAP)) == 0)
        return;
    /* Numbers past the kernel's last capability fail PR_CAPBSET_READ with EINVAL. */
    for (int cap = 0; cap <= 63; cap++) {
        if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0)
            break;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
            fatal("%scannot drop capability %d from the bounding set", who, cap);
    }
}

/* After the change of user, no capability at all. A change from root to another uid clears
 * the capabilities; a change between two uids that are not root (cwtd.service's cwt with
 * ambient CAP_SETUID and CAP_SETGID) keeps them all, so they are dropped here, ambient set
 * included, and only then is setuid(0) tried: with CAP_SETUID still held it would succeed. */
static void drop_capabilities(const char *who)
{
    char err[CWT_ERRLEN];

    if (sandbox_drop_capabilities(err, sizeof(err)) != 0)
        fatalx("%s%s", who, err);
}

/* Become daemon.user (groups first) for good, with no capability left. */
static void become_daemon_user(const struct cwt_config *cfg, const struct run_as *ra)
{
    if (!ra->drop) {
        if (geteuid() == 0)
            log_warnx("running as root: daemon.allow_root is set in %s", cfg->path);
        return;
    }
    drop_bounding_set("");
    if (initgroups(cfg->user, ra->gid) != 0 || setgid(ra->gid) != 0 || setuid(ra->uid) != 0)
        fatal("cannot become user %s", cfg->user);
    drop_capabilities("");
    if (setuid(0) == 0 || geteuid() != ra->uid || getuid() != ra->uid)
        fatalx("privileges could not be dropped for good");
    log_info("running as user %s", cfg->user);
}

/* The store folder must be reachable for trainer_user, so that a site folder closed to the
 * group is one clear message, not a trainer that fails at every restart. */
static void check_store_reachable(const struct cwt_config *cfg, gid_t gid)
{
    if (access(cfg->store_dir, X_OK) != 0)
        fatal("trainer supervisor: user %s cannot enter the store %s; let group %u search the "
              "folders above it",
              cfg->trainer_user, cfg->store_dir, (unsigned)gid);
}

/* The trainer supervisor's half of the fork when daemon.trainer_user is set: that user, with
 * daemon.user's primary group (to read the store) and the supplementary groups the group
 * database gives trainer_user itself, for good. Not daemon.user's supplementary groups, and
 * not none: GPU render nodes are 0660 of group render, so the trainer needs the groups its
 * own user was given for the device (the package adds cwt-train to render). A change of uid
 * resets the dumpable flag to fs.suid_dumpable, so it is cleared again: a process of
 * trainer_user must not read the supervisor's memory through /proc either. */
static void become_trainer_user(const struct cwt_config *cfg, const struct run_as *ra)
{
    drop_bounding_set("trainer supervisor: ");
    if (initgroups(cfg->trainer_user, ra->gid) != 0 || setgid(ra->gid) != 0 ||
        setuid(ra->trainer_uid) != 0)
        fatal("trainer supervisor: cannot become user %s", cfg->trainer_user);
    drop_capabilities("trainer supervisor: ");
    if (setuid(0) == 0 || getuid() != ra->trainer_uid || geteuid() != ra->trainer_uid ||
        getgid() != ra->gid || getegid() != ra->gid)
        fatalx("trainer supervisor: privileges could not be dropped for good");
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        fatal("trainer supervisor: prctl(PR_SET_DUMPABLE)");
    check_store_reachable(cfg, ra->gid);
    log_info("trainer supervisor: running as user %s", cfg->trainer_user);
}

/* Opens (creating it when missing) the regular file name in folder dfd and gives it owner
 * uid:gid and mode. The folder belongs to daemon.user, who could have put a link there for
 * root to follow: the file is opened without following a symbolic link, must be a regular
 * file with one name, and is changed through its descriptor. */
static void own_file(int dfd, const char *dir, const char *name, uid_t uid, gid_t gid, mode_t mode)
{
    struct stat sb;
    int fd = openat(dfd, name, O_RDONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);

    if (fd < 0)
        fatal("%s/%s", dir, name);
    if (fstat(fd, &sb) != 0)
        fatal("%s/%s", dir, name);
    if (!S_ISREG(sb.st_mode) || sb.st_nlink != 1)
        fatalx("%s/%s is not a regular file with one name; move it away", dir, name);
    if ((sb.st_uid != uid || sb.st_gid != gid) && fchown(fd, uid, gid) != 0)
        fatal("chown %s/%s", dir, name);
    if ((sb.st_mode & 07777) != mode && fchmod(fd, mode) != 0)
        fatal("chmod %s/%s", dir, name);
    if (close(fd) != 0)
        fatal("%s/%s", dir, name);
}

/* Opens folder path in dfd (creating it when missing; AT_FDCWD and a path for the store
 * itself), without following a link, and gives it owner uid:gid and mode. Returns its
 * descriptor. Messages name it shown, its full path. */
static int own_dir(int dfd, const char *path, const char *shown, uid_t uid, gid_t gid, mode_t mode)
{
    struct stat sb;
    int fd;

    if (mkdirat(dfd, path, 0700) != 0 && errno != EEXIST)
        fatal("cannot create the folder %s", shown);
    fd = openat(dfd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        fatal("%s", shown);
    if (fstat(fd, &sb) != 0)
        fatal("%s", shown);
    if ((sb.st_uid != uid || sb.st_gid != gid) && fchown(fd, uid, gid) != 0)
        fatal("chown %s", shown);
    if ((sb.st_mode & 07777) != mode && fchmod(fd, mode) != 0)
        fatal("chmod %s", shown);
    return fd;
}

/* One environment's folder path (in dfd), its data.mdb and lock.mdb, with the owner and modes
 * of e (storage/store.h). Returns the folder's descriptor; shown is its full path. */
static int own_env(int dfd, const char *path, const char *shown, const struct store_env_mode *e,
                   const struct run_as *ra)
{
    uid_t uid = e->trainer_owned ? ra->trainer_uid : ra->uid;
    int fd = own_dir(dfd, path, shown, uid, ra->gid, e->dir_mode);

    own_file(fd, shown, "data.mdb", uid, ra->gid, e->data_mode);
    own_file(fd, shown, "lock.mdb", uid, ra->gid, e->lock_mode);
    return fd;
}

/* Privileged, before any fork: the store's files as the processes need them (docs/threat-model.md,
 * "Processes and their powers"). With daemon.trainer_user the trainer reads the main
 * environment through daemon.user's group (folder 0750, data.mdb 0640) and owns checkpoints/
 * (2750, data.mdb 0640: the monitor reads it through the group); LMDB writes its lock file
 * even for a read transaction, so both lock.mdb are 0660. The files are made here when
 * missing, because LMDB would make them 0600 for their creator alone. Without
 * trainer_user, a checkpoints/ left to another user by an earlier start goes back to
 * daemon.user with the modes LMDB gives (0700, 0600). Done on every start as root, so that
 * a file made by hand (or by a cwtctl run as root) is put right by a restart. cwtd.service
 * does it as root in ExecStartPre= (cwtd --prepare-store), so that the daemon itself needs
 * neither CAP_CHOWN nor CAP_FOWNER: started with CAP_SETUID and CAP_SETGID alone, this finds
 * the files right and changes nothing, or fails on the first chown with its name. */
static void prepare_store(const struct cwt_config *cfg, const struct run_as *ra)
{
    char ckpt[PATH_MAX];
    struct stat sb;
    int sfd, cfd;

    if (!ra->drop)
        return;
    if (file_join(ckpt, sizeof(ckpt), cfg->store_dir, store_env_modes[1].dir) != 0)
        fatalx("store path too long");
    if (!ra->trainer) {
        /* Nothing to undo unless an earlier start gave checkpoints/ to a trainer_user. */
        if (lstat(ckpt, &sb) != 0 || !S_ISDIR(sb.st_mode) || sb.st_uid == ra->uid)
            return;
        cfd = own_dir(AT_FDCWD, ckpt, ckpt, ra->uid, ra->gid, 0700);
        own_file(cfd, ckpt, "data.mdb", ra->uid, ra->gid, 0600);
        own_file(cfd, ckpt, "lock.mdb", ra->uid, ra->gid, 0600);
        if (close(cfd) != 0)
            fatal("%s", ckpt);
        log_info("%s belongs to %s again: daemon.trainer_user is not set", ckpt, cfg->user);
        return;
    }
    sfd = own_env(AT_FDCWD, cfg->store_dir, cfg->store_dir, &store_env_modes[0], ra);
    cfd = own_env(sfd, store_env_modes[1].dir, ckpt, &store_env_modes[1], ra);
    if (close(cfd) != 0 || close(sfd) != 0)
        fatal("%s", cfg->store_dir);
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

/* The connection to daemon.trainer_socket, where the service manager starts a trainer
 * supervisor as trainer_user for each connection (cwtd-trainer.socket, Accept=yes): the
 * socketpair of the forking start, made by the service manager instead of a privileged cwtd.
 * SO_PASSCRED is on before the connection, so the first message on it carries the sender's
 * uid as the kernel knows it; the monitor checks it before it sends a job (monitor.c).
 * Returns the socket, or -1 after one sentence. */
static int trainer_connect(const struct cwt_config *cfg)
{
    struct sockaddr_un sa;
    int fd, on = 1;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    /* config_load keeps the path within sun_path. */
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", cfg->trainer_socket);
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fatal("socket");
    if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) != 0)
        fatal("setsockopt(SO_PASSCRED)");
    if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) != 0) {
        log_errorx("cannot connect to the trainer socket %s (daemon.trainer_socket in %s): %s; "
                   "start the unit that listens there (the packaged cwtd.service starts "
                   "cwtd-trainer.socket), or remove daemon.trainer_socket",
                   cfg->trainer_socket, cfg->path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* The first descriptor the service manager passes (sd_listen_fds(3)). */
#define LISTEN_FDS_START 3

/* cwtd --trainer: the trainer supervisor for one connection to daemon.trainer_socket, as the
 * service manager starts it (LISTEN_PID and LISTEN_FDS=1, the connection as descriptor 3).
 * The unit decides the user, so this checks what the forking start guarantees itself: the
 * process is daemon.trainer_user (not root), with daemon.user's primary group (the store's),
 * and the peer is daemon.user; another local user allowed to connect would otherwise get a
 * trainer that reads the images. Returns the exit code of a refusal; never returns else. */
static int trainer_for_service_manager(const struct cwt_config *cfg,
                                       const struct cwt_roster *roster)
{
    const char *pid_env = getenv("LISTEN_PID"), *fds_env = getenv("LISTEN_FDS");
    const int fd = LISTEN_FDS_START;
    struct passwd *pw, *dpw;
    struct ucred peer;
    socklen_t len = sizeof(peer), tlen;
    uid_t tuid;
    int type = 0;
    char *end = NULL;
    long lp = pid_env != NULL ? strtol(pid_env, &end, 10) : 0;

    if (pid_env == NULL || end == NULL || *end != '\0' || lp != (long)getpid() || fds_env == NULL ||
        strcmp(fds_env, "1") != 0) {
        log_errorx("cwtd --trainer serves one connection that the service manager passes "
                   "(cwtd-trainer.socket, Accept=yes), and was given none (LISTEN_FDS)");
        return 1;
    }
    (void)unsetenv("LISTEN_PID");
    (void)unsetenv("LISTEN_FDS");
    (void)unsetenv("LISTEN_FDNAMES");
    tlen = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_SEQPACKET ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) {
        log_errorx("cwtd --trainer: descriptor 3 is not a connected sequential-packet socket; "
                   "the socket unit must use ListenSequentialPacket= and Accept=yes");
        return 1;
    }
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
        fatal("fcntl");
    if (cfg->trainer_user[0] == '\0' || cfg->user[0] == '\0') {
        log_errorx("cwtd --trainer needs daemon.user and daemon.trainer_user in %s: the monitor's "
                   "user and the user this trainer runs as",
                   cfg->path);
        return 1;
    }
    pw = getpwnam(cfg->trainer_user);
    if (pw == NULL) {
        log_errorx("user %s (daemon.trainer_user in %s) does not exist", cfg->trainer_user,
                   cfg->path);
        return 1;
    }
    tuid = pw->pw_uid;
    if (tuid == 0 || getuid() != tuid || geteuid() != tuid) {
        log_errorx("cwtd --trainer runs as uid %u, but daemon.trainer_user in %s is %s (uid %u), "
                   "which must not be root; run the trainer's unit as that user (User= of "
                   "cwtd-trainer@.service)",
                   (unsigned)geteuid(), cfg->path, cfg->trainer_user, (unsigned)tuid);
        return 1;
    }
    dpw = getpwnam(cfg->user);
    if (dpw == NULL || dpw->pw_uid == tuid) {
        log_errorx("daemon.user %s in %s does not exist or has the trainer's uid", cfg->user,
                   cfg->path);
        return 1;
    }
    if (getgid() != dpw->pw_gid || getegid() != dpw->pw_gid) {
        log_errorx("cwtd --trainer runs with group %u, but the store is read through daemon.user's "
                   "group %u; set Group= of cwtd-trainer@.service to it",
                   (unsigned)getegid(), (unsigned)dpw->pw_gid);
        return 1;
    }
    if (peer.uid != dpw->pw_uid) {
        log_errorx("cwtd --trainer: the process that connected (pid %d, uid %u) is not daemon.user "
                   "%s; refused",
                   (int)peer.pid, (unsigned)peer.uid, cfg->user);
        return 1;
    }
    no_core_dumps();
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
    check_store_reachable(cfg, dpw->pw_gid);
    log_info("trainer supervisor: running as user %s for the monitor %d", cfg->trainer_user,
             (int)peer.pid);
    trainer_supervisor_main(cfg, roster, fd);
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
        {"version", no_argument, NULL, 'V'},      {"prepare-store", no_argument, NULL, 'P'},
        {"trainer", no_argument, NULL, 'T'},      {NULL, 0, NULL, 0},
    };
    static struct cwt_config cfg;
    static struct cwt_roster roster;
    struct site_keys pub = {0};
    struct keyproc_client kp;
    struct run_as ra;
    const char *config_path = NULL;
    char err[CWT_ERRLEN];
    int foreground = 0, debug = 0, prepare_only = 0, trainer_only = 0, opt, sp[2];
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
        case 'P':
            prepare_only = 1;
            break;
        case 'T':
            trainer_only = 1;
            break;
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
    /* --prepare-store: the file-mode step alone, as root, for cwtd.service's ExecStartPre=.
     * It reads the configuration only: the roster and keys are the daemon's to check. */
    if (prepare_only) {
        if (geteuid() != 0) {
            log_errorx("cwtd --prepare-store changes owners and modes and needs root");
            return 1;
        }
        if (resolve_users(&cfg, &ra) != 0)
            return 1;
        prepare_store(&cfg, &ra);
        return 0;
    }
    if (roster_load(cfg.roster_path, &roster, err, sizeof(err)) != 0) {
        log_errorx("%s", err);
        return 2;
    }
    /* --trainer: no key, no state and no bundle is any business of the trainer's. */
    if (trainer_only)
        return trainer_for_service_manager(&cfg, &roster);
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
    /* Exit 1, as these refusals always were (cwtd(8), EXIT STATUS). */
    if (resolve_users(&cfg, &ra) != 0)
        return 1;
    prepare_store(&cfg, &ra);
    /* With trainer_user, the privileged process forks the trainer supervisor below, after
     * daemonize (a supervisor forked earlier would be killed by its parent-death signal when
     * daemonize's parent exits), so the initial weights are read before the change of user:
     * their hash is checked against the roster whoever reads them. */
    if (!ra.fork_trainer)
        become_daemon_user(&cfg, &ra);
    if (load_init(&roster, &init, &init_len) != 0)
        return 2;
    no_core_dumps();
    if (!foreground)
        daemonize();
    signal(SIGPIPE, SIG_IGN);
    /* A write past RLIMIT_FSIZE must fail with EFBIG (a local error that holds the inbox
     * file), not kill the daemon. */
    signal(SIGXFSZ, SIG_IGN);

    /* The trainer side is forked before any secret key is loaded; with trainer_user, by the
     * privileged process, which gives it that user while this process becomes daemon.user.
     * With daemon.trainer_socket the service manager starts it, and there is no pid to
     * reap or signal: the closed socket ends it. */
    if (cfg.trainer_socket[0] != '\0') {
        sp[0] = trainer_connect(&cfg);
        if (sp[0] < 0)
            return 1;
        pid = -1;
    } else {
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0)
            fatal("socketpair");
        pid = fork();
        if (pid < 0)
            fatal("fork");
        if (pid == 0) {
            close(sp[0]);
            if (ra.fork_trainer)
                become_trainer_user(&cfg, &ra);
            trainer_supervisor_main(&cfg, &roster, sp[1]);
        }
        close(sp[1]);
    }
    if (ra.fork_trainer)
        become_daemon_user(&cfg, &ra);
    /* The key process is forked after the trainer supervisor, so that no trainer ever holds
     * a descriptor to it, and it alone loads the secret keys. */
    keyproc_start(&cfg, &kp);
    return monitor_main(&cfg, &roster, sp[0], pid, &kp, foreground, init, init_len);
}
