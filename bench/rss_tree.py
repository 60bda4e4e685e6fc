#!/usr/bin/env python3
"""Peak RSS of one program and of its child processes, sampled from /proc.

    rss_tree.py ROOT_PID OUT [INTERVAL_S]

ROOT_PID is the process that runs the measured program (GNU time, in the
benchmarks): its first child is "the program", every process below that is
one of the program's children (pg_dump, mariadb-dump, pg_restore, …).

GNU time's %M is ru_maxrss of the waited-for process, which Linux reports as
the largest of that process *and every descendant it waited for*: for cairn
running pg_dump it is max(cairn, pg_dump) and cannot tell them apart. This
sampler reads each process's high-water mark (VmHWM in /proc/PID/status)
every INTERVAL_S seconds (default 0.05) until ROOT_PID exits. VmHWM only
grows, so the last sample before a process exits is its peak, short of what
it allocates in its last interval (cairn ends by writing a manifest and
fsyncing: it does not grow there). Processes that live shorter than one
interval (e.g. a `psql -c 'SELECT 1'`) may be missed; they are small.

Writes one line to OUT: `PROGRAM_KIB MAX_CHILD_KIB MAX_CHILD_NAME` (0 0 -
when nothing was seen).
"""
import os
import sys
import time


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    out.extend(int(c) for c in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    return out


def status(pid):
    """(name, VmHWM KiB) or None (gone, or a zombie without memory)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            name, hwm = "?", None
            for line in f:
                if line.startswith("Name:"):
                    name = line.split(None, 1)[1].strip()
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
                    break
    except OSError:
        return None
    return None if hwm is None else (name, hwm)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def main():
    root, out = int(sys.argv[1]), sys.argv[2]
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05
    program = None          # pid of the measured program
    peaks = {}              # pid -> (name, kib), for the program and each child
    while alive(root):
        if program is None:
            first = children(root)
            program = first[0] if first else None
        if program is not None:
            todo = [program]
            while todo:
                pid = todo.pop()
                st = status(pid)
                if st is not None and st[1] >= peaks.get(pid, ("", -1))[1]:
                    peaks[pid] = st
                todo.extend(children(pid))
        time.sleep(interval)
    own = peaks.get(program, ("-", 0))[1]
    kids = [v for pid, v in peaks.items() if pid != program]
    name, kib = max(kids, key=lambda v: v[1]) if kids else ("-", 0)
    with open(out, "w") as f:
        f.write(f"{own} {kib} {name}\n")


if __name__ == "__main__":
    main()
