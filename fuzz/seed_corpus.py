#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target into fuzz/corpus/TARGET.

Seeds are real inputs: the README's configs, manifests and signatures written
by cairn, cairn-shaped archives and the hostile archives a restore must refuse,
stored objects made by age, gpg, zstd and gzip. Run it again after a format
changes; the fuzzers grow their own corpus from these in a work folder.

Usage: python3 fuzz/seed_corpus.py CAIRN_BINARY
"""

import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

ROOT = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(ROOT)
# The key pair of fuzz/src/lib.rs: for fuzzing only, it protects nothing.
FUZZ_IDENTITY = "AGE-SECRET-KEY-1DT3EKAJFPA64PXTPF52VS2G753YTTQ43W4GG8QJQNT8FZ9HZJ9DSTEXCVH\n"
FUZZ_RECIPIENT = "age1yj32vdya6cxmdhlakhdwqggr2plj9c8ajl8hv20cgk3wjelkwq0qf3r6x7"


def write(target, name, data):
    folder = os.path.join(ROOT, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def configs(work, cairn):
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    for i, block in enumerate(re.findall(r"```toml\n(.*?)```", readme, re.S)):
        write("config", f"readme-{i}.toml", block.encode())
    subprocess.run([cairn, "quickstart", "--dir", work, "--rows", "200", "-q"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for folder, _, files in os.walk(work):
        for name in files:
            if name.endswith(".toml"):
                with open(os.path.join(folder, name), "rb") as f:
                    write("config", f"quickstart-{name}", f.read())
    write("config", "error-duplicate-key.toml", b'[jobs.a]\nsource = "x"\nsource = "y"\n')
    write("config", "error-bad-cron.toml",
          b'[destinations.d]\nkind = "local"\npath = "/tmp/d"\n[jobs.a]\n'
          b'source = { kind = "files", path = "/srv" }\nschedule = "61 * * * *"\n'
          b'destinations = ["d"]\n')


def manifests(work, cairn):
    """A real backup with a signing key: its manifest and signature."""
    data = os.path.join(work, "data")
    os.makedirs(data, exist_ok=True)
    with open(os.path.join(data, "a.txt"), "w") as f:
        f.write("hello\n")
    key = os.path.join(work, "signing.key")
    subprocess.run([cairn, "keygen", "--signing", "-o", key], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dest = os.path.join(work, "dest")
    config = os.path.join(work, "sign.toml")
    with open(config, "w") as f:
        f.write(f"""
[destinations.local]
kind = "fs"
path = "{dest}"

