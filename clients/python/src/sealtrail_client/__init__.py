"""Python client for Sealtrail, the tamper-evident audit trail server.

Standard library only. See README.md in clients/python for usage.
"""

from ._context import request_context
from ._ids import uuid7
from .client import (
    BATCH_EVENTS_MAX,
    BODY_BYTES_MAX,
    Client,
    DeliveryError,
    EventFailed,
    EventHandle,
    EventSpooled,
    Failure,
    SealtrailError,
)

__version__ = "0.1.0"

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
    "request_context",
    "uuid7",
]
