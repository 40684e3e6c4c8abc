#!/usr/bin/env bash
# The Debian package: `cpack -G DEB` in the build tree builds it; its file list, owners and
# modes are what the admin guide and the unit expect; the programs run from an extracted
# copy; the example configuration is accepted; the units (cwtd.service, cwtd-trainer.socket,
# cwtd-trainer@.service) pass `systemd-analyze verify`; each service's `systemd-analyze
# security` exposure is no worse than docs/security-score.txt; lintian
# finds no error; and cwtd, started from the package with the example configuration, reports
# readiness to a notify socket as systemd would see it.
set -euo pipefail

: "${CWTCTL:?}" "${CWT_SRC:?}" "${CWT_TEST_TMP:?}"
T=$CWT_TEST_TMP/package.$$
mkdir -p "$T"
daemon_pid=""
cleanup() {
    if [[ -n $daemon_pid ]]; then
        kill "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    rm -rf "$T"
}
trap cleanup EXIT
failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# --- build the package
. "$CWT_SRC/tests/cli/helpers/deb.sh"
deb=$(build_deb "$T/out")
[[ $(basename "$deb") =~ ^cwt_[0-9.]+_[a-z0-9]+\.deb$ ]] || fail "unexpected package name $deb"

# --- file list, owners and modes
dpkg-deb -c "$deb" | awk '{print $1, $2, $6}' | sed 's| \./| /|; s|/$||' >"$T/list"
expect() { # MODE PATH
    grep -qx -- "$1 root/root $2" "$T/list" || fail "package lacks $2 with mode $1 root/root" \
        "(has: $(grep -- " $2\$" "$T/list" || echo nothing))"
}
expect -rwxr-xr-x /usr/bin/cwtctl
if [[ -n ${CWTD:-} ]]; then
    expect -rwxr-xr-x /usr/sbin/cwtd
fi
expect -rw-r--r-- /lib/systemd/system/cwtd.service
expect -rw-r--r-- /usr/lib/sysusers.d/cwt.conf
expect -rw-r--r-- /usr/lib/tmpfiles.d/cwt.conf
for page in man1/cwtctl.1 man8/cwtd.8 man5/cwtd.conf.5 man5/cwt-roster.5; do
    expect -rw-r--r-- "/usr/share/man/$page.gz"
done
expect -rw-r--r-- /usr/share/bash-completion/completions/cwtctl
for f in copyright changelog.gz examples/cwtd.conf examples/roster.conf admin-guide.md \
    auditor-guide.md threat-model.md systemd-hardening.md bundle-format.md audit-format.md \
    keys.md; do
    expect -rw-r--r-- "/usr/share/doc/cwt/$f"
done
expect drwxr-xr-x /etc/cwt
# Nothing set-id, nothing writable by group or others, everything root's, no file in /etc
# (the configuration is the admin's; a packaged conffile would fight with it on upgrade).
awk '$1 ~ /^.....w|^........w|[sS]/ {print "mode " $1 " on " $3}
     $2 != "root/root" {print "owner " $2 " of " $3}
     $1 ~ /^-/ && $3 ~ /^\/etc\// {print "file in /etc: " $3}' "$T/list" >"$T/bad"
while read -r line; do fail "$line"; done <"$T/bad"

# --- control fields
dpkg-deb -f "$deb" Package Version Architecture Depends Section Maintainer >"$T/control"
grep -qx "Package: cwt" "$T/control" || fail "package name is not cwt"
grep -q "^Version: $("$CWTCTL" --version | awk '{print $2}')\$" "$T/control" ||
    fail "package version differs from cwtctl --version"
depends=$(sed -n 's/^Depends: //p' "$T/control")
for dep in libsodium23 liblmdb0 libconfig9 libpng16-16 libjpeg62-turbo "mesa-vulkan-drivers | vulkan-icd" systemd; do
    grep -qF -- "$dep" <<<"$depends" || fail "Depends lacks $dep: $depends"
