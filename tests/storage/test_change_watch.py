"""``ChangeWatch`` on every backend: a record read again only once its token changed, or once
its last reading is ``FULL_READ_SECONDS`` old; a reading that failed records nothing."""

from __future__ import annotations

import pytest

from cookiematch.storage import Store
from cookiematch.storage.change_watch import FULL_READ_SECONDS, ChangeWatch

from support.stores import backend_store, shared_cluster, shared_redis  # noqa: F401


class Reads:
    """A record's reading: counts its calls, fails when told to."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail = False

    async def __call__(self) -> str:
        self.calls += 1
        if self.fail:
            raise OSError("the record could not be read")
        return f"reading {self.calls}"


async def test_read_when_the_token_changed_or_the_reading_is_old(
    backend_store: Store,  # noqa: F811 (the fixture, by name)
) -> None:
    now = [100.0]
    reader = ChangeWatch(backend_store, "rec:changed", monotonic=lambda: now[0])
    writer = ChangeWatch(backend_store, "rec:changed")
    read = Reads()
    assert await reader.read_if_changed(read) == "reading 1"  # never read: no token yet
    assert await reader.read_if_changed(read) is None
    await writer.announce()
    token = await backend_store.get("rec:changed")
    assert token is not None and len(token) == 16
    assert await reader.read_if_changed(read) == "reading 2"
    assert await reader.read_if_changed(read) is None
    await writer.announce()
    assert await backend_store.get("rec:changed") != token  # a new token each change
    read.fail = True
    with pytest.raises(OSError):
        await reader.read_if_changed(read)
    read.fail = False
    assert await reader.read_if_changed(read) == "reading 4"  # the failed one recorded nothing
    now[0] += FULL_READ_SECONDS - 0.5
    assert await reader.read_if_changed(read) is None
    now[0] += 0.5
    assert await reader.read_if_changed(read) == "reading 5"  # a minute on, whatever the token
    assert read.calls == 5
