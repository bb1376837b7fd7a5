"""The Sealtrail client: batching, retries, idempotent ids, an optional on-disk spool."""

from __future__ import annotations

import atexit
import datetime
import email.utils
import http.client
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections import deque
from typing import Any, Deque, Dict, List, Mapping, Optional, Tuple

from ._context import CONTEXT_FIELDS, current_context
from ._ids import rfc3339_now, uuid7
from ._spool import Spool

__all__ = [
    "BATCH_EVENTS_MAX",
    "BODY_BYTES_MAX",
    "Client",
    "DeliveryError",
    "EventFailed",
    "EventHandle",
    "EventSpooled",
    "Failure",
    "SealtrailError",
]

log = logging.getLogger("sealtrail_client")

#: Most events the server takes in one request (``BATCH_EVENTS_MAX`` in
#: ``crates/model/src/limits.rs``); more is answered 413.
BATCH_EVENTS_MAX = 10_000
#: Largest request body the server takes, in bytes (``BODY_BYTES_MAX``); larger is 413.
BODY_BYTES_MAX = 16 * 1024 * 1024

#: Answers worth another attempt: the request may succeed later unchanged.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: Answers whose ``Retry-After`` header says how long to wait.
RETRY_AFTER_STATUSES = frozenset({429, 503})

PENDING = "pending"
ACKNOWLEDGED = "acknowledged"
SPOOLED = "spooled"
FAILED = "failed"

_VERSION = "0.1.0"


class SealtrailError(Exception):
    """Base class of this package's errors."""


class Failure:
    """An event the server refused for good (or that could not be delivered nor spooled).

    ``status`` is the HTTP status (``None`` when no answer was had), ``reason`` a readable
    sentence, ``problem`` the server's RFC 9457 problem document when there was one, ``event``
    the event as it was sent (with its ``event_id``).
    """

    __slots__ = ("event_id", "tenant_id", "durability", "status", "reason", "problem", "event")

    def __init__(
        self,
        event_id: Optional[str],
        tenant_id: Optional[str],
        durability: str,
        status: Optional[int],
        reason: str,
        problem: Optional[dict],
        event: Any,
    ) -> None:
        self.event_id = event_id
        self.tenant_id = tenant_id
        self.durability = durability
        self.status = status
        self.reason = reason
        self.problem = problem
        self.event = event

    def __repr__(self) -> str:
        status = "no answer" if self.status is None else "HTTP %d" % self.status
        return "<Failure event_id=%r tenant_id=%r %s: %s>" % (
            self.event_id,
            self.tenant_id,
            status,
            self.reason,
        )

    __str__ = __repr__


class DeliveryError(SealtrailError):
    """Raised by :meth:`Client.flush` and :meth:`Client.close`: events failed for good."""

    def __init__(self, failures: List[Failure]) -> None:
        self.failures = list(failures)
        lines = ["%d event(s) were refused by the server or could not be delivered:" % len(failures)]
        lines.extend("  - %s" % failure for failure in self.failures[:50])
        if len(self.failures) > 50:
            lines.append("  … and %d more (see .failures)" % (len(self.failures) - 50))
        super().__init__("\n".join(lines))


class EventFailed(SealtrailError):
    """Raised by :meth:`EventHandle.result` for an event that failed for good."""

    def __init__(self, failure: Failure) -> None:
        self.failure = failure
        super().__init__(str(failure))


class EventSpooled(SealtrailError):
    """Raised by :meth:`EventHandle.result` for an event kept in the spool, not yet acknowledged.

    It is safe on disk; a :class:`Client` with the same ``spool_dir`` delivers it once the
    server answers again.
    """

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__(
            "event %s was spooled to disk: the server could not be reached; "
            "it will be delivered by a client using the same spool_dir" % event_id
        )


