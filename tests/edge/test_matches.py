"""The collector of the edge's matches log (``edge/matches.py``) on real files: each line
read once, across steps, restarts, a rotation and a truncation; lines that do not read are
answered as such; one collector per directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cookiematch.edge.layout import MATCHES_LOG
from cookiematch.edge.matches import EdgeMatches
from cookiematch.protocol.userid import UserIdCipher

KEYS = {1: b"1" * 32, 2: b"2" * 32}


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    (tmp_path / "logs").mkdir()
    return tmp_path


def line(n: int, nid: str = "buyer-a", cver: int = 2) -> str:
    gid = UserIdCipher(KEYS).encrypt(bytes([n]) * 16, nid, cver)
    return f"{1700000000 + n}.123 {nid} {cver} {gid}\n"


def append(directory: Path, text: str) -> None:
    with (directory / MATCHES_LOG).open("a") as f:
        f.write(text)


def browsers(collector: EdgeMatches) -> list[int]:
    read = collector.step()
    assert not read.unreadable
    return [browser_id[0] for _, browser_id, _ in read.matches]


def test_each_line_is_read_once_and_a_restart_goes_on_where_it_stopped(directory: Path) -> None:
    collector = EdgeMatches(directory, UserIdCipher(KEYS))
    assert browsers(collector) == []  # no log yet
    append(directory, line(1) + line(2, "buyer-b", 1))
    read = collector.step()
    assert read.matches == [
        ("buyer-a", bytes([1]) * 16, 1700000001),
        ("buyer-b", bytes([2]) * 16, 1700000002),
    ]
    append(directory, line(3) + line(4)[:20])  # the last line is being written
    assert browsers(collector) == [3]
    append(directory, line(4)[20:])
    assert browsers(collector) == [4]
    collector.close()
    append(directory, line(5))
    restarted = EdgeMatches(directory, UserIdCipher(KEYS))
    assert browsers(restarted) == [5]
    assert browsers(restarted) == []
    restarted.close()


def test_a_rotated_log_is_read_to_its_end_then_the_new_one(directory: Path) -> None:
    collector = EdgeMatches(directory, UserIdCipher(KEYS))
    append(directory, line(1))
    assert browsers(collector) == [1]
    log = directory / MATCHES_LOG
    log.rename(log.with_name("matches.log.1"))  # logrotate; nginx still writes the old file
    with log.with_name("matches.log.1").open("a") as f:
        f.write(line(2))
    assert browsers(collector) == [2]
    append(directory, line(3))  # nginx -s reopen: a new file
    assert browsers(collector) == []  # the old file's end: nothing more there
    assert browsers(collector) == [3]
    collector.close()


def test_a_truncated_log_is_read_again_from_its_start(directory: Path) -> None:
    collector = EdgeMatches(directory, UserIdCipher(KEYS))
    append(directory, line(1) + line(2))
    assert browsers(collector) == [1, 2]
    os.truncate(directory / MATCHES_LOG, 0)
    assert browsers(collector) == []
    append(directory, line(3))
    assert browsers(collector) == [3]
    collector.close()


def test_lines_that_do_not_read_are_answered_as_such(directory: Path) -> None:
    collector = EdgeMatches(directory, UserIdCipher(KEYS))
    forged = line(1).replace(" 2 ", " 1 ")  # another key version: the gid does not verify
    unknown = line(2).replace(" 2 ", " 9 ")  # no such key version
    append(directory, forged + "garbage\n" + unknown + "1.0 x\xe9 1 g\n" + line(3))
    read = collector.step()
    assert [m[1][0] for m in read.matches] == [3]
    assert read.unreadable == ["buyer-a", "", "buyer-a", ""]
    collector.close()


def test_one_collector_per_directory(directory: Path) -> None:
    first = EdgeMatches(directory, UserIdCipher(KEYS))
    second = EdgeMatches(directory, UserIdCipher(KEYS))
    append(directory, line(1))
    assert browsers(first) == [1]
    append(directory, line(2))
    assert browsers(second) == []  # the first holds the lock
    first.close()
    assert browsers(second) == [2]
    second.close()
