"""The shared-memory metrics across real worker processes (``web/slots.py``,
``web/counters.py``): every worker's counts add up, a dead worker's counters stay and its
gauges go, gauges combine as they say, a full file costs series, not the worker."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from cookiematch.web.counters import (
    LabelledCounter,
    LabelledGauge,
    LabelledHistogram,
    SharedMetrics,
)
from cookiematch.web.slots import METRICS_DIR_ENV, OWNER, SlotFile, parse, workers_directory

REPO = Path(__file__).resolve().parents[2]

FAMILIES = """
from prometheus_client import CollectorRegistry
from cookiematch.web.counters import (
    LabelledCounter, LabelledGauge, LabelledHistogram, SharedMetrics,
)

metrics = SharedMetrics(CollectorRegistry())
tags = LabelledCounter("cm_tags", "Tags.", ("nid",), metrics)
depth = LabelledGauge("cm_depth", "Depth.", ("nid",), metrics)
peak = LabelledGauge("cm_peak", "Peak.", (), metrics, mode="max")
latest = LabelledGauge("cm_latest", "Latest.", (), metrics, mode="latest")
seconds = LabelledHistogram("cm_seconds", "Seconds.", (), metrics, buckets=(0.1, 1.0))
"""

WORKER = (
    FAMILIES
    + """
import sys
count, value = int(sys.argv[1]), float(sys.argv[2])
for _ in range(count):
    tags.inc(("a",))
    seconds.observe((), value)
depth.set(("a",), value)
peak.set((), value)
latest.set((), value)
print("counted", flush=True)
sys.stdin.readline()  # lives until told to go
"""
)


class Worker:
    """A process that counts ``count`` tags and sets its gauges to ``value``, then waits."""

    def __init__(self, directory: Path, count: int, value: float) -> None:
        env = {**os.environ, METRICS_DIR_ENV: str(directory), "PYTHONPATH": str(REPO / "src")}
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(count), str(value)], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        assert self.process.stdout.readline() == "counted\n"

    def exit(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait(timeout=10) == 0

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


def own_file(directory: Path) -> Path:
    """This process's slot file in ``directory`` (``<pid>-<random>.slots``)."""
    [path] = directory.glob(f"{os.getpid()}-*.slots")
    return path


def scrape(directory: Path) -> str:
    """What a worker of ``directory`` that counted nothing itself exposes."""
    namespace: dict[str, object] = {}
    source = FAMILIES.replace(
        "SharedMetrics(CollectorRegistry())",
        f"SharedMetrics(CollectorRegistry(), directory={str(directory)!r})",
    )
    exec(compile(source, "families", "exec"), namespace)  # the workers' declarations
    metrics = namespace["metrics"]
    assert isinstance(metrics, SharedMetrics)
    registry = CollectorRegistry()
    registry.register(metrics)
    try:
        return generate_latest(registry).decode()
    finally:
        metrics.close()


def test_every_workers_counts_add_up_and_a_dead_workers_stay(tmp_path: Path) -> None:
    directory = tmp_path
    first, second = Worker(directory, 3, 0.05), Worker(directory, 4, 0.5)
    try:
        text = scrape(directory)
        assert 'cm_tags_total{nid="a"} 7.0' in text
        assert 'cm_seconds_bucket{le="0.1"} 3.0' in text
        assert 'cm_seconds_bucket{le="1.0"} 7.0' in text
        assert "cm_seconds_count 7.0" in text
        assert 'cm_depth{nid="a"} 0.55' in text  # sum of the live workers'
        assert "cm_peak 0.5" in text
        assert "cm_latest 0.5" in text  # the second set it last
        second.exit()  # a worker that stopped: its counts stay, its gauges go
        text = scrape(directory)
        assert 'cm_tags_total{nid="a"} 7.0' in text and "cm_seconds_count 7.0" in text
        assert 'cm_depth{nid="a"} 0.05' in text
        assert "cm_peak 0.05" in text and "cm_latest 0.05" in text
        first.kill()  # killed: the same
        text = scrape(directory)
        assert 'cm_tags_total{nid="a"} 7.0' in text
        assert "\ncm_depth{" not in text and "\ncm_peak " not in text
    finally:
        first.kill()
        second.kill()


def test_a_worker_counts_what_it_counted_itself_without_a_file(tmp_path: Path) -> None:
    metrics = SharedMetrics(CollectorRegistry())  # no directory: this process's memory
    counter = LabelledCounter("cm_own", "Own.", ("nid",), metrics)
    counter.inc(("a",), 2)
    assert [worker.pid for worker in metrics.workers()] == [os.getpid()]
    assert metrics.file().path is None
    metrics.close()


def test_a_full_file_drops_new_series_not_the_worker(tmp_path: Path) -> None:
    metrics = SharedMetrics(CollectorRegistry(), directory=str(tmp_path), capacity=64 * 1024)
    counter = LabelledCounter("cm_many", "Many.", ("n",), metrics)
    histogram = LabelledHistogram("cm_many_seconds", "S.", ("n",), metrics)
    gauge = LabelledGauge("cm_many_depth", "D.", ("n",), metrics)
    for n in range(5000):
        counter.inc((n,))
        histogram.observe((n,), 0.01)
        gauge.set((n,), 1)
    series = parse(own_file(tmp_path).read_bytes())
    assert 100 < len(series) < 3 * 5000
    assert all(values[0] == 1 for key, values in series if b'cm_many"' in key)
    metrics.close()


def test_a_slot_file_is_read_whole_or_not_at_all(tmp_path: Path) -> None:
    file = SlotFile(str(tmp_path), capacity=64 * 1024)
    index = file.allocate(b'["cm_x", ["a"]]', 3)
    file.values[index + 2] = 4.5
    assert parse(own_file(tmp_path).read_bytes()) == [(b'["cm_x", ["a"]]', (0.0, 0.0, 4.5))]
    file.close()


def test_the_directory_of_a_killed_server_goes_with_the_next_start() -> None:
    code = textwrap.dedent("""
        import os, signal
        from cookiematch.web.slots import workers_directory
        with workers_directory() as directory:
            print(directory, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    killed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=30, check=False)  # fmt: skip
    left = Path(killed.stdout.strip())
    assert (left / OWNER).exists()  # nobody removed it
    with workers_directory() as directory:
        assert os.environ[METRICS_DIR_ENV] == directory
        assert not left.exists()
        assert Path(directory).exists()
    assert not Path(directory).exists() and METRICS_DIR_ENV not in os.environ
