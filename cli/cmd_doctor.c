/*
 * cmd_doctor.c - `cwtctl doctor`: checks that a site can run and says how to fix what is
 * wrong, one sentence per problem.
 *
 * Every check ends "ok", "warn" or "fail". A failure is something that stops cwtd or breaks
 * the federation (a secret key readable by others, a site id that is not the keys', an inbox
 * the daemon cannot write); a warning is something to look at that does not (the daemon not
 * running, little disk left). Exit 0 when nothing failed, 1 otherwise. Doctor reads and stats;
 * it changes nothing, loads no secret key and writes no audit record, so anyone may run it.
 */
#include <errno.h>
#include <grp.h>
#include <linux/landlock.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>
#include <linux/seccomp.h>

#include "cli/cli.h"
#include "common/fileio.h"
#include "crypto/keys.h"
#include "engine/engine.h"
#include "storage/store.h"

/* Below this much free space on the store's file system, a warning: one ingest or a few
 * checkpoints of a resnet can take that. */
#define DOCTOR_MIN_FREE (2ULL << 30)
/* A clock before this year is unset (no RTC battery, no NTP); bundles would carry dates
 * that expire or never expire wrongly. */
#define DOCTOR_MIN_YEAR   2024
#define DOCTOR_MAX_CHECKS 48
/* Device indices tried when listing compute devices. */
#define DOCTOR_MAX_DEVICES 8

enum status { ST_OK = 0, ST_WARN, ST_FAIL };
static const char *const status_names[] = {"ok", "warn", "fail"};

struct check {
    char name[32];
    enum status status;
    char message[1024];
    char fix[768];
};

struct doctor {
    struct check checks[DOCTOR_MAX_CHECKS];
    int n;
    struct cwt_config cfg;
    struct cwt_roster *roster;
    int have_cfg, have_roster;
    /* The user cwtd runs as: daemon.user, else the owner of the site folder. */
    int have_user;
    uid_t uid;
    gid_t gid;
    char user[CWT_NAME_MAX + 1];
    gid_t groups[256];
    int ngroups;
    /* daemon.trainer_user, when set and usable: the owner of checkpoints/. */
    int have_trainer;
    uid_t trainer_uid;
};

