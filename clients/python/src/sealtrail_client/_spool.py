"""The on-disk spool: batches the server could not take, kept until it answers 2xx.

Layout of ``spool_dir``:

- ``<ms>-<pid>-<counter>.<durability>.jsonl``: one segment per spooled batch, one event (its
  JSON text, exactly the bytes that are sent) per line. Written to ``*.tmp``, fsynced, then
  renamed into place and the directory fsynced, so a segment is either complete or absent.
  Segment names sort in the order they were written (by millisecond, then process, then a
  counter), which is the order they are replayed in.
- ``.lock``: locked (``fcntl.flock``) for the duration of a replay pass, so two processes
  sharing the directory never send one segment at the same time. Writing segments needs no lock.
- ``rejected.jsonl``: events the server refused for good during a replay (a non-retryable 4xx),
  each with the reason, appended and fsynced; they are also reported in ``Client.failures``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import threading
import time
from typing import Iterator, List, Optional, Tuple

try:  # POSIX only; elsewhere a process-wide lock stands in (one process per spool_dir).
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

_SEGMENT = re.compile(r"^\d{13}-\d+-\d+\.(sync|async)\.jsonl$")
_counter = itertools.count()
_process_lock = threading.Lock()


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover (Windows cannot open a directory)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class Spool:
    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)

    def segments(self) -> List[str]:
        """Names of the complete segments, in replay order."""
        return sorted(name for name in os.listdir(self.directory) if _SEGMENT.match(name))

    def write(self, durability: str, bodies: List[bytes]) -> str:
        """Writes one segment holding ``bodies`` durably; returns its name."""
        name = "%013d-%d-%09d.%s.jsonl" % (
            time.time_ns() // 1_000_000,
            os.getpid(),
            next(_counter),
            durability,
        )
        self._write_file(name, bodies)
        return name

    def rewrite(self, name: str, bodies: List[bytes]) -> None:
        """Replaces a segment's content (the events still to deliver) atomically."""
        self._write_file(name, bodies)

    def _write_file(self, name: str, bodies: List[bytes]) -> None:
        final = os.path.join(self.directory, name)
        temporary = final + ".tmp"
        with open(temporary, "wb") as file:
            for body in bodies:
                file.write(body)
                file.write(b"\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, final)
        _fsync_dir(self.directory)

    def read(self, name: str) -> Tuple[str, List[bytes], List[Tuple[int, bytes]]]:
        """A segment's durability, its events' JSON texts, and its unreadable lines."""
        durability = name.rsplit(".", 2)[1]
        bodies: List[bytes] = []
        damaged: List[Tuple[int, bytes]] = []
        with open(os.path.join(self.directory, name), "rb") as file:
            for number, line in enumerate(file, start=1):
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue
                try:
                    if not isinstance(json.loads(line), dict):
                        raise ValueError("not a JSON object")
                except ValueError:
                    damaged.append((number, line))
                    continue
                bodies.append(line)
        return durability, bodies, damaged

    def remove(self, name: str) -> None:
        try:
            os.remove(os.path.join(self.directory, name))
        except FileNotFoundError:
            pass
        _fsync_dir(self.directory)

    def reject(self, body: bytes, reason: str) -> None:
        """Keeps an event the server refused for good, with the reason, in ``rejected.jsonl``."""
        try:
            event = json.loads(body)
        except ValueError:
            event = body.decode("utf-8", "replace")
        line = json.dumps({"reason": reason, "event": event}, ensure_ascii=False)
        with open(os.path.join(self.directory, "rejected.jsonl"), "ab") as file:
            file.write(line.encode("utf-8") + b"\n")
            file.flush()
            os.fsync(file.fileno())

    @contextlib.contextmanager
    def replay_lock(self) -> Iterator[bool]:
        """Yields True while this process alone may replay, False if another one is replaying."""
        if fcntl is None:  # pragma: no cover
            acquired = _process_lock.acquire(blocking=False)
            try:
                yield acquired
            finally:
                if acquired:
                    _process_lock.release()
            return
        fd: Optional[int] = os.open(os.path.join(self.directory, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
