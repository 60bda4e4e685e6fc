#!/usr/bin/env python3
"""Generate a realistic SQLite database of roughly TARGET_MB megabytes.

Usage: gen_sqlite.py PATH TARGET_MB [SEED]

The schema looks like a small shop's application database: customers,
products, orders, order_items and events, with secondary indexes. Values
mix what real apps store: sequential ids, random integers, ISO and unix
timestamps, short enum-like strings, names and e-mail addresses, prose
built from a vocabulary, JSON documents and some random tokens (hex), so
the file compresses like a real one (neither all random nor all zeros).

Rows are produced inside SQLite by INSERT ... SELECT over recursive CTEs
(all in C), in batches, until the file reaches the target size; only
the vocabulary tables are filled from Python.
"""

import os
import random
import sqlite3
import sys
import time

GENERATOR_VERSION = 1  # bump when the data changes, so cached files are rebuilt

FIRST = """james mary robert patricia john jennifer michael linda david elizabeth
william barbara richard susan joseph jessica thomas sarah charles karen chris
lisa daniel nancy matthew betty anthony sandra mark margaret donald ashley
steven kimberly paul emily andrew donna joshua michelle kenneth carol kevin
amanda brian melissa george deborah timothy stephanie ronald rebecca jason
sharon edward laura jeffrey cynthia ryan kathleen jacob amy gary angela
nicholas shirley eric anna jonathan brenda stephen pamela larry emma justin
nicole scott helen brandon samantha benjamin katherine samuel christine
gregory debra alexander rachel frank carolyn patrick janet raymond maria
jack olivia dennis heather jerry diane tyler julie aaron joyce jose victoria
adam ruth henry virginia nathan lauren douglas kelly zachary christina peter
joan kyle evelyn noah judith ethan andrea jeremy hannah walter megan christian
cheryl keith jacqueline roger martha terry madison austin teresa sean gloria
gerald sara carl janice harold ann dylan kathryn arthur abigail lawrence
sophia jordan frances jesse jean bryan alice billy judy bruce isabella""".split()

LAST = """smith johnson williams brown jones garcia miller davis rodriguez
martinez hernandez lopez gonzalez wilson anderson thomas taylor moore jackson
martin lee perez thompson white harris sanchez clark ramirez lewis robinson
walker young allen king wright scott torres nguyen hill flores green adams
nelson baker hall rivera campbell mitchell carter roberts gomez phillips
evans turner diaz parker cruz edwards collins reyes stewart morris morales
murphy cook rogers gutierrez ortiz morgan cooper peterson bailey reed kelly
howard ramos kim cox ward richardson watson brooks chavez wood james bennett
gray mendoza ruiz hughes price alvarez castillo sanders patel myers long ross
foster jimenez powell jenkins perry russell sullivan bell coleman butler
henderson barnes gonzales fisher vasquez simmons romero jordan patterson
alexander hamilton graham reynolds griffin wallace moreno west cole hayes
bryant herrera gibson ellis tran medina aguilar stevens murray ford castro
marshall owens harrison fernandez mcdonald woods washington kennedy wells
vargas henry chen freeman webb tucker guzman burns crawford olson simpson
porter hunter gordon mendez silva shaw snyder mason dixon munoz hunt hicks
holmes palmer wagner black robertson boyd rose stone salazar fox warren mills
meyer rice schmidt garza daniels ferguson nichols stephens soto weaver ryan""".split()

WORDS = """the of and to in is for that with on as it by this be are from at or
an was have not your you all can more has will one our new about which their
but they also other its were if any time when use may only these some been
would than into who what most made make over after through while where very
quality durable lightweight premium compact wireless portable ergonomic
stainless waterproof adjustable rechargeable organic handmade vintage modern
classic everyday essential deluxe professional outdoor indoor travel kitchen
office garden kids pet fitness audio storage lighting cotton leather steel
bamboo ceramic glass wooden plastic silicone aluminum battery charger cable
adapter bottle bag backpack jacket shoe sock shirt lamp chair desk table mug
bowl plate knife pan pot blender kettle speaker headphone keyboard mouse
monitor camera tripod case cover stand holder mount hook basket box tray
shipping delivery order customer return refund warranty support service
product item package size color weight width height length material design
feature includes perfect ideal great easy simple fast reliable comfortable
strong soft smooth bright clean fresh natural safe secure smart powerful
gift set pack pair piece kit bundle edition series model version collection
please note customers reviews rated stars recommended best seller limited
available stock week month year day today tomorrow small medium large extra
black white blue red green gray navy beige brown pink purple orange yellow
hand wash machine dry iron warm cold water free shipping over orders ready
ships within business days tracking number provided email confirmation
account password login profile settings address billing payment card""".split()

