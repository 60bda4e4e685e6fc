#!/usr/bin/env bash
# Every benchmark in one run, one table of targets with PASS/FAIL, written to
# bench/results/LATEST.md (kept in the repository, with the machine and the
# date), so that a regression shows up as a changed line in a diff.
#
#   bash bench/all.sh                 # the full sizes (~45 min on 2 cores)
#   BENCH_QUICK=1 bash bench/all.sh   # each script's quick sizes (~15 min)
#   BENCH_ONLY="sqlite web" bash bench/all.sh
#
# Each script's whole output stays in bench/work/all-<script>.txt. A script
# that fails is reported as such and the others still run; the exit status is
# 1 when a script failed or a target was missed.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"

SCRIPTS=${BENCH_ONLY:-"sqlite databases s3 daemon web state_store replicas"}
QUICK=${BENCH_QUICK:-0}

# The quick sizes each script documents (bench/README.md's table).
quick_env() {
    case "$1" in
        sqlite) echo "BENCH_SIZES_MB=100 BENCH_RUNS=2" ;;
        databases) echo "PG_SCALE=10 MY_MB=50 BENCH_RUNS=2" ;;
        s3) echo "S3_DB_MB=100 BENCH_RUNS=2" ;;
        daemon) echo "IDLE_SECS=20 FIRE_SECS=20" ;;
        web) echo "WRK_SECS=5 BIG_MB=100" ;;
        state_store) echo "BENCH_REPEAT=3" ;;
        replicas) echo "BENCH_JOBS=200 BENCH_MINUTES=1" ;;
    esac
}

build_cairn
export CAIRN_BIN
mkdir -p "$REPO/bench/work" "$REPO/bench/results"
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
rows=()
failed=0
for script in $SCRIPTS; do
    out="$REPO/bench/work/all-$script.txt"
    settings=""
    [ "$QUICK" = 1 ] && settings=$(quick_env "$script")
    log "bench/$script.sh ${settings:-(full sizes)}"
    begin=$(date +%s)
    # shellcheck disable=SC2086 # settings are NAME=VALUE words
    env $settings bash "$REPO/bench/$script.sh" >"$out" 2>&1
    status=$?
    seconds=$(($(date +%s) - begin))
    if [ "$status" != 0 ]; then
        failed=1
        rows+=("| \`$script.sh\` | the script failed (exit $status, ${seconds} s): see bench/work/all-$script.txt | FAIL |")
        continue
    fi
    # Target lines: "[PASS] text" / "[FAIL] text" and table rows "| what | figure | target [PASS/FAIL] |".
    found=0
    while IFS= read -r line; do
        found=1
        case "$line" in *FAIL*) failed=1 ;; esac
        text=$(printf '%s' "$line" | sed -E 's/^[[:space:]]*//; s/^\|[[:space:]]*//; s/[[:space:]]*\|[[:space:]]*$//; s/\|/—/g')
        verdict=PASS
        case "$line" in *FAIL*) verdict=FAIL ;; esac
        rows+=("| \`$script.sh\` | $text | $verdict |")
    done < <(grep -E '\[(PASS|FAIL)[^]]*\]' "$out")
    [ "$found" = 1 ] || rows+=("| \`$script.sh\` | ran in ${seconds} s; no targets of its own (figures in bench/work/all-$script.txt) | — |")
done

{
    echo "# Benchmark results"
    echo
    echo "\`bash bench/all.sh\`$([ "$QUICK" = 1 ] && echo ' with BENCH_QUICK=1 (quick sizes)'), started $started."
    echo
    echo "- machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr)"
    echo "- cairn: $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown), $("$CAIRN_BIN" --version 2>/dev/null), $(rustc --version 2>/dev/null)"
    echo "- load average at start: $load_start; at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "| script | target and figure | verdict |"
    echo "|---|---|---|"
    printf '%s\n' "${rows[@]}"
} >"$REPO/bench/results/LATEST.md"
cat "$REPO/bench/results/LATEST.md"
exit "$failed"
