"""The vendored chart library is the one recorded (``scripts/vendor-uplot.sh`` writes both):
an edit of the file, or a refresh without its record, is noticed."""

from __future__ import annotations

import hashlib
from importlib import resources


def test_vendored_files_match_their_recorded_sha256() -> None:
    static = resources.files("cookiematch.web.console").joinpath("static")
    record = static.joinpath("VENDORED").read_text().splitlines()
    assert record[0].startswith("uplot ")
    digests = dict(reversed(line.split()) for line in record[1:])
    assert set(digests) == {"uplot.iife.min.js", "uplot.min.css"}
    for name, digest in digests.items():
        assert hashlib.sha256(static.joinpath(name).read_bytes()).hexdigest() == digest, name
    assert "MIT License" in static.joinpath("uplot.LICENSE").read_text()
