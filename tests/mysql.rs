//! MySQL/MariaDB sources and restores against a real MariaDB server started for
//! this test binary (see common/servers.rs).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::servers::{self, PASSWORD, rand_name};
use common::{Env, stderr, stdout};
use predicates::prelude::*;

/// Every kind of object mariadb-dump must carry over. Runs as root; the
/// routines have BEGIN … END bodies, hence the delimiter switch.
const SCHEMA: &str = r#"
CREATE TABLE customers (
    id INT AUTO_INCREMENT PRIMARY KEY,
    email VARCHAR(190) NOT NULL,
    name VARCHAR(200) NOT NULL,
    country CHAR(2) NOT NULL,
    CONSTRAINT customers_email UNIQUE (email),
    CONSTRAINT customers_country CHECK (country REGEXP '^[A-Z]{2}$'),
    KEY customers_name (name(50))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE products (
    id INT AUTO_INCREMENT PRIMARY KEY,
    sku VARCHAR(40) NOT NULL,
    title VARCHAR(200) NOT NULL,
    price DECIMAL(10,2) NOT NULL,
    stock INT NOT NULL DEFAULT 0,
    photo BLOB,
    CONSTRAINT products_price CHECK (price > 0),
    UNIQUE KEY products_sku (sku),
    KEY products_price_stock (price, stock)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE orders (
    id INT AUTO_INCREMENT PRIMARY KEY,
    customer_id INT NOT NULL,
    placed_at DATETIME(3) NOT NULL,
    note TEXT,
    CONSTRAINT orders_customer FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE CASCADE,
    KEY orders_placed (placed_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE order_items (
    order_id INT NOT NULL,
    product_id INT NOT NULL,
    qty INT NOT NULL CHECK (qty > 0),
    PRIMARY KEY (order_id, product_id),
    CONSTRAINT order_items_order FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE,
    CONSTRAINT order_items_product FOREIGN KEY (product_id) REFERENCES products (id)
) ENGINE=InnoDB;
CREATE TABLE stock_audit (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    product_id INT NOT NULL,
    old_stock INT,
    new_stock INT
) ENGINE=InnoDB;
CREATE VIEW customer_totals AS
    SELECT c.id, c.name, COUNT(o.id) AS orders FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.id, c.name;
DELIMITER //
CREATE PROCEDURE restock(IN p INT, IN n INT)
BEGIN
    UPDATE products SET stock = stock + n WHERE id = p;
    SELECT stock FROM products WHERE id = p;
END //
CREATE FUNCTION price_with_vat(p DECIMAL(10,2)) RETURNS DECIMAL(10,2) DETERMINISTIC
BEGIN
    RETURN ROUND(p * 1.2, 2);
END //
CREATE TRIGGER products_stock_audit AFTER UPDATE ON products FOR EACH ROW
BEGIN
    IF OLD.stock <> NEW.stock THEN
        INSERT INTO stock_audit (product_id, old_stock, new_stock) VALUES (OLD.id, OLD.stock, NEW.stock);
    END IF;
END //
DELIMITER ;
CREATE EVENT purge_audit ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DISABLE
    COMMENT 'nightly purge'
    DO DELETE FROM stock_audit WHERE id < 0;
INSERT INTO customers (email, name, country) VALUES
    ('anna@example.com', 'Anna Grüße 🎉', 'DE'),
    ('taro@example.jp', '山田太郎 東京商事', 'JP'),
    ('zoe@example.fr', 'Zoë ''quoted'' \\ back\slash 👩‍👩‍👧', 'FR');
INSERT INTO products (sku, title, price, stock, photo)
    SELECT CONCAT('SKU-', seq), CONCAT('Ürün ', seq, ' — naïve 日本語 ✓ 🚀'), 1 + seq / 100, seq % 50,
           UNHEX(CONCAT(SHA2(seq, 256), '00FF0A0D5C27221A', SHA2(seq * 7, 512), SHA2(seq * 13, 512)))
    FROM seq_1_to_2000;
UPDATE products SET photo = NULL WHERE id % 97 = 0;
INSERT INTO orders (customer_id, placed_at, note)
    SELECT 1 + seq % 3, TIMESTAMP('2026-01-01 00:00:00.123') + INTERVAL seq MINUTE,
           IF(seq % 5 = 0, NULL, CONCAT('note ', seq, ' 🍣'))
    FROM seq_1_to_500;
INSERT INTO order_items (order_id, product_id, qty)
    SELECT o.seq, 1 + (o.seq * 31 + i.seq) % 2000, i.seq FROM seq_1_to_500 o, seq_1_to_3 i;
UPDATE products SET stock = stock + 1 WHERE id <= 5;
INSERT INTO customers (email, name, country) VALUES ('gone@example.com', 'gone', 'XX');
DELETE FROM customers WHERE email = 'gone@example.com';
"#;

/// Runs a script (with DELIMITER lines) as root, in utf8mb4.
fn script(db: &str, sql: &str) {
    servers::mariadb().sql(db, &format!("SET NAMES utf8mb4;\n{sql}"));
}

fn seeded_db() -> String {
    let my = servers::mariadb();
    let db = rand_name();
    // Not the server's default character set (latin1 here): restores must keep it.
    my.sql(
        "",
        &format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"),
    );
    script(&db, SCHEMA);
    db
}

fn exists(db: &str) -> bool {
    servers::mariadb().sql(
        "",
        &format!("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = '{db}'"),
    ) == "1"
}

fn column(db: &str, sql: &str) -> Vec<String> {
    servers::mariadb()
        .sql(db, sql)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Schema (SHOW CREATE … of every object) and per-table content checksums;
/// the database's own name is replaced so that copies compare equal.
fn fingerprint(db: &str) -> String {
    let my = servers::mariadb();
    let mut out = String::new();
    let mut show = |what: &str, sql: String, drop_last_column: bool| {
        let mut row = my.sql(db, &sql);
        if drop_last_column {
            row = row
                .rsplit_once('\t')
                .map(|(a, _)| a.to_string())
                .unwrap_or(row);
        }
        out.push_str(&format!("== {what}\n{row}\n"));
    };
    let tables = column(
        db,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY 1",
    );
    for table in &tables {
        show("table", format!("SHOW CREATE TABLE `{table}`"), false);
        show(
            "checksum",
            format!("CHECKSUM TABLE `{table}` EXTENDED"),
            false,
        );
        let columns = column(
            db,
            &format!(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = '{table}' ORDER BY ordinal_position"
            ),
        );
        let row = columns
            .iter()
            .map(|c| format!("IFNULL(HEX(`{c}`), 'NULL')"))
            .collect::<Vec<_>>()
            .join(", ");
        show(
            "rows",
            format!(
                "SET SESSION group_concat_max_len = 1073741824; SELECT COUNT(*), MD5(IFNULL(GROUP_CONCAT(r ORDER BY r SEPARATOR ';'), '')) FROM (SELECT CONCAT_WS(',', {row}) AS r FROM `{table}`) t"
            ),
            false,
        );
    }
    show(
        "database defaults",
        "SELECT default_character_set_name, default_collation_name FROM information_schema.schemata WHERE schema_name = DATABASE()".into(),
        false,
    );
    show(
        "auto_increment",
        "SELECT GROUP_CONCAT(CONCAT(table_name, '=', IFNULL(auto_increment, '-')) ORDER BY table_name) FROM information_schema.tables WHERE table_schema = DATABASE()".into(),
        false,
    );
    for view in column(
        db,
        "SELECT table_name FROM information_schema.views WHERE table_schema = DATABASE() ORDER BY 1",
    ) {
        show("view", format!("SHOW CREATE VIEW `{view}`"), false);
    }
    for routine in column(
        db,
        "SELECT CONCAT(routine_type, ' `', routine_name, '`') FROM information_schema.routines WHERE routine_schema = DATABASE() ORDER BY 1",
    ) {
        show("routine", format!("SHOW CREATE {routine}"), false);
    }
    for trigger in column(
        db,
        "SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema = DATABASE() ORDER BY 1",
    ) {
        // The last column is the creation time.
        show("trigger", format!("SHOW CREATE TRIGGER `{trigger}`"), true);
    }
    for event in column(
        db,
        "SELECT event_name FROM information_schema.events WHERE event_schema = DATABASE() ORDER BY 1",
    ) {
        show("event", format!("SHOW CREATE EVENT `{event}`"), false);
    }
    show(
        "indexes",
        "SELECT GROUP_CONCAT(CONCAT(table_name, '.', index_name, ':', seq_in_index, ':', column_name, ':', non_unique) ORDER BY table_name, index_name, seq_in_index) FROM information_schema.statistics WHERE table_schema = DATABASE()".into(),
        false,
    );
    show(
        "constraints",
        "SELECT GROUP_CONCAT(CONCAT(table_name, '.', constraint_name, ':', constraint_type) ORDER BY table_name, constraint_name) FROM information_schema.table_constraints WHERE constraint_schema = DATABASE()".into(),
        false,
    );
    out.replace(db, "<DB>")
}

const JOB_PASSWORD_ENV: &str = "SHOP_MY_PASSWORD";

/// A `shop` job on `url`; `password_env` names the variable holding the
/// password (else the URL carries it); `job_extra` lines go into the job.
fn my_env_with(url: &str, password_env: bool, job_extra: &str) -> Env {
    let env = Env::new();
    let password_env = if password_env {
        format!(", password_env = \"{JOB_PASSWORD_ENV}\"")
    } else {
        String::new()
    };
    env.write_config(&format!(
        "[destinations.local]\nkind = \"fs\"\npath = \"backups\"\n\n[jobs.shop]\nsource = {{ kind = \"mysql\", url = \"{url}\"{password_env} }}\ndestinations = [\"local\"]\n{job_extra}\n"
    ));
    env
}

/// Unencrypted (the passphrase's scrypt costs a second a run); zstd.
fn my_env(db: &str) -> Env {
    my_env_with(
        &servers::mariadb().url_without_password(db),
        true,
        "encryption = { kind = \"none\" }",
    )
}

fn cairn(env: &Env) -> common::cairn_command::CairnCommand {
    let mut cmd = env.cairn();
    cmd.env(JOB_PASSWORD_ENV, PASSWORD)
        .env("CAIRN_PASSPHRASE", "correct horse");
    cmd
}

#[test]
fn round_trip_keeps_schema_routines_events_and_data() {
    let my = servers::mariadb();
    let db = seeded_db();
    let env = my_env_with(
        &my.url_without_password(&db),
        true,
        "encryption = { kind = \"age-passphrase\", passphrase_env = \"CAIRN_PASSPHRASE\" }",
    );
    let out = cairn(&env)
        .args(["backup", "shop", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let entry = &env.list()[0];
    assert!(
        entry["key"].as_str().unwrap().ends_with(".sql.zst.age"),
        "{entry}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let facts = &report[0]["manifest"]["source"]["facts"];
    assert_eq!(facts["dump_tool"], "mariadb-dump", "{facts}");
    assert!(
        facts["dump_tool_version"]
            .as_str()
            .unwrap()
            .contains("mariadb-dump"),
        "{facts}"
    );
    assert_eq!(
        facts["server_version"].as_str().unwrap(),
        my.sql("", "SELECT VERSION()"),
        "{facts}"
    );
    assert!(
        facts["server_version"]
            .as_str()
            .unwrap()
            .contains("MariaDB"),
        "{facts}"
    );
    assert_eq!(facts["database"], db.as_str(), "{facts}");
    assert_eq!(facts["charset"], "utf8mb4", "{facts}");
    assert_eq!(facts["collation"], "utf8mb4_unicode_ci", "{facts}");
    assert_eq!(
        facts["server"],
        my.url_without_password(&db).as_str(),
        "{facts}"
    );
    let tables = facts["tables"].as_object().unwrap();
    assert_eq!(
        tables.keys().cloned().collect::<Vec<_>>(),
        [
            "customers",
            "order_items",
            "orders",
            "products",
            "stock_audit"
        ],
        "views are not tables: {facts}"
    );
    assert!(!report.to_string().contains("s3cret"), "{report}");

    // The dump is plain SQL that carries every kind of object.
    let plain = cairn(&env).args(["cat", "shop"]).output().unwrap();
    assert!(plain.status.success(), "{}", stderr(&plain));
    let text = String::from_utf8_lossy(&plain.stdout);
    for needle in [
        "CREATE TABLE `products`",
        "PROCEDURE `restock`",
        "FUNCTION `price_with_vat`",
        "TRIGGER products_stock_audit AFTER UPDATE ON",
        "EVENT `purge_audit`",
        "VIEW `customer_totals`",
    ] {
        assert!(text.contains(needle), "the dump lacks {needle}");
    }

    let copy = rand_name();
    cairn(&env)
        .args(["restore", "shop", "--to", &my.url_without_password(&copy)])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "created database `{copy}`"
        )));
    let (source, restored) = (fingerprint(&db), fingerprint(&copy));
    // The fingerprint really covers the objects (a broken query would compare "" to "").
    for needle in [
        "FOREIGN KEY (`customer_id`) REFERENCES `customers`",
        "CONSTRAINT `products_price` CHECK",
        "UNIQUE KEY `products_sku`",
        "customers=5,",
        "== view",
        "PROCEDURE `restock`",
        "FUNCTION `price_with_vat`",
        "TRIGGER products_stock_audit AFTER UPDATE ON",
        "EVENT `purge_audit`",
        "DISABLE",
        "products.products_price_stock:2:stock:1",
        "utf8mb4\tutf8mb4_unicode_ci",
    ] {
        assert!(
            source.contains(needle),
            "fingerprint lacks {needle}:\n{source}"
        );
    }
    assert_eq!(source, restored);

    // Non-ASCII text and binary data read back as written.
    let names_sql = "SET NAMES utf8mb4; SELECT name FROM customers ORDER BY id";
    let names = my.sql(&copy, names_sql);
    assert_eq!(names, my.sql(&db, names_sql));
    for needle in [
        "Grüße 🎉",
        "山田太郎 東京商事",
        "'quoted' \\\\ backslash 👩\u{200d}👩\u{200d}👧",
    ] {
        assert!(names.contains(needle), "{needle} in {names}");
    }
    assert_eq!(
        my.sql(&copy, "SELECT HEX(photo) FROM products WHERE id = 1"),
        my.sql(&db, "SELECT HEX(photo) FROM products WHERE id = 1"),
    );
    assert!(
        my.sql(&copy, "SELECT HEX(photo) FROM products WHERE id = 1")
            .contains("00FF0A0D5C27221A")
    );
    // Routines, the trigger and the view work in the copy.
    assert_eq!(my.sql(&copy, "SELECT price_with_vat(10.00)"), "12.00");
    assert_eq!(my.sql(&copy, "CALL restock(7, 100)"), "107");
    assert_eq!(
        my.sql(
            &copy,
            "SELECT product_id, old_stock, new_stock FROM stock_audit ORDER BY id DESC LIMIT 1"
        ),
        "7\t7\t107"
    );
    assert_eq!(
        my.sql(&copy, "SELECT orders FROM customer_totals WHERE id = 2"),
        "167"
    );
    // AUTO_INCREMENT continues after the deleted row, as in the source.
    my.sql(
        &copy,
        "INSERT INTO customers (email, name, country) VALUES ('new@example.com', 'new', 'NL')",
    );
    assert_eq!(
        my.sql(
            &copy,
            "SELECT id FROM customers WHERE email = 'new@example.com'"
        ),
        "5"
    );
    // Constraints are enforced in the copy.
    for bad in [
        "INSERT INTO customers (email, name, country) VALUES ('anna@example.com', 'dup', 'DE')",
        "INSERT INTO customers (email, name, country) VALUES ('x@example.com', 'x', 'lower')",
        "INSERT INTO orders (customer_id, placed_at) VALUES (999, NOW())",
    ] {
        let out = std::process::Command::new("mariadb")
            .arg("--no-defaults")
            .args([
                "-h",
                "127.0.0.1",
                "-P",
                &my.port.to_string(),
                "--protocol=TCP",
            ])
            .args(["-u", servers::MY_USER])
            .env("MYSQL_PWD", PASSWORD)
            .args(["-e", bad, &copy])
            .output()
            .unwrap();
        assert!(!out.status.success(), "accepted in the copy: {bad}");
    }
}

#[test]
fn non_empty_target_needs_force_and_clean_replaces_it() {
    let my = servers::mariadb();
    let db = seeded_db();
    let env = my_env(&db);
    cairn(&env).args(["backup", "shop"]).assert().success();
    let target = rand_name();
    my.sql("", &format!("CREATE DATABASE `{target}`"));
    my.sql(
        &target,
        "CREATE TABLE keep (x INT); INSERT INTO keep VALUES (42); CREATE TABLE stock_audit (x INT); INSERT INTO stock_audit VALUES (7)",
    );
    let url = my.url_without_password(&target);

    let out = cairn(&env)
        .args(["restore", "shop", "--to", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--force") && err.contains("2 tables"), "{err}");
    assert_eq!(my.sql(&target, "SELECT x FROM keep"), "42");
    assert_eq!(my.sql(&target, "SELECT x FROM stock_audit"), "7");
    assert_eq!(column(&target, "SHOW TABLES"), ["keep", "stock_audit"]);

    // --force --clean with a damaged artifact: the existing database must not be
    // dropped before the artifact is proven whole.
    let entry = env.list().remove(0);
    let data = env.data_path(&entry);
    let intact = std::fs::read(&data).unwrap();
    let mut damaged = intact.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x01;
    std::fs::write(&data, &damaged).unwrap();
    let out = cairn(&env)
        .args(["restore", "shop", "--force", "--clean", "--to", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("SHA-256"), "{}", stderr(&out));
    assert_eq!(my.sql(&target, "SELECT x FROM keep"), "42");
    assert_eq!(column(&target, "SHOW TABLES"), ["keep", "stock_audit"]);
    std::fs::write(&data, &intact).unwrap();

    // A dry run with --force --clean says what it would do and does nothing.
    cairn(&env)
        .args([
            "restore",
            "shop",
            "--dry-run",
            "--force",
            "--clean",
            "--to",
            &url,
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("would drop and re-create"));
    assert_eq!(column(&target, "SHOW TABLES"), ["keep", "stock_audit"]);

    // --force alone restores into it: the dump's tables replace theirs, others stay.
    cairn(&env)
        .args(["restore", "shop", "--force", "--to", &url])
        .assert()
        .success();
    assert_eq!(my.sql(&target, "SELECT x FROM keep"), "42");
    assert_eq!(my.sql(&target, "SELECT COUNT(*) FROM products"), "2000");
    assert_eq!(my.sql(&target, "SELECT COUNT(*) FROM stock_audit"), "5");

    cairn(&env)
        .args(["restore", "shop", "--force", "--clean", "--to", &url])
        .assert()
        .success()
        .stdout(predicate::str::contains("dropped and re-created"));
    assert_eq!(fingerprint(&db), fingerprint(&target));
    assert!(!column(&target, "SHOW TABLES").contains(&"keep".to_string()));

    // --clean without --force is a usage error.
    cairn(&env)
        .args(["restore", "shop", "--clean", "--to", &url])
        .assert()
        .code(2);
}

#[test]
fn a_statement_the_server_rejects_fails_the_restore_as_the_servers_error() {
    let my = servers::mariadb();
    let db = seeded_db();
    let env = my_env(&db);
    cairn(&env).args(["backup", "shop"]).assert().success();
    // A `products` table of another shape: the dump's foreign keys to it cannot
    // be created, and the client stops reading midway through the dump.
    let target = rand_name();
    my.sql("", &format!("CREATE DATABASE `{target}`"));
    my.sql(
        &target,
        "CREATE TABLE products (x INT); INSERT INTO products VALUES (7)",
    );
    let out = cairn(&env)
        .args([
            "restore",
            "shop",
            "--force",
            "--to",
            &my.url_without_password(&target),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Foreign key constraint"), "{err}");
    assert!(
        !err.contains("damaged"),
        "the artifact is fine; the server refused a statement: {err}"
    );
    assert_eq!(my.sql(&target, "SELECT x FROM products"), "7");
    assert!(exists(&target), "a database that existed before is kept");
    cairn(&env).args(["verify", "shop"]).assert().success();
}

#[test]
fn dry_run_checks_the_artifact_and_creates_nothing() {
    let my = servers::mariadb();
    let db = seeded_db();
    let env = my_env(&db);
    cairn(&env).args(["backup", "shop"]).assert().success();
    let copy = rand_name();
    let out = cairn(&env)
        .args(["restore", "shop", "--dry-run", "--to", &my.url(&copy)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("dry run: nothing was written"), "{text}");
    assert!(
        text.contains(&format!("would create database `{copy}`")),
        "{text}"
    );
    assert!(text.contains("SHA-256 match"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    assert!(!exists(&copy));

    // A dry run still needs a reachable server with the right password.
    let out = env
        .cairn()
        .env(JOB_PASSWORD_ENV, "not-it")
        .env("CAIRN_PASSPHRASE", "correct horse")
        .args([
            "restore",
            "shop",
            "--dry-run",
            "--to",
            &my.url_without_password(&copy),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("Access denied"), "{}", stderr(&out));
    assert!(!exists(&copy));
}

#[test]
fn failures_name_the_server_without_credentials_and_commit_nothing() {
    let my = servers::mariadb();
    let db = seeded_db();
    let env = my_env(&db);
    // Wrong password from the environment.
    let out = env
        .cairn()
        .env(JOB_PASSWORD_ENV, "wrong-Pw-4711")
        .env("CAIRN_PASSPHRASE", "pp")
        .args(["backup", "shop"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("Access denied"), "{err}");
    assert!(err.contains(&my.url_without_password(&db)), "{err}");
    assert!(!err.contains("wrong-Pw-4711"), "{err}");
    assert!(!stdout(&out).contains("wrong-Pw-4711"));

    // Wrong password inside the URL.
    let in_url = format!("mysql://cairn:Url-Secret-99@127.0.0.1:{}/{db}", my.port);
    let env2 = my_env_with(&in_url, false, "encryption = { kind = \"none\" }");
    let out = env2.cairn().args(["backup", "shop"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("Access denied"), "{err}");
    assert!(err.contains(&my.url_without_password(&db)), "{err}");
    assert!(!err.contains("Url-Secret-99"), "{err}");

    // Missing database.
    let env3 = my_env("no_such_db_here");
    let out = cairn(&env3).args(["backup", "shop"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no_such_db_here"), "{err}");
    assert!(err.contains("Unknown database"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");

    // Unset password variable.
    let out = env
        .cairn()
        .env_remove(JOB_PASSWORD_ENV)
        .env("CAIRN_PASSPHRASE", "pp")
        .args(["backup", "shop"])
        .output()
        .unwrap();
    // A variable the config names but the environment lacks is a config error.
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(JOB_PASSWORD_ENV), "{}", stderr(&out));

    for e in [&env, &env2, &env3] {
        assert!(e.list().is_empty());
        let partial = e.path("backups/shop/.partial");
        assert_eq!(
            std::fs::read_dir(&partial).map(|d| d.count()).unwrap_or(0),
            0,
            "aborted uploads must be removed"
        );
    }

    // A restore with the wrong password fails the same way and creates nothing.
    cairn(&env).args(["backup", "shop"]).assert().success();
    let copy = rand_name();
    let out = env
        .cairn()
        .env(JOB_PASSWORD_ENV, "wrong-Pw-4711")
        .env("CAIRN_PASSPHRASE", "correct horse")
        .args(["restore", "shop", "--to", &my.url_without_password(&copy)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("Access denied"), "{err}");
    assert!(err.contains(&my.url_without_password(&copy)), "{err}");
    assert!(!err.contains("wrong-Pw-4711"), "{err}");
    assert!(!exists(&copy));
}

#[test]
fn damaged_artifact_is_refused_and_the_new_database_dropped() {
    let my = servers::mariadb();
    let db = seeded_db();
    // Password in the URL (percent-encoded, with quotes in it), no compression, no encryption.
    let env = my_env_with(
        &my.url(&db),
        false,
        "compression = \"none\"\nencryption = { kind = \"none\" }",
    );
    env.cairn().args(["backup", "shop"]).assert().success();
    let entry = &env.list()[0];
    assert!(entry["key"].as_str().unwrap().ends_with(".sql"), "{entry}");
    let data = env.data_path(entry);
    let mut bytes = std::fs::read(&data).unwrap();
    assert!(
        bytes.len() > 600 * 1024,
        "the dump must be larger than what restores hold back ({} bytes)",
        bytes.len()
    );
    // Change one digit early in the dump: still valid SQL, wrong content. The
    // statements before the end reach the server before the hash is checked.
    let start = bytes.len() / 4;
    let at = start
        + bytes[start..]
            .iter()
            .position(|b| b.is_ascii_digit())
            .unwrap();
    bytes[at] = if bytes[at] == b'7' { b'8' } else { b'7' };
    std::fs::write(&data, &bytes).unwrap();

    let copy = rand_name();
    let out = env
        .cairn()
        .args(["restore", "shop", "--to", &my.url(&copy)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("SHA-256"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    assert!(
        !exists(&copy),
        "the database created for the failed restore is dropped"
    );
    env.cairn()
        .args(["verify", "shop"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("FAILED"));
}

/// A folder with `name` first on PATH: logs its argv and the defaults file it
/// was given (present? mode?) to `log`, then runs the real tool.
fn wrapper(env: &Env, name: &str, log: &Path) -> std::path::PathBuf {
    let real = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .unwrap();
    let real = String::from_utf8(real.stdout).unwrap().trim().to_string();
    assert!(!real.is_empty(), "{name} is not installed");
    let dir = env.path("tools");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            r#"#!/bin/sh
echo "{name} $*" >> '{log}'
for a in "$@"; do
  case "$a" in
    --defaults-extra-file=*) f="${{a#*=}}"; echo "file $f $(stat -c %a "$f")" >> '{log}' ;;
  esac
done
exec '{real}' "$@"
"#,
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn the_password_stays_off_argv_and_its_file_is_removed() {
    let my = servers::mariadb();
    let db = seeded_db();
    let env = my_env(&db);
    let log = env.path("argv.log");
    let tools = wrapper(&env, "mariadb-dump", &log);
    wrapper(&env, "mariadb", &log);
    let tmp = env.path("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let path = format!(
        "{}:{}",
        tools.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cairn(&env)
        .env("PATH", &path)
        .env("TMPDIR", &tmp)
        .args(["backup", "shop"])
        .assert()
        .success();
    let copy = rand_name();
    cairn(&env)
        .env("PATH", &path)
        .env("TMPDIR", &tmp)
        .args(["restore", "shop", "--to", &my.url_without_password(&copy)])
        .assert()
        .success();
    assert_eq!(fingerprint(&db), fingerprint(&copy));

    let log = std::fs::read_to_string(&log).unwrap();
    let dumps: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("mariadb-dump ") && !l.contains("--version"))
        .collect();
    assert_eq!(dumps.len(), 1, "{log}");
    for flag in [
        "--defaults-extra-file=",
        "--single-transaction",
        "--routines",
        "--triggers",
        "--events",
        "--user=cairn",
    ] {
        assert!(dumps[0].contains(flag), "{flag} missing: {log}");
    }
    assert!(
        log.lines()
            .any(|l| l.starts_with("mariadb ") && l.ends_with(&format!(" {copy}"))),
        "the restore ran through mariadb: {log}"
    );
    assert!(!log.contains("s3cret"), "password on a command line: {log}");
    assert!(!log.contains("--password"), "{log}");
    assert!(
        !log.split_whitespace().any(|a| a.starts_with("-p")),
        "{log}"
    );
    let files: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("file "))
        .collect();
    assert!(files.len() >= 3, "every client got a defaults file: {log}");
    for entry in files {
        let (file, mode) = entry.rsplit_once(' ').unwrap();
        assert_eq!(mode, "600", "defaults file {file} must be private");
        assert!(Path::new(file).starts_with(&tmp), "{file}");
        assert!(!Path::new(file).exists(), "{file} is left behind");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn snapshot_is_consistent_while_a_writer_inserts() {
    let my = servers::mariadb();
    let db = rand_name();
    my.sql("", &format!("CREATE DATABASE `{db}`"));
    // order_lines is dumped first and orders last, with a large table in between.
    my.sql(
        &db,
        "CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY) ENGINE=InnoDB;
         CREATE TABLE order_lines (order_id INT NOT NULL, n INT NOT NULL, FOREIGN KEY (order_id) REFERENCES orders (id)) ENGINE=InnoDB;
         CREATE TABLE order_padding (id INT PRIMARY KEY, filler VARCHAR(200)) ENGINE=InnoDB;
         INSERT INTO order_padding SELECT seq, REPEAT(SHA2(seq, 256), 3) FROM seq_1_to_25000;",
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let db = db.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                servers::mariadb().sql(
                    &db,
                    "START TRANSACTION; INSERT INTO orders VALUES (); SET @o = LAST_INSERT_ID(); INSERT INTO order_lines VALUES (@o, 1); DO SLEEP(0.01); INSERT INTO order_lines VALUES (@o, 2), (@o, 3); COMMIT;",
                );
                n += 1;
            }
            n
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let env = my_env(&db);
    cairn(&env).args(["backup", "shop"]).assert().success();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(
        writer.join().unwrap() > 2,
        "the writer must have been running"
    );
    let copy = rand_name();
    cairn(&env)
        .args(["restore", "shop", "--to", &my.url_without_password(&copy)])
        .assert()
        .success();
    common::assert_one_snapshot(|table| {
        my.sql(&copy, &format!("SELECT count(*) FROM {table}"))
            .parse()
            .unwrap()
    });
    assert_eq!(my.sql(&copy, "SELECT COUNT(*) FROM order_padding"), "25000");
}
