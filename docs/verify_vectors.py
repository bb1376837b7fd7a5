#!/usr/bin/env python3
"""An independent implementation of docs/FORMAT.md ("Canonical encoding, version 1"), written
from the document alone, checked against docs/vectors/event-v1.json. Standard library only.

Usage: python3 docs/verify_vectors.py   (exit status 0 when every vector matches)
"""
import datetime
import hashlib
import json
import pathlib
import sys

TAG = b"sealtrail.event.v1\n"


def nanos(text):
    # RFC 3339 with up to 9 fractional digits; Python's datetime keeps only 6, so split them off.
    main, _, rest = text.partition(".")
    fraction = ""
    if rest:
        digits = "".join(ch for ch in rest if ch.isdigit())
        fraction = digits
        suffix = rest[len(digits):]
        main += suffix
    moment = datetime.datetime.fromisoformat(main.replace("Z", "+00:00"))
    whole = int(moment.timestamp())
    return whole * 1_000_000_000 + int((fraction + "000000000")[:9])


def u64(x):
    return x.to_bytes(8, "big")


def i64(x):
    return x.to_bytes(8, "big", signed=True)


def s(text):
    data = text.encode("utf-8")
    return len(data).to_bytes(4, "big") + data


def opt(text):
    return b"\x00" if text is None else b"\x01" + s(text)


def canonical_json(value):
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def canonical_bytes(event):
    return b"".join([
        TAG,
        u64(event["seq"]),
        bytes.fromhex(event["prev_hash"]),
        s(event["tenant_id"]),
        s(event["event_id"]),
        i64(nanos(event["timestamp"])),
        i64(nanos(event["received_at"])),
        s(event["actor_id"]),
        s(event["actor_type"]),
        s(event["action"]),
        s(event["resource_type"]),
        opt(event["resource_id"]),
        s(event["outcome"]),
        opt(event["ip_address"]),
        opt(event["user_agent"]),
        opt(event["request_id"]),
        opt(canonical_json(event["changes"])),
        opt(canonical_json(event["metadata"])),
    ])


def main():
    path = pathlib.Path(__file__).with_name("vectors") / "event-v1.json"
    failures = 0
    prev = "00" * 32
    for number, vector in enumerate(json.loads(path.read_text(encoding="utf-8")), 1):
        event = vector["event"]
        data = canonical_bytes(event)
        digest = hashlib.sha256(b"\x00" + data).hexdigest()  # RFC 6962 leaf hash
        ok = (data.hex() == vector["canonical_hex"] and digest == vector["event_hash"]
              and event["prev_hash"] == prev)
        print(f"vector {number}: {'ok' if ok else 'MISMATCH'} {digest}")
        failures += not ok
        prev = digest
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