/* Records a check. fix may be NULL (nothing to do). */
static void add(struct doctor *d, const char *name, enum status st, const char *fix,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void add(struct doctor *d, const char *name, enum status st, const char *fix,
                const char *fmt, ...)
{
    struct check *c;
    va_list ap;

    if (d->n >= DOCTOR_MAX_CHECKS)
        return;
    c = &d->checks[d->n++];
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->status = st;
    va_start(ap, fmt);
    vsnprintf(c->message, sizeof(c->message), fmt, ap);
    va_end(ap);
    snprintf(c->fix, sizeof(c->fix), "%s", fix != NULL ? fix : "");
}

static void check_config(struct doctor *d, const struct cli_globals *g)
{
    char err[CWT_ERRLEN], fix[768];
    int rc;

    /* The packaged configuration is root:cwt 0640: a user outside the group cannot read it,
     * which is no fault of the file. */
    if (access(g->config_path, R_OK) != 0 && errno == EACCES) {
        add(d, "config", ST_FAIL,
            "run 'cwtctl doctor' as root, or as a member of the group that owns the file",
            "%s is not readable by this user", g->config_path);
        return;
    }
    rc = config_load(g->config_path, &d->cfg, err, sizeof(err));
    if (rc == CWT_ENOENT) {
        add(d, "config", ST_FAIL,
            "run 'cwtctl init --system --site-id ID' as root, or give the site's file with -c "
            "FILE",
            "no site configuration at %s", g->config_path);
        return;
    }
    if (rc != 0) {
        snprintf(fix, sizeof(fix), "correct the line named in %s (keys in cwtd.conf(5))",
                 g->config_path);
        add(d, "config", ST_FAIL, fix, "%s", err);
        return;
    }
    d->have_cfg = 1;
    add(d, "config", ST_OK, NULL, "%s parses (site %s)", d->cfg.path, d->cfg.site_id);
    rc = roster_load(d->cfg.roster_path, d->roster, err, sizeof(err));
    if (rc != 0) {
        snprintf(fix, sizeof(fix),
                 "correct the line named (keys in cwt-roster(5)), or install the federation's "
                 "roster as %s",
                 d->cfg.roster_path);
        add(d, "roster", ST_FAIL, fix, "%s", err);
        return;
    }
    d->have_roster = 1;
    add(d, "roster", ST_OK, NULL, "%s parses: federation %s, %u sites", d->cfg.roster_path,
        d->roster->federation, d->roster->n_sites);
}

/* The user cwtd runs as, and whether it exists. */
static void check_user(struct doctor *d)
{
    const struct passwd *pw;
    struct stat sb;
    char fix[768];
    int n = (int)(sizeof(d->groups) / sizeof(d->groups[0]));

    if (d->cfg.user[0] != '\0') {
        pw = getpwnam(d->cfg.user);
        if (pw == NULL) {
            snprintf(fix, sizeof(fix),
                     "install the cwt package (it makes the user cwt), or set daemon.user in "
                     "%s to the user that owns %s",
                     d->cfg.path, d->cfg.dir);
            add(d, "service-user", ST_FAIL, fix, "the service user %s does not exist", d->cfg.user);
            return;
        }
        add(d, "service-user", ST_OK, NULL, "cwtd runs as %s (uid %u)", pw->pw_name,
            (unsigned)pw->pw_uid);
    } else {
        if (stat(d->cfg.dir, &sb) != 0) {
            add(d, "service-user", ST_FAIL, "run 'cwtctl init' to make the site",
                "the site folder %s is missing (%s)", d->cfg.dir, strerror(errno));
            return;
        }
        pw = getpwuid(sb.st_uid);
        if (pw == NULL) {
            add(d, "service-user", ST_WARN, "chown the site folder to the user that runs cwtd",
                "the site folder %s belongs to uid %u, which has no user name", d->cfg.dir,
                (unsigned)sb.st_uid);
            return;
        }
        add(d, "service-user", ST_OK, NULL,
            "daemon.user is empty: cwtd runs as whoever starts it, which should be %s, the "
            "owner of %s",
            pw->pw_name, d->cfg.dir);
    }
    d->have_user = 1;
    d->uid = pw->pw_uid;
    d->gid = pw->pw_gid;
    snprintf(d->user, sizeof(d->user), "%s", pw->pw_name);
    if (getgrouplist(pw->pw_name, pw->pw_gid, d->groups, &n) < 0)
        n = (int)(sizeof(d->groups) / sizeof(d->groups[0]));
    d->ngroups = n;
}

/* Whether the service user may write (and enter) a folder with this stat. */
static int user_can_write(const struct doctor *d, const struct stat *sb)
{
    if (d->uid == 0)
        return 1;
    if (sb->st_uid == d->uid)
        return (sb->st_mode & S_IWUSR) && (sb->st_mode & S_IXUSR);
    for (int i = 0; i < d->ngroups; i++)
        if (d->groups[i] == sb->st_gid)
            return (sb->st_mode & S_IWGRP) && (sb->st_mode & S_IXGRP);
    return (sb->st_mode & S_IWOTH) && (sb->st_mode & S_IXOTH);
}

static void check_site_id(struct doctor *d)
{
    char err[CWT_ERRLEN], msg[2 * CWT_ERRLEN], fix[768];
    struct site_keys k;
    int at;

    if (keys_load_public(d->cfg.keys_dir, &k, err, sizeof(err)) != 0) {
        add(d, "site-id", ST_FAIL,
            "restore keys/ from the site's backup, or make a new site with 'cwtctl init'", "%s",
            err);
        return;
    }
    if (cli_site_id_mismatch(&d->cfg, msg, sizeof(msg)) != 0) {
        snprintf(fix, sizeof(fix), "set site_id = \"%s\" in %s", k.site_id, d->cfg.path);
        add(d, "site-id", ST_FAIL, fix,
            "the keys in %s belong to site %s but the configuration says %s", d->cfg.keys_dir,
            k.site_id, d->cfg.site_id);
        return;
    }
    add(d, "site-id", ST_OK, NULL, "the configuration and the keys both name site %s", k.site_id);
    if (!d->have_roster)
        return;
    at = roster_find_site(d->roster, d->cfg.site_id);
    /* An empty roster is a site being set up, not a broken one. */
    if (at < 0 && d->roster->n_sites == 0) {
        snprintf(fix, sizeof(fix),
                 "install the federation's roster as %s (coordinator: 'cwtctl roster add' each "
                 "site's key line, this one's included); cwtd starts once this site is in it",
                 d->cfg.roster_path);
        add(d, "roster-site", ST_WARN, fix, "the roster %s lists no sites yet", d->cfg.roster_path);
        return;
    }
    if (at < 0) {
        snprintf(fix, sizeof(fix),
                 "install the federation's roster as %s, or (coordinator) add this site with "
                 "'cwtctl roster add' and its 'cwtctl key show' line",
                 d->cfg.roster_path);
        add(d, "roster-site", ST_FAIL, fix, "this site (%s) is not in the roster %s",
            d->cfg.site_id, d->cfg.roster_path);
        return;
    }
    if (memcmp(k.sign_pk, d->roster->sites[at].sign_pk, sizeof(k.sign_pk)) != 0 ||
        memcmp(k.box_pk, d->roster->sites[at].box_pk, sizeof(k.box_pk)) != 0) {
        add(d, "roster-site", ST_FAIL,
            "send this site's 'cwtctl key show' line to the coordinator and install the "
            "corrected roster",
            "the roster's key for %s is not this site's key (%s/site.pub)", d->cfg.site_id,
            d->cfg.keys_dir);
        return;
    }
    {
        uint8_t fp[32];
        char text[96] = "";

        if (roster_fingerprint(d->roster, fp) == 0)
            roster_fingerprint_text(fp, text, sizeof(text));
        add(d, "roster-site", ST_OK, NULL,
            "this site is number %d of %u in the roster, with its own key; fingerprint %s", at + 1,
            d->roster->n_sites, text);
    }
}

/* The command that fixes a key file's mode (to mode) and owner, naming only what is wrong. */
static void fix_mode_owner(const struct doctor *d, const struct stat *sb, const char *path,
                           const char *mode, char *fix, size_t fixlen)
{
    int bad_mode = (sb->st_mode & 077) != 0, bad_owner = d->have_user && sb->st_uid != d->uid;

    if (bad_mode && bad_owner)
        snprintf(fix, fixlen, "run 'chown %s %s && chmod %s %s'", d->user, path, mode, path);
    else if (bad_owner)
        snprintf(fix, fixlen, "run 'chown %s %s'", d->user, path);
    else
        snprintf(fix, fixlen, "run 'chmod %s %s'", mode, path);
}

/* keys/ 0700 and the secret files 0600, all the service user's. */
static void check_keys(struct doctor *d)
{
    static const char *const secrets[] = {"sign.key", "box.key"};
    char path[PATH_MAX], fix[768];
    struct stat sb;

    if (stat(d->cfg.keys_dir, &sb) != 0) {
        add(d, "keys", ST_FAIL, "restore keys/ from the site's backup",
            "the keys folder %s is missing (%s)", d->cfg.keys_dir, strerror(errno));
        return;
    }
    if ((sb.st_mode & 077) != 0 || (d->have_user && sb.st_uid != d->uid)) {
        fix_mode_owner(d, &sb, d->cfg.keys_dir, "700", fix, sizeof(fix));
        add(d, "keys", ST_FAIL, fix, "%s has mode %03o and owner uid %u; it must be 0700 and %s's",
            d->cfg.keys_dir, (unsigned)(sb.st_mode & 0777), (unsigned)sb.st_uid,
            d->have_user ? d->user : "the service user");
        return;
    }
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        if (file_join(path, sizeof(path), d->cfg.keys_dir, secrets[i]) != 0 ||
            stat(path, &sb) != 0) {
            add(d, "keys", ST_FAIL, "restore keys/ from the site's backup",
                "the secret key %s/%s is missing", d->cfg.keys_dir, secrets[i]);
            return;
        }
        if ((sb.st_mode & 077) != 0 || (d->have_user && sb.st_uid != d->uid)) {
            fix_mode_owner(d, &sb, path, "600", fix, sizeof(fix));
            add(d, "keys", ST_FAIL, fix,
                "the secret key %s has mode %03o and owner uid %u; it must be 0600 and %s's "
                "(cwtd refuses it otherwise)",
                path, (unsigned)(sb.st_mode & 0777), (unsigned)sb.st_uid,
                d->have_user ? d->user : "the service user");
            return;
        }
    }
    add(d, "keys", ST_OK, NULL, "%s is 0700, sign.key and box.key are 0600%s%s", d->cfg.keys_dir,
        d->have_user ? ", all owned by " : "", d->have_user ? d->user : "");
}

