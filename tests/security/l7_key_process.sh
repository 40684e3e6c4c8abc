# Issue 18: in cwtd only the key process holds the site's secret keys (daemon/keyproc.h).
#   - the monitor's code does not load secret keys (its object file has no reference to
#     keys_load, crypto_sign or crypto_box_seal_open);
#   - a scan of the running monitor's memory finds neither secret key, while the same scan of
#     the key process by root (CAP_SYS_PTRACE) finds both (so the scan works);
#   - the attack on that memory: a process of the key process's own uid without capabilities
#     cannot open its /proc/PID/mem (it is not dumpable), though the same process opens that
#     of a dumpable process of the uid; and its core limit is 0;
#   - the key process is confined (seccomp filter, no_new_privs) and holds one socket, whose
#     other end only the monitor holds: the trainer side cannot talk to it;
#   - it serves signatures: a bundle sealed by cwtd verifies;
#   - a crash of the key process stops cwtd with a clear message and an audit record, and a
#     restart works.
set -euo pipefail
. "$CWT_SRC/tests/security/helpers/sec_lib.sh"

# Reading the daemon's memory and descriptors through /proc needs CAP_SYS_PTRACE: cwtd's
# processes are not dumpable. A test that cannot check its claims fails rather than passes.
[ "$(id -u)" = 0 ] || die "reading cwtd's memory through /proc needs root (CAP_SYS_PTRACE)"

daemon_setup l7_key_process
trap '[ -z "${CONTROL:-}" ] || { kill "$CONTROL" 2>/dev/null || true; }; daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
sec_two_sites

# --- the monitor's code -------------------------------------------------------------------
obj="$(dirname "$CWTD")/CMakeFiles/cwt_daemon.dir/monitor.c.o"
[ -f "$obj" ] || die "no object file $obj"
if nm -u "$obj" | grep -Ew 'keys_load|crypto_sign(_detached|_ed25519_detached)?|crypto_box_seal_open|keyops_local'; then
    die "the monitor's code references a secret-key operation"
fi
# grep without -q: an early exit of grep would end nm with SIGPIPE, and pipefail would fail it.
nm -u "$obj" | grep -w keys_load_public >/dev/null ||
    die "the monitor no longer loads site.pub (test out of date)"

# --- the running daemon -------------------------------------------------------------------
start_daemon a
MON=$(cat "$T/a.pid")
KP=$("$CWTCTL" -c "$T/a/cwtd.conf" audit show | sed -n 's/.*loaded by the key process \([0-9]*\).*/\1/p' | tail -n 1)
[ -n "$KP" ] || die "no key-load record names the key process"
[ "$(awk '/^PPid:/ {print $2}' "/proc/$KP/status")" = "$MON" ] || die "the key process is not the monitor's child"
grep -q '^Seccomp:[[:space:]]*2' "/proc/$KP/status" || die "the key process has no seccomp filter"
grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$KP/status" || die "the key process lacks no_new_privs"

# Memory: the 32-byte Ed25519 seed and the X25519 secret, searched in every mapping.
python3 - "$T/a/keys" "$MON" "$KP" <<'PY' || die "memory scan"
import base64, re, sys
keys, mon, kp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def secret(name, n):
    lines = open(f"{keys}/{name}").read().split("\n")
    return base64.b64decode(lines[1])[:n]
needles = {"sign.key": secret("sign.key", 32), "box.key": secret("box.key", 32)}
def found(pid):
    hits = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+)", line)
            lo, hi = int(m.group(1), 16), int(m.group(2), 16)
            if "[vsyscall]" in line or "[vvar" in line:
                continue
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except (OSError, ValueError, OverflowError):
                continue
            for name, k in needles.items():
                if k in data:
                    hits.add(name)
    return hits
m, k = found(mon), found(kp)
if m:
    sys.exit(f"the monitor's memory holds {sorted(m)}")
if k != set(needles):
    sys.exit(f"the scan found only {sorted(k)} in the key process: the scan does not work")