COUNTRIES = ["US", "US", "US", "GB", "DE", "FR", "CA", "NL", "ES", "IT",
             "SE", "AU", "BR", "IN", "JP", "PL", "BE", "CH", "AT", "IE"]
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "hotmail.com",
           "icloud.com", "proton.me", "example.org", "mail.de", "web.de"]
CITIES = ["Springfield", "Riverside", "Franklin", "Greenville", "Bristol",
          "Clinton", "Fairview", "Salem", "Madison", "Georgetown", "Arlington",
          "Ashland", "Dover", "Oxford", "Jackson", "Burlington", "Manchester",
          "Milton", "Newport", "Auburn", "Dayton", "Lexington", "Milford"]
STREETS = ["Main St", "Oak Ave", "Pine St", "Maple Ave", "Cedar Ln",
           "Elm St", "Washington Blvd", "Lake Dr", "Hill Rd", "Park Ave",
           "Church St", "High St", "Mill Rd", "River Rd", "Sunset Blvd"]
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
]
PATHS = ["/", "/search", "/cart", "/checkout", "/account", "/orders",
         "/products", "/products/{}", "/category/{}", "/help", "/login"]

SCHEMA = """
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    country TEXT NOT NULL,
    city TEXT,
    street TEXT,
    plan TEXT NOT NULL DEFAULT 'free',
    marketing_opt_in INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    last_login_at TEXT,
    api_token TEXT,
    preferences TEXT
);
CREATE INDEX customers_created_at ON customers(created_at);
CREATE INDEX customers_country_city ON customers(country, city);

CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    sku TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price_cents INTEGER NOT NULL,
    stock INTEGER NOT NULL,
    description TEXT,
    attributes TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX products_category_price ON products(category, price_cents);

CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    status TEXT NOT NULL,
    currency TEXT NOT NULL,
    total_cents INTEGER NOT NULL,
    shipping_address TEXT,
    note TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX orders_customer_created ON orders(customer_id, created_at);
CREATE INDEX orders_status_created ON orders(status, created_at);

CREATE TABLE order_items (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders(id),
    product_id INTEGER NOT NULL REFERENCES products(id),
    quantity INTEGER NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    discount_cents INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX order_items_order ON order_items(order_id);
CREATE INDEX order_items_product ON order_items(product_id);

CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER,
    session_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX events_customer_time ON events(customer_id, occurred_at);
CREATE INDEX events_kind_time ON events(kind, occurred_at);

-- vocabulary, kept in the file like an app's lookup tables
CREATE TABLE vocab_first (id INTEGER PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE vocab_last (id INTEGER PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE vocab_sentence (id INTEGER PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE vocab_misc (kind TEXT NOT NULL, id INTEGER NOT NULL, v TEXT NOT NULL,
                         PRIMARY KEY (kind, id)) WITHOUT ROWID;
"""

N_SENTENCES = 4000
N_PRODUCTS = 20000
BASE_TS = 1609459200  # 2021-01-01
SPAN = 4 * 365 * 86400


def pick(table, n, salt):
    """A random row of a vocabulary table, correlated with the outer row `salt`
    so that SQLite evaluates it per row."""
    return f"(SELECT v FROM {table} WHERE id = 1 + abs(random() + {salt} * 0) % {n})"


def misc(kind, n, salt):
    return (f"(SELECT v FROM vocab_misc WHERE kind = '{kind}' "
            f"AND id = abs(random() + {salt} * 0) % {n})")


def fill_vocab(db, rng):
    db.executemany("INSERT INTO vocab_first VALUES (?, ?)",
                   [(i + 1, w.capitalize()) for i, w in enumerate(FIRST)])
    db.executemany("INSERT INTO vocab_last VALUES (?, ?)",
                   [(i + 1, w.capitalize()) for i, w in enumerate(LAST)])
    sentences = []
    for i in range(N_SENTENCES):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 16))]
        s = " ".join(words).capitalize() + rng.choice([".", ".", ".", "!", "?"])
        sentences.append((i + 1, s))
    db.executemany("INSERT INTO vocab_sentence VALUES (?, ?)", sentences)
    rows = []
    for kind, values in [("country", COUNTRIES), ("domain", DOMAINS),
                         ("city", CITIES), ("street", STREETS),
                         ("ua", USER_AGENTS), ("path", PATHS)]:
        rows += [(kind, i, v) for i, v in enumerate(values)]
    db.executemany("INSERT INTO vocab_misc VALUES (?, ?, ?)", rows)


def counts():
    return {
        "first": len(FIRST), "last": len(LAST), "country": len(COUNTRIES),
        "domain": len(DOMAINS), "city": len(CITIES), "street": len(STREETS),
        "ua": len(USER_AGENTS), "path": len(PATHS),
    }


