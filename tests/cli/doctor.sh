#!/usr/bin/env bash
# doctor.sh - `cwtctl doctor` passes a freshly made site (exit 0, warnings allowed: no daemon,
# no other sites yet), and reports each broken thing with its fix and exit 1: a secret key
# readable by others, a site id in the configuration that is not the keys', a roster without
# this site, an inbox the service user cannot write. --json is valid JSON with the schema
# cwt.doctor/1, also for a path that is not UTF-8.
set -euo pipefail
: "${CWTCTL:?}" "${CWT_SRC:?}" "${CWT_TEST_TMP:?}"

T="$CWT_TEST_TMP/doctor.$$"
rm -rf "$T"
mkdir -p "$T"
trap 'chmod -R u+rwx "$T" 2>/dev/null; rm -rf "$T"' EXIT
export CWT_CONFIG="$T/no-such-site.conf"
. "$CWT_SRC/tests/cli/helpers/expect.sh"

S=$T/a
"$CWTCTL" init --site-id site-a --dir "$S" --input 16x16x1 --classes 3 >/dev/null
"$CWTCTL" init --site-id site-b --dir "$T/b" --input 16x16x1 --classes 3 >/dev/null
C=(-c "$S/cwtd.conf")

# status_of NAME FILE: the status of check NAME in doctor's JSON output.
status_of() {
    python3 - "$1" "$2" <<'PY'
import json, sys
doc = json.load(open(sys.argv[2], encoding="utf-8"))
assert doc["schema"] == "cwt.doctor/1", doc.get("schema")
assert isinstance(doc["ok"], bool)
for c in doc["checks"]:
    assert set(c) == {"name", "status", "message", "fix"}, c
    assert c["status"] in ("ok", "warn", "fail"), c
    if c["status"] == "fail":
        assert c["fix"], c
print(next((c["status"] for c in doc["checks"] if c["name"] == sys.argv[1]), "absent"))
PY
}

# doctor_fails NAME FIX: doctor exits 1, says FAIL for NAME with a fix containing FIX, and the
# JSON agrees.
doctor_fails() {
    local name=$1 fix=$2 rc=0
    "$CWTCTL" "${C[@]}" doctor >"$T/out" 2>&1 || rc=$?
    [ "$rc" -eq 1 ] || fail "doctor exits $rc with a broken $name, expected 1: $(cat "$T/out")"
    grep -Eq "^FAIL +$name " "$T/out" || fail "doctor does not fail $name: $(cat "$T/out")"
    grep -qF -- "fix: $fix" "$T/out" || fail "doctor's fix for $name lacks '$fix': $(cat "$T/out")"
    rc=0
    "$CWTCTL" "${C[@]}" doctor --json >"$T/json" || rc=$?
    [ "$rc" -eq 1 ] || fail "doctor --json exits $rc with a broken $name"
    [ "$(status_of "$name" "$T/json")" = fail ] || fail "JSON: $name is not fail: $(cat "$T/json")"
    python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["ok"] is False' "$T/json" ||
        fail "JSON ok is not false"
}

# --- a fresh site is doctor-clean.
"$CWTCTL" "${C[@]}" doctor >"$T/out" 2>&1 || fail "doctor on a fresh site: $(cat "$T/out")"
grep -q "^doctor: site ok" "$T/out" || fail "doctor summary: $(cat "$T/out")"
grep -Eq "^WARN +daemon +cwtd is not running" "$T/out" || fail "no daemon warning: $(cat "$T/out")"
grep -Eq "^WARN +roster-site +the roster .* lists no sites yet" "$T/out" ||
    fail "no empty-roster warning: $(cat "$T/out")"
grep -Eq "^ok +device +cwtd would use device [0-9]+, .*\((discrete|integrated|virtual|cpu|other)," "$T/out" ||
    fail "no compute device listed: $(cat "$T/out")"
"$CWTCTL" "${C[@]}" doctor --json >"$T/json" || fail "doctor --json on a fresh site"
[ "$(status_of keys "$T/json")" = ok ] || fail "JSON keys: $(cat "$T/json")"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"] is True' "$T/json" ||
    fail "JSON ok is not true: $(cat "$T/json")"
