# Shared helpers of the tests/cli/daemon_*.sh tests and scripts/demo-federation.sh (sourced).
#
# Needs: CWTCTL, CWTD, a scratch folder T. Every daemon started here is recorded and killed by
# daemon_cleanup (call it from an EXIT trap).

DAEMON_PIDS_FILE=""

die() {
    echo "FAIL: $*" >&2
    exit 1
}

# daemon_setup NAME: checks CWTD, makes the scratch folder T for this test and the pid
# bookkeeping.
daemon_setup() {
    [ -n "${CWTD:-}" ] || die "CWTD is not set (tests/cli/CMakeLists.txt sets it when cwtd is built)"
    [ -x "$CWTD" ] || die "CWTD=$CWTD is not an executable"
    T="${CWT_TEST_TMP:-/tmp}/$1.$$"
    rm -rf "$T"
    mkdir -p "$T"
    DAEMON_PIDS_FILE="$T/pids"
    : >"$DAEMON_PIDS_FILE"
}

daemon_cleanup() {
    local pid
    if [ -n "$DAEMON_PIDS_FILE" ] && [ -f "$DAEMON_PIDS_FILE" ]; then
        while read -r pid; do
            kill -TERM "$pid" 2>/dev/null || true
        done <"$DAEMON_PIDS_FILE"
        sleep 0.5
        while read -r pid; do
            kill -KILL "$pid" 2>/dev/null || true
        done <"$DAEMON_PIDS_FILE"
    fi
    if [ -n "${COURIER_PID:-}" ]; then
        kill "$COURIER_PID" 2>/dev/null || true
    fi
}

# make_site NAME [INIT OPTIONS...]: a site folder $T/NAME with keys, rescanning every second.
make_site() {
    local name=$1
    shift
    "$CWTCTL" init --site-id "$name" --dir "$T/$name" --input "${FED_INPUT:-16x16x1}" --classes 10 \
        --federation fed-test --seed 7 "$@" >/dev/null || die "cwtctl init $name"
    sed -i 's/rescan_seconds = [0-9]*/rescan_seconds = 1/; s/group = "cwt"/group = ""/' \
        "$T/$name/cwtd.conf"
    # cwtd refuses to run as root without daemon.user; tests run as root in CI on purpose.
    if [ "$(id -u)" = 0 ]; then
        sed -i 's/rescan_seconds = 1;/rescan_seconds = 1; allow_root = true;/' "$T/$name/cwtd.conf"
        grep -q "allow_root = true" "$T/$name/cwtd.conf" || die "cannot set daemon.allow_root"
    fi
}

# set_recipe NAME KEY VALUE: edits one recipe line of NAME's roster (before sites are added).
set_recipe() {
    sed -i "s/^\( *$2 = \).*;/\1$3;/" "$T/$1/roster.conf"
    grep -q "^ *$2 = $3;" "$T/$1/roster.conf" || die "recipe key $2 not set"
}

# build_roster SITES...: every site's key line into the first site's roster, in this order,
# then the same roster file at every site.
build_roster() {
    local first=$1 s
    for s in "$@"; do
        "$CWTCTL" -c "$T/$s/cwtd.conf" key show | head -n 1 >"$T/$s.pub"
        "$CWTCTL" -c "$T/$first/cwtd.conf" roster add "$(cat "$T/$s.pub")" >/dev/null ||
            die "roster add $s"
    done
    for s in "$@"; do
        [ "$s" = "$first" ] || cp "$T/$first/roster.conf" "$T/$s/roster.conf"
    done
}

# ingest_fashion NAME START COUNT: COUNT Fashion-MNIST training images from START, 20% to val.
ingest_fashion() {
    local name=$1 start=$2 count=$3
    python3 - "$T/$name" "$start" "$count" <<'EOF'
import gzip, struct, sys
out, start, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
src = "/usr/share/datasets/fashion-mnist/"
with gzip.open(src + "train-images-idx3-ubyte.gz") as f:
    magic, n, h, w = struct.unpack(">IIII", f.read(16))
    f.read(start * h * w)
    pixels = f.read(count * h * w)
with gzip.open(src + "train-labels-idx1-ubyte.gz") as f:
    f.read(8 + start)
    labels = f.read(count)
with open(out + "/images-idx3-ubyte", "wb") as f:
    f.write(struct.pack(">IIII", 2051, count, h, w) + pixels)
with open(out + "/labels-idx1-ubyte", "wb") as f:
    f.write(struct.pack(">II", 2049, count) + labels)
EOF
    "$CWTCTL" -c "$T/$name/cwtd.conf" ingest --val-fraction 0.2 \
        "$T/$name/images-idx3-ubyte" "$T/$name/labels-idx1-ubyte" >/dev/null ||
        die "ingest at $name"
}