/* The store folder and every file in it belong to the service user: an LMDB file that root
 * made by accident (a command run as root) locks the daemon out. */
static void check_store(struct doctor *d)
{
    char fix[768], bad[PATH_MAX] = "";
    struct dirent *de;
    struct stat sb;
    DIR *dir;

    if (stat(d->cfg.store_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        add(d, "store", ST_FAIL, "run 'cwtctl init' to make the site, or restore the store",
            "the store folder %s is missing", d->cfg.store_dir);
        return;
    }
    if (!d->have_user) {
        add(d, "store", ST_OK, NULL, "%s exists", d->cfg.store_dir);
        return;
    }
    if (sb.st_uid != d->uid || !user_can_write(d, &sb))
        snprintf(bad, sizeof(bad), "%s", d->cfg.store_dir);
    dir = opendir(d->cfg.store_dir);
    while (bad[0] == '\0' && dir != NULL && (de = readdir(dir)) != NULL) {
        char path[PATH_MAX];

        if (de->d_name[0] == '.' || file_join(path, sizeof(path), d->cfg.store_dir, de->d_name))
            continue;
        /* checkpoints/ is the trainer's under daemon.trainer_user (check_trainer). */
        if (d->have_trainer && strcmp(de->d_name, "checkpoints") == 0)
            continue;
        if (lstat(path, &sb) == 0 && sb.st_uid != d->uid)
            snprintf(bad, sizeof(bad), "%s", path);
    }
    if (dir != NULL)
        closedir(dir);
    if (bad[0] != '\0') {
        snprintf(fix, sizeof(fix), "run 'chown -R %s: %s' (and run store commands as %s)", d->user,
                 d->cfg.store_dir, d->user);
        add(d, "store", ST_FAIL, fix, "%s does not belong to %s, who runs cwtd", bad, d->user);
        return;
    }
    add(d, "store", ST_OK, NULL, "%s and its files belong to %s", d->cfg.store_dir, d->user);
}

/* What one of the packaged units says, from its unit file and drop-ins as systemd would merge
 * them: the first unit file found in the search path, then every drop-in *.conf of NAME.d/, in
 * name order, the one in the earlier folder winning a shared name. Only the keys that doctor
 * checks are read: User= and Group= of [Service], ListenSequentialPacket= of [Socket]. Not
 * read: the drop-in folders of a name's prefixes (cwtd-.service.d/) or of the unit type
 * (service.d/), and specifiers (%i): the packaged units use none, and an override put there
 * goes unseen. A unit file found first that is a link to /dev/null is masked, as systemctl
 * mask leaves it, and nothing more is read. */
#define UNIT_MAX_LISTEN 4

struct unit_file {
    int found;
    int masked; /* the unit file found first is a link to /dev/null (systemctl mask) */
    char user[CWT_NAME_MAX + 1];  /* User=, "" when unset (root) */
    char group[CWT_NAME_MAX + 1]; /* Group=, "" when unset (User='s primary group) */
    char user_from[PATH_MAX];     /* the file of the last User= */
    char group_from[PATH_MAX];    /* ... and of the last Group= */
    /* ListenSequentialPacket= paths; an empty assignment clears the list. Longer than a
     * socket path (107 bytes) is kept cut, which matches no daemon.trainer_socket. */
    char listen[UNIT_MAX_LISTEN][sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
    int nlisten;
};

static const char *const unit_dirs[] = {"/etc/systemd/system", "/run/systemd/system",
                                        "/usr/lib/systemd/system", "/lib/systemd/system"};

/* Reads the keys above from one unit file or drop-in into u; a missing file adds nothing. */
static void unit_read(struct unit_file *u, const char *path)
{
    char line[1024];
    int service = 0, socket = 0;
    FILE *f = fopen(path, "re");

    if (f == NULL)
        return;
    while (fgets(line, sizeof(line), f) != NULL) {
        char *k = line, *v, *end;

        k += strspn(k, " \t");
        end = k + strlen(k);
        while (end > k && (end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (*k == '[') {
            service = strcmp(k, "[Service]") == 0;
            socket = strcmp(k, "[Socket]") == 0;
            continue;
        }
        if (*k == '#' || *k == ';' || (v = strchr(k, '=')) == NULL)
            continue;
        *v++ = '\0';
        v += strspn(v, " \t");
        for (end = k + strlen(k); end > k && (end[-1] == ' ' || end[-1] == '\t');)
            *--end = '\0';
        if (service && strcmp(k, "User") == 0) {
            snprintf(u->user, sizeof(u->user), "%s", v);
            snprintf(u->user_from, sizeof(u->user_from), "%s", path);
        } else if (service && strcmp(k, "Group") == 0) {
            snprintf(u->group, sizeof(u->group), "%s", v);
            snprintf(u->group_from, sizeof(u->group_from), "%s", path);
        } else if (socket && strcmp(k, "ListenSequentialPacket") == 0) {
            if (*v == '\0')
                u->nlisten = 0;
            else if (u->nlisten < UNIT_MAX_LISTEN)
                snprintf(u->listen[u->nlisten++], sizeof(u->listen[0]), "%s", v);
        }
    }
    /* Read only: a failing close loses nothing. */
    (void)fclose(f);
}

/* Drop-ins apply in the order of their names, whatever their folders. */
static int base_cmp(const void *a, const void *b)
{
    return strcmp(strrchr(*(char *const *)a, '/') + 1, strrchr(*(char *const *)b, '/') + 1);
}

/* Reads the unit name ("cwtd.service", "cwtd-trainer@.service") and its drop-ins into u;
 * u->found is 0 when no folder of the search path holds the unit file. */
static void unit_load(struct unit_file *u, const char *name)
{
    char path[PATH_MAX], *names[64];
    size_t n = 0;

    memset(u, 0, sizeof(*u));
    for (size_t i = 0; i < sizeof(unit_dirs) / sizeof(unit_dirs[0]) && !u->found; i++) {
        snprintf(path, sizeof(path), "%s/%s", unit_dirs[i], name);
        if (access(path, F_OK) == 0) {
            char real[PATH_MAX];

            u->found = 1;
            u->masked = realpath(path, real) != NULL && strcmp(real, "/dev/null") == 0;
            unit_read(u, path);
        }
    }
    if (!u->found || u->masked)
        return;
    for (size_t i = 0; i < sizeof(unit_dirs) / sizeof(unit_dirs[0]); i++) {
        DIR *dir;
        struct dirent *e;

        snprintf(path, sizeof(path), "%s/%s.d", unit_dirs[i], name);
        if ((dir = opendir(path)) == NULL)
            continue;
        while ((e = readdir(dir)) != NULL && n < sizeof(names) / sizeof(names[0])) {
            size_t len = strlen(e->d_name), j;

            if (len < 6 || strcmp(e->d_name + len - 5, ".conf") != 0)
                continue;
            for (j = 0; j < n && strcmp(strrchr(names[j], '/') + 1, e->d_name) != 0; j++)
                ;
            if (j < n) /* an earlier folder holds this name */
                continue;
            if ((names[n] = malloc(strlen(path) + len + 2)) == NULL)
                break;
            snprintf(names[n], strlen(path) + len + 2, "%s/%s", path, e->d_name);
            n++;
        }
        (void)closedir(dir); /* read only, as above */
    }
    /* Name order, whatever the folder. */
    qsort(names, n, sizeof(names[0]), base_cmp);
    for (size_t i = 0; i < n; i++) {
        unit_read(u, names[i]);
        free(names[i]);
    }
}

/* A group's name, else its number, into buf. */
static const char *group_name(gid_t gid, char *buf, size_t len)
{
    const struct group *gr = getgrgid(gid);

    if (gr != NULL)
        snprintf(buf, len, "%s", gr->gr_name);
    else
        snprintf(buf, len, "%u", (unsigned)gid);
    return buf;
}

/* The uid that User= names (a name or a number); -1 when it names none. Unset is root. */
static long unit_uid(const char *user)
{
    const struct passwd *pw;
    char *end;
    long v;

    if (user[0] == '\0')
        return 0;
    if ((pw = getpwnam(user)) != NULL)
        return (long)pw->pw_uid;
    v = strtol(user, &end, 10);
    return *end == '\0' && v >= 0 ? v : -1;
}

/* The gid that Group= names (a name or a number), or User='s primary group when Group= is
 * unset; -1 when it names none. */
static long unit_gid(const char *group, const char *user)
{
    const struct passwd *pw;
    const struct group *gr;
    char *end;
    long v;

    if (group[0] == '\0') {
        pw = user[0] == '\0' ? getpwuid(0) : getpwnam(user);
        return pw != NULL ? (long)pw->pw_gid : -1;
    }
    if ((gr = getgrnam(group)) != NULL)
        return (long)gr->gr_gid;
    v = strtol(group, &end, 10);
    return *end == '\0' && v >= 0 ? v : -1;
}

/* Under the packaged configuration and cwtd.service, whether the trainer's units agree with
 * daemon.trainer_user and daemon.trainer_socket (check_trainer_user's rules); one finding,
 * failed or not. */
static void check_trainer_units(struct doctor *d, uid_t tuid)
{
    struct unit_file svc, sock;
    char fix[768], grp[CWT_NAME_MAX + 1], who[PATH_MAX + 96];
    long uid, gid;
    int listens = 0;

    unit_load(&svc, "cwtd-trainer@.service");
    unit_load(&sock, "cwtd-trainer.socket");
    if (svc.masked || sock.masked) {
        add(d, "trainer-user", ST_FAIL,
            svc.masked ? "systemctl unmask cwtd-trainer@.service"
                       : "systemctl unmask cwtd-trainer.socket",
            "%s is masked (a link to /dev/null): no trainer can start, and cwtd stops at start",
            svc.masked ? "cwtd-trainer@.service" : "cwtd-trainer.socket");
        return;
    }
    if (!svc.found) {
        add(d, "trainer-user", ST_FAIL,
            "reinstall the cwt package (it installs cwtd-trainer@.service and "
            "cwtd-trainer.socket)",
            "daemon.trainer_socket is set, but no cwtd-trainer@.service is installed to start "
            "the trainer as %s",
            d->cfg.trainer_user);
        return;
    }
    snprintf(fix, sizeof(fix),
             "make User= of cwtd-trainer@.service (see 'systemctl cat cwtd-trainer@.service') "
             "and daemon.trainer_user in %s name the same user",
             d->cfg.path);
    uid = unit_uid(svc.user);
    if (uid != (long)tuid) {
        if (svc.user[0] != '\0')
            snprintf(who, sizeof(who), "%s (User= in %s)", svc.user, svc.user_from);
        else
            snprintf(who, sizeof(who), "root (it sets no User=)");
        add(d, "trainer-user", ST_FAIL, fix,
            "cwtd-trainer@.service starts the trainer as %s, but daemon.trainer_user is %s: cwtd "
            "--trainer refuses to run so",
            who, d->cfg.trainer_user);
        return;
    }
    snprintf(fix, sizeof(fix),
             "set Group= of cwtd-trainer@.service (see 'systemctl cat cwtd-trainer@.service') "
             "to %s, the primary group of daemon.user %s",
             group_name(d->gid, grp, sizeof(grp)), d->user);
    gid = unit_gid(svc.group, svc.user);
    if (gid != (long)d->gid) {
        if (svc.group[0] != '\0')
            snprintf(who, sizeof(who), "group %s (Group= in %s)", svc.group, svc.group_from);
        else
            snprintf(who, sizeof(who), "the primary group of %s (it sets no Group=)",
                     d->cfg.trainer_user);
        add(d, "trainer-user", ST_FAIL, fix,
            "cwtd-trainer@.service starts the trainer as %s with %s, but the trainer reads the "
            "store through group %s of daemon.user %s: cwtd --trainer refuses to run so",
            d->cfg.trainer_user, who, grp, d->user);
        return;
    }
    for (int i = 0; i < sock.nlisten; i++)
        listens |= strcmp(sock.listen[i], d->cfg.trainer_socket) == 0;
    if (!sock.found || !listens) {
        snprintf(fix, sizeof(fix),
                 "make daemon.trainer_socket in %s and ListenSequentialPacket= of "
                 "cwtd-trainer.socket (see 'systemctl cat cwtd-trainer.socket') the same path; "
                 "the package's is " CLI_SYSTEM_TRAINER_SOCKET,
                 d->cfg.path);
        if (!sock.found)
            add(d, "trainer-user", ST_FAIL,
                "reinstall the cwt package (it installs cwtd-trainer@.service and "
                "cwtd-trainer.socket)",
                "no cwtd-trainer.socket is installed to start the trainer as %s for a "
                "connection to %s (daemon.trainer_socket)",
                d->cfg.trainer_user, d->cfg.trainer_socket);
        else
            add(d, "trainer-user", ST_FAIL, fix,
                "cwtd-trainer.socket listens on %s, but daemon.trainer_socket is %s: cwtd would "
                "find no trainer %s there",
                sock.nlisten > 0 ? sock.listen[0] : "no ListenSequentialPacket= path",
                d->cfg.trainer_socket, d->cfg.trainer_user);
        return;
    }
    add(d, "trainer-user", ST_OK, NULL,
        "the trainer runs as %s (uid %u) with group %s of %s, started by the service manager "
        "through %s (cwtd-trainer@.service)",
        d->cfg.trainer_user, (unsigned)tuid, grp, d->user, d->cfg.trainer_socket);
}

/* Who the trainer runs as, and who starts it.
 * - daemon.trainer_user unset: the daemon's user, in cwtd's own service. Under the packaged
 *   configuration and cwtd.service that is a failure: that unit has no GPU device and no
 *   executable memory (oneDNN's JIT), so the trainer must run in cwtd-trainer@.service as
 *   cwt-train, which daemon.trainer_user and daemon.trainer_socket select.
 * - daemon.trainer_user set: cwtd refuses a user that does not exist, is root or is
 *   daemon.user, or comes without a daemon.user. Then:
 *   - daemon.trainer_socket set: the service manager starts the trainer as that user for each
 *     connection. Under the packaged configuration and cwtd.service, cwtd-trainer@.service
 *     (with its drop-ins) must have User= that user and Group= daemon.user's primary group,
 *     which cwtd --trainer checks at start, and cwtd-trainer.socket must listen on that path;
 *     elsewhere whatever serves the socket is the operator's.
 *   - daemon.trainer_socket unset: cwtd forks the trainer and must be started as root or with
 *     CAP_SETUID and CAP_SETGID. The packaged cwtd.service grants neither, so under it that is
 *     a failure. */
static void check_trainer_user(struct doctor *d, const struct cli_globals *g)
{
    const struct passwd *pw;
    struct unit_file svc = {0};
    char fix[768], grp[CWT_NAME_MAX + 1];

    /* The packaged configuration under the packaged units, with their drop-ins. */
    if (strcmp(g->config_path, CWT_DEFAULT_CONFIG) == 0)
        unit_load(&svc, "cwtd.service");
    if (d->cfg.trainer_user[0] == '\0') {
        if (svc.found) {
            snprintf(fix, sizeof(fix),
                     "set daemon.trainer_user = \"" CLI_SYSTEM_TRAINER_USER
                     "\" and daemon.trainer_socket = \"" CLI_SYSTEM_TRAINER_SOCKET "\" in %s, "
                     "as 'cwtctl init --system' writes them",
                     d->cfg.path);
            add(d, "trainer-user", ST_FAIL, fix,
                "daemon.trainer_user is not set, so the trainer would run in cwtd.service, "
                "which has no GPU device and no executable memory; the package runs it in "
                "cwtd-trainer@.service as " CLI_SYSTEM_TRAINER_USER);
            return;
        }
        add(d, "trainer-user", ST_OK, NULL,
            "the trainer runs as the daemon user (daemon.trainer_user is not set)");
        return;
    }
    snprintf(fix, sizeof(fix), "correct or remove daemon.trainer_user in %s", d->cfg.path);
    pw = getpwnam(d->cfg.trainer_user);
    if (pw == NULL) {
        add(d, "trainer-user", ST_FAIL, fix, "the trainer's user %s does not exist",
            d->cfg.trainer_user);
        return;
    }
    if (pw->pw_uid == 0 || d->cfg.user[0] == '\0' || !d->have_user || pw->pw_uid == d->uid) {
        add(d, "trainer-user", ST_FAIL, fix,
            "daemon.trainer_user = \"%s\" needs a daemon.user and must be neither root nor "
            "daemon.user; cwtd refuses it",
            d->cfg.trainer_user);
        return;
    }
    /* The store's owners follow daemon.trainer_user (cwtd --prepare-store), whoever starts
     * the trainer. */
    d->have_trainer = 1;
    d->trainer_uid = pw->pw_uid;
    group_name(d->gid, grp, sizeof(grp));
    if (svc.found && d->cfg.trainer_socket[0] == '\0') {
        snprintf(fix, sizeof(fix),
                 "set daemon.trainer_socket = \"" CLI_SYSTEM_TRAINER_SOCKET "\" in %s, as "
                 "'cwtctl init --system' writes it",
                 d->cfg.path);
        add(d, "trainer-user", ST_FAIL, fix,
            "daemon.trainer_user = \"%s\" without daemon.trainer_socket has cwtd start the "
            "trainer itself, but cwtd.service grants no capability to start it as another user "
            "(and has no GPU device and no executable memory)",
            d->cfg.trainer_user);
        return;
    }
    if (svc.found) {
        check_trainer_units(d, pw->pw_uid);
        return;
    }
    if (d->cfg.trainer_socket[0] != '\0') {
        add(d, "trainer-user", ST_OK, NULL,
            "the trainer runs as %s (uid %u) with group %s of %s, started by whatever serves "
            "%s (daemon.trainer_socket); cwtd needs no privilege for it",
            pw->pw_name, (unsigned)pw->pw_uid, grp, d->user, d->cfg.trainer_socket);
        return;
    }
    add(d, "trainer-user", ST_OK, NULL,
        "the trainer runs as %s (uid %u) with group %s of %s; cwtd must be started as root or "
        "with CAP_SETUID and CAP_SETGID",
        pw->pw_name, (unsigned)pw->pw_uid, grp, d->user);
}

/* One file's owner, group and mode as cwtd sets them at a start as root under
 * daemon.trainer_user; a finding of its own when they differ. Returns 1 when they match. */
static int trainer_mode(struct doctor *d, const char *path, uid_t uid, mode_t mode)
{
    char fix[768];
    struct stat sb;

    if (lstat(path, &sb) != 0) {
        /* cwtd makes the store's files at its next start as root. */
        if (errno == ENOENT)
            return 1;
        add(d, "trainer-files", ST_FAIL, "run 'cwtctl doctor' as root", "cannot stat %s: %s", path,
            strerror(errno));
        return 0;
    }
    if (sb.st_uid == uid && sb.st_gid == d->gid && (sb.st_mode & 07777) == mode)
        return 1;
    snprintf(fix, sizeof(fix), "run 'chown %u:%u %s && chmod %04o %s', or restart cwtd as root",
             (unsigned)uid, (unsigned)d->gid, path, (unsigned)mode, path);
    add(d, "trainer-files", ST_FAIL, fix,
        "%s has mode %04o, owner %u, group %u; under daemon.trainer_user it must be %04o, "
        "owner %u, group %u",
        path, (unsigned)(sb.st_mode & 07777), (unsigned)sb.st_uid, (unsigned)sb.st_gid,
        (unsigned)mode, (unsigned)uid, (unsigned)d->gid);
    return 0;
}

/* Under daemon.trainer_user the trainer reads the main environment through the daemon
 * user's group and owns checkpoints/ (docs/threat-model.md, "Processes and their powers");
 * what holds the secrets or the daemon's own state stays closed to that group. */
static void check_trainer_files(struct doctor *d)
{
    const char *closed[] = {d->cfg.inbox_dir, d->cfg.outbox_dir, NULL};
    char path[PATH_MAX], priv[PATH_MAX], fix[768];
    const char *s = d->cfg.store_dir;
    struct stat sb;
    int ok = 1;

    if (!d->have_trainer)
        return;
    for (size_t i = 0; i < STORE_ENV_COUNT; i++) {
        const struct store_env_mode *e = &store_env_modes[i];
        uid_t uid = e->trainer_owned ? d->trainer_uid : d->uid;
        char dir[PATH_MAX];

        if (e->dir[0] == '\0' ? snprintf(dir, sizeof(dir), "%s", s) >= (int)sizeof(dir)
                              : file_join(dir, sizeof(dir), s, e->dir) != 0)
            continue;
        ok &= trainer_mode(d, dir, uid, e->dir_mode);
        if (file_join(path, sizeof(path), dir, "data.mdb") == 0)
            ok &= trainer_mode(d, path, uid, e->data_mode);
        if (file_join(path, sizeof(path), dir, "lock.mdb") == 0)
            ok &= trainer_mode(d, path, uid, e->lock_mode);
    }
    if (file_join(priv, sizeof(priv), s, "cwtd-private") == 0)
        closed[sizeof(closed) / sizeof(closed[0]) - 1] = priv;
    for (size_t i = 0; i < sizeof(closed) / sizeof(closed[0]); i++) {
        if (closed[i] == NULL || stat(closed[i], &sb) != 0 || !(sb.st_mode & S_IWGRP))
            continue;
        snprintf(fix, sizeof(fix), "run 'chmod g-w %s'", closed[i]);
        add(d, "trainer-files", ST_FAIL, fix,
            "%s is writable by group %u (mode %04o), which the trainer is in", closed[i],
            (unsigned)sb.st_gid, (unsigned)(sb.st_mode & 07777));
        ok = 0;
    }
    if (ok)
        add(d, "trainer-files", ST_OK, NULL,
            "the store is 0750 with data.mdb 0640 and lock.mdb 0660, checkpoints/ is 2750 of "
            "the trainer's user; inbox, outbox and cwtd-private are closed to group %u",
            (unsigned)d->gid);
}

static void check_box(struct doctor *d, const char *name, const char *path)
{
    char fix[768];
    struct stat sb;

    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(fix, sizeof(fix), "run 'install -d -o %s -m 0750 %s'",
                 d->have_user ? d->user : "USER", path);
        add(d, name, ST_FAIL, fix, "the %s folder %s is missing", name, path);
        return;
    }
    if (sb.st_mode & S_IWOTH) {
        snprintf(fix, sizeof(fix), "run 'chmod o-w %s'", path);
        add(d, name, ST_FAIL, fix, "%s is writable by others (mode %03o); cwtd refuses it", path,
            (unsigned)(sb.st_mode & 0777));
        return;
    }
    if (d->have_user && !user_can_write(d, &sb)) {
        if (sb.st_uid == d->uid)
            snprintf(fix, sizeof(fix), "run 'chmod u+rwx %s'", path);
        else
            snprintf(fix, sizeof(fix), "run 'chown %s %s && chmod u+rwx %s'", d->user, path, path);
        add(d, name, ST_FAIL, fix, "%s (mode %03o, uid %u) is not writable by %s, who runs cwtd",
            path, (unsigned)(sb.st_mode & 0777), (unsigned)sb.st_uid, d->user);
        return;
    }
    add(d, name, ST_OK, NULL, "%s is writable by %s", path, d->have_user ? d->user : "its owner");
}

/* Landlock and seccomp probed as cwtd would use them, without applying either. */
static void check_sandbox(struct doctor *d)
{
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);

    if (abi >= 1)
        add(d, "landlock", ST_OK, NULL, "Landlock ABI %ld is available", abi);
    else if (errno == EPERM)
        add(d, "landlock", ST_FAIL,
            "allow landlock_create_ruleset, landlock_add_rule and landlock_restrict_self in the "
            "container's system-call filter (systemd-nspawn --system-call-filter=)",
            "a system-call filter around this system blocks Landlock, and cwtd refuses to start "
            "without it");
    else
        add(d, "landlock", ST_FAIL,
            "boot a kernel of 5.13 or later with Landlock enabled (lsm=...,landlock), or set "
            "daemon.allow_no_landlock = true in cwtd.conf to run without it (audited)",
            "Landlock is not available in this kernel (%s), and cwtd refuses to start without "
            "its file-system sandbox",
            strerror(errno));

    /* A NULL filter program: EFAULT means filter mode exists, EINVAL that it does not. */
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, NULL, 0, 0) == 0 || errno == EFAULT ||
        errno == EACCES)
        add(d, "seccomp", ST_OK, NULL, "seccomp filters are available");
    else
        add(d, "seccomp", ST_FAIL, "boot a kernel built with CONFIG_SECCOMP_FILTER",
            "seccomp filters are not available in this kernel (%s); cwtd needs them",
            strerror(errno));
}

