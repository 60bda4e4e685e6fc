#!/usr/bin/env bash
# The web UI and API under load (issue 13), against the real daemon:
# - 200 jobs and 100,000 recorded runs planted in the SQLite state store;
#   median and p99 latency of the dashboard `/` (session cookie) and of
#   `GET /api/v1/jobs` (bearer token) under 50 concurrent clients (wrk)
#   (targets: <= 50 ms median, <= 150 ms p99);
# - the daemon's RSS with the UI idle (target: < 30 MiB);
# - a 500 MB artifact downloaded through the API (plaintext) vs `cairn cat`
#   (target: >= 90 % of cat's throughput; the daemon's peak RSS while it
#   streams, to show it stays flat);
# - the dashboard's weight gzip-compressed, HTML and every asset it loads
#   (target: <= 100 KB).
#
#   bash bench/web.sh
#   WRK_SECS=5 BIG_MB=100 bash bench/web.sh        # quick
#
# Environment: WRK_SECS (per endpoint, default 15), WRK_CONNECTIONS (50),
# JOBS (200), RUNS (100000), BIG_MB (500), IDLE_SECS (10), CAIRN_BIN,
# BENCH_WORK, BENCH_STRICT=1 (exit 1 when a target is missed).
# Installs wrk (Debian) when missing.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"

JOBS=${JOBS:-200}
RUNS=${RUNS:-100000}
WRK_SECS=${WRK_SECS:-15}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-50}
BIG_MB=${BIG_MB:-500}
IDLE_SECS=${IDLE_SECS:-10}

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
[ -x /usr/bin/time ] || missing+=(time)
apt_install "${missing[@]}"
build_cairn

mkdir -p "${BENCH_WORK:-$REPO/bench/work}"
WORK=$(mktemp -d "${BENCH_WORK:-$REPO/bench/work}/web.XXXXXX")
DAEMON_PID=""
cleanup() {
    [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
cp "$CAIRN_BIN" "$WORK/cairn"
CAIRN="$WORK/cairn"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"

# --- config: JOBS small jobs and one of BIG_MB incompressible bytes -------------
mkdir -p "$WORK/backups"
{
    printf '[daemon]\nlisten = "127.0.0.1:%s"\n\n' "$PORT"
    printf '[destinations.local]\nkind = "fs"\npath = "%s/backups"\n\n' "$WORK"
    for i in $(seq 0 $((JOBS - 1))); do
        printf '[jobs.job%03d]\nsource = { kind = "command", backup = ["echo", "hello"] }\n' "$i"
        printf 'destinations = ["local"]\nencryption = { kind = "none" }\nschedules = [{ cron = "0 3 * * *" }]\n\n'
    done
    printf '[jobs.big]\nsource = { kind = "command", backup = ["head", "-c", "%s", "/dev/urandom"] }\n' $((BIG_MB * 1000 * 1000))
    printf 'destinations = ["local"]\nencryption = { kind = "none" }\n'
} > "$WORK/cairn.toml"
export CAIRN_CONFIG=$WORK/cairn.toml
cd "$WORK"

log "backing up job000..job009 (artifacts for the dashboard) and big ($BIG_MB MB)"
for i in $(seq 0 9); do "$CAIRN" backup "job00$i" >/dev/null 2>&1 || die "backup job00$i failed"; done
"$CAIRN" backup big >/dev/null 2>&1 || die "backup big failed"

log "planting $RUNS runs over $JOBS jobs"
sqlite3 "$WORK/cairn-state.db" "
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $RUNS)
INSERT INTO runs (job, kind, trigger, status, started_at, finished_at, bytes, artifact_id, error, details, log, host, pid)
SELECT printf('job%03d', i % $JOBS), CASE i % 4 WHEN 0 THEN 'verify' ELSE 'backup' END, 'schedule',
       CASE WHEN i % 50 = 0 THEN 'failure' ELSE 'success' END,
       1700000000000 + i * 60000, 1700000000000 + i * 60000 + 4000, 1000 + i,
       printf('20231114T%06dZ-%04x', i % 1000000, i % 65536), NULL, NULL,
       'INFO starting' || char(10) || 'INFO uploaded ' || i || ' bytes' || char(10), 'benchhost', 1
FROM n;"
echo "bench-password-123" | "$CAIRN" user add bench --role admin --password-stdin >/dev/null
TOKEN=$("$CAIRN" token create bench --role admin --expires 1d)

"$CAIRN" daemon 2>"$WORK/daemon.log" &
DAEMON_PID=$!
for _ in $(seq 100); do curl -fs "$BASE/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "$BASE/healthz" >/dev/null || die "the daemon does not answer (see $WORK/daemon.log)"

COOKIE=$(curl -fs -D - -o /dev/null -H 'Content-Type: application/json' \
    -d '{"user": "bench", "password": "bench-password-123"}' "$BASE/api/v1/session" |
    tr -d '\r' | awk -F'[ ;]' 'tolower($1) == "set-cookie:" {print $2}')
[ -n "$COOKIE" ] || die "login failed"
curl -fs -H "Cookie: $COOKIE" "$BASE/" >/dev/null || die "the dashboard does not answer"
curl -fs -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/jobs" >/dev/null || die "/api/v1/jobs does not answer"

proc_rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
proc_hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# --- idle RSS, with the UI served once ---------------------------------------------
log "idle for ${IDLE_SECS}s"
sleep "$IDLE_SECS"
IDLE_RSS=$(proc_rss_kib "$DAEMON_PID")

# --- one request at a time (server time without queueing) --------------------------
single_ms() { # single_ms HEADER PATH: the median of 5 sequential requests, ms
    for _ in 1 2 3 4 5; do curl -fs -o /dev/null -w '%{time_total}\n' -H "$1" "$BASE$2"; done |
        sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[3] * 1000}'
}
D1=$(single_ms "Cookie: $COOKIE" /)
J1=$(single_ms "Authorization: Bearer $TOKEN" /api/v1/jobs)

