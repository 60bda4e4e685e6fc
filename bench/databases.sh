#!/usr/bin/env bash
# Database backup benchmark: cairn vs pg_dump / mariadb-dump shell pipelines,
# on a PostgreSQL and a MariaDB server that this script starts and stops.
#
#   bash bench/databases.sh
#   PG_SCALE=10 MY_MB=50 BENCH_RUNS=1 bash bench/databases.sh   # a quick run
#
# Environment:
#   PG_SCALE        pgbench scale factor of the PostgreSQL database (default 50, ~750 MB)
#   MY_MB           size of the MariaDB database in MB, tables + indexes (default 200)
#   BENCH_ENGINES   which servers to measure (default "postgres mariadb")
#   BENCH_RUNS      measured runs per tool; the median is reported (default 5)
#   BENCH_WARMUP    unmeasured warm-up rounds, backups only (default 1)
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
ENGINES=${BENCH_ENGINES:-postgres mariadb}
PG_SCALE=${PG_SCALE:-50}
MY_MB=${MY_MB:-200}
RUNS=${BENCH_RUNS:-5}
WARMUP=${BENCH_WARMUP:-1}
STRICT=${BENCH_STRICT:-0}
GNU_TIME=/usr/bin/time
# Plain ASCII: it also goes into URLs and a MariaDB defaults file unescaped.
DB_PASSWORD=bench-Pw-4711
export BENCH_DB_PASSWORD=$DB_PASSWORD