/* The compute devices, through the engine: the one cwtd would use, then every device by
 * index. Isolated here so that another backend only changes this function. */
static void check_devices(struct doctor *d)
{
    char err[CWT_ERRLEN], list[1024] = "", fix[768];
    struct eng_device_info info;
    struct eng_device *dev;
    size_t len = 0;
    int rc;

    rc = eng_device_open(d->cfg.gpu_device, 0, &dev, err, sizeof(err));
    if (rc != 0) {
        snprintf(fix, sizeof(fix),
                 "install mesa-vulkan-drivers (lavapipe runs on the CPU) or the GPU's Vulkan "
                 "driver, or set gpu.device in %s",
                 d->cfg.path);
        add(d, "device", ST_FAIL, fix, "gpu.device = \"%s\": %s", d->cfg.gpu_device, err);
        return;
    }
    eng_device_get_info(dev, &info);
    eng_device_close(dev);
    /* With $CWT_VK_DEVICE set every index opens that one device: list only it. */
    if (getenv("CWT_VK_DEVICE") == NULL) {
        for (int i = 0; i < DOCTOR_MAX_DEVICES; i++) {
            struct eng_device_info di;
            char idx[8];
            int n;

            snprintf(idx, sizeof(idx), "%d", i);
            if (eng_device_open(idx, 0, &dev, err, sizeof(err)) != 0)
                continue;
            eng_device_get_info(dev, &di);
            eng_device_close(dev);
            n = snprintf(list + len, sizeof(list) - len, "%s%u %s (%s)", len ? ", " : "", di.index,
                         di.name, di.type);
            if (n < 0 || (size_t)n >= sizeof(list) - len)
                break;
            len += (size_t)n;
        }
    }
    add(d, "device", ST_OK, NULL, "cwtd would use device %u, %s (%s, %s)%s%s", info.index,
        info.name, info.type, info.driver, len ? "; devices: " : "", list);
}