# --- latency under load -----------------------------------------------------------
# wrk_ms FILE PCT: the latency at PCT (50 or 99) in ms from `wrk --latency`.
wrk_ms() {
    awk -v p="$2%" '$1 == p {
        v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
        if (u == "us") v /= 1000; else if (u == "s") v *= 1000; else if (u == "m") v *= 60000
        printf "%.1f", v }' "$1"
}
wrk_field() { awk -v f="$2" '$1 == f {print $2}' "$1"; }
load() { # load NAME HEADER PATH
    log "wrk: $3, $WRK_CONNECTIONS connections, ${WRK_SECS}s"
    wrk -t2 -c"$WRK_CONNECTIONS" -d"${WRK_SECS}s" --latency --timeout 10s -H "$2" "$BASE$3" > "$WORK/wrk-$1.txt"
    cp "$WORK/wrk-$1.txt" "${BENCH_WORK:-$REPO/bench/work}/web-last-wrk-$1.txt"
    grep -q "Non-2xx" "$WORK/wrk-$1.txt" && die "$3 answered non-2xx under load: $(cat "$WORK/wrk-$1.txt")"
    true
}
load dashboard "Cookie: $COOKIE" /
load jobs "Authorization: Bearer $TOKEN" /api/v1/jobs
LOADED_RSS=$(proc_rss_kib "$DAEMON_PID")

