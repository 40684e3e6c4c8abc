#!/usr/bin/env bash
# init.sh - `cwtctl init --dir` makes a site whose configuration starts without warnings (no
# control-socket group that does not exist); `init --system` (root) makes the site as the
# service user and a root-owned configuration naming it (and the trainer's user cwt-train
# and socket where that user exists), with the site in its starter roster, and refuses to
# run twice; a configuration whose site id differs from the keys' is reported
# by `key check`, `roster check` and cwtd with the id to set, as an error.
set -euo pipefail
: "${CWTCTL:?}" "${CWT_SRC:?}" "${CWT_TEST_TMP:?}"

T="$CWT_TEST_TMP/init.$$"
rm -rf "$T"
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
export CWT_CONFIG="$T/no-such-site.conf"
. "$CWT_SRC/tests/cli/helpers/expect.sh"

# --- init --dir: group cwt only where that group exists.
"$CWTCTL" init --site-id site-a --dir "$T/a" >/dev/null
# A new federation's recipe is cwt+ (docs/daemon.md): balanced sampling, proportional
# quarter-epoch visits (250 / 64 steps per 1000 images), a cyclical lr from lr/10; --plain is
# plain cwt.
for kv in 'balanced_sampling = true' 'visit_unit = "proportional"' 'visit_length = 3.90625' \
    'schedule = "cyclical"' 'lr_min = 0.001' 'cycle_epochs = 0.5' 'class_weighted_loss = false'; do
    grep -q "^ *$kv;" "$T/a/roster.conf" || fail "the new roster lacks $kv"
done
"$CWTCTL" init --plain --site-id site-p --dir "$T/p" >/dev/null || fail "init --plain"
for kv in 'balanced_sampling = false' 'visit_unit = "epochs"' 'schedule = "constant"'; do
    grep -q "^ *$kv;" "$T/p/roster.conf" || fail "the --plain roster lacks $kv"
done
if getent group cwt >/dev/null; then
    grep -q 'group = "cwt"' "$T/a/cwtd.conf" || fail "group cwt exists but the config names none"
else
    grep -q 'group = ""' "$T/a/cwtd.conf" || fail "config names a group that does not exist: $(grep group "$T/a/cwtd.conf")"
fi
expect 2 "init needs --site-id ID and --system or --dir DIR" "$CWTCTL" init --site-id x
expect 2 "--user goes with --system" "$CWTCTL" init --site-id x --dir "$T/x" --user nobody
expect 2 "did you mean '--system'" "$CWTCTL" init --site-id x --sytsem

# --- site id in the configuration differs from the keys'.
sed 's/^site_id = "site-a";/site_id = "hospital-a";/' "$T/a/cwtd.conf" >"$T/a/wrong.conf"
grep -q 'site_id = "hospital-a"' "$T/a/wrong.conf" || fail "sed did not change the site id"
want='the keys in '"$T"'/a/keys belong to site site-a but '"$T"'/a/wrong.conf says site_id = "hospital-a"; set site_id = "site-a" in '"$T"'/a/wrong.conf'
expect 2 "$want" "$CWTCTL" -c "$T/a/wrong.conf" key check
expect 1 "$want" "$CWTCTL" -c "$T/a/wrong.conf" roster check
if grep -q "roster add" "$T/err"; then fail "roster check advises roster add for a wrong site id"; fi
if [ -n "${CWTD:-}" ]; then
    rc=0
    "$CWTD" -c "$T/a/wrong.conf" -f >"$T/out" 2>"$T/err" || rc=$?
    [ "$rc" -eq 2 ] || fail "cwtd exits $rc on a wrong site id, expected 2"
    grep -qF "cwtd: error: $want" "$T/err" || fail "cwtd said: $(cat "$T/err")"
    # Not in the roster: an error too, not a warning.
    rc=0
    "$CWTD" -c "$T/a/cwtd.conf" -f >"$T/out" 2>"$T/err" || rc=$?
    [ "$rc" -eq 2 ] || fail "cwtd exits $rc for a site not in the roster"
    grep -q "^cwtd: error: site site-a is not in the roster" "$T/err" || fail "cwtd said: $(cat "$T/err")"
fi