static void check_disk(struct doctor *d)
{
    struct statvfs vf;
    unsigned long long avail;
    char fix[768];

    if (statvfs(d->cfg.store_dir, &vf) != 0) {
        add(d, "disk", ST_WARN, NULL, "cannot read the free space of %s: %s", d->cfg.store_dir,
            strerror(errno));
        return;
    }
    avail = (unsigned long long)vf.f_bavail * vf.f_frsize;
    if (avail < DOCTOR_MIN_FREE) {
        snprintf(fix, sizeof(fix), "free space on the file system of %s", d->cfg.store_dir);
        add(d, "disk", ST_WARN, fix, "%.1f GiB free for the store %s (less than %llu GiB)",
            (double)avail / (1 << 30), d->cfg.store_dir, DOCTOR_MIN_FREE >> 30);
        return;
    }
    add(d, "disk", ST_OK, NULL, "%.1f GiB free for the store", (double)avail / (1 << 30));
}

static void check_clock(struct doctor *d)
{
    time_t now = time(NULL);
    struct tm tm;

    if (now == (time_t)-1 || gmtime_r(&now, &tm) == NULL || tm.tm_year + 1900 < DOCTOR_MIN_YEAR) {
        add(d, "clock", ST_FAIL,
            "set the clock ('timedatectl set-time', or an NTP server on the hospital network)",
            "the system clock says %d, before %d: bundle dates and expiry would be wrong",
            now == (time_t)-1 ? 0 : tm.tm_year + 1900, DOCTOR_MIN_YEAR);
        return;
    }
    add(d, "clock", ST_OK, NULL, "the clock says %04d-%02d-%02d %02d:%02d UTC", tm.tm_year + 1900,
        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min);
}

