#!/usr/bin/env python3
"""Clones one artifact of JOB in an fs destination into N artifacts (new ids,
one minute apart, data objects hard-linked), for timing `cairn list` on a
destination with many artifacts: bench/list-cache.sh."""
import datetime
import json
import os
import pathlib
import sys

dest, job, n = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
folder = dest / job
manifest_path = next(folder.glob(f"{job}-*.manifest.json"))
manifest = json.loads(manifest_path.read_text())
data = dest / manifest["data"]["key"]
suffix = manifest["data"]["key"].split(f"{job}-{manifest['id']}", 1)[1]
start = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
for i in range(n):
    at = start + datetime.timedelta(minutes=i)
    new_id = at.strftime("%Y%m%dT%H%M%SZ") + f"-{i % 65536:04x}"
    m = dict(manifest)
    m["id"] = new_id
    m["created_at"] = m["finished_at"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    m["data"] = dict(manifest["data"], key=f"{job}/{job}-{new_id}{suffix}")
    target = dest / m["data"]["key"]
    if not target.exists():
        os.link(data, target)
    (folder / f"{job}-{new_id}.manifest.json").write_text(json.dumps(m, indent=2) + "\n")
