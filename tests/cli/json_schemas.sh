# json_schemas: every --json document that cwtctl prints through cli/cli_json.c validates
# against its schema in docs/schemas/ (success and failure: cwt.error/1 with the exit code of
# the failure), is valid UTF-8 even for a file name in Latin-1, and `status --prometheus`
# prints (or atomically writes) a well-formed Prometheus text exposition.
set -euo pipefail
. "$CWT_SRC/tests/cli/helpers/daemon_lib.sh"

daemon_setup json_schemas
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT

# check SCHEMA_FILE EXPECTED_RC RC OUTPUT_FILE: exactly one line, strict UTF-8, one JSON object
# that validates against the schema.
check() {
    local schema=$1 want=$2 got=$3 out=$4
    [ "$got" = "$want" ] || die "exit $got, expected $want, for $schema: $(cat "$out")"
    python3 "$CWT_SRC/tests/cli/helpers/json_check.py" "$schema" "$out" ||
        die "$out does not match $schema: $(cat "$out")"
}

# run SCHEMA EXPECTED_RC ARGS...: runs cwtctl --json ARGS and checks its output.
n=0
run() {
    local schema=$1 want=$2 rc=0
    shift 2
    n=$((n + 1))
    "$CWTCTL" --json "$@" >"$T/out.$n" 2>"$T/err.$n" || rc=$?
    check "$schema" "$want" "$rc" "$T/out.$n"
}

make_site a
make_site b
build_roster a b
A=(-c "$T/a/cwtd.conf")

# Failures before any command: cwt.error/1, exit 2.
run error 2 bogus-command
run error 2 -c "$T/none.conf" status
run error 2 "${A[@]}" status --bogus
grep -q '"error": "no-config"' "$T/out.2" || die "no-config: $(cat "$T/out.2")"
grep -q '"error": "bad-option"' "$T/out.3" || die "bad-option: $(cat "$T/out.3")"

# roster: show, check (a clean roster, then a site's roster without this site), add.
run roster 0 "${A[@]}" roster show
run roster-check 0 "${A[@]}" roster check
"$CWTCTL" init --site-id c --dir "$T/c" >/dev/null || die "init c"
run roster-check 1 -c "$T/c/cwtd.conf" roster check "$T/a/roster.conf"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"] is False and d["problems"] > 0, d' "$T/out.$n" ||
    die "roster check of a roster without this site: $(cat "$T/out.$n")"
run roster-add 0 -c "$T/c/cwtd.conf" roster add "$(cat "$T/c/keys/site.pub")"
run error 1 -c "$T/c/cwtd.conf" roster add "$(cat "$T/c/keys/site.pub")"

# doctor: a fresh site with its daemon down (a warning: exit 0), and no configuration at all.
run doctor 0 "${A[@]}" doctor
run doctor 1 -c "$T/none.conf" doctor

# audit: show, verify, export, verify of the export.
run audit 0 "${A[@]}" audit show
run audit-verify 0 "${A[@]}" audit verify
run audit-export 0 "${A[@]}" audit export "$T/a.export"
run audit-export-verify 0 audit verify --export "$T/a.export" --key "$(cat "$T/a/keys/site.pub")"
run error 1 audit verify --export "$T/a.export" --key "$(cat "$T/c/keys/site.pub")"

# init (a new site, then the same folder again: refused), model fingerprint.
run init 0 init --site-id d --dir "$T/d"
run error 1 init --site-id d --dir "$T/d"
# key rotate, then the new key into the roster (site d alone: a's keys stay as they are).
run roster-add 0 -c "$T/d/cwtd.conf" roster add "$(cat "$T/d/keys/site.pub")"
run key-rotate 0 -c "$T/d/cwtd.conf" key rotate
run roster-replace-key 0 -c "$T/d/cwtd.conf" roster replace-key d "$(cat "$T/d/keys/site.pub")"
run model-fingerprint 0 "${A[@]}" model fingerprint

# key show / key check.
run key 0 "${A[@]}" key show
run key-check 0 "${A[@]}" key check

