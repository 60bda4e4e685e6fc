#!/usr/bin/env bash
# Several replicas benchmark: N jobs (a `command` source printing a few bytes,
# every minute) over 3 daemons on one PostgreSQL state store, for a bounded
# number of minutes. Prints claim latency p50/p99 (the daemons' own timing of
# `claim_fire`, won and lost), statements per fire (pg_stat_statements, over
# one whole minute, heartbeats and lease renewals excluded), how late fires
# started (p50/p99: due time to child spawned, queueing included), PostgreSQL
# CPU, each replica's idle RSS and CPU, and `cairn status` with 100,000 runs.
#
#   bash bench/replicas.sh
#
# Environment:
#   BENCH_JOBS         jobs (default 10000)
#   BENCH_MINUTES      measured minutes after the warm-up minute (default 2)
#   BENCH_CONCURRENCY  [daemon] max_concurrent_runs per replica (default 4)
#   BENCH_RUNS_IN_STORE runs for the `cairn status` timing (default 100000)
#   CAIRN_BIN          cairn binary; unset: `cargo build --release` first
# Needs the Debian `postgresql` server binaries (with pg_stat_statements, part
# of them) and python3. Starts its own PostgreSQL on a free 127.0.0.1 port in a
# temp folder and stops it (and the replicas) at the end.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
N=${BENCH_JOBS:-10000}
MINUTES=${BENCH_MINUTES:-2}
CONCURRENCY=${BENCH_CONCURRENCY:-4}
RUNS=${BENCH_RUNS_IN_STORE:-100000}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || die "PostgreSQL server binaries are needed (Debian postgresql)"
command -v python3 >/dev/null || die "python3 is needed"
build_cairn

WORK=$(mktemp -d /tmp/cairn-bench-replicas.XXXXXX)
chmod 755 "$WORK"
PIDS=()
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- PostgreSQL with pg_stat_statements ---------------------------------------------
mkdir -p "$WORK/pg"
[ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$WORK/pg"
as_pg "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -o "-p $PORT -k $WORK/pg -c listen_addresses=127.0.0.1 -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all -c max_connections=200" -w start >/dev/null
sql() { "$PGBIN/psql" -X -q -A -t -h 127.0.0.1 -p "$PORT" -U postgres -d cairn -c "$1"; }
"$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -c "CREATE DATABASE cairn" >/dev/null
sql "CREATE EXTENSION pg_stat_statements" >/dev/null
URL="postgres://postgres@127.0.0.1:$PORT/cairn"

# --- N jobs, every minute, one shared fs destination -----------------------------------
mkdir -p "$WORK/backups"
python3 - "$WORK" "$URL" "$N" "$CONCURRENCY" <<'EOF'
import sys
work, url, n, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with open(f"{work}/cairn.toml", "w") as f:
    f.write(f'[state]\nurl = "{url}"\nsslmode = "disable"\n\n')
    f.write(f'[daemon]\nmax_concurrent_runs = {concurrency}\n\n')
    f.write(f'[destinations.local]\nkind = "fs"\npath = "{work}/backups"\n\n')
    for i in range(n):
        f.write(f'[jobs.job{i}]\nsource = {{ kind = "command", backup = ["echo", "bench {i}"], extension = "txt" }}\n'
                'destinations = ["local"]\nencryption = { kind = "none" }\nschedules = [{ cron = "* * * * *" }]\n\n')
# The same store with 10 of the jobs, for `cairn status` timings.
with open(f"{work}/cairn.toml") as full, open(f"{work}/cairn-10.toml", "w") as few:
    few.write(full.read().split("[jobs.job10]")[0])
EOF
export CAIRN_CONFIG=$WORK/cairn.toml
"$CAIRN_BIN" history >/dev/null  # creates the schema

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
pg_ticks() { # CPU of this PostgreSQL: its postmaster and the children it waited for
    local pm
    pm=$(head -1 "$WORK/pg/data/postmaster.pid")
    awk '{print $14 + $15 + $16 + $17}' "/proc/$pm/stat"
}
TICK=$(getconf CLK_TCK)

log "starting 3 replicas with $N jobs (every minute)"
for r in r1 r2 r3; do
    CAIRN_REPLICA=$r CAIRN_LOG="info,cairn::schedule::daemon=debug" \
        "$CAIRN_BIN" --log-format json daemon 2>"$WORK/$r.log" &
    PIDS+=("$!")
done
# Warm-up: the first minute (start-up, catch-up) is not measured.
now=$(date +%s); sleep $(( 60 - now % 60 + 50 ))
sql "SELECT pg_stat_statements_reset()" >/dev/null
FROM_MS=$(( ($(date +%s) + 10) * 1000 ))
PG0=$(pg_ticks)
sleep $(( MINUTES * 60 ))
TO_MS=$(( ($(date +%s) + 10) * 1000 ))
PG1=$(pg_ticks)
sql "SELECT calls, regexp_replace(query, '\s+', ' ', 'g') FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'cairn')" > "$WORK/statements.txt"
FIRES=$(sql "SELECT count(*) FROM fire_claims WHERE scheduled_for >= $FROM_MS AND scheduled_for < $TO_MS")
# Idle: the 20 s before the next minute's fires, once that minute's runs ended.
now=$(date +%s); sleep $(( (60 - now % 60 + 25) % 60 ))
declare -A C0 R
for i in 0 1 2; do C0[$i]=$(cpu_ticks "${PIDS[$i]}"); done
sleep 20
IDLE=""
for i in 0 1 2; do
    R[$i]=$(rss_kib "${PIDS[$i]}")
    c=$(( $(cpu_ticks "${PIDS[$i]}") - C0[$i] ))
    IDLE+="r$((i + 1)): RSS $(( R[$i] / 1024 )) MiB, CPU $(python3 -c "print(f'{$c / $TICK / 20 * 100:.1f}')")%  "
done
for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
PIDS=()

# --- figures -------------------------------------------------------------------------
FIGURES=$(python3 - "$WORK" "$FIRES" <<'EOF'
import json, sys
work, fires = sys.argv[1], int(sys.argv[2])
claims, late = [], []
for r in ("r1", "r2", "r3"):
    for line in open(f"{work}/{r}.log"):
        try:
            f = json.loads(line).get("fields", {})
        except ValueError:
            continue
        if "claim_us" in f:
            claims.append(int(f["claim_us"]))
        if f.get("message") == "run started" and "lateness_ms" in f:
            late.append(int(f["lateness_ms"]))
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))] if v else float("nan")
# Statements: all of one database's, less what does not depend on fires.
per_poll = ("INSERT INTO replicas", "FROM schedule_overrides", "UPDATE fire_claims f SET replica",
            "SET until =", "FROM replicas", "pg_stat_statements")