[jobs.files]
source = {{ kind = "files", path = "{data}" }}
destinations = ["local"]
encryption = {{ kind = "age", recipients = ["{FUZZ_RECIPIENT}"] }}
signing = {{ key_file = "{key}" }}
""")
    subprocess.run([cairn, "-c", config, "backup", "files"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    found = 0
    for folder, _, files in os.walk(dest):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                content = f.read()
            if name.endswith(".json") or name.endswith(".minisig"):
                write("manifest", name, content)
                found += 1
            elif name.endswith(".tar.zst.age"):
                # The stored object as a restore reads it, and the archive inside.
                write("decrypt", "cairn-artifact", bytes([0]) + content)
                identity = os.path.join(work, "identity.txt")
                with open(identity, "w") as f:
                    f.write(FUZZ_IDENTITY)
                archive = run(["zstd", "-q", "-d", "-c"], run(["age", "-d", "-i", identity], content))
                write("tar_restore", "cairn-artifact.tar", archive)
    if found == 0:
        sys.exit("no manifest was written: is the cairn binary right?")


def tar_bytes(entries):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, content in entries:
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    data = out.getvalue().rstrip(b"\0")
    # Whole blocks, then the two zero blocks that end an archive (not tarfile's
    # 10 KiB record padding: small inputs fuzz faster).
    return data + b"\0" * ((-len(data)) % 512 + 1024)


def entry(name, kind=tarfile.REGTYPE, content=b"", link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 1764000000
    if kind == tarfile.REGTYPE:
        info.size = len(content)
        return info, content
    info.linkname = link
    return info, None


def archives():
    good = [entry("./", tarfile.DIRTYPE), entry("docs", tarfile.DIRTYPE),
            entry("docs/a.txt", content=b"hello\n"), entry("link", tarfile.SYMTYPE, link="docs/a.txt")]
    write("tar_restore", "cairn-shaped.tar", tar_bytes(good))
    hostile = {
        "dotdot": [entry("../escaped", content=b"x")],
        "absolute": [entry("/tmp/cairn-fuzz-planted", content=b"x")],
        "symlink-then-file": [entry("out", tarfile.SYMTYPE, link="../outside"),
                              entry("out/planted", content=b"x")],
        "symlink-absolute-then-file": [entry("out", tarfile.SYMTYPE, link="/tmp"),
                                       entry("out/cairn-fuzz-planted", content=b"x")],
        "hardlink-out": [entry("h", tarfile.LNKTYPE, link="../outside/h")],
        "device": [entry("dev", tarfile.CHRTYPE)],
        "fifo": [entry("fifo", tarfile.FIFOTYPE)],
        "twice": [entry("a", content=b"1"), entry("a", content=b"2")],
        "deep": [entry("/".join(["d"] * 300) + "/f", content=b"x")],
        "long-name": [entry("n" * 300, content=b"x")],
    }
    for name, entries in hostile.items():
        write("tar_restore", f"{name}.tar", tar_bytes(entries))
    header = bytearray(tar_bytes([entry("huge", content=b"")])[:512])
    header[124:136] = b"77777777777\0"  # a size of 8 GiB with no data after it
    header[148:156] = b" " * 8
    header[148:155] = (b"%06o\0" % sum(header))[:7]
    write("tar_restore", "huge-size.tar", bytes(header) + b"\0" * 1024)


def run(args, data):
    return subprocess.run(args, input=data, check=True, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL).stdout


def stored_objects(work):
    plain = b"cairn fuzz plaintext\n" * 50
    zst = run(["zstd", "-q", "-c"], plain)
    gz = gzip.compress(plain, mtime=0)
    # The first byte: encryption (0 age, 1 OpenPGP, 2 none) + 4 x compression (0 zstd, 1 gzip, 2 none).
    write("decrypt", "none-zstd", bytes([2]) + zst)
    write("decrypt", "none-gzip", bytes([2 + 4]) + gz)
    write("decrypt", "none-none", bytes([2 + 8]) + plain)
    write("decrypt", "age-zstd", bytes([0]) + run(["age", "-r", FUZZ_RECIPIENT], zst))
    write("decrypt", "age-none", bytes([0 + 8]) + run(["age", "-r", FUZZ_RECIPIENT], plain))
    gpg_home = os.path.join(work, "gnupg")
    os.makedirs(gpg_home, mode=0o700, exist_ok=True)
    pass_file = os.path.join(work, "pass")
    with open(pass_file, "w") as f:
        f.write("fuzz passphrase")
    gpg = ["gpg", "--homedir", gpg_home, "--batch", "--yes", "--pinentry-mode", "loopback",
           "--passphrase-file", pass_file, "--symmetric", "--cipher-algo", "AES256",
           "--s2k-count", "1024", "-o", "-"]
    write("decrypt", "openpgp-zstd", bytes([1]) + run(gpg, zst))


def schedules():
    for i, line in enumerate([
        "0 2 * * *", "*/5 * * * *", "0 30 2 * * *\nEurope/Berlin", "@daily", "@hourly\nAmerica/New_York",
        "0 0 31 2 *", "15 2 * * 0\nAustralia/Lord_Howe", "0 0 1 1 *\nAntarctica/Casey",
        "59 23 31 12 *", "0 2 * * 1-5\nutc", "*/7 */3 1,15 * *",
    ]):
        write("cron", f"seed-{i}", line.encode())


def retention_inputs():
    for i, seed in enumerate([b"restic-like", b"keep-last", b"many-daily", b"tags", b"bad-only"]):
        digest = b"".join(hashlib.sha256(seed + bytes([n])).digest() for n in range(8))
        write("retention", f"seed-{i}", digest[: 9 + 5 * (8 + i * 6)])


def web_requests():
    """Raw HTTP/1.1 requests to every route; TOKEN stands for the admin token's secret."""
    def request(method, path, body=b"", content_type="application/json", auth=True):
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if auth:
            head += "Authorization: Bearer TOKEN\r\n"
        if body:
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        return head.encode() + b"\r\n" + body

    seeds = [
        request("GET", "/healthz", auth=False),
        request("GET", "/metrics"),
        request("GET", "/api/v1/jobs"),
        request("GET", "/api/v1/jobs/app"),
        request("GET", "/api/v1/jobs/app/artifacts?limit=5"),
        request("GET", "/api/v1/jobs/app/artifacts/20261205T124146Z-c918/data"),
        request("POST", "/api/v1/jobs/app/runs", b'{"kind":"backup"}'),
        request("POST", "/api/v1/jobs/app/restore", b'{"id":"20261205T124146Z-c918","dry_run":true,"check":"full"}'),
        request("POST", "/api/v1/jobs/app/restore", b'{"target":"restores/x.db","confirm":"app"}'),
        request("POST", "/api/v1/jobs/app/pause", b'{"for":"2h"}'),
        request("POST", "/api/v1/jobs/app/resume"),
        request("PUT", "/api/v1/jobs/app/schedule", b'{"cron":"0 3 * * *","timezone":"Europe/Berlin"}'),
        request("DELETE", "/api/v1/jobs/app/schedule"),
        request("GET", "/api/v1/runs?job=app&status=failure&limit=10&before=99"),
        request("GET", "/api/v1/runs/1"),
        request("GET", "/api/v1/checks"),
        request("POST", "/api/v1/checks/web/runs"),
        request("POST", "/api/v1/notifications/ops/test"),
        request("GET", "/api/v1/audit?limit=3"),
        request("POST", "/api/v1/session", b'{"user":"admin","password":"not the password"}', auth=False),
        request("POST", "/api/v1/session", b"user=admin&password=x&csrf=y", "application/x-www-form-urlencoded", auth=False),
        request("DELETE", "/api/v1/session"),
        request("GET", "/api/v1/openapi.json", auth=False),
        request("GET", "/api/v1/nothing/here"),
        request("GET", "/", auth=False),
        request("GET", "/login?next=/jobs/app", auth=False),
        request("GET", "/jobs/app"),
        request("GET", "/jobs/app/restore?id=x"),
        request("GET", "/checks"),
        request("GET", "/notifications"),
        request("GET", "/audit"),
        request("GET", "/assets/app.css", auth=False),
    ]
    for i, seed in enumerate(seeds):
        write("web_request", f"seed-{i}", seed)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    cairn = os.path.abspath(sys.argv[1])
    shutil.rmtree(os.path.join(ROOT, "corpus"), ignore_errors=True)
    with tempfile.TemporaryDirectory() as work:
        configs(os.path.join(work, "quickstart"), cairn)
        manifests(work, cairn)
        archives()
        stored_objects(work)
        schedules()
        retention_inputs()
        web_requests()


if __name__ == "__main__":
    main()
