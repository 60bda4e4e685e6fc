#!/usr/bin/env bash
# SQLite backup benchmark: cairn vs a shell pipeline vs restic.
#
#   BENCH_SIZES_MB="100 500" bash bench/sqlite.sh
#
# Environment:
#   BENCH_SIZES_MB  database sizes in MB (default "100 500")
#   BENCH_RUNS      measured runs per tool and size; the median is reported (default 5)
#   BENCH_WARMUP    unmeasured warm-up rounds per size (default 1)
#   BENCH_WORK      work folder; generated databases are cached here (default bench/work)
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
SIZES=${BENCH_SIZES_MB:-100 500}
RUNS=${BENCH_RUNS:-5}
WARMUP=${BENCH_WARMUP:-1}
STRICT=${BENCH_STRICT:-0}
GNU_TIME=/usr/bin/time


# --- 1. tools -----------------------------------------------------------------

ensure_tools() {
    local missing=() pair cmd pkg
    for pair in sqlite3:sqlite3 zstd:zstd age:age restic:restic "$GNU_TIME":time python3:python3; do
        cmd=${pair%:*}
        pkg=${pair##*:}
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    apt_install "${missing[@]}"
}


ensure_tools
build_cairn
CAIRN_BIN=$(realpath "$CAIRN_BIN")
mkdir -p "$WORK"
WORK=$(realpath "$WORK")

# --- 2. data --------------------------------------------------------------------

# The cache key: generator source and requested size.
GEN_HASH=$(sha256sum "$BENCH_DIR/gen_sqlite.py" | cut -c1-16)

ensure_db() { # MB -> prints the database path
    local mb=$1 db="$WORK/sqlite-${1}mb.db"
    local stamp="$db.stamp" want="gen=$GEN_HASH size_mb=$mb"
    if [ -f "$db" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        log "using cached $db ($(du -m "$db" | cut -f1) MB)"
    else
        log "generating ${mb} MB database $db"
        rm -f "$db" "$db-wal" "$db-shm" "$stamp"
        python3 "$BENCH_DIR/gen_sqlite.py" "$db" "$mb"
        echo "$want" >"$stamp"
    fi
    printf '%s\n' "$db"
}

# --- 3. measurement ---------------------------------------------------------------

RUN_DIR=$(mktemp -d "$WORK/run.XXXXXX")
cleanup() { rm -rf "$RUN_DIR"; }
trap cleanup EXIT
RESULTS=$RUN_DIR/results.tsv  # size_mb tool run wall_s rss_kib cpu_s
SIZES_TSV=$RUN_DIR/sizes.tsv  # size_mb what bytes
CHECKS=$RUN_DIR/checks.txt
: >"$RESULTS"
: >"$SIZES_TSV"
: >"$CHECKS"

export RESTIC_PASSWORD=cairn-bench-password
export RESTIC_CACHE_DIR=$RUN_DIR/restic-cache

# measure SIZE TOOL RUN CMD...: wall time, peak RSS and CPU time by GNU time.
# RUN 0 is the warm-up and is not recorded. Stdout of CMD is discarded.
measure() {
    local size=$1 tool=$2 run=$3
    shift 3
    local out=$RUN_DIR/time.out
    if ! "$GNU_TIME" -f '%e %M %U %S' -o "$out" "$@" >/dev/null 2>"$RUN_DIR/cmd.err"; then
        cat "$RUN_DIR/cmd.err" >&2
        die "$tool failed (size $size, run $run): $*"
    fi
    local wall rss user sys
    # On failure GNU time writes a status line first; the figures are the last line.
    read -r wall rss user sys < <(tail -n1 "$out")
    if [ "$run" -gt 0 ]; then
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$size" "$tool" "$run" "$wall" "$rss" \
            "$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')" >>"$RESULTS"
    fi
}

# Records the sum of the peak RSS of the processes of a pipeline that run at
# the same time (an upper bound of the pipeline's real peak; GNU time on the
# `bash -c` tree reports only the largest single process).
record_concurrent() { # SIZE TOOL RUN KiB
    [ "$4" -gt 0 ] || return 0
    [ "$3" -gt 0 ] && printf '%s\t%s\t%s\t0\t%s\t0\n' "$1" "$2" "$3" "$4" >>"$RESULTS"
    return 0
}
rss_of() { tail -n1 "$1"; }

bench_size() {
    local mb=$1 db
    db=$(ensure_db "$mb")
    local d=$RUN_DIR/s$mb
    mkdir -p "$d"
    local identity=$d/identity.txt recipient
    recipient=$("$CAIRN_BIN" keygen --output "$identity" 2>/dev/null)
    cat >"$d/cairn.toml" <<EOF
[destinations.local]
kind = "fs"
path = "$d/cairn-dest"

[jobs.bench]
source = { kind = "sqlite", path = "$db" }
destinations = ["local"]
compression = "zstd"
encryption = { kind = "age", recipients = ["$recipient"], identity_file = "$identity" }
EOF
    printf '%s\tdatabase\t%s\n' "$mb" "$(stat -c %s "$db")" >>"$SIZES_TSV"

    local run total=$((WARMUP + RUNS)) r
    for ((r = 1; r <= total; r++)); do
        run=$((r - WARMUP))
        [ "$run" -le 0 ] && run=0
        log "size ${mb} MB: round $r/$total$([ "$run" -eq 0 ] && echo ' (warm-up)')"

        # a. cairn backup into a fresh fs destination
        rm -rf "$d/cairn-dest"
        measure "$mb" "cairn backup" "$run" \
            "$CAIRN_BIN" --config "$d/cairn.toml" --quiet backup bench

        # b. shell pipeline: .backup, then zstd | age (timed as one bash -c)
        rm -f "$d/shell.bak" "$d/shell.out" "$d"/rss.*
        measure "$mb" "shell backup" "$run" bash -c '
            set -euo pipefail
            T=$1; R=$2
            "$T" -f %M -o "$R.sqlite3" sqlite3 "$3" ".backup '"'"'$4'"'"'"
            "$T" -f %M -o "$R.zstd" zstd -q -T0 -3 -c "$4" \
              | "$T" -f %M -o "$R.age" age -r "$5" >"$6"
        ' _ "$GNU_TIME" "$d/rss" "$db" "$d/shell.bak" "$recipient" "$d/shell.out"
        record_concurrent "$mb" "shell backup (sum of concurrent procs)" "$run" \
            "$(python3 -c 'import sys; a,b,c=map(int,sys.argv[1:]); print(max(a, b+c))' \
                "$(rss_of "$d/rss.sqlite3")" "$(rss_of "$d/rss.zstd")" "$(rss_of "$d/rss.age")")"

        # c. restic: .backup (timed) then restic backup of the copy into a fresh repo
        rm -rf "$d/restic-repo" "$d/restic-src" "$RESTIC_CACHE_DIR"
        mkdir -p "$d/restic-src"
        restic init --quiet --repo "$d/restic-repo" >/dev/null
        measure "$mb" "sqlite3 .backup (for restic)" "$run" \
            sqlite3 "$db" ".backup '$d/restic-src/bench.db'"
        measure "$mb" "restic backup" "$run" \
            restic --quiet --repo "$d/restic-repo" backup "$d/restic-src/bench.db"

        # d. restores
        rm -f "$d/restored-cairn.db" "$d/restored-shell.db"
        measure "$mb" "cairn restore" "$run" \
            "$CAIRN_BIN" --config "$d/cairn.toml" --quiet restore bench --to "$d/restored-cairn.db"
        measure "$mb" "shell restore" "$run" bash -c '
            set -euo pipefail
            T=$1; R=$2
            "$T" -f %M -o "$R.age" age -d -i "$3" "$4" \
              | "$T" -f %M -o "$R.zstd" zstd -q -d -c >"$5"
        ' _ "$GNU_TIME" "$d/rss" "$identity" "$d/shell.out" "$d/restored-shell.db"
        record_concurrent "$mb" "shell restore (sum of concurrent procs)" "$run" \
            "$(($(rss_of "$d/rss.age") + $(rss_of "$d/rss.zstd")))"
        # What cairn restore does on top by default: PRAGMA quick_check of the result.
        measure "$mb" "sqlite3 quick_check (restored file)" "$run" \
            sqlite3 "$d/restored-shell.db" "PRAGMA quick_check"

        if [ "$r" -eq "$total" ]; then
            local artifact
            artifact=$(find "$d/cairn-dest" -type f -name '*.sqlite.zst.age' -not -path '*/.partial/*' | head -n1)
            [ -n "$artifact" ] || die "no cairn artifact found in $d/cairn-dest"
            printf '%s\tcairn\t%s\n' "$mb" "$(stat -c %s "$artifact")" >>"$SIZES_TSV"
            printf '%s\tshell\t%s\n' "$mb" "$(stat -c %s "$d/shell.out")" >>"$SIZES_TSV"
            printf '%s\trestic\t%s\n' "$mb" "$(du -sb "$d/restic-repo" | cut -f1)" >>"$SIZES_TSV"
            # Sanity: both restores give a database with the same content.
            local a b
            a=$(sqlite3 "$d/restored-cairn.db" "PRAGMA quick_check; SELECT count(*) FROM orders; SELECT sum(occurred_at) FROM events;" | tr '\n' ' ')
            b=$(sqlite3 "$d/restored-shell.db" "PRAGMA quick_check; SELECT count(*) FROM orders; SELECT sum(occurred_at) FROM events;" | tr '\n' ' ')
            if [ "$a" = "$b" ] && [ "${a%% *}" = ok ]; then
                echo "$mb MB: cairn and shell restores agree (quick_check ok, same row counts and sums)" >>"$CHECKS"
            else
                echo "$mb MB: RESTORES DIFFER: cairn [$a] shell [$b]" >>"$CHECKS"
            fi
            if cmp -s "$d/restored-cairn.db" "$db"; then
                echo "$mb MB: cairn restore is byte-identical to the source database" >>"$CHECKS"
            fi
        fi
        rm -f "$d/shell.bak" "$d/restic-src/bench.db" "$d/restored-cairn.db" "$d/restored-shell.db"
    done
    rm -rf "$d"
}

log "cairn: $CAIRN_BIN ($("$CAIRN_BIN" --version))"
log "sizes: $SIZES MB; $RUNS runs + $WARMUP warm-up; $(nproc) CPUs; zstd $(zstd --version | grep -o 'v[0-9.]*' | head -n1); age $(age --version); $(restic version | cut -d' ' -f1-2); sqlite3 $(sqlite3 --version | cut -d' ' -f1)"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date +%s)
for mb in $SIZES; do
    bench_size "$mb"
done
log "measured in $(($(date +%s) - STARTED)) s"
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
# Raw per-run figures (size_mb tool run wall_s rss_kib cpu_s) of the last run, for a closer look.
cp "$RESULTS" "$WORK/sqlite-last-results.tsv"

# --- 4. report ----------------------------------------------------------------------

python3 - "$RESULTS" "$SIZES_TSV" "$CHECKS" "$STRICT" "$(nproc)" "$LOAD_START" "$LOAD_END" <<'PY'
import statistics
import sys
from collections import defaultdict

results, sizes_tsv, checks, strict = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
ncpu, load_start, load_end = sys.argv[5], sys.argv[6], sys.argv[7]
runs = defaultdict(list)
order = []
for line in open(results):
    size, tool, run, wall, rss, cpu = line.rstrip("\n").split("\t")
    key = (int(size), tool)
    if key not in order:
        order.append(key)
    runs[key].append((float(wall), int(rss), float(cpu)))
stored = {}
for line in open(sizes_tsv):
    size, what, n = line.rstrip("\n").split("\t")
    stored[(int(size), what)] = int(n)

def med(key, i):
    return statistics.median(r[i] for r in runs[key])

def low(key, i):
    return min(r[i] for r in runs[key])

sizes = sorted({s for s, _ in order})
derived = {}
for s in sizes:
    k1, k2 = (s, "sqlite3 .backup (for restic)"), (s, "restic backup")
    if k1 in runs and k2 in runs:
        derived[(s, "restic total (.backup + restic)")] = [
            (a[0] + b[0], max(a[1], b[1]), a[2] + b[2]) for a, b in zip(runs[k1], runs[k2])]
    k1, k2 = (s, "shell restore"), (s, "sqlite3 quick_check (restored file)")
    if k1 in runs and k2 in runs:
        derived[(s, "shell restore + quick_check")] = [
            (a[0] + b[0], max(a[1], b[1]), a[2] + b[2]) for a, b in zip(runs[k1], runs[k2])]
runs.update(derived)
for key in derived:
    after = "restic backup" if key[1].startswith("restic") else "sqlite3 quick_check (restored file)"
    order.insert(order.index((key[0], after)) + 1, key)

print()
print(f"Medians of {len(next(iter(runs.values())))} runs (after warm-up); 'min' is the fastest run. "
      "Peak RSS: GNU time %M (largest single process of the command's tree).")
print(f"{ncpu} CPUs; load average (1/5/15 min) {load_start} at start, {load_end} at end.")
print()
hdr = f"| {'DB MB':>6} | {'tool':<40} | {'wall s':>7} | {'min s':>6} | {'CPU s':>6} | {'peak RSS MiB':>12} |"
print(hdr)
print("|" + "|".join("-" * (len(c)) for c in hdr.split("|")[1:-1]) + "|")
for key in order:
    s, tool = key
    wall = med(key, 0)
    rss = med(key, 1) / 1024
    cpu = med(key, 2)
    concurrent = "concurrent" in tool
    fastest = low(key, 0)
    print(f"| {stored.get((s, 'database'), s * 1e6) / 1e6:>6.0f} | {tool:<40} | "
          f"{'' if concurrent else f'{wall:7.2f}':>7} | {'' if concurrent else f'{fastest:6.2f}':>6} | "
          f"{'' if concurrent else f'{cpu:6.2f}':>6} | {rss:>12.1f} |")

print()
print("Stored bytes (one artifact; restic: whole repository after one backup):")
print()
print(f"| {'DB MB':>6} | {'database':>12} | {'cairn':>12} | {'shell':>12} | {'restic repo':>12} | cairn/shell |")
print("|--------|--------------|--------------|--------------|--------------|-------------|")
for s in sizes:
    db, c, sh, rs = (stored.get((s, w)) for w in ("database", "cairn", "shell", "restic"))
    print(f"| {db / 1e6:>6.0f} | {db:>12} | {c:>12} | {sh:>12} | {rs:>12} | {c / sh:>11.3f} |")

print()
print("Ratios (median wall time; < 1 means cairn is faster):")
print()
print(f"| {'DB MB':>6} | cairn/shell backup | cairn/restic backup | cairn/restic total | cairn/shell restore "
      f"| cairn/(shell restore + quick_check) | cairn/shell backup RSS |")
print("|--------|--------------------|---------------------|--------------------|---------------------"
      "|-------------------------------------|------------------------|")
for s in sizes:
    cb, sb = med((s, "cairn backup"), 0), med((s, "shell backup"), 0)
    rb, rt = med((s, "restic backup"), 0), med((s, "restic total (.backup + restic)"), 0)
    cr, sr = med((s, "cairn restore"), 0), med((s, "shell restore"), 0)
    si = med((s, "shell restore + quick_check"), 0)
    crss = med((s, "cairn backup"), 1)
    srss = med((s, "shell backup (sum of concurrent procs)"), 1)
    print(f"| {stored[(s, 'database')] / 1e6:>6.0f} | {cb / sb:>18.2f} | {cb / rb:>19.2f} | {cb / rt:>18.2f} | "
          f"{cr / sr:>19.2f} | {cr / si:>35.2f} | {crss / srss:>22.2f} |")

print()
print("Targets:")
failed = False
def check(ok, text):
    global failed
    failed |= not ok
    print(f"  [{'PASS' if ok else 'FAIL'}] {text}")
for s in sizes:
    cb, sb = med((s, "cairn backup"), 0), med((s, "shell backup"), 0)
    check(cb <= 0.8 * sb, f"{s} MB: cairn backup wall {cb:.2f} s <= 0.8 x shell pipeline {sb:.2f} s "
                          f"(= {0.8 * sb:.2f} s; ratio {cb / sb:.2f}; fastest runs: "
                          f"{low((s, 'cairn backup'), 0) / low((s, 'shell backup'), 0):.2f})")
    cr, si = med((s, "cairn restore"), 0), med((s, "shell restore + quick_check"), 0)
    check(cr <= 1.5 * si, f"{s} MB: cairn restore wall {cr:.2f} s <= 1.5 x (age -d | zstd -d, then quick_check) "
                          f"{si:.2f} s (= {1.5 * si:.2f} s; ratio {cr / si:.2f}; fastest runs: "
                          f"{low((s, 'cairn restore'), 0) / low((s, 'shell restore + quick_check'), 0):.2f})")
    rss = med((s, "cairn backup"), 1) / 1024
    check(rss <= 64, f"{s} MB: cairn backup peak RSS {rss:.1f} MiB <= 64 MiB")
if len(sizes) > 1:
    lo, hi = sizes[0], sizes[-1]
    r_lo, r_hi = med((lo, "cairn backup"), 1) / 1024, med((hi, "cairn backup"), 1) / 1024
    # "not growing": within 10 % or 4 MiB, whichever is larger, of the smallest size
    check(r_hi - r_lo <= max(4.0, 0.10 * r_lo),
          f"cairn backup peak RSS does not grow with size: {lo} MB {r_lo:.1f} MiB -> {hi} MB {r_hi:.1f} MiB "
          f"(allowed +{max(4.0, 0.10 * r_lo):.1f} MiB)")
print()
print("Sanity:")
for line in open(checks):
    print("  " + line.rstrip())
    failed |= "DIFFER" in line
sys.exit(1 if (failed and strict) else 0)
PY