def iso(expr):
    return f"strftime('%Y-%m-%dT%H:%M:%SZ', {expr}, 'unixepoch')"


def sentences(k, salt):
    return " || ' ' || ".join(pick("vocab_sentence", N_SENTENCES, f"{salt}+{i}") for i in range(k))


def insert_products(db):
    c = counts()
    db.execute(f"""
    WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {N_PRODUCTS})
    INSERT INTO products (id, sku, name, category, price_cents, stock, description, attributes, created_at)
    SELECT n,
           printf('SKU-%05d-%s', n, upper(hex(randomblob(2)))),
           {pick('vocab_sentence', N_SENTENCES, 'n')},
           printf('category-%02d', n % 40),
           99 + abs(random()) % 50000,
           abs(random()) % 500,
           {sentences(4, 'n')},
           json_object('color', {misc('city', c['city'], 'n')}, 'weight_g', abs(random()) % 5000,
                       'tags', json_array('t' || (n % 17), 't' || (n % 29)), 'featured', n % 11 = 0),
           {iso(f'{BASE_TS} + abs(random()) % {SPAN // 2}')}
    FROM s
    """)


def insert_batch(db, c0, customers_per_batch):
    """Customers c0+1 .. c0+customers_per_batch, with their orders, items and events."""
    c = counts()
    hi = c0 + customers_per_batch
    # customers
    db.execute(f"""
    WITH RECURSIVE s(n) AS (SELECT {c0 + 1} UNION ALL SELECT n + 1 FROM s WHERE n < {hi}),
    p(n, f, l, t) AS (SELECT n, {pick('vocab_first', c['first'], 'n')}, {pick('vocab_last', c['last'], 'n')},
                             {BASE_TS} + (n * {SPAN // 4}) / 4000000 + abs(random()) % 86400 FROM s)
    INSERT INTO customers (id, email, first_name, last_name, country, city, street, plan,
                           marketing_opt_in, created_at, last_login_at, api_token, preferences)
    SELECT n, lower(f) || '.' || lower(l) || n || '@' || {misc('domain', c['domain'], 'n')},
           f, l, {misc('country', c['country'], 'n')}, {misc('city', c['city'], 'n')},
           (abs(random()) % 9000 + 1) || ' ' || {misc('street', c['street'], 'n')},
           CASE abs(random()) % 10 WHEN 0 THEN 'pro' WHEN 1 THEN 'team' ELSE 'free' END,
           abs(random()) % 2,
           {iso('t')},
           CASE WHEN n % 7 = 0 THEN NULL ELSE {iso(f't + abs(random()) % {SPAN // 2}')} END,
           CASE WHEN n % 3 = 0 THEN lower(hex(randomblob(16))) END,
           json_object('theme', CASE n % 3 WHEN 0 THEN 'dark' ELSE 'light' END,
                       'lang', CASE n % 5 WHEN 0 THEN 'de' WHEN 1 THEN 'fr' ELSE 'en' END,
                       'newsletter', json('true'), 'notifications',
                       json_object('email', n % 2 = 0, 'sms', n % 9 = 0))
    FROM p
    """)
    # orders: ~5 per customer, mostly recent customers
    o0 = db.execute("SELECT coalesce(max(id), 0) FROM orders").fetchone()[0]
    n_orders = customers_per_batch * 5
    db.execute(f"""
    WITH RECURSIVE s(n) AS (SELECT {o0 + 1} UNION ALL SELECT n + 1 FROM s WHERE n < {o0 + n_orders}),
    p(n, cust, t) AS (SELECT n, 1 + abs(random()) % {hi},
                             {BASE_TS} + (n * {SPAN // 4}) / 20000000 + abs(random()) % 604800 FROM s)
    INSERT INTO orders (id, customer_id, status, currency, total_cents, shipping_address, note, created_at, updated_at)
    SELECT n, cust,
           CASE abs(random()) % 20 WHEN 0 THEN 'cancelled' WHEN 1 THEN 'refunded' WHEN 2 THEN 'pending'
                                   WHEN 3 THEN 'processing' WHEN 4 THEN 'shipped' ELSE 'delivered' END,
           CASE WHEN n % 4 = 0 THEN 'EUR' WHEN n % 9 = 0 THEN 'GBP' ELSE 'USD' END,
           500 + abs(random()) % 40000,
           (abs(random()) % 9000 + 1) || ' ' || {misc('street', c['street'], 'n')} || ', '
               || {misc('city', c['city'], 'n')} || ' ' || printf('%05d', abs(random()) % 100000),
           CASE WHEN n % 6 = 0 THEN {pick('vocab_sentence', N_SENTENCES, 'n')} END,
           {iso('t')}, {iso('t + abs(random()) % 1209600')}
    FROM p
    """)
    # order items: 1..5 per order
    db.execute(f"""
    WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 5)
    INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents, discount_cents)
    SELECT o.id, 1 + abs(random()) % {N_PRODUCTS}, 1 + abs(random()) % 3 * (abs(random()) % 4 = 0),
           99 + abs(random()) % 50000, CASE WHEN abs(random()) % 5 = 0 THEN abs(random()) % 1000 ELSE 0 END
    FROM orders o JOIN k ON k.i <= 1 + (o.id * 7 + o.customer_id) % 5
    WHERE o.id > {o0}
    ORDER BY o.id, k.i
    """)
    # events: ~12 per customer, bursts per session
    e0 = db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
    n_events = customers_per_batch * 12
    db.execute(f"""
    WITH RECURSIVE s(n) AS (SELECT {e0 + 1} UNION ALL SELECT n + 1 FROM s WHERE n < {e0 + n_events}),
    p(n, cust, t, sess) AS (SELECT n, CASE WHEN n % 8 = 0 THEN NULL ELSE 1 + (n / 6) % {hi} END,
                                   {BASE_TS} + (n * {SPAN // 4}) / 48000000 + abs(random()) % 3600,
                                   printf('%08x', (n / 6) * 2654435761 % 4294967296) FROM s)
    INSERT INTO events (id, customer_id, session_id, kind, occurred_at, payload)
    SELECT n, cust, sess,
           CASE abs(random()) % 10 WHEN 0 THEN 'login' WHEN 1 THEN 'add_to_cart' WHEN 2 THEN 'checkout'
                                   WHEN 3 THEN 'search' ELSE 'page_view' END,
           t,
           json_object('ip', printf('%d.%d.%d.%d', 10 + abs(random()) % 200, abs(random()) % 256,
                                    abs(random()) % 256, abs(random()) % 256),
                       'ua', {misc('ua', c['ua'], 'n')},
                       'path', replace({misc('path', c['path'], 'n')}, '{{}}', abs(random()) % {N_PRODUCTS}),
                       'referrer', CASE n % 4 WHEN 0 THEN 'https://www.google.com/' WHEN 1 THEN NULL
                                   ELSE 'https://shop.example.com/' END,
                       'duration_ms', abs(random()) % 30000,
                       'request_id', lower(hex(randomblob(8))),
                       'query', CASE WHEN abs(random()) % 10 = 0 THEN {pick('vocab_sentence', N_SENTENCES, 'n')} END)
    FROM p
    """)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, target_mb = sys.argv[1], float(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 42
    target = int(target_mb * 1_000_000)
    tmp = path + ".partial"
    for p in (tmp, tmp + "-journal", tmp + "-wal", tmp + "-shm"):
        if os.path.exists(p):
            os.remove(p)
    rng = random.Random(seed)
    started = time.monotonic()
    db = sqlite3.connect(tmp, isolation_level=None)
    db.executescript("""
        PRAGMA page_size = 4096;
        PRAGMA journal_mode = OFF;
        PRAGMA synchronous = OFF;
        PRAGMA cache_size = -262144;
        PRAGMA temp_store = MEMORY;
    """)
    db.executescript(SCHEMA)
    db.execute("BEGIN")
    fill_vocab(db, rng)
    insert_products(db)
    db.execute("COMMIT")

    def size():
        pc = db.execute("PRAGMA page_count").fetchone()[0]
        ps = db.execute("PRAGMA page_size").fetchone()[0]
        return pc * ps

    # A batch is ~15 MB at first; later batches are sized from the growth seen.
    per_customer = None
    customers_done = 0
    batch_customers = 2000
    while True:
        current = size()
        if current >= target:
            break
        if per_customer:
            need = (target - current) / per_customer
            batch_customers = max(1000, min(40000, int(need) + 1))
        before = current
        db.execute("BEGIN")
        insert_batch(db, customers_done, batch_customers)
        db.execute("COMMIT")
        customers_done += batch_customers
        grown = size() - before
        if grown > 0:
            per_customer = grown / batch_customers

    # Some churn, as in a live app: old events purged (leaves free pages).
    db.execute("DELETE FROM events WHERE id % 50 = 0")
    db.execute("ANALYZE")
    db.execute("PRAGMA journal_mode = WAL")
    db.close()
    os.replace(tmp, path)
    elapsed = time.monotonic() - started
    print(f"generated {path}: {os.path.getsize(path) / 1e6:.1f} MB, "
          f"{customers_done} customers, in {elapsed:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