print("memory: monitor holds no secret key; key process holds both")
PY

# The attack on that memory: a process of the key process's uid and group, with no
# capability (so no CAP_SYS_PTRACE), opens /proc/KP/mem. The control: the same reader opens
# the memory of a dumpable process of that uid with no capability either (a target holding
# capabilities the reader lacks would be refused whatever its dumpable flag).
kp_uid=$(awk '/^Uid:/ {print $2}' "/proc/$KP/status")
kp_gid=$(awk '/^Gid:/ {print $2}' "/proc/$KP/status")
as_kp_uid=(setpriv --reuid="$kp_uid" --regid="$kp_gid" --clear-groups --inh-caps=-all
    --bounding-set=-all --)
"${as_kp_uid[@]}" sleep 60 &
CONTROL=$!
capless() { [ "$(awk '/^CapEff:/ {print $2}' "/proc/$1/status")" = 0000000000000000 ]; }
wait_for 5 capless "$CONTROL" || die "the control process kept its capabilities"
read_mem='import sys; open(f"/proc/{sys.argv[1]}/mem", "rb", 0)'
"${as_kp_uid[@]}" python3 -c "$read_mem" "$CONTROL" ||
    die "a same-uid process cannot read a dumpable process's memory either: the attack is not tried"
kill "$CONTROL"
wait "$CONTROL" 2>/dev/null || true
if "${as_kp_uid[@]}" python3 -c "$read_mem" "$KP" 2>"$T/mem.err"; then
    die "a process of the key process's uid opened its /proc/$KP/mem"
fi
grep -q PermissionError "$T/mem.err" || die "reading /proc/$KP/mem failed otherwise: $(cat "$T/mem.err")"
grep -Eq '^Max core file size +0 +0 ' "/proc/$KP/limits" || die "the key process may dump core"

# Sockets: the key process's only socket; its peer is held by the monitor and nobody else.
kp_fds=$(ls -l "/proc/$KP/fd" | grep -c 'socket:' || true)
[ "$kp_fds" = 1 ] || die "the key process holds $kp_fds sockets"
kp_ino=$(ls -l "/proc/$KP/fd" | sed -n 's/.*socket:\[\([0-9]*\)\].*/\1/p')
peer=$(ss -xa | awk -v i="$kp_ino" '$6 == i {print $8} $8 == i {print $6}' | grep -v "^$kp_ino$" | head -n 1)
[ -n "$peer" ] || die "no peer for the key process's socket $kp_ino"
holders=$(for p in /proc/[0-9]*; do
    if ls -l "$p/fd" 2>/dev/null | grep -q "socket:\[$peer\]"; then basename "$p"; fi
done | sort -u | tr '\n' ' ')
[ "$holders" = "$MON " ] || die "the key process's peer socket is held by: $holders (monitor $MON)"

# --- it signs: a bundle sealed by cwtd verifies (a trains cycle 0 and seals it for b) -----
"$CWTCTL" -c "$T/a/cwtd.conf" start >/dev/null || die "start at a"
wait_for 120 sh -c "ls '$T'/a/outbox/*.cwtb >/dev/null 2>&1" || die "a sealed no bundle"
B=$(ls "$T"/a/outbox/*.cwtb | head -n 1)
"$CWTCTL" -c "$T/b/cwtd.conf" bundle verify "$B" >/dev/null || die "cwtd's bundle does not verify"
grep -q "key process: signature 1 (bundle)" "$T/a.log" || die "the signature is not counted in the log"
[ "$(status_field a key_signatures)" = 1 ] || die "status does not count the signature"

# --- a crash of the key process stops cwtd clearly ----------------------------------------
kill -KILL "$KP"
wait_for 10 process_gone "$MON" || die "cwtd keeps running without its key process"
grep -q "the key process exited" "$T/a.log" || die "no clear message: $(tail -n 5 "$T/a.log")"
"$CWTCTL" -c "$T/a/cwtd.conf" audit show | grep -q " key-process-exited " || die "not audited"
start_daemon a
echo "l7_key_process: ok"