done
# Every shared library the programs link must be covered (dpkg-shlibdeps found them).
dpkg-deb -x "$deb" "$T/root"
for prog in "$T/root/usr/bin/cwtctl" "$T/root/usr/sbin/cwtd"; do
    [[ -f $prog ]] || continue
    if readelf -d "$prog" | grep 'NEEDED.*libvulkan\.so' >/dev/null; then
        grep -q libvulkan1 <<<"$depends" || fail "$(basename "$prog") links libvulkan; no libvulkan1 in Depends"
    fi
    if readelf -d "$prog" | grep 'NEEDED.*libseccomp\.so' >/dev/null; then
        grep -q libseccomp2 <<<"$depends" || fail "$(basename "$prog") links libseccomp; no libseccomp2 in Depends"
    fi
    readelf -d "$prog" | grep 'BIND_NOW' >/dev/null || fail "$(basename "$prog") is not linked with -z now"
done
for script in postinst prerm postrm; do
    dpkg-deb --ctrl-tarfile "$deb" | tar -tvf - "./$script" 2>/dev/null | grep '^-rwxr-xr-x' >/dev/null ||
        fail "control archive lacks an executable $script"
done

# --- the programs run from the extracted tree
R=$T/root
out=$("$R/usr/bin/cwtctl" --version) || fail "cwtctl --version from the package exits $?"
[[ $out == "$("$CWTCTL" --version)" ]] || fail "packaged cwtctl --version says '$out'"
if [[ -n ${CWTD:-} ]]; then
    "$R/usr/sbin/cwtd" --help >"$T/cwtd.help" || fail "cwtd --help from the package exits $?"
    grep -q -- "-c FILE" "$T/cwtd.help" || fail "cwtd --help does not show -c FILE"
    [[ $("$R/usr/sbin/cwtd" --version) == "cwtd $(awk '{print $2}' <<<"$out")" ]] ||
        fail "cwtd --version differs from cwtctl's"
fi

