"""Client-side event ids (UUIDv7, RFC 9562) and RFC 3339 timestamps.

A UUIDv7 is 128 bits:

    48 bits  unix_ts_ms   milliseconds since 1970-01-01T00:00:00Z, big-endian
     4 bits  ver          0b0111 (7)
    12 bits  rand_a       here: a counter, so ids made in one millisecond still sort in order
     2 bits  var          0b10 (the RFC 9562 variant)
    62 bits  rand_b       random (os.urandom)

The counter is RFC 9562 section 6.2, method 1 ("fixed bit-length dedicated counter"): it starts
at a random value below 2**11 each new millisecond (leaving room to count up) and is incremented
for every further id of the same millisecond; when it would overflow, or when the clock steps
back, the timestamp is advanced by one millisecond past the last one used, so the ids one
process makes are strictly increasing.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = -1
_counter = 0

_MS_MASK = (1 << 48) - 1
_COUNTER_MAX = (1 << 12) - 1


def _random_bits(bits: int) -> int:
    return int.from_bytes(os.urandom((bits + 7) // 8), "big") & ((1 << bits) - 1)


def uuid7_int(now_ms: int | None = None) -> int:
    """The 128-bit integer of a new UUIDv7 (strictly increasing within this process)."""
    global _last_ms, _counter
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    with _lock:
        if ms > _last_ms:
            _last_ms = ms
            _counter = _random_bits(11)
        else:
            # Same millisecond, or the clock stepped back: keep counting from the last id.
            _counter += 1
            if _counter > _COUNTER_MAX:
                _last_ms += 1
                _counter = _random_bits(11)
        ms, counter = _last_ms, _counter
    value = (ms & _MS_MASK) << 80
    value |= 0x7 << 76
    value |= counter << 64
    value |= 0b10 << 62
    value |= _random_bits(62)
    return value


def uuid7(now_ms: int | None = None) -> str:
    """A new UUIDv7 in its canonical text form (lowercase, hyphenated)."""
    return str(uuid.UUID(int=uuid7_int(now_ms)))


def uuid7_timestamp_ms(value: str) -> int:
    """The unix_ts_ms field of a UUIDv7 text."""
    return uuid.UUID(value).int >> 80


def rfc3339_now() -> str:
    """The current UTC time as RFC 3339 with microseconds, e.g. ``2026-01-15T09:30:00.250000Z``."""
    now_ns = time.time_ns()
    seconds, nanos = divmod(now_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".%06dZ" % (nanos // 1000)
