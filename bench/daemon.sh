#!/usr/bin/env bash
# The daemon idle and on time: 1,000 jobs scheduled, resident memory and CPU
# use over an idle minute (targets: < 20 MB RSS, < 0.1 % of one core), then
# the lateness of fires (target: p99 < 1 s) with 10 jobs firing every 5 s
# among the 1,000.
#
#   bash bench/daemon.sh                 # IDLE_SECS=60 FIRE_SECS=60 JOBS=1000
#   IDLE_SECS=20 FIRE_SECS=20 bash bench/daemon.sh
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/bench/lib.sh"

JOBS=${JOBS:-1000}
IDLE_SECS=${IDLE_SECS:-60}
FIRE_SECS=${FIRE_SECS:-60}
FIRING_JOBS=${FIRING_JOBS:-10}

build_cairn
mkdir -p "${BENCH_WORK:-$REPO/bench/work}"
WORK=$(mktemp -d "${BENCH_WORK:-$REPO/bench/work}/daemon.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cp "$CAIRN_BIN" "$WORK/cairn"
CAIRN="$WORK/cairn"

# config FIRING: JOBS jobs; the first FIRING of them every 5 s, the rest daily.
write_config() {
    local firing=$1 file=$2
    {
        printf '[destinations.local]\nkind = "fs"\npath = "backups"\n\n'
        printf '[daemon]\nmax_concurrent_runs = 64\n\n'
        for i in $(seq 1 "$JOBS"); do
            local cron="0 3 * * *"
            [ "$i" -le "$firing" ] && cron="*/5 * * * * *"
            printf '[jobs.j%04d]\nsource = { kind = "command", backup = ["true"] }\n' "$i"
            printf 'destinations = ["local"]\nencryption = { kind = "none" }\n'
            printf 'schedules = [{ cron = "%s" }]\n\n' "$cron"
        done
    } > "$file"
}

# proc_cpu_ticks PID: utime + stime of the process (not its children).
proc_cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
proc_rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
proc_hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

log "phase 1: $JOBS jobs, none due, ${IDLE_SECS}s idle"
mkdir -p "$WORK/idle"
write_config 0 "$WORK/idle/cairn.toml"
(cd "$WORK/idle" && exec "$CAIRN" --config cairn.toml daemon 2>daemon.log) &
PID=$!
sleep 3   # start-up: parse config, plan, open the state store
ticks0=$(proc_cpu_ticks $PID)
t0=$(date +%s.%N)
sleep "$IDLE_SECS"
ticks1=$(proc_cpu_ticks $PID)
t1=$(date +%s.%N)
rss=$(proc_rss_kib $PID)
hwm=$(proc_hwm_kib $PID)
kill -TERM $PID; wait $PID || true
hz=$(getconf CLK_TCK)
cpu_pct=$(awk -v a="$ticks0" -v b="$ticks1" -v hz="$hz" -v t0="$t0" -v t1="$t1" \
    'BEGIN { printf "%.3f", 100 * (b - a) / hz / (t1 - t0) }')

log "phase 2: $JOBS jobs, $FIRING_JOBS firing every 5 s, ${FIRE_SECS}s"
mkdir -p "$WORK/fire"
write_config "$FIRING_JOBS" "$WORK/fire/cairn.toml"
(cd "$WORK/fire" && CAIRN_LOG=info exec "$CAIRN" --config cairn.toml --log-format json daemon 2>daemon.log) &
PID=$!
sleep "$FIRE_SECS"
fire_hwm=$(proc_hwm_kib $PID)
kill -TERM $PID; wait $PID || true
python3 - "$WORK/fire/daemon.log" > "$WORK/lateness.txt" <<'PY'
import json, sys
late = []
for line in open(sys.argv[1]):
    try:
        v = json.loads(line)
    except ValueError:
        continue
    f = v.get("fields", {})
    if f.get("message") == "run started" and "lateness_ms" in f:
        late.append(int(f["lateness_ms"]))
late.sort()
def pct(p):
    return late[min(len(late) - 1, int(round(p / 100 * (len(late) - 1))))] if late else -1
print(len(late), pct(50), pct(99), late[-1] if late else -1)
PY
read -r fires p50 p99 worst < "$WORK/lateness.txt"

verdict() { if [ "$1" = 1 ]; then echo PASS; else echo FAIL; fi; }
rss_ok=$(awk -v k="$hwm" 'BEGIN { print (k < 20 * 1024) ? 1 : 0 }')
cpu_ok=$(awk -v c="$cpu_pct" 'BEGIN { print (c < 0.1) ? 1 : 0 }')
late_ok=$(awk -v p="$p99" -v n="$fires" 'BEGIN { print (n > 0 && p < 1000) ? 1 : 0 }')
cat <<REPORT

Daemon with $JOBS jobs (load average now: $(cut -d' ' -f1-3 /proc/loadavg))

| measure | value | target |
|---|---|---|
| idle RSS after ${IDLE_SECS}s | $((rss / 1024)).$(( (rss % 1024) * 10 / 1024 )) MiB | |
| idle peak RSS (VmHWM) | $((hwm / 1024)).$(( (hwm % 1024) * 10 / 1024 )) MiB | < 20 MB [$(verdict "$rss_ok")] |
| idle CPU over ${IDLE_SECS}s | ${cpu_pct} % of one core | < 0.1 % [$(verdict "$cpu_ok")] |
| fires in ${FIRE_SECS}s ($FIRING_JOBS jobs every 5 s) | $fires | |
| lateness p50 / p99 / worst | ${p50} / ${p99} / ${worst} ms | p99 < 1000 ms [$(verdict "$late_ok")] |
| daemon peak RSS while firing | $((fire_hwm / 1024)) MiB | |
REPORT
if [ "${BENCH_STRICT:-0}" = 1 ] && [ "$rss_ok$cpu_ok$late_ok" != 111 ]; then exit 1; fi