# --- a big download vs cairn cat ---------------------------------------------------
ID=$("$CAIRN" list big --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
log "download of big ($BIG_MB MB) through the API and with cairn cat"
now_ns() { date +%s%N; }
proc_cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.0f", ($14 + $15) * 1000 / hz }' "/proc/$1/stat"; }
time_cpu_ms() { awk '{ printf "%.0f", ($1 + $2) * 1000 }' "$1"; }
echo 5 > "/proc/$DAEMON_PID/clear_refs" 2>/dev/null || true  # resets VmHWM to the current RSS
BEFORE_DL=$(proc_rss_kib "$DAEMON_PID")
# Best of three each, alternating, so that neither side gets the quieter moment.
DL_NS=0; CAT_NS=0
for _ in 1 2 3; do
    cpu0=$(proc_cpu_ms "$DAEMON_PID")
    s=$(now_ns)
    DL_BYTES=$(/usr/bin/time -f '%U %S' -o "$WORK/curl.time" curl -fs -o /dev/null -w '%{size_download}' \
        -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/jobs/big/artifacts/$ID/data?plaintext=true")
    ns=$(( $(now_ns) - s ))
    cpu=$(( $(proc_cpu_ms "$DAEMON_PID") - cpu0 ))
    if [ "$DL_NS" = 0 ] || [ "$ns" -lt "$DL_NS" ]; then
        DL_NS=$ns; DL_CPU=$cpu; CURL_CPU=$(time_cpu_ms "$WORK/curl.time")
    fi
    s=$(now_ns)
    /usr/bin/time -f '%U %S %M' -o "$WORK/cat.time" "$CAIRN" cat big "$ID" > /dev/null
    ns=$(( $(now_ns) - s ))
    if [ "$CAT_NS" = 0 ] || [ "$ns" -lt "$CAT_NS" ]; then
        CAT_NS=$ns; CAT_CPU=$(time_cpu_ms "$WORK/cat.time"); CAT_RSS=$(awk '{print $3}' "$WORK/cat.time")
    fi
done
DL_HWM=$(proc_hwm_kib "$DAEMON_PID")
CAT_BYTES=$((BIG_MB * 1000 * 1000))
[ "$DL_BYTES" = "$CAT_BYTES" ] || die "the download has $DL_BYTES bytes, not $CAT_BYTES"
DL_MBS=$(awk -v b="$DL_BYTES" -v n="$DL_NS" 'BEGIN { printf "%.0f", b / 1e6 / (n / 1e9) }')
CAT_MBS=$(awk -v b="$CAT_BYTES" -v n="$CAT_NS" 'BEGIN { printf "%.0f", b / 1e6 / (n / 1e9) }')
DL_PCT=$(awk -v a="$DL_MBS" -v b="$CAT_MBS" 'BEGIN { printf "%.0f", 100 * a / b }')

# --- page weight -------------------------------------------------------------------
curl -fs -H "Cookie: $COOKIE" "$BASE/" > "$WORK/dashboard.html"
HTML_GZ=$(gzip -9c "$WORK/dashboard.html" | wc -c)
ASSETS_GZ=0
ASSET_LIST=""
for asset in $(grep -oE '(src|href)="/[^"]+\.(css|js|svg|png|ico|woff2?)[^"]*"' "$WORK/dashboard.html" | sed -E 's/^(src|href)="//; s/"$//' | sort -u); do
    n=$(curl -fs -H "Cookie: $COOKIE" "$BASE$asset" | gzip -9c | wc -c)
    ASSETS_GZ=$((ASSETS_GZ + n))
    ASSET_LIST="$ASSET_LIST $asset"
done
PAGE_GZ=$((HTML_GZ + ASSETS_GZ))

# --- report ------------------------------------------------------------------------
D50=$(wrk_ms "$WORK/wrk-dashboard.txt" 50); D99=$(wrk_ms "$WORK/wrk-dashboard.txt" 99)
J50=$(wrk_ms "$WORK/wrk-jobs.txt" 50); J99=$(wrk_ms "$WORK/wrk-jobs.txt" 99)
DRPS=$(wrk_field "$WORK/wrk-dashboard.txt" "Requests/sec:"); JRPS=$(wrk_field "$WORK/wrk-jobs.txt" "Requests/sec:")
# No request finished within the run: wrk prints 0 latencies; count them as missed.
no_answer() { awk -v r="$1" 'BEGIN { exit !(r + 0 == 0) }'; }
if no_answer "$DRPS"; then D50=inf; D99=inf; fi
if no_answer "$JRPS"; then J50=inf; J99=inf; fi
FAILED=0
verdict() { case "$1" in inf*) echo FAIL ;; *) if awk "BEGIN { exit !($1) }"; then echo PASS; else echo FAIL; fi ;; esac; }
V_D50=$(verdict "$D50 <= 50"); V_D99=$(verdict "$D99 <= 150")
V_J50=$(verdict "$J50 <= 50"); V_J99=$(verdict "$J99 <= 150")
V_IDLE=$(verdict "$IDLE_RSS < 30 * 1024"); V_DL=$(verdict "$DL_PCT >= 90")
V_PAGE=$(verdict "$PAGE_GZ <= 100000")
case "$V_D50$V_D99$V_J50$V_J99$V_IDLE$V_DL$V_PAGE" in *FAIL*) FAILED=1 ;; esac
cat <<REPORT

Web UI and API: $JOBS jobs, $RUNS runs, $WRK_CONNECTIONS clients, ${WRK_SECS}s per endpoint
(load average now: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores shared with wrk)

| measure | value | target |
|---|---|---|
| dashboard \`/\`, one request at a time | $D1 ms | |
| \`GET /api/v1/jobs\`, one request at a time | $J1 ms | |
| dashboard \`/\` median / p99 | $D50 / $D99 ms ($DRPS req/s) | <= 50 / <= 150 ms [$V_D50/$V_D99] |
| \`GET /api/v1/jobs\` median / p99 | $J50 / $J99 ms ($JRPS req/s) | <= 50 / <= 150 ms [$V_J50/$V_J99] |
| idle RSS (UI served, ${IDLE_SECS}s idle) | $(mib "$IDLE_RSS") MiB | < 30 MiB [$V_IDLE] |
| RSS after the load | $(mib "$LOADED_RSS") MiB | |
| download $BIG_MB MB (API, plaintext), best of 3 | $DL_MBS MB/s | |
| \`cairn cat\` $BIG_MB MB, best of 3 | $CAT_MBS MB/s | |
| download / cat | $DL_PCT % | >= 90 % [$V_DL] |
| daemon RSS before / peak during the download | $(mib "$BEFORE_DL") / $(mib "$DL_HWM") MiB | flat |
| \`cairn cat\` peak RSS | $(mib "$CAT_RSS") MiB | |
| CPU time: download (daemon + curl) / \`cairn cat\` | $DL_CPU + $CURL_CPU / $CAT_CPU ms | |
| dashboard gzip: HTML + assets | $HTML_GZ + $ASSETS_GZ = $PAGE_GZ B | <= 100 KB [$V_PAGE] |

Assets:$ASSET_LIST
REPORT
if [ "${BENCH_STRICT:-0}" = 1 ] && [ "$FAILED" = 1 ]; then exit 1; fi