# --- the trainer socket that init --system writes is the path the packaged socket unit
# listens on (one string in two files).
listen=$(sed -n 's/^ListenSequentialPacket=//p' "$CWT_SRC/packaging/cwtd-trainer.socket")
[ -n "$listen" ] || fail "packaging/cwtd-trainer.socket has no ListenSequentialPacket="
grep -Eq "^#define CLI_SYSTEM_TRAINER_SOCKET +\"$listen\"$" "$CWT_SRC/cli/cli.h" ||
    fail "CLI_SYSTEM_TRAINER_SOCKET in cli/cli.h is not $listen, where cwtd-trainer.socket listens"

# --- init --system, as root, with a stand-in service user (the test makes no user of its own).
if [ "$(id -u)" -ne 0 ]; then
    expect 2 "init --system needs root" "$CWTCTL" -c "$T/etc/cwtd.conf" init --system --site-id s --dir "$T/sys"
    echo "init: ok (not root: --system not tried)"
    exit 0
fi
svc=nobody
grp=$(id -gn "$svc")
# The service user must reach the site folder through $T's parents.
if ! runuser -u "$svc" -- test -x "$T"; then
    echo "init: ok (user $svc cannot reach $T: --system not tried)"
    exit 0
fi
expect 2 "user no-such-user-x does not exist" "$CWTCTL" -c "$T/etc/cwtd.conf" init --system \
    --site-id s --dir "$T/sys" --user no-such-user-x
"$CWTCTL" -c "$T/etc/cwtd.conf" init --system --site-id hospital-s --dir "$T/sys" --user "$svc" \
    --federation fed-1 --input 16x16x1 --classes 3 >"$T/out" || fail "init --system"
grep -q "systemctl enable --now cwtd" "$T/out" || fail "init --system does not say how to start"
[ "$(stat -c '%U %G %a' "$T/etc/cwtd.conf")" = "root $grp 640" ] ||
    fail "configuration is $(stat -c '%U %G %a' "$T/etc/cwtd.conf")"
[ ! -e "$T/sys/cwtd.conf" ] || fail "init --system left a second configuration in the site folder"
bad=$(find "$T/sys" ! -user "$svc" -printf '%p ')
[ -z "$bad" ] || fail "not owned by $svc: $bad"
[ "$(stat -c %a "$T/sys/keys")" = 700 ] || fail "keys folder mode"
[ "$(stat -c %a "$T/sys/keys/sign.key")" = 600 ] || fail "sign.key mode"
grep -q '^site_id = "hospital-s";' "$T/etc/cwtd.conf" || fail "site id not in the configuration"
grep -q "user = \"$svc\";" "$T/etc/cwtd.conf" || fail "service user not in the configuration"
grep -q 'socket = "/run/cwt/cwtd.sock";' "$T/etc/cwtd.conf" || fail "socket not in /run/cwt"
# The trainer's user and socket where the package's user cwt-train exists; neither where it
# does not (cwtd refuses an unknown trainer_user, and trainer_socket needs one).
if getent passwd cwt-train >/dev/null; then
    grep -q '^  trainer_user = "cwt-train";' "$T/etc/cwtd.conf" || fail "no trainer_user cwt-train"
    grep -q "^  trainer_socket = \"$listen\";" "$T/etc/cwtd.conf" || fail "no trainer_socket $listen"
else
    ! grep -q 'trainer_' "$T/etc/cwtd.conf" || fail "trainer lines without the user cwt-train"
fi
"$CWTCTL" -c "$T/etc/cwtd.conf" roster check >"$T/out" 2>&1 || fail "roster check: $(cat "$T/out")"
grep -q "^roster ok: federation fed-1, 1 sites" "$T/out" || fail "roster check: $(cat "$T/out")"
# The service user reads the configuration through its group, and its keys are in order.
runuser -u "$svc" -- "$CWTCTL" -c "$T/etc/cwtd.conf" key check >"$T/out" 2>&1 ||
    fail "key check as $svc: $(cat "$T/out")"
expect 1 "exists already; refusing to overwrite" "$CWTCTL" -c "$T/etc/cwtd.conf" init --system \
    --site-id hospital-s --dir "$T/sys" --user "$svc"
expect 1 "holds a site already" "$CWTCTL" -c "$T/etc2/cwtd.conf" init --system \
    --site-id hospital-s --dir "$T/sys" --user "$svc"
echo "init: ok"