# start_daemon NAME: cwtd in the foreground, logging to $T/NAME.log; waits for its socket.
start_daemon() {
    local name=$1 i
    "$CWTD" -c "$T/$name/cwtd.conf" -f 2>>"$T/$name.log" &
    echo $! >>"$DAEMON_PIDS_FILE"
    echo $! >"$T/$name.pid"
    for i in $(seq 1 100); do
        if "$CWTCTL" -c "$T/$name/cwtd.conf" status >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$(cat "$T/$name.pid")" 2>/dev/null || {
            cat "$T/$name.log" >&2
            die "cwtd of $name exited at start-up"
        }
        sleep 0.1
    done
    die "cwtd of $name does not answer"
}

# status_field NAME KEY: one top-level string/number of `cwtctl status --json` ("" if absent;
# true/false as 1/0).
# A failed request is retried twice (its message goes to $T/status.err), so that one slow
# answer on a loaded machine does not read as a missing field; with the daemon down the
# offline status (exit 1) is used.
status_field() {
    local out="" i
    for i in 1 2 3; do
        if out=$("$CWTCTL" -c "$T/$1/cwtd.conf" --json status 2>>"$T/status.err"); then
            break
        fi
        sleep 0.3
    done
    printf '%s' "$out" | python3 -c '
import json, sys
try:
    v = json.load(sys.stdin).get(sys.argv[1], "")
except Exception:
    v = ""
print("" if v is None else int(v) if isinstance(v, bool) else v)' "$2"
}

# process_gone PID: the process has exited (a zombie not yet reaped counts as gone).
process_gone() {
    [ ! -e "/proc/$1" ] || grep '^State:.*Z' "/proc/$1/status" 2>/dev/null >/dev/null
}