/* Connects to the control socket and hangs up: no request is sent. */
static void check_daemon(struct doctor *d)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char fix[768];
    int fd, rc, e;

    if (strlen(d->cfg.socket_path) >= sizeof(sa.sun_path)) {
        add(d, "daemon", ST_FAIL, "choose a shorter socket path in the configuration",
            "the socket path %s is too long for a Unix socket", d->cfg.socket_path);
        return;
    }
    memcpy(sa.sun_path, d->cfg.socket_path, strlen(d->cfg.socket_path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        add(d, "daemon", ST_WARN, NULL, "cannot make a socket: %s", strerror(errno));
        return;
    }
    rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    e = errno;
    close(fd);
    if (rc == 0) {
        add(d, "daemon", ST_OK, NULL, "cwtd answers on %s", d->cfg.socket_path);
    } else if (e == EACCES || e == EPERM) {
        snprintf(fix, sizeof(fix), "run doctor as root or as a member of group %s",
                 d->cfg.group[0] ? d->cfg.group : d->user);
        add(d, "daemon", ST_WARN, fix, "no permission to reach %s", d->cfg.socket_path);
    } else {
        add(d, "daemon", ST_WARN, "start it: 'systemctl enable --now cwtd' (or 'cwtd -c FILE')",
            "cwtd is not running (%s: %s)", d->cfg.socket_path, strerror(e));
    }
}