# bundles: seal a -> b, inspect (under a Latin-1 file name: U+FFFD), verify, chain verify with
# a roster alone, open at b; each document with the full header (bundle-header.json).
FP=$("$CWTCTL" "${A[@]}" model fingerprint)
python3 "$CWT_SRC/tests/cli/helpers/make_weights.py" "$T/w.safetensors" 0 "$FP" "$T/a/roster.conf"
run bundle 0 "${A[@]}" bundle seal --to b --weights "$T/w.safetensors" -o "$T/b0.cwtb"
latin=$(printf '%s/b\351.cwtb' "$T")
cp "$T/b0.cwtb" "$latin"
run bundle 0 bundle inspect "$latin"
grep -q '"file": ".*b\\ufffd.cwtb"\|"file": ".*b�.cwtb"' "$T/out.$n" ||
    die "inspect: the Latin-1 name is not shown with U+FFFD: $(cat "$T/out.$n")"
run bundle-verify 0 bundle verify --roster "$T/a/roster.conf" "$T/b0.cwtb"
grep -q '"signer_site": "a"' "$T/out.$n" || die "verify names no signer: $(cat "$T/out.$n")"
run bundle-verify 1 bundle verify --roster "$T/a/roster.conf" "$T/b0.cwtb" "$T/w.safetensors"
run chain-verify 0 chain verify --roster "$T/a/roster.conf" "$T/b0.cwtb"
run bundle 0 -c "$T/b/cwtd.conf" bundle open "$T/b0.cwtb" -o "$T/b0.safetensors"
run error 1 -c "$T/b/cwtd.conf" bundle open "$T/b0.cwtb" -o "$T/b0-again.safetensors"

# data before any ingest (no store: not-found, exit 2); ingest (clean, then with a rejected
# file: ok false, exit 1); data; a usage error of ingest.
"$CWTCTL" init --site-id e --dir "$T/e" --input 16x16x1 --classes 3 >/dev/null || die "init e"
sed -i -e 's/batch_size = [0-9]*;/batch_size = 16;/' "$T/e/roster.conf"
E=(-c "$T/e/cwtd.conf")
python3 "$CWT_SRC/tests/cli/helpers/make_pngs.py" "$T/png" 10 11 16 >/dev/null
run error 2 "${E[@]}" data
grep -q '"error": "not-found"' "$T/out.$n" || die "data without a store: $(cat "$T/out.$n")"
run ingest 0 "${E[@]}" ingest --val-fraction 0.2 --test-fraction 0.2 --seed 5 "$T/png"
mkdir -p "$T/png2/0"
head -c 100 /dev/urandom >"$T/png2/0/$(printf 'caf\351.png')"
run ingest 1 "${E[@]}" ingest "$T/png2"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"] is False and d["rejected"] == 1, d' "$T/out.$n" ||
    die "ingest with a rejected file: $(cat "$T/out.$n")"
run error 2 "${E[@]}" ingest --split nowhere "$T/png"
run data 0 "${E[@]}" data
# simulate: a tiny run, and a usage error.
run simulate-results 0 "${E[@]}" simulate --sites 2 --budget 1 --heuristics cwt --seeds 1 --out "$T/sim"
python3 "$CWT_SRC/tests/cli/helpers/json_check.py" simulate-results "$T/sim/results.json" ||
    die "results.json: $(cat "$T/sim/results.json")"
run error 2 "${E[@]}" simulate --sites 0

# The daemon down: status is the offline cwt.status/1 (ok false, daemon false, exit 1);
# control commands fail with daemon-down.
run status 1 "${A[@]}" status
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["daemon"] is False and d["error"] == "daemon-down", d' "$T/out.$n" ||
    die "offline status: $(cat "$T/out.$n")"
run error 1 "${A[@]}" start
grep -q '"error": "daemon-down"' "$T/out.$n" || die "start with cwtd down: $(cat "$T/out.$n")"

# Prometheus with the daemon down: cwt_daemon_up 0, exit 0.
"$CWTCTL" "${A[@]}" status --prometheus >"$T/down.prom" 2>/dev/null || die "prometheus with cwtd down"
grep -q '^cwt_daemon_up{site="a"} 0$' "$T/down.prom" || die "daemon_up: $(cat "$T/down.prom")"
grep -q '^cwt_inbox_held{site="a"} 0$' "$T/down.prom" || die "inbox_held down: $(cat "$T/down.prom")"

start_daemon a
run status 0 "${A[@]}" status
run control 0 "${A[@]}" pause
run control 0 "${A[@]}" resume
[ "$(status_field a paused)" = 0 ] || die "resume"

