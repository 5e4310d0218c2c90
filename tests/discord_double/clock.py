"""Time for the double: real time plus a manual offset, and Discord snowflakes derived from it."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone

DISCORD_EPOCH_MS = 1_420_070_400_000


class FakeClock:
    """Wall-clock time that a test can push forward.

    ``now()`` is ``time.time()`` plus an offset that only :meth:`advance` changes, so real
    elapsed time still counts (a bot that really takes 4 s to answer misses the 3 s window)
    and a test can jump ahead without sleeping (15 minutes in one call).
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._listeners: list[Callable[[], None]] = []

    def now(self) -> float:
        """Seconds since the Unix epoch, as the double sees them."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` and wake anything waiting on the double."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds
        for listener in self._listeners:
            listener()

    def on_advance(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every :meth:`advance`."""
        self._listeners.append(listener)

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now(), tz=timezone.utc)

    def iso(self, at: float | None = None) -> str:
        """ISO 8601 timestamp of ``at`` (default: now), as Discord writes them."""
        moment = self.now() if at is None else at
        return datetime.fromtimestamp(moment, tz=timezone.utc).isoformat()


class Snowflakes:
    """Strictly increasing Discord snowflakes whose timestamp part follows the clock."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self._last = 0

    def next(self) -> int:
        millis = int(self._clock.now() * 1000) - DISCORD_EPOCH_MS
        self._last = max(millis << 22, self._last + 1)
        return self._last
