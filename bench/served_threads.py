"""Where a served durable write's CPU goes, thread by thread: cookiematch's buyer ``/match`` or
DMP callback on SQLite (``durability = "ack"``) with one worker under wrk, the CPU each thread
of the server used per request.

    flock /tmp/bench.lock .venv/bin/python bench/served_threads.py [--endpoint match|callback]
        [--rounds 2] [--duration 6] [--extra-path /path/to/other/src]

The requests are ``bench/match_reference.py``'s (``lua/unique.lua``: a new gid or partner uid
and browser each). Each round reads every thread's user + system time from
``/proc/<pid>/task/<tid>/stat`` before and after wrk; the threads are named once by ``py-spy
dump`` (Python's: ``MainThread``, the event loop's; ``sqlite-w``, the writer; ``sqlite-s``, the
WAL's syncer; ``sqlite-r<n>``, the readers), the others are granian's own (native). Prints,
per thread, the µs of CPU a request of each round. ``--extra-path``: another tree's ``src``
first on the server's ``PYTHONPATH`` (a before/after is two runs).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_bench
import servers
from match_reference import ENDPOINTS

_THREAD = re.compile(r'^Thread (\d+) \([^)]*\): "([^"]*)"', re.MULTILINE)


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of ``pid`` (gone ones left out)."""
    used: dict[int, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        used[int(tid)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def python_names(pid: int) -> dict[int, str]:
    """The Python threads of ``pid`` by native id, as ``py-spy dump`` names them."""
    spy = Path(sys.executable).with_name("py-spy")
    dump = subprocess.run(
        [str(spy), "dump", "--pid", str(pid)], capture_output=True, text=True, check=False
    )
    return {int(tid): name for tid, name in _THREAD.findall(dump.stdout)}


def worker_pid(root: int) -> int:
    """The process that serves: granian's worker (a child of the root), or the root."""
    found = servers.children(root)
    return found[0] if len(found) == 1 else root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="callback")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--extra-path", default=None)
    args = parser.parse_args()
    role, templates, _, _ = ENDPOINTS[args.endpoint]
    extra = [args.extra_path] if args.extra_path else []
    with tempfile.TemporaryDirectory(prefix="served-threads-") as tmp:
        work = Path(tmp)
        store = f"sqlite:///{work}/store.db"
        with servers.cookiematch(work, store, role=role, extra_path=extra) as service:
            pid = worker_pid(service.proc.pid)
            names: dict[int, str] = {}
            rounds: list[tuple[float, dict[int, float]]] = []
            for number in range(args.rounds):
                before = thread_cpu(pid)
                result = servers.wrk(
                    service.port,
                    http_bench.LUA / "unique.lua",
                    duration=args.duration,
                    connections=args.connections,
                    args=[str(number + 1), *templates],
                )
                after = thread_cpu(pid)
                names = names or python_names(pid)
                requests = max(result.requests, 1)
                per_request = {t: (after[t] - before.get(t, 0.0)) / requests * 1e6 for t in after}
                rounds.append((result.requests / args.duration, per_request))
    print(f"{args.endpoint}, sqlite (ack), 1 worker: req/s per round "
          + ", ".join(f"{rate:,.0f}" for rate, _ in rounds))  # fmt: skip
    print(f"{'thread':<22} µs of CPU a request, per round")
    tids = sorted({t for _, used in rounds for t in used})
    for tid in tids:
        figures = [used.get(tid, 0.0) for _, used in rounds]
        if max(figures) < 0.05:
            continue
        name = names.get(tid, "granian (native)")
        print(f"{name:<22} " + ", ".join(f"{us:5.1f}" for us in figures))
    totals = [sum(used.values()) for _, used in rounds]
    print(f"{'all':<22} " + ", ".join(f"{us:5.1f}" for us in totals))


if __name__ == "__main__":
    main()