class EventHandle:
    """What :meth:`Client.record` returns: the fate of one event.

    ``status`` is ``"pending"``, then one of ``"acknowledged"`` (the server answered 2xx;
    ``receipt`` is its result for the event and ``http_status`` 201 for a committed event or
    202 for one accepted asynchronously), ``"spooled"`` (kept on disk for a later replay) or
    ``"failed"`` (``failure`` says why).
    """

    __slots__ = ("event_id", "durability", "receipt", "http_status", "failure", "_status", "_client")

    def __init__(self, client: "Client", event_id: str, durability: str) -> None:
        self.event_id = event_id
        self.durability = durability
        self.receipt: Optional[dict] = None
        self.http_status: Optional[int] = None
        self.failure: Optional[Failure] = None
        self._status = PENDING
        self._client = client

    @property
    def status(self) -> str:
        return self._status

    def done(self) -> bool:
        return self._status != PENDING

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the event is settled (or ``timeout`` seconds pass); True if settled."""
        condition = self._client._cond
        with condition:
            return condition.wait_for(self.done, timeout)

    def result(self, timeout: Optional[float] = None) -> dict:
        """The server's receipt for the event, once acknowledged.

        Blocks until the event is settled. Raises :class:`TimeoutError` if it is not within
        ``timeout`` seconds, :class:`EventFailed` if it failed for good, :class:`EventSpooled`
        if it went to the spool instead.
        """
        if not self.wait(timeout):
            raise TimeoutError("event %s not settled within %s s" % (self.event_id, timeout))
        if self._status == FAILED:
            assert self.failure is not None
            raise EventFailed(self.failure)
        if self._status == SPOOLED:
            raise EventSpooled(self.event_id)
        return self.receipt if self.receipt is not None else {"event_id": self.event_id}

    def __repr__(self) -> str:
        return "<EventHandle %s %s %s>" % (self.event_id, self.durability, self._status)


class _Item:
    """One event on its way: its JSON text and, for a recorded event, its handle."""

    __slots__ = ("body", "event_id", "tenant_id", "handle", "seq", "enqueued")

    def __init__(
        self,
        body: bytes,
        event_id: Optional[str],
        tenant_id: Optional[str],
        handle: Optional[EventHandle],
        seq: int = 0,
        enqueued: float = 0.0,
    ) -> None:
        self.body = body
        self.event_id = event_id
        self.tenant_id = tenant_id
        self.handle = handle
        self.seq = seq
        self.enqueued = enqueued


def _encode(event: Mapping[str, Any]) -> bytes:
    # Compact, UTF-8, no NaN/Infinity (not JSON; the server would refuse the whole request).
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _body(items: List[_Item]) -> bytes:
    return b"[" + b",".join(item.body for item in items) + b"]"


def _body_size(count: int, event_bytes: int) -> int:
    """Bytes of a JSON array of ``count`` events totalling ``event_bytes``."""
    return event_bytes + max(count - 1, 0) + 2


class _Answer:
    """The outcome of one request, after its retries."""

    __slots__ = ("kind", "status", "payload", "error")

    def __init__(self, kind: str, status: Optional[int] = None, payload: Any = None, error: str = "") -> None:
        self.kind = kind  # "ok", "refused" (a permanent 4xx) or "unreachable"
        self.status = status
        self.payload = payload
        self.error = error


_live_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:
    for client in list(_live_clients):
        try:
            client.close(timeout=client._exit_timeout, _raise=False)
        except Exception:  # pragma: no cover
            log.exception("closing a Sealtrail client at exit")


class Client:
    """Sends audit events to a Sealtrail server in batches, from a background thread.

    ``record(event)`` queues an event and returns at once (with an :class:`EventHandle`); the
    thread sends a batch when ``batch_size`` events are queued or the oldest has waited
    ``flush_interval`` seconds, whichever comes first, never more than the server takes in one
    request (10,000 events, 16 MiB). Every event gets a UUIDv7 ``event_id`` (and a
    ``timestamp``) in ``record()`` unless it has one, so any retry of a batch is idempotent.

    Arguments beyond the first six, all keyword-only:

    - ``tenant_id``: set on events that carry none.
    - ``backoff_base``, ``backoff_max``: the retry pause before attempt *n* + 1 is uniform in
      ``[0, min(backoff_max, backoff_base * 2**n)]`` seconds (full jitter), unless a 429 or 503
      said how long to wait in ``Retry-After`` (then that, capped at ``retry_after_max``).
    - ``timeout``: seconds one HTTP request may take.
    - ``max_queue_events``: events held in memory; ``record()`` blocks while it is full.
    - ``stamp_timestamp``: set ``timestamp`` to the time of ``record()`` when the event has
      none (so a spooled or retried event keeps the time it happened).
    - ``probe_interval``: while the server is unreachable (and a spool is set), how often to
      try it again; new batches go straight to the spool in between. Default ``backoff_max``.
    - ``exit_timeout``: at interpreter exit an unclosed client is closed with this timeout.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        batch_size: int = 500,
        flush_interval: float = 0.5,
        max_retries: int = 10,
        spool_dir: Optional[str] = None,
        *,
        tenant_id: Optional[str] = None,
        backoff_base: float = 0.2,
        backoff_max: float = 10.0,
        retry_after_max: float = 60.0,
        timeout: float = 30.0,
        max_queue_events: int = 100_000,
        stamp_timestamp: bool = True,
        probe_interval: Optional[float] = None,
        exit_timeout: float = 10.0,
    ) -> None:
        if not 1 <= batch_size <= BATCH_EVENTS_MAX:
            raise ValueError("batch_size must be from 1 to %d (the server's limit)" % BATCH_EVENTS_MAX)
        if flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        if max_queue_events < 1:
            raise ValueError("max_queue_events must be positive")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_retries = max_retries
        self.tenant_id = tenant_id
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.timeout = timeout
        self.max_queue_events = max_queue_events
        self.stamp_timestamp = stamp_timestamp
        self.probe_interval = backoff_max if probe_interval is None else probe_interval
        self._exit_timeout = exit_timeout
        self._opener = urllib.request.build_opener()

        #: Every :class:`Failure` so far (events refused for good), oldest first.
        self.failures: List[Failure] = []
        self._failures_reported = 0
        #: Counters: batches sent, retries, events acknowledged, spooled, replayed, failed.
        self.stats: Dict[str, int] = {
            "requests": 0,
            "retries": 0,
            "acknowledged": 0,
            "spooled": 0,
            "replayed": 0,
            "failed": 0,
        }

        self._cond = threading.Condition()
        self._queues: Dict[str, Deque[_Item]] = {"async": deque(), "sync": deque()}
        self._queued_bytes = {"async": 0, "sync": 0}
        self._recorded = {"async": 0, "sync": 0}  # seq of the last event recorded, per queue
        self._done_upto = {"async": 0, "sync": 0}  # every seq up to this is settled
        self._flush_waiters = 0
        self._closing = False
        self._closed = False
        self._abort = threading.Event()

        self._spool = Spool(spool_dir) if spool_dir is not None else None
        self._spool_pending = bool(self._spool and self._spool.segments())
        self._offline = False
        self._next_replay = 0.0  # monotonic time of the next replay pass while segments wait
        self._replay_requested = 0
        self._replay_started = 0
        self._replay_done = 0

        self._thread = threading.Thread(target=self._run, name="sealtrail-client", daemon=True)
        self._thread.start()
        _live_clients.add(self)

    # ----------------------------------------------------------------------------------------
    # Public API

    def record(self, event: Mapping[str, Any], durability: str = "async") -> EventHandle:
        """Queues one event; returns its :class:`EventHandle` at once.

        ``durability="async"`` events are sent with ``?durability=async`` (the server answers
        202 once they are in its spool); ``"sync"`` events go in batches of their own, sent
        as soon as the background thread is free, with ``?durability=sync`` (201 once committed
        and fsynced). To block until a sync event is committed:
        ``client.record(event, durability="sync").result(timeout=10)``.

        The event is copied; ``event_id`` (a UUIDv7), ``timestamp``, the default ``tenant_id``
        and the values of an enclosing :func:`request_context` are filled in where absent.
        Raises ``TypeError``/``ValueError`` at once for an event that cannot be encoded as
        JSON or exceeds the server's request size alone.
        """
        if durability not in ("async", "sync"):
            raise ValueError('durability must be "async" or "sync"')
        prepared = self._prepare(event)
        body = _encode(prepared)
        if _body_size(1, len(body)) > BODY_BYTES_MAX:
            raise ValueError("the event's JSON text exceeds the server's request limit of %d bytes" % BODY_BYTES_MAX)
        handle = EventHandle(self, prepared["event_id"], durability)
        tenant_id = prepared.get("tenant_id")
        with self._cond:
            while not self._closing and self._queued_events() >= self.max_queue_events:
                self._cond.wait()
            if self._closing:
                raise RuntimeError("the client is closed")
            queue = self._queues[durability]
            self._recorded[durability] += 1
            queue.append(
                _Item(body, handle.event_id, tenant_id if isinstance(tenant_id, str) else None, handle,
                      self._recorded[durability], time.monotonic())
            )
            self._queued_bytes[durability] += len(body)
            if durability == "sync" or len(queue) == 1 or len(queue) >= self.batch_size:
                self._cond.notify_all()
        return handle

    def flush(self, timeout: Optional[float] = None) -> None:
        """Sends every event recorded so far now, and waits until each is settled.

        Settled means acknowledged by the server, kept in the spool, or failed for good. If
        this client has a spool holding segments, flush also waits for one replay attempt.
        Raises :class:`DeliveryError` listing the failures not reported before (they stay in
        :attr:`failures`), or :class:`TimeoutError` when ``timeout`` seconds pass first.
        """
        self._flush(timeout)
        self._raise_failures()

    def _flush(self, timeout: Optional[float]) -> None:
        """:meth:`flush` without raising the failures."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            targets = dict(self._recorded)
            self._flush_waiters += 1
            self._cond.notify_all()
            try:
                self._wait_locked(lambda: all(self._done_upto[d] >= targets[d] for d in targets), deadline)
                if self._spool is not None and self._spool_pending and not self._abort.is_set():
                    self._replay_requested += 1
                    ticket = self._replay_requested
                    self._cond.notify_all()
                    self._wait_locked(lambda: self._replay_done >= ticket, deadline)
            finally:
                self._flush_waiters -= 1

    def close(self, timeout: Optional[float] = None, _raise: bool = True) -> None:
        """Drains: sends (or spools) everything recorded, then stops the background thread.

        After ``timeout`` seconds, what is still undelivered goes to the spool (or, without
        one, is reported as failed) and the thread stops. Raises :class:`DeliveryError` for
        failures not reported before. Closing twice does nothing.
        """
        with self._cond:
            if self._closed:
                return
            self._closing = True
            self._cond.notify_all()
        try:
            try:
                self._flush(timeout)
            except TimeoutError:
                log.warning("close: undelivered events after %s s go to the spool or are failed", timeout)
        finally:
            self._abort.set()
            with self._cond:
                self._cond.notify_all()
            self._thread.join()
            with self._cond:
                self._closed = True
            _live_clients.discard(self)
        if _raise:
            self._raise_failures()
        else:
            with self._cond:
                unreported = self.failures[self._failures_reported:]
                self._failures_reported = len(self.failures)
            if unreported:
                log.error("%s", DeliveryError(unreported))

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # With an exception already on its way, report failures in the log rather than
        # replace that exception.
        self.close(_raise=exc_type is None)

    # ----------------------------------------------------------------------------------------
    # Preparing events

    def _prepare(self, event: Mapping[str, Any]) -> Dict[str, Any]:
        """A copy of ``event`` with ``event_id``, ``timestamp``, tenant and context filled in."""
        if not isinstance(event, Mapping):
            raise TypeError("an event is a mapping (dict) of event format v1 fields")
        prepared = dict(event)
        context = current_context()
        for name in CONTEXT_FIELDS:
            if prepared.get(name) is None and context.get(name) is not None:
                prepared[name] = context[name]
        if prepared.get("tenant_id") is None and self.tenant_id is not None:
            prepared["tenant_id"] = self.tenant_id
        if prepared.get("event_id") is None:
            prepared["event_id"] = uuid7()
        timestamp = prepared.get("timestamp")
        if isinstance(timestamp, datetime.datetime):
            if timestamp.tzinfo is None:
                raise ValueError("timestamp: a datetime needs a time zone")
            prepared["timestamp"] = timestamp.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
        elif timestamp is None and self.stamp_timestamp:
            prepared["timestamp"] = rfc3339_now()
        return prepared

    def _queued_events(self) -> int:
        return len(self._queues["async"]) + len(self._queues["sync"])

    # ----------------------------------------------------------------------------------------
    # The background thread

    def _run(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            kind, durability, items = job
            if kind == "replay":
                try:
                    self._replay_pass(probe=self._offline)
                except Exception:  # pragma: no cover (a bug; keep the thread alive)
                    log.exception("spool replay failed")
                finally:
                    with self._cond:
                        self._replay_done = max(self._replay_done, durability)
                        self._cond.notify_all()
                continue
            try:
                self._deliver(durability, items)
            except Exception as error:  # pragma: no cover (a bug; never lose the events silently)
                log.exception("delivering a batch failed")
                for item in items:
                    if item.handle is None or not item.handle.done():
                        self._fail([item], durability, None, "client error: %r" % error, None)
            finally:
                with self._cond:
                    self._done_upto[durability] = max(self._done_upto[durability], items[-1].seq)
                    self._cond.notify_all()

    def _next_job(self) -> Optional[Tuple[str, Any, List[_Item]]]:
        with self._cond:
            while True:
                now = time.monotonic()
                wait: Optional[float] = None
                if self._spool is not None and not self._abort.is_set():
                    if self._replay_requested > self._replay_started:
                        self._replay_started = self._replay_requested
                        return ("replay", self._replay_started, [])
                    if self._spool_pending and not self._closing:
                        if now >= self._next_replay:
                            return ("replay", self._replay_done, [])
                        wait = self._next_replay - now
                if self._queues["sync"]:
                    return ("batch", "sync", self._take("sync"))
                queue = self._queues["async"]
                if queue:
                    due = (
                        self._closing
                        or self._flush_waiters > 0
                        or len(queue) >= self.batch_size
                        or _body_size(len(queue), self._queued_bytes["async"]) >= BODY_BYTES_MAX
                        or now - queue[0].enqueued >= self.flush_interval
                    )
                    if due:
                        return ("batch", "async", self._take("async"))
                    until = queue[0].enqueued + self.flush_interval - now
                    wait = until if wait is None else min(wait, until)
                elif self._abort.is_set():
                    return None  # close() has drained what it could
                self._cond.wait(wait)

    def _take(self, durability: str) -> List[_Item]:
        """The next batch from a queue: at most batch_size events and BODY_BYTES_MAX bytes."""
        queue = self._queues[durability]
        batch: List[_Item] = []
        size = 0
        while queue and len(batch) < self.batch_size:
            item = queue[0]
            if batch and _body_size(len(batch) + 1, size + len(item.body)) > BODY_BYTES_MAX:
                break
            queue.popleft()
            batch.append(item)
            size += len(item.body)
        self._queued_bytes[durability] -= size
        self._cond.notify_all()  # room for record() callers waiting on a full queue
        return batch

    def _deliver(self, durability: str, items: List[_Item]) -> None:
        if self._spool is not None:
            if self._spool_pending:
                # Keep the order: what is spooled goes first. While the server is unreachable,
                # batches go straight to the spool until the next probe.
                if self._abort.is_set() or time.monotonic() < self._next_replay:
                    self._to_spool(durability, items)
                    return
                if not self._replay_pass(probe=self._offline):
                    self._to_spool(durability, items)
                    return
            remaining, error, _ = self._send(durability, items)
            if remaining:
                log.warning("server unreachable (%s); spooling %d event(s)", error, len(remaining))
                self._go_offline()
                self._to_spool(durability, remaining)
        else:
            remaining, error, status = self._send(durability, items)
            if remaining:
                self._fail(remaining, durability, status, error, None)

    def _go_offline(self) -> None:
        with self._cond:
            self._offline = True
            self._spool_pending = True
            self._next_replay = time.monotonic() + self.probe_interval

    def _to_spool(self, durability: str, items: List[_Item]) -> None:
        assert self._spool is not None
        try:
            self._spool.write(durability, [item.body for item in items])
        except OSError as error:
            self._fail(items, durability, None, "could not be delivered nor spooled: %s" % error, None)
            return
        with self._cond:
            self._spool_pending = True
            self.stats["spooled"] += len(items)
            for item in items:
                if item.handle is not None:
                    item.handle._status = SPOOLED
            self._cond.notify_all()

    def _replay_pass(self, probe: bool) -> bool:
        """Sends the spool's segments in order; True if the spool is empty afterwards.

        With ``probe``, the first request is tried once only (the server was unreachable).
        A segment is removed only after every event of it was answered 2xx (or refused for
        good, reported and kept in ``rejected.jsonl``).
        """
        assert self._spool is not None
        spool = self._spool
        with spool.replay_lock() as mine:
            if not mine:
                # Another process is replaying this directory: look again shortly.
                with self._cond:
                    self._next_replay = time.monotonic() + min(1.0, self.probe_interval)
                return False
            names = spool.segments()
            while names:
                name = names.pop(0)
                try:
                    durability, bodies, damaged = spool.read(name)
                except FileNotFoundError:
                    continue
                for number, line in damaged:
                    reason = "spool segment %s line %d is not a JSON object" % (name, number)
                    spool.reject(line, reason)
                    self._fail([_Item(line, None, None, None)], durability, None, reason, None)
                items = [self._replayed_item(body) for body in bodies]
                remaining, error, _ = self._send(durability, items, max_retries=0 if probe else None) if items else ([], "", None)
                if remaining:
                    if len(remaining) != len(items) or damaged:
                        spool.rewrite(name, [item.body for item in remaining])
                    log.info("spool replay stopped (%s); %s stays", error, name)
                    self._go_offline()
                    return False
                probe = False
                spool.remove(name)
                with self._cond:
                    self.stats["replayed"] += len(items)
                if not names:
                    names = spool.segments()  # written meanwhile (by another process)
            with self._cond:
                self._offline = False
                self._spool_pending = False
            return True

    @staticmethod
    def _replayed_item(body: bytes) -> _Item:
        event = json.loads(body)
        event_id = event.get("event_id")
        tenant_id = event.get("tenant_id")
        return _Item(
            body,
            event_id if isinstance(event_id, str) else None,
            tenant_id if isinstance(tenant_id, str) else None,
            None,
        )

    # ----------------------------------------------------------------------------------------
    # Sending

    def _send(
        self, durability: str, items: List[_Item], max_retries: Optional[int] = None
    ) -> Tuple[List[_Item], str, Optional[int]]:
        """Sends ``items`` (split as the server's answers require) and settles each one.

        Returns the events not delivered because the server could not be reached (or the
        client was closing) after the retries, in order, with the last error; every other
        event is acknowledged or failed for good.
        """
        work: Deque[List[_Item]] = deque([items])
        while work:
            batch = work.popleft()
            answer = self._post_with_retries(durability, batch, max_retries)
            if answer.kind == "ok":
                self._acknowledge(batch, answer)
                continue
            if answer.kind == "unreachable":
                remaining = list(batch)
                for rest in work:
                    remaining.extend(rest)
                return remaining, answer.error, answer.status
            # A permanent refusal: the server writes nothing of a refused request, so isolate
            # the events at fault and send the others again.
            status = answer.status
            problem = answer.payload if isinstance(answer.payload, dict) else None
            detail = (problem or {}).get("detail") or "HTTP %s" % status
            errors = (problem or {}).get("errors")
            indexed = self._errors_by_index(errors, len(batch))
            if status in (400, 409) and indexed:
                bad = []
                good = []
                for index, item in enumerate(batch):
                    (bad if index in indexed else good).append((index, item))
                for index, item in bad:
                    self._fail([item], durability, status, "; ".join(indexed[index]), problem)
                if good:
                    work.appendleft([item for _, item in good])
            elif status == 403 and len({item.tenant_id for item in batch}) > 1:
                # One key writes one tenant: send each tenant's events on their own.
                groups: Dict[Optional[str], List[_Item]] = {}
                for item in batch:
                    groups.setdefault(item.tenant_id, []).append(item)
                work.extendleft(reversed(list(groups.values())))
            elif status in (400, 409, 413) and len(batch) > 1:
                # No event named: halve the batch until the culprit stands alone.
                half = len(batch) // 2
                work.appendleft(batch[half:])
                work.appendleft(batch[:half])
            else:
                self._fail(batch, durability, status, detail, problem)
        return [], "", None

    @staticmethod
    def _errors_by_index(errors: Any, count: int) -> Dict[int, List[str]]:
        """``{index: [reasons]}`` of a problem document's errors, if every one names an event."""
        if not isinstance(errors, list) or not errors:
            return {}
        by_index: Dict[int, List[str]] = {}
        for error in errors:
            if not isinstance(error, dict):
                return {}
            index = error.get("index")
            if not isinstance(index, int) or not 0 <= index < count:
                return {}
            by_index.setdefault(index, []).append("%s: %s" % (error.get("field"), error.get("reason")))
        return by_index

    def _post_with_retries(self, durability: str, batch: List[_Item], max_retries: Optional[int]) -> _Answer:
        retries = self.max_retries if max_retries is None else max_retries
        body = _body(batch)
        attempt = 0
        while True:
            if self._abort.is_set():
                return _Answer("unreachable", error="the client was closed before delivery")
            status, headers, payload, error = self._post(durability, body)
            with self._cond:
                self.stats["requests"] += 1
            if error is None and status is not None and 200 <= status < 300:
                return _Answer("ok", status, payload)
            if error is None and status not in RETRYABLE_STATUSES and not (status is not None and status >= 500):
                return _Answer("refused", status, payload)
            what = error if error is not None else "HTTP %s" % status
            if attempt >= retries:
                return _Answer("unreachable", status, payload, "not delivered after %d attempt(s): %s" % (attempt + 1, what))
            delay = None
            if status in RETRY_AFTER_STATUSES and headers is not None:
                delay = self._retry_after(headers.get("Retry-After"))
            if delay is None:
                delay = random.uniform(0, min(self.backoff_max, self.backoff_base * (2 ** attempt)))
            log.debug("attempt %d failed (%s); retrying in %.2f s", attempt + 1, what, delay)
            attempt += 1
            with self._cond:
                self.stats["retries"] += 1
            if self._abort.wait(delay):
                return _Answer("unreachable", status, payload, "the client was closed before delivery (%s)" % what)

    def _retry_after(self, value: Optional[str]) -> Optional[float]:
        """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
        if not value:
            return None
        value = value.strip()
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            if when is None:
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.timezone.utc)
            seconds = (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
        if seconds != seconds:  # NaN
            return None
        return min(max(seconds, 0.0), self.retry_after_max)

    def _post(self, durability: str, body: bytes) -> Tuple[Optional[int], Any, Any, Optional[str]]:
        """One ``POST /v1/events``: (status, headers, parsed body, connection error)."""
        request = urllib.request.Request(
            "%s/v1/events?%s" % (self.base_url, urllib.parse.urlencode({"durability": durability})),
            data=body,
            method="POST",
            headers={
                "Authorization": "Bearer %s" % self._api_key,
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "sealtrail-python/%s" % _VERSION,
            },
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return response.status, response.headers, self._parse(response.read()), None
        except urllib.error.HTTPError as answer:
            try:
                payload = self._parse(answer.read())
            except (OSError, http.client.HTTPException):
                payload = None
            finally:
                answer.close()
            return answer.code, answer.headers, payload, None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            return None, None, None, "%s: %s" % (type(error).__name__, reason)

    @staticmethod
    def _parse(raw: bytes) -> Any:
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw.decode("utf-8", "replace")

    # ----------------------------------------------------------------------------------------
    # Settling

    def _acknowledge(self, batch: List[_Item], answer: _Answer) -> None:
        results = answer.payload.get("results") if isinstance(answer.payload, dict) else None
        if not isinstance(results, list) or len(results) != len(batch):
            results = [None] * len(batch)
        with self._cond:
            for item, receipt in zip(batch, results):
                if item.handle is not None:
                    item.handle.receipt = receipt if isinstance(receipt, dict) else None
                    item.handle.http_status = answer.status
                    item.handle._status = ACKNOWLEDGED
            self.stats["acknowledged"] += len(batch)
            self._cond.notify_all()

    def _fail(
        self,
        items: List[_Item],
        durability: str,
        status: Optional[int],
        reason: str,
        problem: Optional[dict],
    ) -> None:
        failures = []
        for item in items:
            try:
                event: Any = json.loads(item.body)
            except ValueError:
                event = item.body.decode("utf-8", "replace")
            failures.append(Failure(item.event_id, item.tenant_id, durability, status, reason, problem, event))
            if item.handle is None and self._spool is not None and isinstance(event, dict):
                # A replayed event leaves the spool only with its reason written down.
                try:
                    self._spool.reject(item.body, reason)
                except OSError:  # pragma: no cover
                    log.exception("could not write rejected.jsonl")
        with self._cond:
            for item, failure in zip(items, failures):
                if item.handle is not None:
                    item.handle.failure = failure
                    item.handle._status = FAILED
                self.failures.append(failure)
            self.stats["failed"] += len(items)
            self._cond.notify_all()
        if failures:
            log.warning(
                "%d event(s) failed for good (%s): %s; first event_id %s",
                len(failures),
                "no answer" if status is None else "HTTP %d" % status,
                reason,
                failures[0].event_id,
            )

    def _raise_failures(self) -> None:
        with self._cond:
            unreported = self.failures[self._failures_reported:]
            self._failures_reported = len(self.failures)
        if unreported:
            raise DeliveryError(unreported)

    def _wait_locked(self, predicate, deadline: Optional[float]) -> None:
        """Waits on the condition (held) until ``predicate``; TimeoutError past ``deadline``."""
        while not predicate():
            if not self._thread.is_alive():
                raise RuntimeError("the client's background thread has stopped")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("events still undelivered after the flush timeout")
            self._cond.wait(0.5 if remaining is None else min(remaining, 0.5))

    # ----------------------------------------------------------------------------------------
    # For tests: send prepared events now, on the caller's thread, as the background thread would.

    def _send_events(self, events: List[Mapping[str, Any]], durability: str = "async") -> List[EventHandle]:
        items = []
        for event in events:
            prepared = self._prepare(event)
            handle = EventHandle(self, prepared["event_id"], durability)
            tenant_id = prepared.get("tenant_id")
            items.append(_Item(_encode(prepared), handle.event_id, tenant_id if isinstance(tenant_id, str) else None, handle))
        remaining, error, status = self._send(durability, items)
        if remaining:
            self._fail(remaining, durability, status, error, None)
        return [item.handle for item in items]

