# Shared helpers of the tests/security/*.sh tests (sourced after tests/cli/helpers/daemon_lib.sh,
# whose make_site/setup_federation/start_daemon/status_field/wait_for they use).
#
# sec_two_sites: sites a and b of one roster (1 cycle of 2-step visits, 64 images each),
# no daemon started. sec_model_weights OUT: a's cwtd trains cycle 0 and seals it for b
# ($SEC_HONEST); its payload (weights, optimizer state, cwt.history: what cwtd bundles carry)
# is opened by a copy of b into OUT. sec_set_meta IN OUT KEY VALUE: IN with one metadata value
# changed (python). sec_seal WEIGHTS OUT [ARGS...]: a seals cycle 0 for b.

. "$CWT_SRC/tests/cli/helpers/daemon_lib.sh"

# sec_ids PID: "ruid euid suid fsuid / rgid egid sgid fsgid / groups" from /proc.
sec_ids() {
    awk '/^Uid:/ {u = $2 " " $3 " " $4 " " $5} /^Gid:/ {g = $2 " " $3 " " $4 " " $5}
         /^Groups:/ {$1 = ""; gr = $0} END {sub(/^ +/, "", gr); sub(/ +$/, "", gr); print u " / " g " / " gr}' "/proc/$1/status"
}

# sec_no_caps PID...: every process holds no capability in any set, bounding and ambient
# included; dies naming the first that does.
sec_no_caps() {
    local p caps
    for p in "$@"; do
        caps=$(awk '/^Cap(Inh|Prm|Eff|Bnd|Amb):/ {printf "%s=%s ", $1, $2}' "/proc/$p/status")
        [ "$caps" = "CapInh:=0000000000000000 CapPrm:=0000000000000000 CapEff:=0000000000000000 CapBnd:=0000000000000000 CapAmb:=0000000000000000 " ] ||
            die "process $p ($(cat "/proc/$p/comm")) keeps capabilities: $caps"
    done
}

sec_two_sites() {
    export FED_CYCLES=1 FED_VISIT_STEPS=2 FED_IMAGES=64
    setup_federation a b
}

sec_model_weights() {
    start_daemon a
    "$CWTCTL" -c "$T/a/cwtd.conf" start >/dev/null || die "start at a"
    wait_for 120 sh -c "ls '$T'/a/outbox/*.cwtb >/dev/null 2>&1" || die "a sealed no bundle"
    SEC_HONEST=$(ls "$T"/a/outbox/*.cwtb | head -n 1)
    # Opened by a copy of site b (same keys, its own ledger), so b itself has seen nothing.
    rm -rf "$T/b-open"
    cp -a "$T/b" "$T/b-open"
    "$CWTCTL" -c "$T/b-open/cwtd.conf" bundle open "$SEC_HONEST" -o "$1" >/dev/null ||
        die "cannot open a's bundle at a copy of b"
}

sec_set_meta() {
    python3 - "$@" <<'EOF'
import json, struct, sys
src, dst, key, value = sys.argv[1:5]
b = open(src, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
h.setdefault("__metadata__", {})[key] = value.encode().decode("unicode_escape")
j = json.dumps(h).encode()
j += b" " * ((8 - (8 + len(j)) % 8) % 8)
open(dst, "wb").write(struct.pack("<Q", len(j)) + j + b[8 + n:])
EOF
}

sec_seal() {
    local w=$1 out=$2
    shift 2
    "$CWTCTL" -c "$T/a/cwtd.conf" bundle seal --to b --weights "$w" -o "$out" "$@" >/dev/null ||
        die "bundle seal $out"
}

# sec_drop FILE NAME: copies FILE into b's inbox as NAME the way a courier does (a hidden
# temporary name, then a rename).
sec_drop() {
    cp "$1" "$T/b/inbox/.drop.part"
    mv "$T/b/inbox/.drop.part" "$T/b/inbox/$2"
}

# sec_u8_bundle OUT [BYTES]: a bundle from a to b whose payload is one U8 tensor of BYTES
# (default 16) under a header carrying the roster model's correct fingerprint (issue 18, M3).
sec_u8_bundle() {
    local out=$1 n=${2:-16} fp
    fp=$("$CWTCTL" -c "$T/a/cwtd.conf" model fingerprint) || die "model fingerprint"
    python3 - "$T/u8.safetensors" "$n" "$fp" <<'EOF'
import json, struct, sys
out, n, fp = sys.argv[1], int(sys.argv[2]), sys.argv[3]
h = json.dumps({"__metadata__": {"fingerprint": fp},
                "x": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
h += b" " * ((8 - (8 + len(h)) % 8) % 8)
open(out, "wb").write(struct.pack("<Q", len(h)) + h + bytes(i % 251 for i in range(n)))
EOF
    sec_seal "$T/u8.safetensors" "$out" --model-fp "$fp"
}

# sec_client_conf SITE: a client configuration for SITE that any user can read (socket and
# roster only), at $T/client/cwtd.conf, and the folders above the socket made searchable.
sec_client_conf() {
    mkdir -p "$T/client"
    sed "s|^socket = .*|socket = \"$T/$1/cwtd.sock\";|; s|^roster = .*|roster = \"$T/client/roster.conf\";|" \
        "$T/$1/cwtd.conf" >"$T/client/cwtd.conf"
    cp "$T/$1/roster.conf" "$T/client/roster.conf"
    chmod 755 "$T/client" && chmod 644 "$T/client/"*
    chmod o+x "$CWT_TEST_TMP" "$T" "$T/$1"
}
