#!/usr/bin/env bash
# `cairn list` over a job with many artifacts (default 2,000) in an fs
# destination: the first run reads every manifest, later runs use the manifest
# cache beside the state store. CAIRN_BIN: the binary (default: release build).
set -euo pipefail
N=${N:-2000}
here=$(cd "$(dirname "$0")" && pwd)
BIN=${CAIRN_BIN:-$here/../target/release/cairn}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
python3 -c "import sqlite3; c=sqlite3.connect('app.db'); c.execute('create table t(x)'); c.commit()"
cat > cairn.toml <<TOML
[destinations.local]
kind = "fs"
path = "backups"

[jobs.app]
source = { kind = "sqlite", path = "app.db" }
destinations = ["local"]
encryption = { kind = "none" }
TOML
"$BIN" -q backup app >/dev/null
python3 "$here/plant_artifacts.py" backups app "$N"
for run in first second third; do
  /usr/bin/time -f "$run: %e s wall, %M KiB max RSS" "$BIN" -q list --json >/dev/null
done
rm -f cairn-state.db.manifest-cache
/usr/bin/time -f "cache deleted: %e s wall, %M KiB max RSS" "$BIN" -q list --json >/dev/null
