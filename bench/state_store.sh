#!/usr/bin/env bash
# State store benchmark: `cairn status` and `cairn history` with 100,000 runs
# in the SQLite store and in PostgreSQL (copied there with `cairn state copy`,
# which is timed too).
#
#   bash bench/state_store.sh
#
# Environment:
#   BENCH_RUNS_IN_STORE  runs to generate (default 100000)
#   BENCH_REPEAT         timed repetitions per command; the median is printed (default 5)
#   BENCH_JOBS           jobs in the config, the runs spread over them (default 200)
#   CAIRN_BIN            cairn binary; unset: `cargo build --release` first
# Needs the Debian `postgresql` server binaries and sqlite3. Starts its own
# PostgreSQL on a free 127.0.0.1 port in a temp folder and stops it at the end.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
N=${BENCH_RUNS_IN_STORE:-100000}
REPEAT=${BENCH_REPEAT:-5}
JOBS=${BENCH_JOBS:-200}
command -v sqlite3 >/dev/null || die "sqlite3 is needed"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || die "PostgreSQL server binaries are needed (Debian postgresql)"
build_cairn

WORK=$(mktemp -d /tmp/cairn-bench-state.XXXXXX)
chmod 755 "$WORK"  # the postgres user reaches its data folder
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() { as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT

# --- a config with JOBS jobs and a SQLite store of N runs -------------------------
mkdir -p "$WORK/data" "$WORK/backups"
echo hello > "$WORK/data/file"
{
  printf '[destinations.local]\nkind = "fs"\npath = "%s/backups"\n\n' "$WORK"
  for j in $(seq 0 $((JOBS - 1))); do
    printf '[jobs.job%s]\nsource = { kind = "files", path = "%s/data" }\ndestinations = ["local"]\nencryption = { kind = "none" }\nschedules = [{ cron = "0 3 * * *" }]\n\n' "$j" "$WORK"
  done
} > "$WORK/cairn.toml"
export CAIRN_CONFIG=$WORK/cairn.toml
"$CAIRN_BIN" history >/dev/null  # creates the store and its schema
log "generating $N runs in SQLite"
sqlite3 "$WORK/cairn-state.db" "
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $N)
INSERT INTO runs (job, kind, trigger, status, started_at, finished_at, bytes, artifact_id, error, details, log, host, pid)
SELECT 'job' || (i % $JOBS), CASE i % 4 WHEN 0 THEN 'verify' ELSE 'backup' END, 'schedule',
       CASE WHEN i % 50 = 0 THEN 'failure' ELSE 'success' END,
       1700000000000 + i * 60000, 1700000000000 + i * 60000 + 4000, 1000 + i,
       printf('20231114T%06dZ-%04x', i % 1000000, i % 65536), NULL, NULL,
       'INFO starting' || char(10) || 'INFO uploaded ' || i || ' bytes' || char(10), 'benchhost', 1
FROM n;"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() { # timed LABEL CMD...: prints the median wall time in ms
  local label=$1; shift
  "$@" >/dev/null 2>&1 || die "$label failed: $*"
  for _ in $(seq "$REPEAT"); do
    local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N)
    echo $(( (e - s) / 1000000 ))
  done | median
}

# --- PostgreSQL ---------------------------------------------------------------------
mkdir -p "$WORK/pg"
[ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$WORK/pg"
as_pg "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -o "-p $PORT -k $WORK/pg -c listen_addresses=127.0.0.1" -w start >/dev/null
"$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -c "CREATE DATABASE cairn" >/dev/null
URL="postgres://postgres@127.0.0.1:$PORT/cairn"
s=$(date +%s%N)
"$CAIRN_BIN" state copy --to "$URL" --sslmode disable >/dev/null
COPY_MS=$(( ($(date +%s%N) - s) / 1000000 ))
sed "1i [state]\nurl = \"$URL\"\nsslmode = \"disable\"\n" "$WORK/cairn.toml" > "$WORK/cairn-pg.toml"

SQ_STATUS=$(timed "status (sqlite)" "$CAIRN_BIN" status)
SQ_HISTORY=$(timed "history (sqlite)" "$CAIRN_BIN" history)
SQ_HISTORY_ALL=$(timed "history -n 100000 (sqlite)" "$CAIRN_BIN" history --json -n "$N")
export CAIRN_CONFIG=$WORK/cairn-pg.toml
PG_STATUS=$(timed "status (postgres)" "$CAIRN_BIN" status)
PG_HISTORY=$(timed "history (postgres)" "$CAIRN_BIN" history)
PG_HISTORY_ALL=$(timed "history -n 100000 (postgres)" "$CAIRN_BIN" history --json -n "$N")

printf '\nState store with %s runs over %s jobs (median of %s, wall ms)\n' "$N" "$JOBS" "$REPEAT"
printf '%-34s %10s %10s\n' "" sqlite postgres
printf '%-34s %10s %10s\n' "cairn status" "$SQ_STATUS" "$PG_STATUS"
printf '%-34s %10s %10s\n' "cairn history (newest 20)" "$SQ_HISTORY" "$PG_HISTORY"
printf '%-34s %10s %10s\n' "cairn history --json -n $N" "$SQ_HISTORY_ALL" "$PG_HISTORY_ALL"
printf '%-34s %10s\n' "cairn state copy (sqlite -> pg)" "$COPY_MS"
