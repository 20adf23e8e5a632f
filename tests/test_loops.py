"""``running_loop``: the loop an object knew while it runs, asyncio's answer otherwise."""

from __future__ import annotations

import asyncio

import pytest

from cookiematch.loops import running_loop


async def test_the_known_loop_while_it_runs() -> None:
    loop = asyncio.get_running_loop()
    assert running_loop(None) is loop
    assert running_loop(loop) is loop


def test_a_stopped_loop_is_not_taken_for_the_running_one() -> None:
    first = asyncio.new_event_loop()
    try:
        seen = first.run_until_complete(_current())
    finally:
        first.close()
    assert seen is first
    second = asyncio.new_event_loop()
    try:
        assert second.run_until_complete(_known(first)) is second
    finally:
        second.close()
    with pytest.raises(RuntimeError):
        running_loop(first)  # none runs here


async def _current() -> asyncio.AbstractEventLoop:
    return running_loop(None)


async def _known(known: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
    return running_loop(known)