static void print_text(const struct doctor *d, int failed, int warned)
{
    for (int i = 0; i < d->n; i++) {
        const struct check *c = &d->checks[i];

        printf("%-5s %-13s %s\n",
               c->status == ST_OK     ? "ok"
               : c->status == ST_WARN ? "WARN"
                                      : "FAIL",
               c->name, c->message);
        if (c->fix[0] != '\0' && c->status != ST_OK)
            printf("      %-13s fix: %s\n", "", c->fix);
    }
    printf("doctor: %s (%d failed, %d warnings)\n", failed ? "problems found" : "site ok", failed,
           warned);
}

static int print_json(const struct doctor *d, int failed)
{
    json_t *doc = cli_json_doc("cwt.doctor/1", !failed), *arr = json_array();
    int rc = doc == NULL ? CWT_ENOMEM : 0;

    if (doc != NULL)
        rc |= cli_json_set_str(doc, "config", d->have_cfg ? d->cfg.path : "");
    for (int i = 0; arr != NULL && i < d->n; i++) {
        const struct check *c = &d->checks[i];
        json_t *o = json_object();
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            rc = CWT_ENOMEM;
            break;
        }
        rc |= cli_json_set_str(o, "name", c->name);
        rc |= cli_json_set(o, "status", json_string(status_names[c->status]));
        rc |= cli_json_set_str(o, "message", c->message);
        rc |= cli_json_set(o, "fix", c->fix[0] != '\0' ? cli_json_str(c->fix) : json_null());
    }
    return cli_json_emit_list(doc, "checks", arr, rc);
}

