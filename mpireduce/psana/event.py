"""Events and psana's timestamp encoding.

psana2 (LCLS-II) times are ``seconds << 32 | nanoseconds`` counted from 1990-01-01 UTC;
psana1 (LCLS-I) ``EventId.time()`` gives ``(seconds, nanoseconds)`` since the Unix epoch.
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING, Tuple

if TYPE_CHECKING:  # pragma: no cover
    from .datasource import Run

PSANA_EPOCH = _dt.datetime(1990, 1, 1)  #: naive UTC, as psana2's ``evt.datetime()`` uses
PSANA_EPOCH_UNIX_S = 631_152_000  #: 1990-01-01T00:00:00Z in Unix seconds


def encode_timestamp(seconds: int, nanoseconds: int) -> int:
    """psana2 timestamp of (seconds since 1990, nanoseconds)."""
    return (int(seconds) << 32) | int(nanoseconds)


def split_timestamp(timestamp: int) -> Tuple[int, int]:
    """(seconds since 1990, nanoseconds) of a psana2 timestamp."""
    timestamp = int(timestamp)
    return timestamp >> 32, timestamp & 0xFFFFFFFF


def timestamp_datetime(timestamp: int) -> _dt.datetime:
    """A psana2 timestamp as a naive UTC datetime (microsecond resolution)."""
    seconds, nanoseconds = split_timestamp(timestamp)
    return PSANA_EPOCH + _dt.timedelta(seconds=seconds, microseconds=nanoseconds / 1000)


def unix_time(timestamp: int) -> Tuple[int, int]:
    """(Unix seconds, nanoseconds) of a psana2 timestamp, as psana1 reports event times."""
    seconds, nanoseconds = split_timestamp(timestamp)
    return seconds + PSANA_EPOCH_UNIX_S, nanoseconds


class Event:
    """One event of a run: ``evt.timestamp`` (uint64 encoding), ``evt.datetime()``, ``evt.run()``."""

    __slots__ = ("_run", "index", "timestamp")

    def __init__(self, run: "Run", index: int, timestamp: int):
        self._run = run
        self.index = int(index)  #: position of the event in its run file
        self.timestamp = int(timestamp)

    def datetime(self) -> _dt.datetime:
        """The event time as a naive UTC ``datetime``."""
        return timestamp_datetime(self.timestamp)

    def run(self) -> "Run":
        """The run this event belongs to."""
        return self._run

    def __repr__(self) -> str:
        return f"<Event run={self._run.runnum} timestamp={self.timestamp}>"
