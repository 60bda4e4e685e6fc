#!/usr/bin/env bash
# Soak: `cairn daemon` for SOAK_SECS (default 1,800) with SOAK_JOBS jobs
# (default 10) due every 5 s, each a SQLite backup pruned to its 3 newest
# artifacts. Every SAMPLE_SECS (default 30) it samples the daemon's resident
# memory, open file descriptors and threads, and the state store's size; the
# targets are that none of them grows: the last quarter's highest RSS within
# 10 % (+ 2 MiB) of the first quarter's, descriptors and threads back to their
# first-quarter highs, and no failed run.
#
#   bash bench/soak.sh                        # 30 minutes
#   SOAK_SECS=300 SAMPLE_SECS=10 bash bench/soak.sh
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/bench/lib.sh"

SOAK_SECS=${SOAK_SECS:-1800}
SAMPLE_SECS=${SAMPLE_SECS:-30}
SOAK_JOBS=${SOAK_JOBS:-10}
STRICT=${BENCH_STRICT:-0}

build_cairn
mkdir -p "${BENCH_WORK:-$REPO/bench/work}"
WORK=$(mktemp -d "${BENCH_WORK:-$REPO/bench/work}/soak.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cp "$CAIRN_BIN" "$WORK/cairn"
cd "$WORK"

python3 - <<'PY'
import sqlite3
db = sqlite3.connect("app.db")
db.execute("CREATE TABLE events(id INTEGER PRIMARY KEY, body TEXT)")
db.executemany("INSERT INTO events(body) VALUES (?)", [("event %d " % i * 8,) for i in range(20000)])
db.commit()
PY
{
    printf '[daemon]\nmax_concurrent_runs = 4\n\n'
    printf '[destinations.local]\nkind = "fs"\npath = "backups"\n\n'
    for i in $(seq 1 "$SOAK_JOBS"); do
        printf '[jobs.j%02d]\nsource = { kind = "sqlite", path = "app.db" }\n' "$i"
        printf 'destinations = ["local"]\nencryption = { kind = "none" }\n'
        printf 'schedules = [{ cron = "*/5 * * * * *" }]\nretention = { keep_last = 3 }\n\n'
    done
} > cairn.toml

./cairn --config cairn.toml daemon 2>daemon.log &
PID=$!
log "daemon pid $PID: $SOAK_JOBS jobs every 5 s for $SOAK_SECS s, a sample every $SAMPLE_SECS s"
printf 'second\trss_kib\tfds\tthreads\tstate_kib\n' > samples.tsv
start=$(date +%s)
while :; do
    kill -0 "$PID" 2>/dev/null || { tail -n 20 daemon.log >&2; die "the daemon exited"; }
    now=$(($(date +%s) - start))
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$PID/status")
    threads=$(awk '/^Threads/ {print $2}' "/proc/$PID/status")
    fds=$(find "/proc/$PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    state=$(du -k cairn-state.db 2>/dev/null | cut -f1)
    printf '%s\t%s\t%s\t%s\t%s\n' "$now" "$rss" "$fds" "$threads" "${state:-0}" >> samples.tsv
    [ "$now" -ge "$SOAK_SECS" ] && break
    sleep "$SAMPLE_SECS"
done
kill -TERM "$PID"
wait "$PID" || true
./cairn --config cairn.toml history --json -n 1000000 > history.json

python3 - "$SOAK_SECS" "$SOAK_JOBS" "$STRICT" "$(nproc)" "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')" <<'PY'
import json
import sys

secs, jobs, strict, ncpu, commit = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4], sys.argv[5]
rows = [line.rstrip("\n").split("\t") for line in open("samples.tsv")][1:]
samples = [tuple(int(v) for v in r) for r in rows]
runs = json.load(open("history.json"))
by_status = {}
for r in runs:
    key = (r["kind"], r["status"])
    by_status[key] = by_status.get(key, 0) + 1

print()
print(f"cairn daemon soak: {jobs} SQLite jobs every 5 s, keep_last = 3, {secs} s, {ncpu} CPUs, commit {commit}")
print()
print(f"| {'second':>6} | {'RSS MiB':>8} | {'fds':>4} | {'threads':>7} | {'state store KiB':>15} |")
print("|--------|----------|------|---------|-----------------|")
step = max(1, len(samples) // 20)
for s in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
    print(f"| {s[0]:>6} | {s[1] / 1024:8.1f} | {s[2]:>4} | {s[3]:>7} | {s[4]:>15} |")
print()
print("runs: " + ", ".join(f"{kind} {status}: {n}" for (kind, status), n in sorted(by_status.items())))

quarter = max(1, len(samples) // 4)
first, last = samples[:quarter], samples[-quarter:]
def high(rows, i):
    return max(r[i] for r in rows)
failed = False
def check(ok, text):
    global failed
    failed |= not ok
    print(f"  [{'PASS' if ok else 'FAIL'}] {text}")
print()
print("Targets:")
r0, r1 = high(first, 1), high(last, 1)
check(r1 <= r0 * 1.1 + 2048, f"RSS flat: last quarter's high {r1 / 1024:.1f} MiB <= 1.1 x first quarter's {r0 / 1024:.1f} MiB + 2 MiB")
f0, f1 = high(first, 2), high(last, 2)
check(f1 <= f0, f"open descriptors flat: last quarter's high {f1} <= first quarter's {f0}")
t0, t1 = high(first, 3), high(last, 3)
check(t1 <= t0, f"threads flat: last quarter's high {t1} <= first quarter's {t0}")
done = sum(n for (kind, status), n in by_status.items() if kind == "backup" and status == "success")
bad = sum(n for (kind, status), n in by_status.items() if status not in ("success", "interrupted"))
expected = jobs * secs // 5
check(bad == 0 and done >= expected * 0.9, f"{done} successful backups of about {expected} fires, {bad} failed runs")
sys.exit(1 if failed and strict else 0)
PY
