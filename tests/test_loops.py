"""``running_loop``: the loop an object knew while it runs, asyncio's answer otherwise."""

from __future__ import annotations

import asyncio
import os

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


async def test_a_forked_child_asks_again() -> None:
    """A child forked while the loop runs has a copy of that loop that says it runs; it is
    not taken for the child's own."""
    loop = running_loop(None)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own loop, the parent's copy known
        child = asyncio.new_event_loop()
        try:
            seen = child.run_until_complete(_known(loop))
            os.write(write, b"own" if seen is child else b"parent's")
        finally:
            os._exit(0)
    os.close(write)
    try:
        answer = os.read(read, 16)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert answer == b"own"
