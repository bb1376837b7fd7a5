"""``request_context``: request-scoped values stamped onto the events recorded inside it."""

from __future__ import annotations

import contextlib
import contextvars
from typing import Dict, Iterator, Optional

#: The fields a request context may set (event format v1 names).
CONTEXT_FIELDS = ("request_id", "ip_address", "user_agent")

_current: contextvars.ContextVar[Dict[str, str]] = contextvars.ContextVar(
    "sealtrail_request_context", default={}
)


@contextlib.contextmanager
def request_context(
    request_id: Optional[str] = None,
    ip_address: Optional[str] = None,
    user_agent: Optional[str] = None,
) -> Iterator[Dict[str, str]]:
    """Stamp ``request_id``, ``ip_address`` and ``user_agent`` onto every event recorded inside.

    A field already set on the event (not ``None``) is left as it is. Contexts nest: an inner
    context overrides the outer one's values it sets, and keeps the others. The values live in a
    :mod:`contextvars` variable, so they follow the current thread or asyncio task and do not
    leak into other requests served concurrently.
    """
    values = dict(_current.get())
    for name, value in (
        ("request_id", request_id),
        ("ip_address", ip_address),
        ("user_agent", user_agent),
    ):
        if value is not None:
            values[name] = value
    token = _current.set(values)
    try:
        yield dict(values)
    finally:
        _current.reset(token)


def current_context() -> Dict[str, str]:
    """The values of the innermost active :func:`request_context` (empty outside one)."""
    return _current.get()