# --- every document that a packaged document cites by name is in the package too
for doc in "$R"/usr/share/doc/cwt/*.md; do
    for cited in $(grep -o '[a-z-]*\.md' "$doc" | sort -u); do
        [[ -f $CWT_SRC/docs/$cited ]] || continue # a name that is not one of ours
        case $cited in design.md | engine.md | daemon.md | ingest.md | simulate.md | results.md | model-export.md) continue ;; esac
        [[ -f $R/usr/share/doc/cwt/$cited ]] || fail "$(basename "$doc") cites $cited, which the package lacks"
    done
done

# --- the example configuration is accepted as shipped
EX=$R/usr/share/doc/cwt/examples
"$R/usr/bin/cwtctl" -c "$EX/cwtd.conf" roster check "$EX/roster.conf" >"$T/check" 2>&1 ||
    fail "the example configuration is refused: $(cat "$T/check")"
grep -q "^roster ok" "$T/check" || fail "roster check of the examples says: $(cat "$T/check")"

# --- the snippets do what postinst relies on, applied to the extracted tree as root
# (creating users and chowning needs root; a non-root run skips this part)
if [[ $(id -u) -eq 0 ]] && command -v systemd-sysusers >/dev/null 2>&1; then
    cp -p /etc/passwd /etc/group "$R/etc/"
    for f in shadow gshadow; do [[ -f /etc/$f ]] && cp -p "/etc/$f" "$R/etc/"; done
    systemd-sysusers --root="$R" cwt.conf >"$T/sysusers" 2>&1 ||
        fail "systemd-sysusers refuses the snippet: $(cat "$T/sysusers")"
    grep -q '^cwt:x:[0-9]*:[0-9]*:[^:]*:/var/lib/cwt:/usr/sbin/nologin$' "$R/etc/passwd" ||
        fail "sysusers made no system user cwt with home /var/lib/cwt"
    # cwtd opens no device; the GPU is the trainer's.
    grep -Eq '^render:x:[0-9]+:(.*,)?cwt(,.*)?$' "$R/etc/group" && fail "cwt is in group render"
    cwt_gid=$(awk -F: '$1 == "cwt" {print $3}' "$R/etc/group")
    grep -q "^cwt-train:x:[0-9]*:$cwt_gid:[^:]*:/nonexistent:/usr/sbin/nologin\$" "$R/etc/passwd" ||
        fail "sysusers made no system user cwt-train with primary group cwt and no home"
    grep -Eq '^render:x:[0-9]+:(.*,)?cwt-train(,.*)?$' "$R/etc/group" ||
        fail "cwt-train is not in group render"
    systemd-tmpfiles --root="$R" --create cwt.conf >"$T/tmpfiles" 2>&1 ||
        fail "systemd-tmpfiles --create fails: $(cat "$T/tmpfiles")"
    cwt_uid=$(awk -F: '$1 == "cwt" {print $3}' "$R/etc/passwd")
    for d in var/lib/cwt run/cwt; do
        [[ $(stat -c '%a %u' "$R/$d" 2>/dev/null) == "750 $cwt_uid" ]] ||
            fail "tmpfiles: /$d is $(stat -c '%a %u' "$R/$d" 2>&1), expected 750 owned by cwt"
    done
    train_uid=$(awk -F: '$1 == "cwt-train" {print $3}' "$R/etc/passwd")
    [[ $(stat -c '%a %u %g' "$R/var/cache/cwt-train" 2>/dev/null) == "700 $train_uid $cwt_gid" ]] ||
        fail "tmpfiles: /var/cache/cwt-train is $(stat -c '%a %u %g' "$R/var/cache/cwt-train" 2>&1)," \
            "expected 700 owned by cwt-train, group cwt"
fi

# --- the units: verify (ExecStart= and ExecStartPre= pointed at the extracted binary, man
# pages from the package; the socket and the template beside the service, which requires the
# socket)
units=$R/lib/systemd/system
for u in cwtd.service cwtd-trainer.socket cwtd-trainer@.service; do
    [[ -f $units/$u ]] || fail "the package lacks the unit $u"
done
grep -qx 'ListenSequentialPacket=/run/cwtd-trainer.sock' "$units/cwtd-trainer.socket" ||
    fail "cwtd-trainer.socket does not listen where init --system points daemon.trainer_socket"
if [[ -n ${CWTD:-} ]]; then
    mkdir -p "$T/verify"
    for u in cwtd.service cwtd-trainer.socket cwtd-trainer@.service; do
        sed "s|^\(ExecStart\(Pre\)\{0,1\}=+\{0,1\}\)/usr/sbin/cwtd|\1$R/usr/sbin/cwtd|" "$units/$u" \
            >"$T/verify/$u"
    done
    [[ $(grep -c "^ExecStart.*=+\{0,1\}$R/usr/sbin/cwtd" "$T/verify/cwtd.service") = 2 ]] ||
        fail "cwtd.service's ExecStart= and ExecStartPre= do not both run /usr/sbin/cwtd"
    [[ $(grep -c "^ExecStart=$R/usr/sbin/cwtd .*--trainer\$" "$T/verify/cwtd-trainer@.service") = 1 ]] ||
        fail "cwtd-trainer@.service does not run /usr/sbin/cwtd --trainer"
    # A template is verified through an instance of it.
    cp "$T/verify/cwtd-trainer@.service" "$T/verify/cwtd-trainer@1.service"
    (cd "$T/verify" && MANPATH=$R/usr/share/man systemd-analyze verify cwtd.service \
        cwtd-trainer.socket cwtd-trainer@1.service) >"$T/verify.log" 2>&1 ||
        fail "systemd-analyze verify: $(cat "$T/verify.log")"
    [[ ! -s $T/verify.log ]] || fail "systemd-analyze verify warns: $(cat "$T/verify.log")"
fi

# --- the services: exposure scores no worse than recorded ("UNIT SCORE" lines)
for u in cwtd.service cwtd-trainer@.service; do
    recorded=$(awk -v u="$u" '$1 == u && $2 ~ /^[0-9]+(\.[0-9]+)?$/ {print $2; exit}' \
        "$CWT_SRC/docs/security-score.txt")
    [[ -n $recorded ]] || fail "docs/security-score.txt holds no score for $u"
    systemd-analyze security --offline=true "$units/$u" >"$T/security" 2>&1 || true
    score=$(sed -n 's/.*Overall exposure level for [^ ]*: \([0-9.]*\).*/\1/p' "$T/security")
    if [[ -z $score ]]; then
        fail "systemd-analyze security gave no score for $u: $(tail -3 "$T/security")"
    elif ! awk -v s="$score" -v r="${recorded:-0}" 'BEGIN {exit !(s <= r && s <= 1.0)}'; then
        fail "$u's exposure is $score (recorded: $recorded; at most 1.0); see docs/systemd-hardening.md"
        grep '✗' "$T/security" >&2 || true
    else
        echo "security exposure of $u: $score (recorded $recorded)"
    fi
