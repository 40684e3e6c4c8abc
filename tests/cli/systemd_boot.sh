#!/usr/bin/env bash
# The packaged service under a real systemd: a Debian 12 system (this machine's root, seen
# through a throw-away overlay) boots in a systemd-nspawn container; the test installs the
# .deb there, follows docs/admin-guide.md to set up a site (`cwtctl init --system`, then
# `systemctl enable --now cwtd` gives a running idle site), runs cwtd.service (Type=notify,
# every hardening option of the unit in force), starts a federation of two sites and checks
# that the hardened daemon seals a bundle into its outbox, accepts the answer from the second
# site through its inbox, stops cleanly and comes back after a restart. The guide's blocks on
# the way (install, roster install, CSV ingest, stick to inbox, metrics timer) run as written,
# taken from the guide; so do its maintenance blocks: a backup of the running site, an upgrade,
# the package's removal, and a restore once the site and the user cwt are gone.
#
# The site runs its trainer as cwt-train (daemon.trainer_user and daemon.trainer_socket,
# which init --system sets): the monitor connects to cwtd-trainer.socket, which starts a
# cwtd-trainer@.service instance for it; the monitor and the key process run as cwt, the
# trainer supervisor and the trainer as cwt-train, and none of them holds a capability.
# Stopping cwtd ends the instance.
#
# Needs root, systemd-nspawn (package systemd-container) and overlayfs. The container has no
# network (--private-network). Its seccomp filter gets the three Landlock calls added, which
# systemd-nspawn 252 does not know; on a host booted with systemd there is no such filter.
set -euo pipefail
: "${CWTCTL:?}" "${CWTD:?}" "${CWT_SRC:?}" "${CWT_TEST_TMP:?}"
. "$CWT_SRC/tests/cli/helpers/daemon_lib.sh" # die()

[ "$(id -u)" = 0 ] || die "booting a container needs root"
command -v systemd-nspawn >/dev/null || die "systemd-nspawn is missing (package systemd-container)"
# The overlay's lower layer is the root file system alone; a separate /usr or /var would be
# empty in the container.
for d in /usr /var /etc; do
    [ "$(findmnt -n -o TARGET -T "$d")" = / ] ||
        die "$d is a separate file system here; this test needs /usr, /var and /etc on /"
done
# In a mount namespace of its own, so that the overlay and its tmpfs go away with the test
# even when it is killed before its clean-up runs.
if [ -z "${CWT_SYSTEMD_BOOT_NS:-}" ]; then
    CWT_SYSTEMD_BOOT_NS=1 exec unshare --mount --propagation private bash "$0" "$@"