static void doctor_usage(FILE *f)
{
    fprintf(f, "usage: cwtctl doctor [--json]\n\n"
               "Checks the site and says how to fix each problem: the configuration and roster,\n"
               "the site id against the keys, this site in the roster, owners and modes of keys/,\n"
               "the store, inbox and outbox, the service user, Landlock and seccomp, the compute\n"
               "devices, free disk space, the clock, and whether cwtd answers. Changes nothing.\n"
               "Exit 0 when nothing failed (warnings allowed), 1 otherwise.\n"
               "--json prints {\"schema\": \"cwt.doctor/1\", \"ok\", \"checks\": [{\"name\",\n"
               "\"status\" (ok, warn, fail), \"message\", \"fix\"}]}.\n");
}

int cmd_doctor(int argc, char **argv, const struct cli_globals *g)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    struct doctor *d;
    int ch, failed = 0, warned = 0;

    optind = 0;
    while ((ch = cli_getopt(argc, argv, "h", opts, "doctor")) != -1) {
        if (ch == 'h') {
            doctor_usage(stdout);
            return CLI_OK;
        }
        return CLI_USAGE;
    }
    if (optind != argc)
        return cli_error(CLI_USAGE, "doctor takes no arguments (see 'cwtctl doctor --help')");
    if ((d = calloc(1, sizeof(*d))) == NULL ||
        (d->roster = calloc(1, sizeof(*d->roster))) == NULL) {
        free(d);
        return cli_error(CLI_FAIL, "out of memory");
    }
    check_config(d, g);
    if (d->have_cfg) {
        check_user(d);
        check_site_id(d);
        check_trainer_user(d, g);
        check_keys(d);
        check_store(d);
        check_trainer_files(d);
        check_box(d, "inbox", d->cfg.inbox_dir);
        check_box(d, "outbox", d->cfg.outbox_dir);
    }
    check_sandbox(d);
    if (d->have_cfg) {
        check_devices(d);
        check_disk(d);
    }
    check_clock(d);
    if (d->have_cfg)
        check_daemon(d);
    for (int i = 0; i < d->n; i++) {
        failed += d->checks[i].status == ST_FAIL;
        warned += d->checks[i].status == ST_WARN;
    }
    if (g->json && print_json(d, failed) != 0)
        failed = 1;
    else if (!g->json)
        print_text(d, failed, warned);
    free(d->roster);
    free(d);
    return failed ? CLI_FAIL : CLI_OK;
}
