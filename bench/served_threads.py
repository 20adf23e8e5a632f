"""Where a served durable write's CPU goes, thread by thread: cookiematch's buyer ``/match`` or
DMP callback on SQLite (``durability = "ack"``) with one worker under wrk, the CPU each thread
of the server used per request.

    flock /tmp/bench.lock .venv/bin/python bench/served_threads.py [--endpoint match|callback]
        [--rounds 2] [--duration 6] [--extra-path /path/to/other/src] [--minimal MODE]
        [--profile FILE.raw]

The requests are ``bench/match_reference.py``'s (``lua/unique.lua``: a new gid or partner uid
and browser each). Each round reads every thread's user + system time from
``/proc/<pid>/task/<tid>/stat`` before and after wrk; the threads are named once by ``py-spy
dump`` (Python's: ``MainThread``, the event loop's; ``sqlite-w``, the writer; ``sqlite-s``, the
WAL's syncer; ``sqlite-r<n>``, the readers), the others are granian's own (native). Prints,
per thread, the µs of CPU a request of each round and its context switches a request
(voluntary and forced, from ``/proc/<pid>/task/<tid>/status``). ``--extra-path``: another
tree's ``src`` first on the server's ``PYTHONPATH`` (a before/after is two runs).
``--minimal MODE``: the
endpoint's minimal app (``bench/match_reference.py``'s, in that shape) served instead, over
the same requests. ``--profile``: a ``py-spy record --native --threads`` of the server during
the last round, as collapsed stacks (``bench/profile_summary.py FILE --thread MainThread``);
py-spy stops the process to sample it, so that round's figures are not the others'.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_bench
import servers
from match_reference import ENDPOINTS, minimal

_SWITCHES = re.compile(r"^(voluntary|nonvoluntary)_ctxt_switches:\s+(\d+)$", re.MULTILINE)
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


def thread_switches(pid: int) -> dict[int, tuple[int, int]]:
    """The voluntary and involuntary context switches of each thread of ``pid`` so far."""
    counted: dict[int, tuple[int, int]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue
        found = dict(_SWITCHES.findall(status))
        counted[int(tid)] = (int(found["voluntary"]), int(found["nonvoluntary"]))
    return counted


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


def record(pid: int, seconds: float, out: str) -> subprocess.Popen[bytes]:
    """``py-spy record`` of ``pid``'s threads, native frames included, for ``seconds``."""
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "--pid", str(pid), "--native", "--threads"]
    command += ["--format", "raw", "--rate", "500", "--duration", str(max(1, int(seconds)))]
    return subprocess.Popen([*command, "--output", out], stdout=subprocess.DEVNULL)


@contextlib.contextmanager
def served(args: argparse.Namespace, work: Path) -> Iterator[tuple[int, int]]:
    """The server measured, one worker over a new SQLite file: its serving pid and port."""
    role, _, module, _ = ENDPOINTS[args.endpoint]
    if args.minimal:
        with minimal(work / "minimal", 1, args.minimal, module) as (port, pid):
            yield worker_pid(pid), port
        return
    extra = [args.extra_path] if args.extra_path else []
    store = f"sqlite:///{work}/store.db"
    with servers.cookiematch(work, store, role=role, extra_path=extra) as service:
        yield worker_pid(service.proc.pid), service.port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="callback")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--extra-path", default=None)
    parser.add_argument("--minimal", default=None, metavar="MODE")
    parser.add_argument("--profile", default=None, metavar="FILE")
    args = parser.parse_args()
    _, templates, _, _ = ENDPOINTS[args.endpoint]
    with (
        tempfile.TemporaryDirectory(prefix="served-threads-") as tmp,
        served(args, Path(tmp)) as (pid, port),
    ):
        names: dict[int, str] = {}
        rounds: list[tuple[float, dict[int, float]]] = []
        switched: list[dict[int, tuple[float, float]]] = []
        for number in range(args.rounds):
            spy = None
            if args.profile and number == args.rounds - 1:
                spy = record(pid, args.duration - 1, args.profile)
            before, switches_before = thread_cpu(pid), thread_switches(pid)
            result = servers.wrk(
                port,
                http_bench.LUA / "unique.lua",
                duration=args.duration,
                connections=args.connections,
                args=[str(number + 1), *templates],
            )
            after, switches_after = thread_cpu(pid), thread_switches(pid)
            if spy is not None:
                spy.wait()
            names = names or python_names(pid)
            requests = max(result.requests, 1)
            per_request = {t: (after[t] - before.get(t, 0.0)) / requests * 1e6 for t in after}
            rounds.append((result.requests / args.duration, per_request))
            switched.append(
                {
                    t: (
                        (voluntary - switches_before.get(t, (0, 0))[0]) / requests,
                        (forced - switches_before.get(t, (0, 0))[1]) / requests,
                    )
                    for t, (voluntary, forced) in switches_after.items()
                }
            )
    server = f"minimal ({args.minimal})" if args.minimal else "sqlite (ack)"
    print(f"{args.endpoint}, {server}, 1 worker: req/s per round "
          + ", ".join(f"{rate:,.0f}" for rate, _ in rounds))  # fmt: skip
    print(f"{'thread':<22} µs of CPU a request, per round; context switches a request")
    tids = sorted({t for _, used in rounds for t in used})
    for tid in tids:
        figures = [used.get(tid, 0.0) for _, used in rounds]
        if max(figures) < 0.05:
            continue
        name = names.get(tid, "granian (native)")
        switches = [switched[n].get(tid, (0.0, 0.0)) for n in range(len(rounds))]
        print(
            f"{name:<22} " + ", ".join(f"{us:5.1f}" for us in figures)
            + "   switches a request (voluntary/not): "
            + ", ".join(f"{v:.2f}/{n:.2f}" for v, n in switches)
        )  # fmt: skip
    totals = [sum(used.values()) for _, used in rounds]
    print(f"{'all':<22} " + ", ".join(f"{us:5.1f}" for us in totals))


if __name__ == "__main__":
    main()
