"""Google User IDs and push tokens made with the kit's own test key: the party under test
cannot decrypt them (nor could it decrypt a real exchange's); it only stores them."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from cookiematch.protocol.push import PushTokens
from cookiematch.protocol.userid import BROWSER_ID_BYTES, UserIdCipher

TEST_KEY = b"cookiematch conformance test key"  # 32 bytes, public on purpose
CVER = 1


class KitIds:
    """A fresh browser ID per call, encrypted for ``nid``."""

    def __init__(self, nid: str, random: Callable[[int], bytes] = os.urandom) -> None:
        self.nid = nid
        self._random = random
        cipher = UserIdCipher({CVER: TEST_KEY})
        self._cipher = cipher
        self._push = PushTokens(cipher)

    def gid(self) -> str:
        return self._cipher.encrypt(self._random(BROWSER_ID_BYTES), self.nid, CVER)

    def push(self) -> str:
        return self._push.issue(self._random(BROWSER_ID_BYTES), self.nid, int(time.time()))
