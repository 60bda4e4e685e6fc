//! The commented example written by `cairn init`.

/// The example config, encrypting to `recipient` (the key `cairn init` made).
pub fn example(recipient: &str) -> String {
    EXAMPLE.replace(RECIPIENT_PLACEHOLDER, recipient)
}

const RECIPIENT_PLACEHOLDER: &str = "{AGE_RECIPIENT}";

const EXAMPLE: &str = r#"# cairn configuration. Relative paths are relative to this file's folder.
# `${NAME}` is replaced by the environment variable NAME (`${NAME:-default}` has a fallback).
# Check it with `cairn check`; every unknown key is an error.

# Where artifacts are stored. Each job names one or more destinations.
[destinations.local]
kind = "fs"                     # a local or mounted folder (created 0700; files 0600)
path = "./backups"

[jobs.app-db]
# What to back up:
#   { kind = "sqlite", path = "..." }                      consistent snapshot while the app writes
#   { kind = "files", path = "...", exclude = ["*.tmp", "cache"] }
source = { kind = "sqlite", path = "./data/app.db" }
destinations = ["local"]

compression = "zstd"            # "zstd" (default) | "gzip" | "none"
# compression_level = 3         # zstd 1-19 (default 3), gzip 1-9 (default 6)
# compression_threads = 0       # zstd workers; 0 = one per core

# Encryption is required. age to recipients: backing up needs only the public
# recipient; restoring needs the identity file. `cairn init` made this key
# (`cairn keygen -o FILE` makes more): keep a copy of cairn-identity.txt off this
# machine, and on a backup-only host leave identity_file out.
encryption = { kind = "age", recipients = ["{AGE_RECIPIENT}"], identity_file = "./cairn-identity.txt" }
# encryption = { kind = "none" }   # plaintext on purpose; `cairn check` warns
# encryption = { kind = "age-passphrase", passphrase_env = "CAIRN_PASSPHRASE" }
# encryption = { kind = "openpgp", passphrase_file = "/etc/cairn/passphrase" }   # gpg --decrypt reads it

# When `cairn daemon` backs it up (cron: minute hour day month weekday; 6 fields
# with seconds first; @hourly @daily @weekly @monthly). Each schedule may tag
# its artifacts, and retention can count by tag.
schedules = [
  { cron = "0 2 * * *", tag = "daily" },
  # { cron = "0 3 * * 0", tag = "weekly", timezone = "Europe/Berlin" },
]
# timezone = "UTC"              # of schedules and retention days (default: [daemon] timezone)
# catch_up = "once"             # run once at start if a fire was missed while down; or "skip"
# jitter = "5m"                 # random delay before each scheduled run

# Which artifacts `cairn prune` (and the daemon, after each backup) keeps, per
# destination, restic-style. The newest good artifact is always kept, and
# nothing is deleted while the latest backup failed (prune_on_failure = true).
retention = { keep_last = 3, keep_daily = 7, keep_weekly = 4, keep_monthly = 12 }
# destination_retention = { local = { keep_last = 10 } }   # replaces it there

# verify = "full"               # read every copy back after each backup ("quick", "off")
# drill = { cron = "0 5 * * *", assert = ["SELECT count(*) > 0 FROM items"], max_age = "8d" }
# validate = { before_backup = true, rules = [{ name = "negative stock", sql = "SELECT id FROM items WHERE quantity < 0", blocking = true }] }
# notify = ["ops"]              # channels for this job's events (default: failures and recoveries)

# [daemon]
# timezone = "UTC"
# max_concurrent_runs = 2
# shutdown_grace = "60s"        # SIGTERM: running jobs may finish this long, then abort
# listen = "127.0.0.1:9464"     # serves /metrics and /healthz
# lease = "30s"                # several replicas: a claimed run's lease
# rerun_abandoned = "once"      # a dead replica's run runs again once ("never": not)
# [state]
# path = "./cairn-state.db"     # run history, pauses (default: beside this file)
# keep_history = "90d"

# [notify.ops]
# kind = "webhook"              # or "email" (smtp_host, smtp_port, tls, username, password_env, from, to), "ping"
# url = "${SLACK_WEBHOOK_URL}"
# format = "slack"              # "json" | "slack" | "discord" | "teams" | "ntfy"

# [checks.api]
# kind = "http"                 # also backup_age, drill_age, disk, destination, sql
# url = "http://localhost:5000/api/health"
# interval = "5m"
# notify = ["ops"]

# [jobs.uploads]
# source = { kind = "files", path = "./uploads", exclude = ["*.tmp", "thumbnails/**"] }
# destinations = ["local"]
# encryption = { kind = "age", recipients = ["age1..."] }
"#;

#[cfg(test)]
mod tests {
    #[test]
    fn the_example_parses() {
        let key = crate::keys::generate();
        let config = super::super::Config::parse(
            std::path::Path::new("/etc/cairn/cairn.toml"),
            &super::example(&key.recipient),
        )
        .expect("example config must parse");
        let job = &config.jobs["app-db"];
        assert!(
            matches!(job.encryption, crate::config::EncryptionConfig::Age { .. }),
            "the example must encrypt"
        );
    }
}
