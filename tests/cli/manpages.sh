#!/usr/bin/env bash
# The documentation matches the programs: every cwtctl command, sub-command and option that
# `--help` shows is in cwtctl(1) and offered by the bash completion; every cwtd option is in
# cwtd(8); every configuration and roster key that config/config.c accepts is in cwtd.conf(5)
# or cwt-roster(5); and the man pages render without a groff warning.
set -euo pipefail

: "${CWTCTL:?}" "${CWT_SRC:?}" "${CWT_TEST_TMP:?}"
PKG=$CWT_SRC/packaging
MAN1=$PKG/man/cwtctl.1
T=$CWT_TEST_TMP/manpages.$$
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# man(7) source writes every '-' of an option as '\-'.
man_form() { printf '%s' "$1" | sed 's/-/\\-/g'; }

# --- the pages render cleanly (what lintian's manpage check runs)
if command -v groff >/dev/null 2>&1; then
    for page in "$PKG"/man/*.[0-9]; do
        out=$(LC_ALL=C.UTF-8 groff -man -ww -z -Tutf8 "$page" 2>&1 || true)
        [[ -z $out ]] || fail "$(basename "$page"): groff warns: $out"
    done
else
    echo "note: groff is not installed; rendering not checked" >&2
fi

# --- the completion, run the way bash runs it (bash-completion is not written for set -u)
source_completion() {
    set +u
    if [[ -r /usr/share/bash-completion/bash_completion ]]; then
        # shellcheck disable=SC1091
        source /usr/share/bash-completion/bash_completion
    fi
    if ! declare -F _init_completion >/dev/null; then
        # shellcheck disable=SC2034  # the variables are the ones _cwtctl reads
        _init_completion() {
            words=("${COMP_WORDS[@]}")
            cword=$COMP_CWORD
            cur=${COMP_WORDS[COMP_CWORD]}
            prev=${COMP_WORDS[COMP_CWORD - 1]}
        }
        _filedir() { :; }
    fi
    # shellcheck disable=SC1091
    source "$PKG/bash-completion/cwtctl"
    set -u
}
# Prints the completions of a command line whose last word is being completed.
complete_line() {
    local COMP_WORDS=("$@") COMP_CWORD=$(($# - 1)) COMPREPLY=()
    local COMP_LINE="$*" COMP_POINT COMP_TYPE=9 COMP_KEY=9
    COMP_POINT=${#COMP_LINE}
    set +u
    _cwtctl cwtctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
    set -u
    ((${#COMPREPLY[@]} == 0)) || printf '%s\n' "${COMPREPLY[@]}"
}
source_completion

# --- cwtctl: commands
"$CWTCTL" --help >"$T/help"
mapfile -t commands < <(sed -n '/^Commands:/,/^$/p' "$T/help" | awk 'NF >= 2 {print $1}')
((${#commands[@]} >= 10)) || fail "cwtctl --help lists only ${#commands[@]} commands"
offered=$(complete_line cwtctl "")
for cmd in "${commands[@]}"; do
    grep -Eq "^(\.B[IR]? +\"?|\\\\fB)$cmd( |\\\\|\"|$)" "$MAN1" ||
        fail "cwtctl.1 does not describe the command '$cmd'"
    grep -qx -- "$cmd" <<<"$offered" || fail "the completion does not offer the command '$cmd'"
done
# ... and nothing the program does not have
while read -r word; do
    printf '%s\n' "${commands[@]}" | grep -x -- "$word" >/dev/null ||
        fail "the completion offers '$word', which cwtctl --help does not list"
done <<<"$offered"

# --- cwtctl: each command's sub-commands and options
for cmd in "${commands[@]}"; do
    if ! "$CWTCTL" "$cmd" --help >"$T/h.$cmd" 2>"$T/e.$cmd"; then
        if grep -q "not available in this build" "$T/e.$cmd"; then
            echo "note: cwtctl $cmd is not in this build yet; skipped" >&2
            continue
        fi
        fail "cwtctl $cmd --help exits $?: $(cat "$T/e.$cmd")"
        continue
    fi
    subs=$(grep -Eo "cwtctl $cmd [a-z][a-z-]*" "$T/h.$cmd" | awk '{print $3}' | sort -u || true)
    opts=$(grep -Eo -- '--[a-z][a-z0-9-]*' "$T/h.$cmd" | grep -vx -- '--help' | sort -u || true)
    offered_opts=$(
        complete_line cwtctl "$cmd" --
        for sub in $subs; do complete_line cwtctl "$cmd" "$sub" --; done
    )
    offered_subs=$(complete_line cwtctl "$cmd" "")
    for sub in $subs; do
        grep -q -- "$cmd $sub" "$MAN1" || fail "cwtctl.1 does not describe 'cwtctl $cmd $sub'"
        grep -qx -- "$sub" <<<"$offered_subs" ||
            fail "the completion does not offer 'cwtctl $cmd $sub'"
    done
    for opt in $opts; do
        grep -qF -- "$(man_form "$opt")" "$MAN1" ||
            fail "cwtctl.1 does not mention $opt of 'cwtctl $cmd'"
        grep -qx -- "$opt" <<<"$offered_opts" ||
            fail "the completion does not offer $opt for 'cwtctl $cmd'"
    done
done

# --- cwtd
if [[ -n ${CWTD:-} ]]; then
    "$CWTD" --help >"$T/cwtd.help"
    for opt in $(grep -Eo -- '(^|[[ ])--?[a-zA-Z][a-z0-9-]*' "$T/cwtd.help" | tr -d '[ ' |
        sort -u); do
        grep -qF -- "$(man_form "$opt")" "$PKG/man/cwtd.8" ||
            fail "cwtd.8 does not mention $opt of cwtd --help"
    done
    version=$("$CWTD" --version)
    grep -qF "cwt $(awk '{print $2}' <<<"$version")" "$PKG/man/cwtd.8" ||
        fail "cwtd.8 is not for $version"
else
    echo "note: no cwtd in this build; cwtd.8 not compared" >&2
fi
version=$("$CWTCTL" --version | awk '{print $2}')
for page in "$PKG"/man/*.[0-9]; do
    grep -q "^\.TH .*\"cwt $version\"" "$page" ||
        fail "$(basename "$page") is not marked as the page of cwt $version"
done

# --- every key that config/config.c accepts is documented
python3 - "$CWT_SRC/config/config.c" "$PKG/man/cwtd.conf.5" "$PKG/man/cwt-roster.5" \
    >"$T/keys" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
blocks = re.findall(r'static const char \*const (\w+)\[\]\s*=\s*\{(.*?)\};', src, re.S)
pages = {"conf": open(sys.argv[2]).read(), "roster": open(sys.argv[3]).read()}
where = {"dir_keys": ("conf", "dirs."), "gpu_keys": ("conf", "gpu."),
         "daemon_keys": ("conf", "daemon."), "limit_keys": ("conf", "limits."),
         "recipe_keys": ("roster", "recipe."), "model_keys": ("roster", "recipe.model."),
         "train_keys": ("roster", "recipe.train."), "cycle_keys": ("roster", "recipe.cycle.")}
tops = 0
for name, body in blocks:
    keys = re.findall(r'"([a-z_0-9]+)"', body)
    if name == "top_keys":
        page, prefix = ("conf" if tops == 0 else "roster"), ""
        tops += 1
    elif name in where:
        page, prefix = where[name]
    else:
        continue
    for k in keys:
        pat = r'^\.BR? +"?' + re.escape(prefix + k) + r'[ ."]'
        if not re.search(pat, pages[page], re.M):
            print(f"{'cwtd.conf.5' if page == 'conf' else 'cwt-roster.5'} "
                  f"does not describe the key {prefix}{k}")
if tops != 2:
    print(f"config.c: expected two top_keys lists (cwtd.conf, roster), found {tops}")
PY
while read -r line; do fail "$line"; done <"$T/keys"

if ((failures > 0)); then
    echo "manpages: $failures problem(s)" >&2
    exit 1
fi
echo "manpages: ok (${#commands[@]} commands)"