want() { case " $ENGINES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

# --- 1. tools -----------------------------------------------------------------

ensure_tools() {
    local missing=() pair cmd pkg
    local pairs=(zstd:zstd age:age "$GNU_TIME":time python3:python3)
    want postgres && pairs+=(pg_dump:postgresql-client pg_restore:postgresql-client psql:postgresql-client createdb:postgresql-client)
    want mariadb && pairs+=(mariadb:mariadb-client mariadb-dump:mariadb-client mariadbd:mariadb-server mariadb-install-db:mariadb-server)
    [ "$IS_ROOT" -eq 1 ] && pairs+=(runuser:util-linux)
    for pair in "${pairs[@]}"; do
        cmd=${pair%:*}
        pkg=${pair##*:}
        command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg")
    done
    if want postgres; then
        # initdb, pg_ctl and pgbench live in the server package, outside PATH.
        ls /usr/lib/postgresql/*/bin/initdb /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || missing+=(postgresql)
    fi
    apt_install "${missing[@]}"
}


ensure_tools
build_cairn
CAIRN_BIN=$(realpath "$CAIRN_BIN")
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
# The interpreter itself, not a shim: the RSS sampler must start quickly.
PYTHON=$(python3 -c 'import sys; print(sys.executable)')

# --- 2. servers ------------------------------------------------------------------

RUN_DIR=$(mktemp -d "$WORK/db-run.XXXXXX")
# A private copy: others may rebuild the shared target folder during a run.
cp "$CAIRN_BIN" "$RUN_DIR/cairn"
CAIRN_BIN=$RUN_DIR/cairn
PG_DIR=""
MY_DIR=""
MY_PID=""
PG_BIN=""

stop_servers() {
    if [ -n "$PG_DIR" ] && [ -f "$PG_DIR/data/postmaster.pid" ]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [ -n "$MY_PID" ]; then
        kill "$MY_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$MY_PID" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$MY_PID" 2>/dev/null || true
    fi
}
cleanup() {
    stop_servers
    rm -rf "$RUN_DIR"
    [ -n "$PG_DIR" ] && rm -rf "$PG_DIR"
    [ -n "$MY_DIR" ] && rm -rf "$MY_DIR"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

as_postgres() {
    if [ "$IS_ROOT" -eq 1 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

wait_for() { # WHAT CMD...: retries CMD for up to 60 s
    local what=$1 i
    shift
    for i in $(seq 1 300); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "$what did not become ready"
}

start_postgres() {
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
    PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-pg.XXXXXX")
    printf '%s' "$DB_PASSWORD" >"$PG_DIR/pw"
    if [ "$IS_ROOT" -eq 1 ]; then
        chown -R postgres:postgres "$PG_DIR"
        chmod 700 "$PG_DIR"
    fi
    as_postgres "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth-host=scram-sha-256 \
        --auth-local=trust -E UTF8 --locale=C.UTF-8 --pwfile="$PG_DIR/pw" >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
    PG_PORT=$(free_port)
    # Durability off (fsync, synchronous_commit) to cut the noise of a shared
    # disk; it applies to cairn and the shell pipelines alike.
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w start -o "-p $PG_PORT -k $PG_DIR \
        -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
        -c shared_buffers=256MB -c maintenance_work_mem=256MB -c max_wal_size=4GB \
        -c checkpoint_timeout=30min" >/dev/null \
        || { tail -n 20 "$PG_DIR/log" >&2; die "PostgreSQL did not start"; }
    wait_for "PostgreSQL" "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT"
    export PGPASSWORD=$DB_PASSWORD
    PG_URL="postgres://postgres@127.0.0.1:$PG_PORT"
    log "PostgreSQL $("$PG_BIN/postgres" --version | grep -o '[0-9][0-9.]*' | head -n1) on 127.0.0.1:$PG_PORT ($PG_DIR)"
}

pg_sql() { # DB SQL: unaligned tuples-only output
    PGOPTIONS='-c client_min_messages=warning' psql -X -A -t -q -v ON_ERROR_STOP=1 --no-password -d "$PG_URL/$1" -c "$2"
}

start_mariadb() {
    MY_DIR=$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-my.XXXXXX")
    local user
    user=$(id -un)
    mariadb-install-db --no-defaults --datadir="$MY_DIR/data" --user="$user" \
        --auth-root-authentication-method=socket --skip-test-db >"$MY_DIR/install.log" 2>&1 \
        || { cat "$MY_DIR/install.log" >&2; die "mariadb-install-db failed"; }
    MY_PORT=$(free_port)
    MY_SOCK=$MY_DIR/sock
    local mariadbd
    mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)
    # Durability relaxed (log flushed once a second, no doublewrite) for the
    # same reason as PostgreSQL's fsync=off.
    "$mariadbd" --no-defaults --datadir="$MY_DIR/data" --socket="$MY_SOCK" --pid-file="$MY_DIR/pid" \
        --port="$MY_PORT" --bind-address=127.0.0.1 --skip-name-resolve --user="$user" \
        --innodb-buffer-pool-size=512M --innodb-log-file-size=256M --innodb-flush-log-at-trx-commit=2 \
        --innodb-doublewrite=0 --max-allowed-packet=64M --log-error="$MY_DIR/err.log" \
        </dev/null >/dev/null 2>&1 &
    MY_PID=$!
    disown "$MY_PID"  # no job notice from bash when cleanup stops it
    wait_for "MariaDB" mariadb --no-defaults --socket="$MY_SOCK" -u root -e "SELECT 1"
    my_root -e "CREATE USER 'bench'@'%' IDENTIFIED BY '$DB_PASSWORD'; GRANT ALL PRIVILEGES ON *.* TO 'bench'@'%'; FLUSH PRIVILEGES;"
    # Client options for the shell pipelines, as cairn passes them (password in a 0600 file).
    MY_CNF=$RUN_DIR/my.cnf
    (umask 077 && printf '[client]\npassword="%s"\n' "$DB_PASSWORD" >"$MY_CNF")
    MY_CLIENT_OPTS=(--defaults-extra-file="$MY_CNF" --host=127.0.0.1 --port="$MY_PORT" --protocol=TCP --user=bench)
    log "MariaDB $(my_root -N -e 'SELECT VERSION()') on 127.0.0.1:$MY_PORT ($MY_DIR)"
}

my_root() { mariadb --no-defaults --socket="$MY_SOCK" -u root --batch "$@"; }

# --- 3. data ------------------------------------------------------------------------

make_pg_data() {
    log "PostgreSQL: pgbench -i -s $PG_SCALE"
    pg_sql postgres "CREATE DATABASE bench" >/dev/null
    "$PG_BIN/pgbench" -i -q -s "$PG_SCALE" -h 127.0.0.1 -p "$PG_PORT" -U postgres bench \
        >"$RUN_DIR/pgbench.log" 2>&1 || { cat "$RUN_DIR/pgbench.log" >&2; die "pgbench -i failed"; }
    pg_sql bench "CHECKPOINT" >/dev/null
    PG_DB_BYTES=$(pg_sql bench "SELECT pg_database_size('bench')")
    log "PostgreSQL: database bench is $((PG_DB_BYTES / 1000000)) MB"
}

# SQL for MariaDB test data: a shop-like schema (as gen_sqlite.py), rows made
# by INSERT … SELECT over a table of numbers (gen.nums, outside the dumped
# database; Debian's MariaDB lacks the Sequence engine's seq_A_to_B tables).
elt_of() { # WORD... -> ELT(1 + FLOOR(RAND() * n), 'w1', …)
    local n=$# out=""
    local w
    for w in "$@"; do out+=",'$w'"; done
    printf "ELT(1 + FLOOR(RAND() * %d)%s)" "$n" "$out"
}
WORDS=(order shipping delivery package customer account payment card refund return exchange
    product quality price discount coupon sale free fast slow great good bad broken missing late
    early box size color small large medium blue red green black white cotton leather steel
    wooden glass warranty support help email phone chat store online tracking number address
    city street invoice receipt item items the a and with for of to in on was is very)
SENT_WORD=$(elt_of "${WORDS[@]}")
sentence() { # N words
    local i out="CONCAT_WS(' '"
    for ((i = 0; i < $1; i++)); do out+=", $SENT_WORD"; done
    printf '%s)' "$out"
}
FIRST_WORDS=(James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara
    Richard Susan Joseph Jessica Thomas Sarah Charles Karen Lena Noah Emma Liam Olivia Mia Lucas
    Sofia Hugo Chloe Ana Luis Marta Jan Eva Piotr Anna Yuki Kenji Priya)
FIRST=$(elt_of "${FIRST_WORDS[@]}")
LAST_WORDS=(Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez
    Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris
    Muller Schmidt Schneider Fischer Weber Meyer Dubois Bernard Rossi Russo Kowalski Nowak Tanaka
    Sato Patel)
LAST=$(elt_of "${LAST_WORDS[@]}")
COUNTRY_WORDS=(US US US GB DE FR CA NL ES IT SE AU BR IN JP PL BE CH AT IE)
COUNTRY=$(elt_of "${COUNTRY_WORDS[@]}")
DOMAIN_WORDS=(gmail.com yahoo.com outlook.com hotmail.com icloud.com proton.me example.org mail.de web.de)
DOMAIN=$(elt_of "${DOMAIN_WORDS[@]}")
CITY_WORDS=(Springfield Riverside Franklin Greenville Bristol Clinton Fairview Salem Madison
    Georgetown Arlington Ashland Dover Oxford Jackson Burlington Manchester Milton Newport Auburn)
CITY=$(elt_of "${CITY_WORDS[@]}")
STREET="CONCAT(1 + FLOOR(RAND() * 9000), ' ', $(elt_of 'Main St' 'Oak Ave' 'Pine St' 'Maple Ave' 'Cedar Ln' 'Elm St' 'Lake Dr' 'Hill Rd' 'Park Ave' 'High St' 'Mill Rd' 'River Rd'))"
UA=$(elt_of 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36' \
    'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15' \
    'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148' \
    'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36' \
    'Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0')
BASE_TS=1609459200

my_schema_sql() {
    cat <<'SQL'
CREATE DATABASE bench CHARACTER SET utf8mb4;
USE bench;
CREATE TABLE customers (
    id INT UNSIGNED PRIMARY KEY,
    email VARCHAR(160) NOT NULL,
    first_name VARCHAR(40) NOT NULL,
    last_name VARCHAR(40) NOT NULL,
    country CHAR(2) NOT NULL,
    city VARCHAR(40),
    street VARCHAR(80),
    plan ENUM('free', 'pro', 'team') NOT NULL DEFAULT 'free',
    marketing_opt_in TINYINT NOT NULL DEFAULT 0,
    created_at DATETIME NOT NULL,
    last_login_at DATETIME NULL,
    api_token CHAR(32) NULL,
    preferences TEXT,
    UNIQUE KEY customers_email (email),
    KEY customers_created_at (created_at),
    KEY customers_country_city (country, city)
) ENGINE=InnoDB;
CREATE TABLE products (
    id INT UNSIGNED PRIMARY KEY,
    sku VARCHAR(20) NOT NULL,
    name VARCHAR(200) NOT NULL,
    category VARCHAR(20) NOT NULL,
    price_cents INT NOT NULL,
    stock INT NOT NULL,
    description TEXT,
    created_at DATETIME NOT NULL,
    UNIQUE KEY products_sku (sku),
    KEY products_category_price (category, price_cents)
) ENGINE=InnoDB;
CREATE TABLE orders (
    id BIGINT UNSIGNED PRIMARY KEY,
    customer_id INT UNSIGNED NOT NULL,
    status VARCHAR(12) NOT NULL,
    currency CHAR(3) NOT NULL,
    total_cents INT NOT NULL,
    shipping_address VARCHAR(200),
    note TEXT,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    KEY orders_customer_created (customer_id, created_at),
    KEY orders_status_created (status, created_at)
) ENGINE=InnoDB;
CREATE TABLE order_items (
    id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
    order_id BIGINT UNSIGNED NOT NULL,
    product_id INT UNSIGNED NOT NULL,
    quantity SMALLINT NOT NULL,
    unit_price_cents INT NOT NULL,
    discount_cents INT NOT NULL DEFAULT 0,
    KEY order_items_order (order_id),
    KEY order_items_product (product_id)
) ENGINE=InnoDB;
CREATE TABLE events (
    id BIGINT UNSIGNED PRIMARY KEY,
    customer_id INT UNSIGNED NULL,
    session_id CHAR(8) NOT NULL,
    kind VARCHAR(16) NOT NULL,
    occurred_at DATETIME(3) NOT NULL,
    payload TEXT NOT NULL,
    KEY events_customer_time (customer_id, occurred_at),
    KEY events_kind_time (kind, occurred_at)
) ENGINE=InnoDB;
SQL
    cat <<SQL
INSERT INTO products
SELECT seq, CONCAT('SKU-', LPAD(seq, 5, '0'), '-', HEX(FLOOR(RAND() * 65536))), $(sentence 4),
       CONCAT('category-', LPAD(seq % 40, 2, '0')), 99 + FLOOR(RAND() * 50000), FLOOR(RAND() * 500),
       $(sentence 24), FROM_UNIXTIME($BASE_TS + FLOOR(RAND() * 63072000))
FROM gen.nums WHERE seq BETWEEN 1 AND 20000;
SQL
}

my_batch_sql() { # FIRST_CUSTOMER COUNT: customers with their orders, items and events
    local c0=$1 n=$2
    local hi=$((c0 + n)) o0=$((c0 * 5)) o1=$(((c0 + n) * 5)) e0=$((c0 * 12)) e1=$(((c0 + n) * 12))
    cat <<SQL
USE bench;
START TRANSACTION;
INSERT INTO customers
SELECT seq, CONCAT(LOWER($FIRST), '.', LOWER($LAST), seq, '@', $DOMAIN), $FIRST, $LAST, $COUNTRY, $CITY,
       $STREET, ELT(1 + FLOOR(RAND() * 10), 'pro', 'team', 'free', 'free', 'free', 'free', 'free', 'free', 'free', 'free'),
       FLOOR(RAND() * 2), FROM_UNIXTIME($BASE_TS + seq * 30 + FLOOR(RAND() * 86400)),
       IF(seq % 7 = 0, NULL, FROM_UNIXTIME($BASE_TS + seq * 30 + FLOOR(RAND() * 63072000))),
       IF(seq % 3 = 0, MD5(RAND()), NULL),
       JSON_OBJECT('theme', IF(seq % 3 = 0, 'dark', 'light'), 'lang', ELT(1 + seq % 5, 'de', 'fr', 'en', 'en', 'en'),
                   'newsletter', seq % 2 = 0, 'notifications', JSON_OBJECT('email', seq % 2 = 0, 'sms', seq % 9 = 0))
FROM gen.nums WHERE seq BETWEEN $((c0 + 1)) AND $hi;
INSERT INTO orders
SELECT seq, 1 + FLOOR(RAND() * $hi),
       ELT(1 + FLOOR(RAND() * 10), 'cancelled', 'refunded', 'pending', 'processing', 'shipped', 'delivered', 'delivered', 'delivered', 'delivered', 'delivered'),
       IF(seq % 4 = 0, 'EUR', IF(seq % 9 = 0, 'GBP', 'USD')), 500 + FLOOR(RAND() * 40000),
       CONCAT($STREET, ', ', $CITY, ' ', LPAD(FLOOR(RAND() * 100000), 5, '0')),
       IF(seq % 6 = 0, $(sentence 10), NULL),
       FROM_UNIXTIME($BASE_TS + seq * 6 + FLOOR(RAND() * 604800)),
       FROM_UNIXTIME($BASE_TS + seq * 6 + 604800 + FLOOR(RAND() * 1209600))
FROM gen.nums WHERE seq BETWEEN $((o0 + 1)) AND $o1;
INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents, discount_cents)
SELECT o.id, 1 + FLOOR(RAND() * 20000), 1 + FLOOR(RAND() * 3), 99 + FLOOR(RAND() * 50000),
       IF(RAND() < 0.2, FLOOR(RAND() * 1000), 0)
FROM orders o JOIN gen.nums k ON k.seq <= 5 AND k.seq <= 1 + (o.id * 7 + o.customer_id) % 5
WHERE o.id > $o0 ORDER BY o.id, k.seq;
INSERT INTO events
SELECT seq, IF(seq % 8 = 0, NULL, 1 + (seq DIV 6) % $hi), LPAD(HEX((seq DIV 6) * 2654435761 % 4294967296), 8, '0'),
       ELT(1 + FLOOR(RAND() * 10), 'login', 'add_to_cart', 'checkout', 'search', 'page_view', 'page_view', 'page_view', 'page_view', 'page_view', 'page_view'),
       FROM_UNIXTIME($BASE_TS + seq * 2.5 + RAND() * 3600),
       JSON_OBJECT('ip', CONCAT_WS('.', 10 + FLOOR(RAND() * 200), FLOOR(RAND() * 256), FLOOR(RAND() * 256), FLOOR(RAND() * 256)),
                   'ua', $UA,
                   'path', ELT(1 + FLOOR(RAND() * 6), '/', '/search', '/cart', '/checkout', CONCAT('/products/', FLOOR(RAND() * 20000)), CONCAT('/category/', FLOOR(RAND() * 40))),
                   'referrer', ELT(1 + seq % 4, 'https://www.google.com/', NULL, 'https://shop.example.com/', 'https://shop.example.com/'),
                   'duration_ms', FLOOR(RAND() * 30000), 'request_id', LEFT(MD5(RAND()), 16),
                   'query', IF(RAND() < 0.1, $(sentence 6), NULL))
FROM gen.nums WHERE seq BETWEEN $((e0 + 1)) AND $e1;
COMMIT;
SQL
}

ensure_nums() { # N: gen.nums holds 1..N at least (doubling)
    local have
    have=$(my_root -N -e "SELECT MAX(seq) FROM gen.nums")
    while [ "$have" -lt "$1" ]; do
        my_root -e "INSERT INTO gen.nums SELECT seq + $have FROM gen.nums"
        have=$((have * 2))
    done
}

my_db_bytes() { # bytes of the bench database's InnoDB files (tables + indexes)
    du -cb "$MY_DIR/data/bench"/*.ibd | tail -n1 | cut -f1
}

make_my_data() {
    log "MariaDB: generating a ${MY_MB} MB database"
    my_root -e "CREATE DATABASE gen; CREATE TABLE gen.nums (seq INT UNSIGNED PRIMARY KEY) ENGINE=InnoDB;
        INSERT INTO gen.nums VALUES (1)"
    ensure_nums 20000
    my_schema_sql | my_root
    local target=$((MY_MB * 1000000)) done=0 n=500 size before per=""
    size=$(my_db_bytes)
    while [ "$size" -lt "$target" ]; do
        if [ -n "$per" ]; then
            n=$(((target - size) / per + 1))
            [ "$n" -lt 500 ] && n=500
            [ "$n" -gt 30000 ] && n=30000
        fi
        before=$size
        ensure_nums $(((done + n) * 12))
        my_batch_sql "$done" "$n" | my_root
        done=$((done + n))
        size=$(my_db_bytes)
        [ "$size" -gt "$before" ] && per=$(((size - before) / n + 1))
    done
    my_root -e "ANALYZE TABLE bench.customers, bench.products, bench.orders, bench.order_items, bench.events" >/dev/null
    my_root -e "DROP DATABASE gen"
    MY_DB_BYTES=$(my_db_bytes)
    log "MariaDB: database bench is $((MY_DB_BYTES / 1000000)) MB ($done customers)"
}

# --- 4. measurement ---------------------------------------------------------------

RESULTS=$RUN_DIR/results.tsv  # engine tool run wall_s rss_kib cpu_s own_kib child_kib child_name
SIZES_TSV=$RUN_DIR/sizes.tsv  # engine what bytes
CHECKS=$RUN_DIR/checks.txt
: >"$RESULTS"
: >"$SIZES_TSV"
: >"$CHECKS"

# measure ENGINE TOOL RUN [--sample] CMD...: wall time, peak RSS and CPU time by
# GNU time; with --sample also the peak RSS of the program itself and of its
# largest child (bench/rss_tree.py). RUN 0 is a warm-up and is not recorded.
measure() {
    local engine=$1 tool=$2 run=$3
    shift 3
    local sample=0
    if [ "$1" = --sample ]; then
        sample=1
        shift
    fi
    local out=$RUN_DIR/time.out tree=$RUN_DIR/tree.out
    rm -f "$out" "$tree"
    "$GNU_TIME" -f '%e %M %U %S' -o "$out" "$@" >/dev/null 2>"$RUN_DIR/cmd.err" &
    local pid=$! sampler="" rc=0
    [ "$sample" -eq 1 ] && { "$PYTHON" "$BENCH_DIR/rss_tree.py" "$pid" "$tree" & sampler=$!; }
    wait "$pid" || rc=$?
    [ -n "$sampler" ] && { wait "$sampler" || true; }
    if [ "$rc" -ne 0 ]; then
        cat "$RUN_DIR/cmd.err" >&2
        die "$tool failed ($engine, run $run): $*"
    fi
    local wall rss user sys own=0 child=0 child_name=-
    read -r wall rss user sys < <(tail -n1 "$out")
    [ "$sample" -eq 1 ] && [ -s "$tree" ] && read -r own child child_name <"$tree"
    if [ "$run" -gt 0 ]; then
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$engine" "$tool" "$run" "$wall" "$rss" \
            "$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')" "$own" "$child" "$child_name" >>"$RESULTS"
    fi
}

# The sum of the peak RSS of a pipeline's processes, which run at the same time
# (an upper bound of the pipeline's peak; GNU time on `bash -c` reports only the
# largest single process).
record_concurrent() { # ENGINE TOOL RUN KiB
    [ "$3" -gt 0 ] && printf '%s\t%s\t%s\t0\t%s\t0\t0\t0\t-\n' "$1" "$2" "$3" "$4" >>"$RESULTS"
    return 0
}
rss_sum() { local total=0 f; for f in "$@"; do total=$((total + $(tail -n1 "$f"))); done; echo "$total"; }

rounds() { # ENGINE FUNCTION: warm-up rounds (backups only), then measured rounds
    local engine=$1 fn=$2 r total=$((WARMUP + RUNS)) run
    for ((r = 1; r <= total; r++)); do
        run=$((r - WARMUP))
        [ "$run" -le 0 ] && run=0
        log "$engine: round $r/$total$([ "$run" -eq 0 ] && echo ' (warm-up, backups only)')"
        "$fn" "$run" "$([ "$r" -eq "$total" ] && echo last)"
    done
}

IDENTITY=$RUN_DIR/identity.txt
RECIPIENT=$("$CAIRN_BIN" keygen --output "$IDENTITY" 2>/dev/null)
CONFIG=$RUN_DIR/cairn.toml

write_config() {
    : >"$CONFIG"
    if want postgres; then
        cat >>"$CONFIG" <<EOF
[destinations.pg]
kind = "fs"
path = "$RUN_DIR/pg/cairn-dest"

[jobs.pg]
source = { kind = "postgres", url = "$PG_URL/bench", password_env = "BENCH_DB_PASSWORD" }
destinations = ["pg"]
compression = "zstd"
encryption = { kind = "age", recipients = ["$RECIPIENT"], identity_file = "$IDENTITY" }

EOF
    fi
    if want mariadb; then
        cat >>"$CONFIG" <<EOF
[destinations.my]
kind = "fs"
path = "$RUN_DIR/my/cairn-dest"

[jobs.my]
source = { kind = "mysql", url = "mysql://bench@127.0.0.1:$MY_PORT/bench", password_env = "BENCH_DB_PASSWORD" }
destinations = ["my"]
compression = "zstd"
encryption = { kind = "age", recipients = ["$RECIPIENT"], identity_file = "$IDENTITY" }
EOF
    fi
}

# The dump's size before compression, from cairn's manifest.
plaintext_bytes() { # DEST_FOLDER
    "$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["plaintext"]["size"])' \
        "$(find "$1" -type f -name '*.manifest.json' -not -path '*/.partial/*' | head -n1)"
}

pg_fingerprint() { # DB: row counts, sums and a sample hash of the pgbench tables, and index count
    pg_sql "$1" "SELECT (SELECT count(*) FROM pgbench_accounts) || ' ' || (SELECT sum(abalance) FROM pgbench_accounts)
        || ' ' || (SELECT md5(string_agg(aid::text || ':' || bid || filler, ',' ORDER BY aid)) FROM pgbench_accounts WHERE aid % 997 = 0)
        || ' ' || (SELECT count(*) FROM pgbench_branches) || ' ' || (SELECT count(*) FROM pgbench_tellers)
        || ' ' || (SELECT count(*) FROM pgbench_history)
        || ' indexes=' || (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public')"
}

pg_round() { # RUN [last]
    local run=$1 last=${2:-} d=$RUN_DIR/pg
    local conn="host=127.0.0.1 port=$PG_PORT user=postgres dbname=bench"
    mkdir -p "$d"

    rm -rf "$d/cairn-dest"
    measure pg "cairn backup" "$run" --sample \
        "$CAIRN_BIN" --config "$CONFIG" --quiet backup pg

    rm -f "$d/plain.dump"
    measure pg "pg_dump -Fc (its own compression, no encryption)" "$run" \
        pg_dump --no-password -Fc -f "$d/plain.dump" "$conn"

    rm -f "$d"/rss.* "$d/fc.zst.age"
    measure pg "shell: pg_dump -Fc -Z0 | zstd | age" "$run" bash -c '
        set -euo pipefail
        T=$1; R=$2
        "$T" -f %M -o "$R.dump" pg_dump --no-password -Fc -Z0 "$3" \
          | "$T" -f %M -o "$R.zstd" zstd -q -T0 -3 -c \
          | "$T" -f %M -o "$R.age" age -r "$4" >"$5"
    ' _ "$GNU_TIME" "$d/rss" "$conn" "$RECIPIENT" "$d/fc.zst.age"
    record_concurrent pg "shell: pg_dump -Fc -Z0 | zstd | age (sum of concurrent procs)" "$run" \
        "$(rss_sum "$d/rss.dump" "$d/rss.zstd" "$d/rss.age")"

    rm -f "$d"/rss.* "$d/sql.zst.age"
    measure pg "shell: pg_dump (plain SQL) | zstd | age" "$run" bash -c '
        set -euo pipefail
        T=$1; R=$2
        "$T" -f %M -o "$R.dump" pg_dump --no-password "$3" \
          | "$T" -f %M -o "$R.zstd" zstd -q -T0 -3 -c \
          | "$T" -f %M -o "$R.age" age -r "$4" >"$5"
    ' _ "$GNU_TIME" "$d/rss" "$conn" "$RECIPIENT" "$d/sql.zst.age"
    record_concurrent pg "shell: pg_dump (plain SQL) | zstd | age (sum of concurrent procs)" "$run" \
        "$(rss_sum "$d/rss.dump" "$d/rss.zstd" "$d/rss.age")"

    measure pg "floor: pg_dump -Fc -Z0 > /dev/null" "$run" \
        pg_dump --no-password -Fc -Z0 "$conn"  # stdout: measure sends it to /dev/null

    # What cairn runs before pg_dump starts (src/source/postgres.rs: size_hint,
    # versions, row_estimates), one after the other, as cairn does.
    measure pg "probes: cairn's 3 psql queries + pg_dump --version" "$run" bash -c '
        set -euo pipefail
        for q in "SELECT pg_database_size(current_database())" "SHOW server_version_num" \
            "SELECT schemaname || '"'.'"' || relname, n_live_tup FROM pg_stat_user_tables ORDER BY 1"; do
            psql -X -A -t -q --no-password -v ON_ERROR_STOP=1 --dbname="$1" -c "$q"
        done
        pg_dump --version
    ' _ "$PG_URL/bench"

    [ "$run" -eq 0 ] && return 0

    # Restores, each into a new database (dropped before, not timed).
    pg_sql postgres "DROP DATABASE IF EXISTS restore_cairn WITH (FORCE)" >/dev/null
    pg_sql postgres "CHECKPOINT" >/dev/null
    measure pg "cairn restore" "$run" --sample \
        "$CAIRN_BIN" --config "$CONFIG" --quiet restore pg --to "$PG_URL/restore_cairn"

    pg_sql postgres "DROP DATABASE IF EXISTS restore_shell WITH (FORCE)" >/dev/null
    pg_sql postgres "CHECKPOINT" >/dev/null
    rm -f "$d"/rss.*
    measure pg "shell restore: createdb; age -d | zstd -d | pg_restore" "$run" bash -c '
        set -euo pipefail
        T=$1; R=$2; U=$3
        createdb --no-password --maintenance-db="$U/postgres" restore_shell
        "$T" -f %M -o "$R.age" age -d -i "$4" "$5" \
          | "$T" -f %M -o "$R.zstd" zstd -q -d -c \
          | "$T" -f %M -o "$R.restore" pg_restore --no-password --exit-on-error --single-transaction \
              --dbname="$U/restore_shell"
    ' _ "$GNU_TIME" "$d/rss" "$PG_URL" "$IDENTITY" "$d/fc.zst.age"
    record_concurrent pg "shell restore: createdb; age -d | zstd -d | pg_restore (sum of concurrent procs)" "$run" \
        "$(rss_sum "$d/rss.age" "$d/rss.zstd" "$d/rss.restore")"

    if [ "$last" = last ]; then
        local artifact
        artifact=$(find "$d/cairn-dest" -type f -name '*.pgdump.zst.age' -not -path '*/.partial/*' | head -n1)
        [ -n "$artifact" ] || die "no cairn artifact found in $d/cairn-dest"
        printf 'pg\tdatabase\t%s\n' "$PG_DB_BYTES" >>"$SIZES_TSV"
        printf 'pg\tdump (pg_dump -Fc -Z0, from the manifest)\t%s\n' "$(plaintext_bytes "$d/cairn-dest")" >>"$SIZES_TSV"
        printf 'pg\tcairn (pg_dump -Fc -Z0 | zstd -3 | age)\t%s\n' "$(stat -c %s "$artifact")" >>"$SIZES_TSV"
        printf 'pg\tshell pg_dump -Fc -Z0 | zstd -3 | age\t%s\n' "$(stat -c %s "$d/fc.zst.age")" >>"$SIZES_TSV"
        printf 'pg\tshell pg_dump plain | zstd -3 | age\t%s\n' "$(stat -c %s "$d/sql.zst.age")" >>"$SIZES_TSV"
        printf 'pg\tpg_dump -Fc (default compression)\t%s\n' "$(stat -c %s "$d/plain.dump")" >>"$SIZES_TSV"
        local src a b
        src=$(pg_fingerprint bench)
        a=$(pg_fingerprint restore_cairn)
        b=$(pg_fingerprint restore_shell)
        if [ "$a" = "$src" ] && [ "$b" = "$src" ]; then
            echo "PostgreSQL: cairn's and the shell's restores match the source (row counts, sums, sampled md5, $( echo "$src" | grep -o 'indexes=[0-9]*'))" >>"$CHECKS"
        else
            echo "PostgreSQL: RESTORES DIFFER: source [$src] cairn [$a] shell [$b]" >>"$CHECKS"
        fi
        pg_sql postgres "DROP DATABASE IF EXISTS restore_cairn WITH (FORCE)" >/dev/null
        pg_sql postgres "DROP DATABASE IF EXISTS restore_shell WITH (FORCE)" >/dev/null
    fi
    return 0
}

my_fingerprint() { # DB: CHECKSUM TABLE of every table, and the index count
    my_root -N -e "CHECKSUM TABLE $1.customers, $1.products, $1.orders, $1.order_items, $1.events" \
        | awk '{ print $2 }' | tr '\n' ' '
    my_root -N -e "SELECT CONCAT('indexes=', COUNT(DISTINCT table_name, index_name)) FROM information_schema.statistics WHERE table_schema = '$1'"
}

my_round() { # RUN [last]
    local run=$1 last=${2:-} d=$RUN_DIR/my
    mkdir -p "$d"
    local dump_opts=(--single-transaction --routines --triggers --events --hex-blob --default-character-set=utf8mb4)

    rm -rf "$d/cairn-dest"
    measure my "cairn backup" "$run" --sample \
        "$CAIRN_BIN" --config "$CONFIG" --quiet backup my

    rm -f "$d"/rss.* "$d/sql.zst.age"
    measure my "shell: mariadb-dump | zstd | age" "$run" bash -c '
        set -euo pipefail
        T=$1; R=$2; REC=$3; OUT=$4
        shift 4
        "$T" -f %M -o "$R.dump" mariadb-dump "$@" \
          | "$T" -f %M -o "$R.zstd" zstd -q -T0 -3 -c \
          | "$T" -f %M -o "$R.age" age -r "$REC" >"$OUT"
    ' _ "$GNU_TIME" "$d/rss" "$RECIPIENT" "$d/sql.zst.age" "${MY_CLIENT_OPTS[@]}" "${dump_opts[@]}" -- bench
    record_concurrent my "shell: mariadb-dump | zstd | age (sum of concurrent procs)" "$run" \
        "$(rss_sum "$d/rss.dump" "$d/rss.zstd" "$d/rss.age")"

    measure my "floor: mariadb-dump > /dev/null" "$run" \
        mariadb-dump "${MY_CLIENT_OPTS[@]}" "${dump_opts[@]}" -- bench  # stdout: to /dev/null

    # What cairn runs before mariadb-dump starts (src/source/mysql.rs: size_hint,
    # tool and server versions, table list), one after the other, as cairn does.
    measure my "probes: cairn's 3 mariadb queries + mariadb-dump --version" "$run" bash -c '
        set -euo pipefail
        O=("$@")
        q() { mariadb "${O[@]}" --batch --skip-column-names -e "$1" ${2:+"$2"}; }
        q "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables WHERE table_schema = '"'bench'"'"
        mariadb-dump --version
        q "SELECT VERSION()"
        q "SELECT table_name, table_rows FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = '"'BASE TABLE'"' ORDER BY table_name" bench
    ' _ "${MY_CLIENT_OPTS[@]}"

    [ "$run" -eq 0 ] && return 0

    my_root -e "DROP DATABASE IF EXISTS restore_cairn"
    measure my "cairn restore" "$run" --sample \
        "$CAIRN_BIN" --config "$CONFIG" --quiet restore my --to "mysql://bench@127.0.0.1:$MY_PORT/restore_cairn"

    my_root -e "DROP DATABASE IF EXISTS restore_shell"
    rm -f "$d"/rss.*
    measure my "shell restore: CREATE DATABASE; age -d | zstd -d | mariadb" "$run" bash -c '
        set -euo pipefail
        T=$1; R=$2; ID=$3; IN=$4
        shift 4
        mariadb "$@" -e "CREATE DATABASE restore_shell"
        "$T" -f %M -o "$R.age" age -d -i "$ID" "$IN" \
          | "$T" -f %M -o "$R.zstd" zstd -q -d -c \
          | "$T" -f %M -o "$R.restore" mariadb "$@" --default-character-set=utf8mb4 restore_shell
    ' _ "$GNU_TIME" "$d/rss" "$IDENTITY" "$d/sql.zst.age" "${MY_CLIENT_OPTS[@]}"
    record_concurrent my "shell restore: CREATE DATABASE; age -d | zstd -d | mariadb (sum of concurrent procs)" "$run" \
        "$(rss_sum "$d/rss.age" "$d/rss.zstd" "$d/rss.restore")"

    if [ "$last" = last ]; then
        local artifact
        artifact=$(find "$d/cairn-dest" -type f -name '*.sql.zst.age' -not -path '*/.partial/*' | head -n1)
        [ -n "$artifact" ] || die "no cairn artifact found in $d/cairn-dest"
        printf 'my\tdatabase\t%s\n' "$MY_DB_BYTES" >>"$SIZES_TSV"
        printf 'my\tdump (mariadb-dump, from the manifest)\t%s\n' "$(plaintext_bytes "$d/cairn-dest")" >>"$SIZES_TSV"
        printf 'my\tcairn (mariadb-dump | zstd -3 | age)\t%s\n' "$(stat -c %s "$artifact")" >>"$SIZES_TSV"
        printf 'my\tshell mariadb-dump | zstd -3 | age\t%s\n' "$(stat -c %s "$d/sql.zst.age")" >>"$SIZES_TSV"
        local src a b
        src=$(my_fingerprint bench)
        a=$(my_fingerprint restore_cairn)
        b=$(my_fingerprint restore_shell)
        if [ "$a" = "$src" ] && [ "$b" = "$src" ]; then
            echo "MariaDB: cairn's and the shell's restores match the source (CHECKSUM TABLE of every table, $(echo "$src" | grep -o 'indexes=[0-9]*'))" >>"$CHECKS"
        else
            echo "MariaDB: RESTORES DIFFER: source [$src] cairn [$a] shell [$b]" >>"$CHECKS"
        fi
        my_root -e "DROP DATABASE IF EXISTS restore_cairn; DROP DATABASE IF EXISTS restore_shell"
    fi
    return 0
}

log "cairn: $CAIRN_BIN ($("$CAIRN_BIN" --version))"
log "engines: $ENGINES; PG_SCALE=$PG_SCALE, MY_MB=$MY_MB; $RUNS runs + $WARMUP warm-up; $(nproc) CPUs; zstd $(zstd --version | grep -o 'v[0-9.]*' | head -n1); age $(age --version)"
STARTED=$(date +%s)
want postgres && { start_postgres; make_pg_data; }
want mariadb && { start_mariadb; make_my_data; }
write_config
log "servers ready and data made in $(($(date +%s) - STARTED)) s"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
MEASURE_START=$(date +%s)
want postgres && rounds PostgreSQL pg_round
want mariadb && rounds MariaDB my_round
log "measured in $(($(date +%s) - MEASURE_START)) s (total $(($(date +%s) - STARTED)) s)"
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
cp "$RESULTS" "$WORK/databases-last-results.tsv"

# --- 5. report ----------------------------------------------------------------------

"$PYTHON" - "$RESULTS" "$SIZES_TSV" "$CHECKS" "$STRICT" "$(nproc)" "$LOAD_START" "$LOAD_END" \
    "${PG_SCALE}" "${MY_MB}" <<'PY'
import statistics
import sys
from collections import defaultdict

results, sizes_tsv, checks, strict = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
ncpu, load_start, load_end, pg_scale, my_mb = sys.argv[5:10]
NAMES = {"pg": f"PostgreSQL (pgbench -s {pg_scale})", "my": f"MariaDB (MY_MB={my_mb})"}
runs = defaultdict(list)
order = []
for line in open(results):
    engine, tool, run, wall, rss, cpu, own, child, child_name = line.rstrip("\n").split("\t")
    key = (engine, tool)
    if key not in order:
        order.append(key)
    runs[key].append((float(wall), int(rss), float(cpu), int(own), int(child), child_name))
stored = defaultdict(dict)
for line in open(sizes_tsv):
    engine, what, n = line.rstrip("\n").split("\t")
    stored[engine][what] = int(n)

def med(key, i):
    return statistics.median(r[i] for r in runs[key])

def low(key, i):
    return min(r[i] for r in runs[key])

engines = [e for e in ("pg", "my") if any(k[0] == e for k in order)]
n_runs = len(next(iter(runs.values()))) if runs else 0
print()
print(f"Medians of {n_runs} runs (after warm-up); 'min' is the fastest run. Peak RSS: GNU time %M, the largest "
      "single process of the command's tree (for cairn: max(cairn, the dump/restore tool it runs)); "
      "'cairn proc' and 'max child' are cairn's own and its largest child's peak, sampled from /proc.")
print(f"{ncpu} CPUs; load average (1/5/15 min) {load_start} at start, {load_end} at end.")
failed = False
targets = []
def check(ok, text):
    global failed
    failed |= not ok
    targets.append(f"  [{'PASS' if ok else 'FAIL'}] {text}")

for e in engines:
    print()
    db = stored[e].get("database", 0)
    print(f"{NAMES[e]}, database {db / 1e6:.0f} MB:")
    print()
    hdr = (f"| {'tool':<66} | {'wall s':>7} | {'min s':>6} | {'CPU s':>6} | {'peak RSS MiB':>12} "
           f"| {'cairn proc MiB':>14} | {'max child MiB':<24} |")
    print(hdr)
    print("|" + "|".join("-" * len(c) for c in hdr.split("|")[1:-1]) + "|")
    for key in order:
        if key[0] != e:
            continue
        tool = key[1]
        concurrent = "concurrent" in tool
        rss = med(key, 1) / 1024
        own = med(key, 3) / 1024
        child = med(key, 4) / 1024
        name = runs[key][0][5]
        print(f"| {tool:<66} | {'' if concurrent else f'{med(key, 0):7.2f}':>7} | "
              f"{'' if concurrent else f'{low(key, 0):6.2f}':>6} | {'' if concurrent else f'{med(key, 2):6.2f}':>6} | "
              f"{rss:>12.1f} | {f'{own:14.1f}' if own else '':>14} | "
              f"{f'{child:.1f} ({name})' if child else '':<24} |")
    print()
    print(f"| {'stored bytes':<44} | {'bytes':>12} | {'/ database':>10} |")
    print("|----------------------------------------------|--------------|------------|")
    for what, n in stored[e].items():
        print(f"| {what:<44} | {n:>12} | {n / db if db else 0:>10.3f} |")

    cb = med((e, "cairn backup"), 0)
    plain = [k for k in order if k[0] == e and "concurrent" not in k[1]]
    backups = [k for k in plain if "restore" not in k[1] and k[1] != "cairn backup"
               and not k[1].startswith("probes")]
    probes = [k for k in plain if k[1].startswith("probes")]
    restores = [k for k in plain if k[1].startswith("shell restore")]
    protected = [k for k in backups if k[1].startswith("shell:")]
    fastest = min(protected, key=lambda k: med(k, 0))
    fb = med(fastest, 0)
    print()
    print("Ratios (median wall time; < 1 means cairn is faster):")
    print()
    for k in backups:
        print(f"  cairn backup / {k[1]:<60} {cb / med(k, 0):5.2f}")
    for k in probes:
        p = med(k, 0)
        print(f"  (cairn backup - its probes, {cb - p:.2f} s) / {fastest[1]:<31} {(cb - p) / fb:5.2f}"
              f"   (probes: {p:.2f} s, {p / cb:.0%} of cairn's wall time)")
    if (e, "cairn restore") in runs:
        cr = med((e, "cairn restore"), 0)
        for k in restores:
            print(f"  cairn restore / {k[1]:<59} {cr / med(k, 0):5.2f}")
    # Both ran in the same round, minutes apart at most: the median of the
    # per-round ratios is less exposed to load that drifts across rounds.
    paired = statistics.median(a[0] / b[0] for a, b in zip(runs[(e, "cairn backup")], runs[fastest]))
    check(cb <= 1.05 * fb,
          f"{NAMES[e]}: cairn backup wall {cb:.2f} s <= 1.05 x fastest shell pipeline with compression + "
          f"encryption ({fastest[1][7:]}: {fb:.2f} s; ratio {cb / fb:.2f}; fastest runs: "
          f"{low((e, 'cairn backup'), 0) / low(fastest, 0):.2f}; median of per-round ratios: {paired:.2f})")
    for what in ("backup", "restore"):
        k = (e, f"cairn {what}")
        if k in runs:
            own = med(k, 3) / 1024
            check(own <= 64, f"{NAMES[e]}: cairn {what} peak RSS (cairn process) {own:.1f} MiB <= 64 MiB "
                             f"(GNU time on the tree: {med(k, 1) / 1024:.1f} MiB)")

print()
print("Targets:")
for t in targets:
    print(t)
print()
print("Sanity:")
for line in open(checks):
    print("  " + line.rstrip())
    failed |= "DIFFER" in line
sys.exit(1 if (failed and strict) else 0)
PY