fi
T=$CWT_TEST_TMP/systemd_boot.$$
ROOT=$T/root
nspawn_pid=""
cleanup() {
    local pid1
    if [ -n "$nspawn_pid" ]; then
        pid1=$(pgrep -P "$nspawn_pid" | head -n 1 || true)
        [ -z "$pid1" ] || nsenter -t "$pid1" -a --root --wd -- systemctl poweroff >/dev/null 2>&1 || true
        for _ in $(seq 1 100); do
            kill -0 "$nspawn_pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$nspawn_pid" 2>/dev/null; then # did not power off: end it
            [ -z "$pid1" ] || kill -KILL "$pid1" 2>/dev/null || true
            kill -KILL "$nspawn_pid" 2>/dev/null || true
        fi
        wait "$nspawn_pid" 2>/dev/null || true
    fi
    mountpoint -q "$ROOT" && umount -l "$ROOT" || true
    mountpoint -q "$T/upper" && umount -l "$T/upper" || true
    [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
mkdir -p "$T/upper" "$ROOT"

. "$CWT_SRC/tests/cli/helpers/deb.sh"
deb=$(build_deb "$T/out")

# The container's root: this system, read-only below a tmpfs that takes every write.
mount -t tmpfs -o size=2g tmpfs "$T/upper"
mkdir -p "$T/upper/data" "$T/upper/work"
mount -t overlay overlay -o "lowerdir=/,upperdir=$T/upper/data,workdir=$T/upper/work" "$ROOT"
# Its own machine id (systemd refuses to share the host's journal) and no site yet.
od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$ROOT/etc/machine-id"
rm -rf "$ROOT/etc/cwt" "$ROOT/var/lib/cwt"
mkdir -p "$ROOT/srv/cwt-test"
cp "$CWT_SRC/tests/cli/helpers/make_pngs.py" "$ROOT/srv/cwt-test/"
# The admin guide's blocks, word for word, for inside.sh to run with bash -e.
guide_block() { # TEXT NAME: the one block of the admin guide holding TEXT, as NAME.sh
    python3 "$CWT_SRC/tests/cli/helpers/doc_blocks.py" --print "$CWT_SRC/docs/admin-guide.md" \
        "$1" >"$ROOT/srv/cwt-test/$2.sh" || die "docs/admin-guide.md: no block for $2"
}
guide_block "apt install ./cwt_0.1.0_amd64.deb" install
guide_block "install -o cwt -g cwt -m 0644 roster.conf" roster-install
guide_block "cwtctl ingest /srv/export/labels.csv" ingest
guide_block "/media/stick/FILE.cwtb /var/lib/cwt/inbox/FILE.cwtb.part" stick
guide_block "cwt-metrics.timer" metrics
guide_block "tar -C / --numeric-owner -cpf" backup
guide_block "apt install ./cwt_0.2.0_amd64.deb" upgrade
guide_block "apt remove cwt" remove
guide_block "tar -C / --numeric-owner -xpf" restore
# The install and restore blocks take the .deb by the name the guide gives it; the upgrade
# block wants a newer version, which is this package with another version number (no second
# build).
mkdir -p "$ROOT/srv/cwt-test/restore"
cp "$deb" "$ROOT/srv/cwt-test/restore/"
dpkg-deb -R "$deb" "$T/repack"
sed -i 's/^Version: .*/Version: 0.2.0/' "$T/repack/DEBIAN/control"
dpkg-deb -Zgzip -z1 -b "$T/repack" "$ROOT/srv/cwt-test/cwt_0.2.0_amd64.deb" >/dev/null
# apt asks before it removes a package; the reader answers yes.
echo 'APT::Get::Assume-Yes "true";' >"$ROOT/etc/apt/apt.conf.d/99cwt-test"
# A build container's policy-rc.d (Docker's exits 101) forbids the maintainer scripts to
# start or stop services; a Debian machine has none, and the upgrade must restart cwtd.
rm -f "$ROOT/usr/sbin/policy-rc.d"
cat >"$ROOT/srv/cwt-test/inside.sh" <<'EOF'
set -eu
fail() {
    echo "FAIL (inside): $*" >&2
    journalctl -u cwtd -u 'cwtd-trainer*' --no-pager | tail -n 30 >&2
    exit 1
}
wait_until() { # SECONDS COMMAND...
    n=$(($1 * 5)); shift
    while ! "$@" >/dev/null 2>&1; do
        n=$((n - 1)); [ "$n" -gt 0 ] || return 1; sleep 0.2
    done
}
D=/srv/cwt-test
# doctor_says NAME STATUS [TEXT]: `cwtctl --json doctor` has check NAME with STATUS (and TEXT).
doctor_says() {
    cwtctl --json doctor >$D/doctor.json 2>/dev/null || true
    python3 - $D/doctor.json "$@" <<'PY' || fail "doctor: no $1 $2 ${3:-}: $(cat $D/doctor.json)"
import json, sys
doc, name, status = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
text = sys.argv[4] if len(sys.argv) > 4 else ""
assert any(c["name"] == name and c["status"] == status and text in c["message"]
           for c in doc["checks"]), (name, status, text)
PY
}
# no_caps PID WHAT: the process holds no capability in any set, bounding and ambient included.
no_caps() {
    caps=$(awk '/^Cap(Inh|Prm|Eff|Bnd|Amb):/ {printf "%s%s ", $1, $2}' /proc/"$1"/status)
    [ "$caps" = "CapInh:0000000000000000 CapPrm:0000000000000000 CapEff:0000000000000000 CapBnd:0000000000000000 CapAmb:0000000000000000 " ] ||
        fail "the $2 ($1) keeps capabilities: $caps"
}
# Step 1, in the folder that holds the .deb by the name the guide gives it.
(cd $D/restore && bash -e $D/install.sh) >$D/apt.log 2>&1 || { cat $D/apt.log; fail "the guide's install block"; }
id cwt >/dev/null || fail "the package made no user cwt"
[ "$(id -gn cwt-train 2>/dev/null)" = cwt ] || fail "the package made no user cwt-train in group cwt"
systemctl is-enabled cwtd >/dev/null || fail "the package did not enable cwtd.service"
systemctl is-active cwtd >/dev/null && fail "cwtd runs before the site has a configuration"

# docs/admin-guide.md, section 1, with a second site (b) whose daemon runs unconfined.
# Steps 2-3: one command makes the site, and the service starts on it.
cwtctl init --system --site-id hospital-a --federation fed-boot --input 16x16x1 \
    --classes 3 >/dev/null || fail "init --system"
[ "$(stat -c '%U %G %a' /etc/cwt/cwtd.conf)" = "root cwt 640" ] ||
    fail "/etc/cwt/cwtd.conf is $(stat -c '%U %G %a' /etc/cwt/cwtd.conf)"
[ -z "$(find /var/lib/cwt ! -user cwt)" ] || fail "not cwt's: $(find /var/lib/cwt ! -user cwt)"
# init --system sets cwt-train as the trainer's user, started through the packaged socket,
# and doctor accepts it under the packaged units; a drop-in that runs the trainer's unit as
# cwt, or a configuration without the socket (cwtd.service cannot change users), is named.
grep -q '^  trainer_user = "cwt-train";' /etc/cwt/cwtd.conf ||
    fail "init --system does not set cwt-train: $(cat /etc/cwt/cwtd.conf)"
grep -q '^  trainer_socket = "/run/cwtd-trainer.sock";' /etc/cwt/cwtd.conf ||
    fail "init --system does not set the trainer socket: $(cat /etc/cwt/cwtd.conf)"
doctor_says trainer-user ok "the trainer runs as cwt-train"
mkdir -p /etc/systemd/system/cwtd-trainer@.service.d
printf '[Service]\nUser=cwt\n' >/etc/systemd/system/cwtd-trainer@.service.d/zz-test.conf
doctor_says trainer-user fail "cwt-train"
rm -r /etc/systemd/system/cwtd-trainer@.service.d
cp /etc/cwt/cwtd.conf $D/cwtd.conf.saved
sed -i 's/^  trainer_socket = /  # trainer_socket = /' /etc/cwt/cwtd.conf
doctor_says trainer-user fail "cwt-train"
cp $D/cwtd.conf.saved /etc/cwt/cwtd.conf
doctor_says trainer-user ok "the trainer runs as cwt-train"
systemctl enable --now cwtd || fail "systemctl enable --now cwtd"
wait_until 30 sh -c 'cwtctl status | grep -q "^state *idle"' || fail "no idle site after init: $(cwtctl status 2>&1)"
cwtctl doctor >$D/doctor.log 2>&1 || { cat $D/doctor.log; fail "cwtctl doctor"; }
grep -Eq "^ok +daemon " $D/doctor.log || fail "doctor does not see the running cwtd: $(cat $D/doctor.log)"
# Steps 4-5: the coordinator (a) adds the other site after itself and restarts on the roster.
cwtctl init --site-id hospital-b --dir $D/b --federation fed-boot --input 16x16x1 \
    --classes 3 >/dev/null || fail "init b"
# b's cwtd runs as root under systemd-run: on purpose, so it says so (daemon.allow_root).
sed -i 's/rescan_seconds = \([0-9]*\);/rescan_seconds = \1; allow_root = true;/' $D/b/cwtd.conf
grep -q "allow_root = true" $D/b/cwtd.conf || fail "cannot set daemon.allow_root for b"
runuser -u cwt -- cwtctl roster add "$(cwtctl -c $D/b/cwtd.conf key show | head -n 1)" >/dev/null ||
    fail "roster add b"
sed -i 's/^\( *visit_length = \).*;/\14;/; s/^\( *visit_unit = \).*;/\1"steps";/; s/^\( *cycles = \).*;/\11;/' \
    /var/lib/cwt/roster.conf
cwtctl roster check >/dev/null || fail "roster check"
cp /var/lib/cwt/roster.conf $D/b/roster.conf
# The coordinator installs the roster it sends round, and restarts on it, as the guide says.
(cd $D/b && bash -e $D/roster-install.sh) || fail "the guide's roster install block"
wait_until 30 sh -c 'cwtctl status | grep -q "^state *idle"' || fail "no idle site after the roster restart: $(cwtctl status 2>&1)"
systemctl stop cwtd
# Step 7: ingest, through the guide's CSV of relative paths.
python3 $D/make_pngs.py /srv/export 40 1 16
(cd /srv/export && find . -name '*.png' | sort |
    awk -F/ 'BEGIN { print "path,label" } { print substr($0, 3) "," $2 }') >/srv/export/labels.csv
chmod -R a+rX /srv/export
bash -e $D/ingest.sh >$D/ingest.log 2>&1 || { cat $D/ingest.log; fail "the guide's ingest block"; }
grep -q "^images *120$" $D/ingest.log || fail "cwtctl data does not count 120 images: $(cat $D/ingest.log)"
cwtctl -c $D/b/cwtd.conf ingest /srv/export/labels.csv --val-fraction 0.2 --seed 9 >/dev/null || fail "ingest b"

# Step 8: start.
systemctl start cwtd || fail "systemctl start cwtd"
[ "$(systemctl show -p ActiveState --value cwtd)" = active ] || fail "not active after start"
pid=$(systemctl show -p MainPID --value cwtd)
[ "$(ps -o user= -p "$pid")" = cwt ] || fail "cwtd runs as $(ps -o user= -p "$pid"), not cwt"
grep -q '^NoNewPrivs:[[:space:]]*1' /proc/"$pid"/status || fail "NoNewPrivileges is not in force"
grep -q '^Seccomp:[[:space:]]*2' /proc/"$pid"/status || fail "no seccomp filter on cwtd"
# No unit grants a capability: the monitor and the key process run as cwt, the trainer's
# supervisor is the main process of a cwtd-trainer@.service instance (not cwtd's child), and
# it and the trainer run as cwt-train; none of the four holds a capability.
inv=$(systemctl show -p InvocationID --value cwtd)
tr_ready() { journalctl _SYSTEMD_INVOCATION_ID="$inv" -o cat --no-pager | grep -q 'trainer [0-9]* ready on'; }
wait_until 60 tr_ready || fail "no trainer ready after the start"
journalctl _SYSTEMD_INVOCATION_ID="$inv" -o cat --no-pager | grep -q 'the trainer on /run/cwtd-trainer.sock runs as uid' ||
    fail "the monitor did not check the trainer's uid"
tr=$(journalctl _SYSTEMD_INVOCATION_ID="$inv" -o cat --no-pager | sed -n 's/.*trainer \([0-9]*\) ready on.*/\1/p' | tail -n 1)
sup=$(awk '/^PPid:/ {print $2}' /proc/"$tr"/status)
instance=$(systemctl list-units --no-legend --plain --state=active 'cwtd-trainer@*.service' | awk '{print $1}')
[ "$(echo "$instance" | wc -w)" = 1 ] || fail "not one cwtd-trainer@ instance: '$instance'"
[ "$(systemctl show -p MainPID --value "$instance")" = "$sup" ] ||
    fail "the trainer's parent $sup is not the main process of $instance"
journalctl -u "$instance" -o cat --no-pager | grep -q "trainer supervisor: running as user cwt-train" ||
    fail "$instance does not log its user: $(journalctl -u "$instance" -o cat --no-pager | tail -n 5)"
key=$(pgrep -P "$pid" | head -n 1)
[ -n "$key" ] || fail "no key process under the monitor"
[ "$(ps -o user= -p "$key")" = cwt ] || fail "the key process runs as $(ps -o user= -p "$key")"
tuser=cwt-train
# The GPU's render nodes are 0660 of group render: the trainer has it, the monitor does not.
render=$(getent group render | cut -d: -f3)
[ -n "$render" ] || fail "the package made no group render"
awk '/^Groups:/' /proc/"$tr"/status | grep -qw "$render" ||
    fail "the trainer is not in group render: $(awk '/^Groups:/' /proc/"$tr"/status)"
awk '/^Groups:/' /proc/"$pid"/status | grep -qw "$render" &&
    fail "the monitor is in group render: $(awk '/^Groups:/' /proc/"$pid"/status)"
for p in "$sup" "$tr"; do
    [ "$(awk '/^Uid:/ {print $2 $3 $4 $5}' /proc/"$p"/status)" = "$(id -u $tuser)$(id -u $tuser)$(id -u $tuser)$(id -u $tuser)" ] ||
        fail "trainer process $p runs as $(ps -o user= -p "$p"), not $tuser"
done
no_caps "$pid" monitor
no_caps "$key" "key process"
no_caps "$sup" "trainer supervisor"
no_caps "$tr" trainer
[ "$(stat -c '%a %U %G' /run/cwt/cwtd.sock)" = "660 cwt cwt" ] || fail "socket: $(stat -c '%a %U %G' /run/cwt/cwtd.sock)"
cwtctl status | grep -q "^state *idle" || fail "status: $(cwtctl status)"

cwtctl start >/dev/null || fail "cwtctl start"
wait_until 120 sh -c 'ls /var/lib/cwt/outbox/*.cwtb' || fail "no bundle in the outbox"
bundle=$(ls /var/lib/cwt/outbox/*.cwtb)
cwtctl bundle verify "$bundle" >/dev/null || fail "the sealed bundle does not verify"

# Site b answers; the file goes into a's inbox the way an admin copies it (as root, then
# handed to cwt), and the hardened daemon takes it.
cp "$bundle" $D/b/inbox/
systemd-run -q --unit=cwtd-b /usr/sbin/cwtd -c $D/b/cwtd.conf -f || fail "cwtd for b"
wait_until 120 sh -c "ls $D/b/outbox/*.cwtb" || fail "b sealed no answer"
answer=$(ls $D/b/outbox/*.cwtb)
install -m 0600 "$answer" /var/lib/cwt/inbox/
chown cwt:cwt /var/lib/cwt/inbox/"$(basename "$answer")"
taken() { [ ! -e /var/lib/cwt/inbox/"$(basename "$answer")" ]; }
wait_until 60 taken || fail "the answer stayed in the inbox: $(cwtctl status)"
[ -z "$(ls /var/lib/cwt/inbox/rejected 2>/dev/null)" ] || fail "rejected: $(cat /var/lib/cwt/inbox/rejected/*.reason)"
cwtctl status | grep -q "^last in .*hospital-b" || fail "status lacks the bundle from b: $(cwtctl status)"

# The journal has priorities: a file that is no bundle is rejected at priority err, so
# `journalctl -p err` (and -p warning) finds it, and the info lines stay out of it. The file
# comes off a "stick" by the guide's block (a temporary name, then a rename).
mkdir -p /media/stick
printf 'not a bundle' >/media/stick/FILE.cwtb
bash -e $D/stick.sh || fail "the guide's stick-to-inbox block"
wait_until 60 sh -c 'journalctl -u cwtd -p err --no-pager | grep -q "error: rejected FILE.cwtb"' ||
    fail "the rejection is not in journalctl -p err: $(journalctl -u cwtd --no-pager | tail -n 5)"
journalctl -u cwtd -p warning --no-pager | grep -q "sealed" &&
    fail "info lines reach journalctl -p warning"

# Stop and restart: a clean exit, and the state survives.
state=$(cwtctl status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
systemctl stop cwtd
[ "$(systemctl show -p Result --value cwtd)" = success ] || fail "stop: Result=$(systemctl show -p Result --value cwtd)"
# The instance ends with its connection, and the socket stops with cwtd (PartOf=).
no_instance() { [ -z "$(systemctl list-units --no-legend --plain --state=active 'cwtd-trainer@*.service')" ]; }
wait_until 30 no_instance || fail "a trainer instance outlives cwtd: $(systemctl list-units 'cwtd-trainer@*')"
systemctl is-active cwtd-trainer.socket >/dev/null && fail "cwtd-trainer.socket runs on without cwtd"
systemctl start cwtd || fail "restart"
wait_until 30 sh -c "cwtctl status --json | grep -q '\"state\": *\"$state\"'" ||
    fail "after a restart the state is not $state: $(cwtctl status)"
journalctl -u cwtd --no-pager | grep -q "sealed" || fail "the journal lacks cwtd's log"
# Section 7: the metrics units of the guide, written from its block, and the timer enabled.
awk '/^# \/etc\/systemd\/system\// { f = $2; next } f { print > f }' $D/metrics.sh
install -d -o cwt -g cwt /var/lib/node_exporter/textfile
systemctl enable --now cwt-metrics.timer || fail "systemctl enable --now cwt-metrics.timer"
systemctl start cwt-metrics.service || fail "cwt-metrics.service: $(journalctl -u cwt-metrics --no-pager | tail -n 5)"
grep -q '^cwt_daemon_up{site="hospital-a"} 1$' /var/lib/node_exporter/textfile/cwt.prom ||
    fail "the timer's service wrote no cwt_daemon_up 1: $(cat /var/lib/node_exporter/textfile/cwt.prom)"
same_state() { wait_until 30 sh -c "cwtctl status --json | grep -q '\"state\": *\"$state\"'"; }

# Section 4: the backup block on the running site.
keyid=$(cwtctl key show | sed -n 's/^key id: //p')
[ -n "$keyid" ] || fail "key show prints no key id: $(cwtctl key show)"
check=$(cwtctl roster check)
echo "$check" | grep -q fingerprint || fail "roster check shows no fingerprint: $check"
mkdir -p /backup
bash -e $D/backup.sh || fail "the guide's backup block"
tarball=/backup/cwt-$(date +%F).tar
tar -tf $tarball | grep -qx 'var/lib/cwt/keys/sign.key' || fail "the backup lacks the signing key"
tar -tf $tarball | grep -qx 'etc/cwt/cwtd.conf' || fail "the backup lacks the configuration"
same_state || fail "after the backup the state is not $state: $(cwtctl status)"

# Section 5: the upgrade restarts the running daemon, which resumes where it was. The site
# is made to look like one set up before the trainer had a unit of its own (no
# trainer_socket line), which the package's postinst brings up to date.
pid=$(systemctl show -p MainPID --value cwtd)
sed -i '/^  trainer_socket = /d' /etc/cwt/cwtd.conf
(cd $D && bash -e $D/upgrade.sh) >$D/upgrade.log 2>&1 || { cat $D/upgrade.log; fail "the guide's upgrade block"; }
grep -q '^  trainer_socket = "/run/cwtd-trainer.sock";' /etc/cwt/cwtd.conf ||
    fail "the upgrade did not add the trainer socket to an older site: $(cat /etc/cwt/cwtd.conf)"
[ "$(stat -c '%U %G %a' /etc/cwt/cwtd.conf)" = "root cwt 640" ] ||
    fail "the upgrade left /etc/cwt/cwtd.conf $(stat -c '%U %G %a' /etc/cwt/cwtd.conf)"
[ "$(dpkg-query -W -f '${Version}' cwt)" = 0.2.0 ] || fail "the upgrade did not install 0.2.0"
same_state || fail "after the upgrade the state is not $state: $(cwtctl status)"
[ "$(systemctl show -p MainPID --value cwtd)" != "$pid" ] || fail "the upgrade did not restart cwtd"

# Section 6: removing keeps the site, and so does purging.
(cd /root && bash -e $D/remove.sh) >$D/remove.log 2>&1 || { cat $D/remove.log; fail "the guide's remove block"; }
[ ! -e /usr/sbin/cwtd ] || fail "apt remove left /usr/sbin/cwtd"
systemctl is-active cwtd >/dev/null && fail "cwtd runs after apt remove"
dpkg --purge cwt >/dev/null || fail "dpkg --purge cwt"
[ -f /etc/cwt/cwtd.conf ] && [ -f /var/lib/cwt/keys/sign.key ] || fail "removing cwt took the site"

# A fresh machine: no site, no user cwt, and cwt's old ids held by someone else, so that the
# restore meets other numbers than the backup's.
uid=$(id -u cwt) gid=$(id -g cwt)
rm -rf /etc/cwt /var/lib/cwt
userdel cwt
# cwt-train has cwt as its primary group, which groupdel would refuse to remove.
! getent passwd cwt-train >/dev/null || userdel cwt-train
! getent group cwt >/dev/null || groupdel cwt
groupadd -g "$gid" other && useradd -r -M -u "$uid" -g other other || fail "cannot take cwt's ids"

# Section 4: the restore block, in the folder that holds the .deb and the archive.
cp $tarball $D/restore/cwt-2026-03-01.tar
(cd $D/restore && bash -e $D/restore.sh) >$D/restore.log 2>&1 || { cat $D/restore.log; fail "the guide's restore block"; }
[ "$(id -u cwt)" != "$uid" ] || fail "cwt got its old uid back; the test meant to change it"
[ "$(cwtctl key show | sed -n 's/^key id: //p')" = "$keyid" ] || fail "the restored key id differs"
[ "$(cwtctl roster check)" = "$check" ] || fail "the restored roster check differs: $(cwtctl roster check)"
runuser -u cwt -- cwtctl audit verify >/dev/null || fail "the restored audit log does not verify"
same_state || fail "the restored site is not $state: $(cwtctl status)"
cwtctl doctor >$D/doctor.log 2>&1 || { cat $D/doctor.log; fail "cwtctl doctor on the restored site"; }
cwtctl audit verify --export /root/cwt-final-audit.export >/dev/null ||
    fail "the export archived before the removal does not verify"
echo "inside: ok ($state; the trainer ran as $tuser)"
EOF

systemd-nspawn -D "$ROOT" --keep-unit --register=no --private-network \
    --system-call-filter="landlock_create_ruleset landlock_add_rule landlock_restrict_self" \
    -b -- systemd.mask=cloud-init.service systemd.mask=systemd-networkd-wait-online.service \
    systemd.mask=ifupdown-wait-online.service systemd.mask=networking.service \
    >"$T/console.log" 2>&1 </dev/null &
nspawn_pid=$!
pid1=""
# Every nsenter takes the container's root and working directory (--root --wd): entering its
# mount namespace alone lands at that namespace's first root, which is the container's only on
# a booted host; under a chroot (a build root, scripts/fresh-root.sh) it is the chroot's parent,
# where systemctl finds itself in a chroot and reports "offline".
booted() {
    kill -0 "$nspawn_pid" 2>/dev/null || {
        cat "$T/console.log" >&2
        die "systemd-nspawn exited"
    }
    pid1=$(pgrep -P "$nspawn_pid" | head -n 1) || return 1
    case $(nsenter -t "$pid1" -a --root --wd -- systemctl is-system-running 2>/dev/null) in
    running | degraded) return 0 ;;
    *) return 1 ;;
    esac
}
wait_for 120 booted || {
    tail -n 30 "$T/console.log" >&2
    die "the container did not boot"
}
echo "container booted (systemd $(nsenter -t "$pid1" -a --root --wd -- systemctl --version | head -n 1 | awk '{print $2}'))"
nsenter -t "$pid1" -a --root --wd -- sh /srv/cwt-test/inside.sh || die "the service failed under systemd"
echo "systemd_boot: ok"