done

# --- lintian: no errors
if command -v lintian >/dev/null 2>&1; then
    lintian --fail-on error "$deb" >"$T/lintian" 2>&1 ||
        fail "lintian: $(grep "^E:" "$T/lintian" || cat "$T/lintian")"
    cat "$T/lintian"
else
    echo "note: lintian is not installed; not run" >&2
fi

# --- cwtd from the package, with the example configuration, reports readiness
if [[ -n ${CWTD:-} ]]; then
    S=$T/site
    "$R/usr/bin/cwtctl" init --site-id hospital-a --dir "$S" >/dev/null
    key=$("$R/usr/bin/cwtctl" -c "$S/cwtd.conf" key show | head -1)
    # The shipped example, pointed at this scratch site; the user switch is the unit's job,
    # and trainer_user, which needs a daemon.user, goes with it, and so does trainer_socket
    # (the trainer's units are systemd's to start).
    sed -e "s|\"/var/lib/cwt\"|\"$S\"|; s|\"/run/cwt/cwtd.sock\"|\"$S/cwtd.sock\"|" \
        -e 's|user = "cwt";|user = ""; allow_root = true;|' -e '/^ *trainer_user = /d' \
        -e '/^ *trainer_socket = /d' \
        "$EX/cwtd.conf" >"$S/etc.conf"
    "$R/usr/bin/cwtctl" -c "$S/etc.conf" roster add "$key" >/dev/null
    python3 - "$T/notify" 120 >"$T/notify.log" 2>&1 <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(float(sys.argv[2]))
while True:
    msg = s.recv(4096).decode(errors="replace")
    print(msg, flush=True)
    if "READY=1" in msg.split("\n"):
        break
PY
    listener=$!
    for _ in $(seq 50); do
        [[ -S $T/notify ]] && break
        sleep 0.1
    done
    NOTIFY_SOCKET=$T/notify "$R/usr/sbin/cwtd" -c "$S/etc.conf" -f 2>"$T/cwtd.log" &
    daemon_pid=$!
    if wait "$listener" && grep -qx "READY=1" "$T/notify.log"; then
        [[ -S $S/cwtd.sock ]] || fail "cwtd is ready but $S/cwtd.sock is not a socket"
        kill -TERM "$daemon_pid"
        rc=0
        wait "$daemon_pid" || rc=$?
        daemon_pid=""
        ((rc == 0)) || fail "cwtd exits $rc on SIGTERM: $(tail -5 "$T/cwtd.log")"
    else
        fail "cwtd with the example configuration never reported READY=1: $(tail -5 "$T/cwtd.log")"
    fi
fi

if ((failures > 0)); then
    echo "package: $failures problem(s)" >&2
    exit 1
fi
echo "package: ok ($(basename "$deb"))"