# A garbage file whose name is not UTF-8: rejected, listed in status with U+FFFD.
bad=$(printf 'caf\351.cwtb')
head -c 300 /dev/urandom >"$T/a/inbox/$bad"
wait_for 30 sh -c "ls '$T/a/inbox/rejected/' | grep -q reason" || die "the garbage file was not rejected"
wait_for 30 sh -c "'$CWTCTL' -c '$T/a/cwtd.conf' --json status | grep -q '\"rejected_total\": 1'" ||
    die "status does not count the rejected file: $("$CWTCTL" "${A[@]}" --json status)"
run status 0 "${A[@]}" status
grep -q 'caf\\ufffd.cwtb\|caf�.cwtb' "$T/out.$n" || die "rejected name not shown with U+FFFD: $(cat "$T/out.$n")"
"$CWTCTL" "${A[@]}" status | grep -q "^rejected " || die "status table does not show the rejected file"

# Prometheus: to stdout, and atomically to a file; a small parser checks the format.
"$CWTCTL" "${A[@]}" status --prometheus >"$T/up.prom" || die "status --prometheus"
"$CWTCTL" "${A[@]}" status --prometheus "$T/textfile.prom" || die "status --prometheus FILE"
cmp -s "$T/up.prom" "$T/textfile.prom" || die "the file differs from stdout"
ls -A "$T" | grep -q '^textfile.prom.' && die "a temp file of the atomic write is left"
python3 - "$T/up.prom" <<'PY' || die "bad Prometheus export: $(cat "$T/up.prom")"
import re, sys
typed, helped, seen = {}, set(), {}
line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\} (\S+)$')
for line in open(sys.argv[1]).read().splitlines():
    if line.startswith("# HELP "):
        helped.add(line.split()[2])
    elif line.startswith("# TYPE "):
        _, _, name, kind = line.split()
        assert kind in ("gauge", "counter"), line
        typed[name] = kind
    else:
        m = line_re.match(line)
        assert m, "bad sample line: " + line
        name, value = m.group(1), m.group(3)
        assert name in typed and name in helped, "no HELP/TYPE before " + name
        float(value)
        seen[name] = float(value)
for need in ("cwt_daemon_up", "cwt_cycle", "cwt_images", "cwt_inbox_held", "cwt_inbox_rejected_total"):
    assert need in seen, need + " missing"
assert seen["cwt_daemon_up"] == 1 and seen["cwt_inbox_rejected_total"] == 1, seen
assert typed["cwt_inbox_rejected_total"] == "counter"
PY
run error 2 "${A[@]}" status --prometheus --json 2>/dev/null

"$CWTCTL" "${A[@]}" --json status >"$T/online.json" || die "status before stop"
run control 0 "${A[@]}" stop

# With cwtd down, status reads the inbox itself: the same rejected list as cwtd gave, and the
# files waiting in the inbox as held (cwt.status/1 both ways).
wait_for 30 sh -c "! '$CWTCTL' -c '$T/a/cwtd.conf' status >/dev/null 2>&1" || die "cwtd did not stop"
head -c 300 /dev/urandom >"$T/a/inbox/$(printf 'late\351.cwtb')"
head -c 300 /dev/urandom >"$T/a/inbox/copying.cwtb.part"
run status 1 "${A[@]}" status
python3 - "$T/online.json" "$T/out.$n" <<'PY' || die "offline status lists: $(cat "$T/out.$n")"
import json, sys
on, off = (json.load(open(p)) for p in sys.argv[1:3])
assert off["daemon"] is False and off["rejected_total"] == on["rejected_total"] == 1, off
assert off["rejected"] == on["rejected"] and off["rejected"][0]["rule"], (on, off)
assert [e["file"] for e in off["inbox_held"]] == ["late\ufffd.cwtb"], off
assert off["inbox_held"][0]["time"] > 0 and "held" in off, off
PY
"$CWTCTL" "${A[@]}" status >"$T/offline.txt" 2>/dev/null && die "offline status exited 0"
grep -q "^rejected .*1 in the inbox" "$T/offline.txt" && grep -q "late.*in the inbox since" "$T/offline.txt" ||
    die "offline status table lacks the rejected or held file: $(cat "$T/offline.txt")"
"$CWTCTL" "${A[@]}" status --prometheus | grep -q '^cwt_inbox_held{site="a"} 1$' ||
    die "offline metrics do not count the held file"
echo "json_schemas: ok ($n documents)"