total = excluded = abandoned = 0
for line in open(f"{work}/statements.txt"):
    calls, _, query = line.partition("|")
    if not calls.strip():
        continue
    calls = int(calls)
    total += calls
    if any(p in query for p in per_poll):
        excluded += calls
    if "UPDATE fire_claims f SET replica" in query:
        abandoned += calls
# Each take-over sweep is BEGIN, the UPDATE, COMMIT.
excluded += 2 * abandoned
print(f"claims timed: {len(claims)}; p50 {pct(claims, .5) / 1000:.2f} ms, p99 {pct(claims, .99) / 1000:.2f} ms")
print(f"fires in the measured minutes: {fires}; statements per fire: {(total - excluded) / max(fires, 1):.1f} "
      f"({total - excluded} of {total}; heartbeats, polls and renewals excluded)")
print(f"runs started: {len(late)}; lateness p50 {pct(late, .5)} ms, p99 {pct(late, .99)} ms")
EOF
)
PG_CPU=$(python3 -c "print(f'{($PG1 - $PG0) / $TICK / ($MINUTES * 60) * 100:.1f}')")
printf '\n3 replicas, %s jobs every minute, %s measured minute(s), max_concurrent_runs %s\n' "$N" "$MINUTES" "$CONCURRENCY"
printf '%s\n' "$FIGURES"
printf 'PostgreSQL CPU over the measured minutes: %s%% of one core\n' "$PG_CPU"
printf 'idle replicas: %s\n' "$IDLE"

# --- cairn status with RUNS runs -----------------------------------------------------
sql "INSERT INTO runs (job, kind, trigger, status, started_at, finished_at, bytes, artifact_id, log, host, pid)
     SELECT 'job' || (i % $N), 'backup', 'schedule', 'success', 1700000000000 + i::bigint * 60000,
            1700000000000 + i::bigint * 60000 + 4000, 100, NULL, 'INFO bench', 'benchhost', 1
     FROM generate_series(1, $RUNS) i" >/dev/null
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
status_ms() { # status_ms CONFIG: median wall time of `cairn status` over 5 runs
    CAIRN_CONFIG=$1 "$CAIRN_BIN" status >/dev/null 2>&1 || die "cairn status failed"
    for _ in 1 2 3 4 5; do
        s=$(date +%s%N); CAIRN_CONFIG=$1 "$CAIRN_BIN" status >/dev/null 2>&1
        echo $(( ($(date +%s%N) - s) / 1000000 ))
    done | median
}
STATUS_MS=$(status_ms "$WORK/cairn.toml")
STATUS_10_MS=$(status_ms "$WORK/cairn-10.toml")

printf 'cairn status with %s more runs in the store: %s ms with the %s jobs, %s ms with 10 of them (median of 5)\n' "$RUNS" "$STATUS_MS" "$N" "$STATUS_10_MS"