for name in config roster site-id keys store inbox outbox service-user landlock seccomp device \
    disk clock daemon; do
    [ "$(status_of "$name" "$T/json")" != absent ] || fail "doctor has no check $name"
done
expect 2 "did you mean '--json'" "$CWTCTL" "${C[@]}" doctor --jsno
expect 2 "doctor takes no arguments" "$CWTCTL" "${C[@]}" doctor extra

# With this site in the roster it is clean without the roster warning.
"$CWTCTL" "${C[@]}" roster add "$("$CWTCTL" "${C[@]}" key show | head -n 1)" >/dev/null
"$CWTCTL" "${C[@]}" doctor >"$T/out" 2>&1 || fail "doctor with the site in the roster: $(cat "$T/out")"
grep -Eq "^ok +roster-site +this site is number 1 of 1" "$T/out" || fail "roster-site: $(cat "$T/out")"

# --- a secret key readable by others.
chmod 644 "$S/keys/box.key"
doctor_fails keys "run 'chmod 600 $S/keys/box.key'"
chmod 600 "$S/keys/box.key"

# --- the configuration names another site than the keys do.
cp "$S/cwtd.conf" "$T/conf.bak"
sed -i 's/^site_id = "site-a";/site_id = "hospital-a";/' "$S/cwtd.conf"
doctor_fails site-id "set site_id = \"site-a\" in $S/cwtd.conf"
cp "$T/conf.bak" "$S/cwtd.conf"

# --- a roster that lists other sites but not this one.
cp "$S/roster.conf" "$T/roster.bak"
cp "$T/b/roster.conf" "$S/roster.conf"
"$CWTCTL" -c "$T/b/cwtd.conf" roster add "$("$CWTCTL" -c "$T/b/cwtd.conf" key show | head -n 1)" >/dev/null
cp "$T/b/roster.conf" "$S/roster.conf"
doctor_fails roster-site "install the federation's roster as $S/roster.conf"
cp "$T/roster.bak" "$S/roster.conf"

# --- an inbox the service user cannot write (and one that others can). Root writes anywhere,
# so as root the site is a system site of a stand-in service user.
I=$S
if [ "$(id -u)" -eq 0 ] && runuser -u nobody -- test -x "$T"; then
    "$CWTCTL" -c "$T/sys/cwtd.conf" init --system --site-id site-s --dir "$T/sys/site" \
        --user nobody >/dev/null
    C=(-c "$T/sys/cwtd.conf")
    I=$T/sys/site
    "$CWTCTL" "${C[@]}" doctor >"$T/out" 2>&1 || fail "doctor on a system site: $(cat "$T/out")"
    grep -Eq "^ok +service-user +cwtd runs as nobody" "$T/out" || fail "service user: $(cat "$T/out")"
fi
if [ "$I" != "$S" ] || [ "$(id -u)" -ne 0 ]; then
    chmod 0555 "$I/inbox"
    doctor_fails inbox "run 'chmod u+rwx $I/inbox'"
fi
chmod 0757 "$I/inbox"
doctor_fails inbox "run 'chmod o-w $I/inbox'"
chmod 0750 "$I/inbox"

# --- no configuration at all: one failed check, still valid JSON.
rc=0
"$CWTCTL" -c "$T/none.conf" doctor --json >"$T/json" || rc=$?
[ "$rc" -eq 1 ] || fail "doctor without a configuration exits $rc"
[ "$(status_of config "$T/json")" = fail ] || fail "JSON config: $(cat "$T/json")"

# --- a site path that is not UTF-8 still gives valid JSON.
L=$T/$(printf 'site-\xe9')
"$CWTCTL" init --site-id site-l --dir "$L" >/dev/null
"$CWTCTL" -c "$L/cwtd.conf" doctor --json >"$T/json" || fail "doctor on a Latin-1 path"
python3 -c 'import json,sys; json.loads(open(sys.argv[1],"rb").read().decode("utf-8"))' "$T/json" ||
    fail "doctor --json is not UTF-8 JSON for a Latin-1 path"

echo "doctor: ok"
