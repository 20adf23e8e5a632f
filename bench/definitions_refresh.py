"""What the DMP definitions' refresh (every second in each worker) costs the event loop: N
partners stored as admin changes in a SQLite store; per refresh, the loop's CPU when nothing
changed and after another worker's change (which makes the refresh read and validate them).

    .venv/bin/python bench/definitions_refresh.py [--partners 10,100,500] [--refreshes 5]

The tree measured is the one on ``PYTHONPATH`` (``src`` by default): run it once per tree for
a before/after.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

from cookiematch.config.dmp import DmpConfig
from cookiematch.storage import open_store
from cookiematch.web.dmp.definitions import DmpDefinitions

SYNC = "https://{}.example/s?r=${{CALLBACK_URL}}"


async def measure(partners: int, refreshes: int) -> tuple[float, float]:
    """Loop CPU seconds a refresh: nothing changed, then after another worker's change."""
    with tempfile.TemporaryDirectory(prefix="definitions-refresh-") as tmp:
        store = open_store(f"sqlite:///{tmp}/dmp.db")
        try:
            reader, writer = DmpDefinitions(store, DmpConfig()), DmpDefinitions(store, DmpConfig())
            for n in range(partners):
                await writer.put("partners", f"p{n}", {"sync_url": SYNC.format(f"p{n}")})
            await reader.refresh()
            spent = [0.0, 0.0]
            for n in range(2 * refreshes):
                changed = n % 2
                if changed:
                    await writer.put(
                        "partners", "p0", {"sync_url": SYNC.format("p0"), "priority": n}
                    )
                started = time.thread_time()
                await reader.refresh()
                spent[changed] += time.thread_time() - started
        finally:
            await store.close()
    return spent[0] / refreshes, spent[1] / refreshes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partners", default="10,100,500")
    parser.add_argument("--refreshes", type=int, default=5)
    args = parser.parse_args()
    for count in (int(n) for n in args.partners.split(",")):
        unchanged, changed = asyncio.run(measure(count, args.refreshes))
        print(
            f"{count:>6,} partners: a refresh {unchanged * 1e3:7.2f} ms of the loop's CPU when "
            f"nothing changed, {changed * 1e3:7.2f} ms after another worker's change"
        )


if __name__ == "__main__":
    main()