# wait_for SECONDS COMMAND...: polls until COMMAND succeeds.
wait_for() {
    local limit=$1 i
    shift
    for i in $(seq 1 $((limit * 5))); do
        if "$@"; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# courier_once SITES...: moves every finished bundle from each outbox to its recipients'
# inboxes (cycle bundles to the next site, "-to-all" bundles to every other site) and keeps
# a copy in $T/chain for the auditor.
# A test may hold the courier (bundles wait in the outboxes) while the file $COURIER_HOLD
# exists, and let exactly one bundle through by creating $COURIER_HOLD.one, which the
# courier removes with that delivery: daemon_faults.sh paces the federation by its kills
# this way, however fast the sites hand over.
courier_once() {
    local sites=("$@") n=$# i f base next j one=0
    if [ -n "${COURIER_HOLD:-}" ] && [ -e "$COURIER_HOLD" ]; then
        [ -e "$COURIER_HOLD.one" ] || return 0
        one=1
    fi
    mkdir -p "$T/chain"
    for i in $(seq 0 $((n - 1))); do
        for f in "$T/${sites[$i]}"/outbox/*.cwtb; do
            [ -e "$f" ] || continue
            base=$(basename "$f")
            cp "$f" "$T/chain/$base"
            if [[ "$base" == *-to-all.cwtb ]]; then
                for j in $(seq 0 $((n - 1))); do
                    [ "$j" = "$i" ] && continue
                    cp "$f" "$T/${sites[$j]}/inbox/.$base.part"
                    mv "$T/${sites[$j]}/inbox/.$base.part" "$T/${sites[$j]}/inbox/$base"
                done
                rm -f "$f"
            else
                next=${sites[$(((i + 1) % n))]}
                cp "$f" "$T/$next/inbox/.$base.part"
                mv "$T/$next/inbox/.$base.part" "$T/$next/inbox/$base"
                rm -f "$f"
            fi
            if [ "$one" = 1 ]; then
                rm -f "$COURIER_HOLD.one"
                return 0
            fi
        done
    done
}

# all_finished SITES...: every site reports state "finished".
all_finished() {
    local s
    for s in "$@"; do
        [ "$(status_field "$s" state)" = "finished" ] || return 1
    done
    return 0
}

# setup_federation SITES...: sites with keys, one roster (2 cycles of 8-step visits, batch 32),
# 160 Fashion-MNIST images each (a different slice per site). Knobs: FED_CYCLES,
# FED_VISIT_STEPS, FED_IMAGES, FED_INPUT (16x16x1), FED_OPTIMIZER, FED_LR, FED_HEURISTIC (cwt,
# swt, ensemble; unset keeps the roster's default), FED_EPOCHS (recipe epochs: swt's visit).
setup_federation() {
    local i=0 s
    for s in "$@"; do
        make_site "$s"
    done
    set_recipe "$1" cycles "${FED_CYCLES:-2}"
    set_recipe "$1" visit_unit '"steps"'
    set_recipe "$1" visit_length "${FED_VISIT_STEPS:-8}"
    set_recipe "$1" batch_size 32
    if [ -n "${FED_OPTIMIZER:-}" ]; then set_recipe "$1" optimizer "\"$FED_OPTIMIZER\""; fi
    if [ -n "${FED_LR:-}" ]; then set_recipe "$1" lr "$FED_LR"; fi
    if [ -n "${FED_HEURISTIC:-}" ]; then set_recipe "$1" heuristic "\"$FED_HEURISTIC\""; fi
    if [ -n "${FED_EPOCHS:-}" ]; then set_recipe "$1" epochs "$FED_EPOCHS"; fi
    build_roster "$@"
    for s in "$@"; do
        ingest_fashion "$s" $((i * ${FED_IMAGES:-160})) "${FED_IMAGES:-160}"
        i=$((i + 1))
    done
}

# start_courier SITES...: the file drop, in the background, every 0.2 s.
start_courier() {
    (
        trap 'exit 0' TERM
        while true; do
            courier_once "$@"
            sleep 0.2
        done
    ) &
    COURIER_PID=$!
}

stop_courier() {
    if [ -n "${COURIER_PID:-}" ]; then
        kill "$COURIER_PID" 2>/dev/null || true
        wait "$COURIER_PID" 2>/dev/null || true
        COURIER_PID=""
    fi
}

# ingest_splits SITE: ingests $T/SITE/{train,val}-images with their -labels (IDX files) into
# the site's store as the train and val splits; dies on a failure.
ingest_splits() {
    local split
    for split in train val; do
        "$CWTCTL" -c "$T/$1/cwtd.conf" ingest --split "$split" "$T/$1/$split-images" \
            "$T/$1/$split-labels" >/dev/null || die "ingest $split at $1"
    done
}

# finish_federation SECONDS SITES...: waits up to SECONDS for every site to finish (dying with
# each site's status and log tail if they do not), then stops the courier.
finish_federation() {
    local limit=$1 s
    shift
    wait_for "$limit" all_finished "$@" || {
        for s in "$@"; do "$CWTCTL" -c "$T/$s/cwtd.conf" status || true; tail -5 "$T/$s.log"; done
        die "the federation did not finish"
    }
    stop_courier
}

# run_federation SECONDS SITES...: starts every site's daemon, starts the federation at the
# first site, runs the courier and finishes as finish_federation SECONDS SITES... does.
run_federation() {
    local limit=$1 s
    shift
    for s in "$@"; do start_daemon "$s"; done
    "$CWTCTL" -c "$T/$1/cwtd.conf" start >/dev/null || die "start at $1"
    start_courier "$@"
    finish_federation "$limit" "$@"
}

# final_hashes SITES...: prints each site's final model hash, one a line.
final_hashes() {
    local s
    for s in "$@"; do
        status_field "$s" final_model
    done
}

# check_federation_end SITES...: one final hash everywhere, the chain and every audit log
# verify. Prints the hash.
check_federation_end() {
    local s hashes
    hashes=$(final_hashes "$@" | sort -u)
    [ "$(echo "$hashes" | wc -l)" = 1 ] && [ -n "$hashes" ] ||
        die "sites disagree on the final model: $(final_hashes "$@" | tr '\n' ' ')"
    "$CWTCTL" -c "$T/$1/cwtd.conf" chain verify "$T"/chain/*.cwtb >"$T/chain.txt" 2>&1 ||
        die "chain verify failed: $(cat "$T/chain.txt")"
    for s in "$@"; do
        "$CWTCTL" -c "$T/$s/cwtd.conf" audit verify >/dev/null 2>&1 ||
            die "audit verify failed at $s"
    done
    echo "$hashes"
}

# imports_count SITES...: distinct bundles imported (audit "bundle-opened"), summed over the
# sites. Distinct: a crash between the audit record and the ledger record repeats the record.
imports_count() {
    local s n total=0
    for s in "$@"; do
        n=$("$CWTCTL" -c "$T/$s/cwtd.conf" audit show | grep " bundle-opened " |
            grep -o 'bundle [0-9a-f]\{32\}' | sort -u | wc -l)
        total=$((total + n))
    done
    echo "$total"
}

# check_nothing_lost SITES...: a cwt run of FED_CYCLES cycles over the sites left exactly one
# bundle per hop plus the final one in the chain, and every site imported each bundle meant
# for it exactly once (cycle bundles once, the final bundle once at each other site).
check_nothing_lost() {
    local n=$# cycles=${FED_CYCLES:-2} files opened
    files=$(ls "$T"/chain/*.cwtb | wc -l)
    [ "$files" = $((n * cycles)) ] ||
        die "expected $((n * cycles)) bundles in the chain ($((n * cycles - 1)) cycle + 1 final), found $files"
    opened=$(imports_count "$@")
    [ "$opened" = $((n * cycles - 1 + n - 1)) ] ||
        die "expected $((n * cycles - 1 + n - 1)) bundle imports over all sites, found $opened"
}
