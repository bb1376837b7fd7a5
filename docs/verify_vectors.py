#!/usr/bin/env python3
"""An independent implementation of docs/FORMAT.md ("Canonical encoding, version 1", "Numbers",
"JSON input rules", "Sampling"), written from the document alone, checked against
docs/vectors/event-v1.json, event-v2.json, json-v1.json and sampling-v1.json. Standard library only.

Usage: python3 docs/verify_vectors.py   (exit status 0 when every vector matches)
"""
import datetime
import decimal
import hashlib
import json
import math
import pathlib
import re
import sys

TAG = b"sealtrail.event.v1\n"


class Refused(Exception):
    """An input the document says the server refuses with 400; args[0] is the field path."""


TIMESTAMP_FRACTION_DIGITS_MAX = 9


def nanos(text):
    # RFC 3339 with up to 9 fractional digits; Python's datetime keeps only 6, so split them off.
    # More digits, or a leap second, are refused rather than cut or moved.
    if text[17:19] == "60":
        raise Refused("timestamp")
    main, _, rest = text.partition(".")
    fraction = ""
    if rest:
        digits = re.match(r"[0-9]*", rest).group(0)
        if len(digits) > TIMESTAMP_FRACTION_DIGITS_MAX:
            raise Refused("timestamp")
        fraction = digits
        main += rest[len(digits):]
    moment = datetime.datetime.fromisoformat(main.replace("Z", "+00:00").replace("z", "+00:00"))
    whole = int(moment.timestamp())
    return whole * 1_000_000_000 + int((fraction + "000000000")[:9])


# --- JSON input and canonical JSON text (FORMAT.md "Numbers", "JSON input rules") ---------------

INTEGER_MIN, INTEGER_MAX = -(2**63), 2**64 - 1


class OutOfRange:
    """An integer literal outside the 64-bit ranges, kept to be reported with its path."""


class Repeated(dict):
    """An object that named a key more than once; `repeated` lists those keys."""


def parse_integer(literal):
    if literal == "-0":
        return -0.0  # The integer literal -0 is the double negative zero.
    value = int(literal)
    return value if INTEGER_MIN <= value <= INTEGER_MAX else OutOfRange()


def parse_double(literal):
    value = float(literal)  # The nearest double: Python's float() rounds correctly.
    if math.isinf(value):
        raise Refused("body")
    return value


def object_from_pairs(pairs):
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1}, key=keys.index)
    result = Repeated(pairs) if repeated else dict(pairs)
    if repeated:
        result.repeated = repeated
    return result


def parse_input(text):
    """Parses JSON as the server reads a request body."""
    return json.loads(text, parse_int=parse_integer, parse_float=parse_double,
                      object_pairs_hook=object_from_pairs)


def refused_paths(value, path):
    """Field paths the server names for a parsed input, in document order."""
    found = []
    if isinstance(value, OutOfRange):
        found.append(path)
    elif isinstance(value, dict):
        for key in getattr(value, "repeated", []):
            found.append(f"{path}.{key}" if path else key)
        for key, inner in value.items():
            found += refused_paths(inner, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += refused_paths(inner, f"{path}[{index}]")
    return found


def shortest_digits(x):
    """The shortest round-trip decimal of a positive double: (digits, E), x = d1.d2...dn * 10^E.
    Python's repr gives exactly those digits (shortest, and nearest the exact value on a tie)."""
    sign, digits, exponent = decimal.Decimal(repr(x)).normalize().as_tuple()
    text = "".join(map(str, digits))
    return text, exponent + len(text) - 1


def double_text(x):
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    sign = "-" if x < 0 else ""
    digits, e = shortest_digits(abs(x))
    n = len(digits)
    if -5 <= e <= 15:
        if n <= e + 1:
            body = digits + "0" * (e + 1 - n) + ".0"
        elif e >= 0:
            body = digits[:e + 1] + "." + digits[e + 1:]
        else:
            body = "0." + "0" * (-e - 1) + digits
    else:
        body = digits[0] + ("." + digits[1:] if n > 1 else "") + "e" + ("+" if e > 0 else "-") + str(abs(e))
    return sign + body


def canonical_text(value):
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return double_text(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(canonical_text(item) for item in value) + "]"
    members = sorted(value.items(), key=lambda member: member[0].encode("utf-8"))
    return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + canonical_text(v) for k, v in members) + "}"


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
    return None if value is None else canonical_text(value)


def canonical_bytes(event, tag=None, protected=None):
    # Version 1; version 2 passes its tag and the encoding of the protected fields.
    field = protected or (lambda name, value: opt(value))
    return b"".join([
        tag or TAG,
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
        field("ip_address", event["ip_address"]),
        field("user_agent", event["user_agent"]),
        opt(event["request_id"]),
        field("changes", canonical_json(event["changes"])),
        field("metadata", canonical_json(event["metadata"])),
    ])


TAG_V2 = b"sealtrail.event.v2\n"
COMMITMENT_TAG = b"sealtrail.commitment.v2\n"
PROTECTED = ("ip_address", "user_agent", "changes", "metadata")


def commitment(salt, plaintext):
    # "Protected fields": SHA-256(tag || salt || str(plaintext)).
    return hashlib.sha256(COMMITMENT_TAG + salt + s(plaintext)).digest()


def canonical_bytes_v2(event):
    # Version 2: another tag, and each protected field as 0x02 || its commitment.
    sealed = event.get("sealed") or {}

    def field(name, value):
        if name in sealed:
            return b"\x02" + bytes.fromhex(sealed[name]["commitment"])
        return opt(value)

    return canonical_bytes(event, TAG_V2, field)


def check_v2_vectors(path):
    """docs/vectors/event-v2.json: each event opened and erased hashes the same, and every
    opened field matches its commitment."""
    failures = 0
    prev = "00" * 32
    vectors = parse_input(path.read_text(encoding="utf-8"))
    for number, vector in enumerate(vectors, 1):
        event = vector["event"]
        ok = event["prev_hash"] == prev
        for state in ("event", "erased"):
            data = canonical_bytes_v2(vector[state])
            digest = hashlib.sha256(b"\x00" + data).hexdigest()
            ok = ok and data.hex() == vector["canonical_hex"] and digest == vector["event_hash"]
        for name, entry in event["sealed"].items():
            assert name in PROTECTED, name
            value = event[name]
            plaintext = value if isinstance(value, str) else canonical_text(value)
            opened = commitment(bytes.fromhex(entry["salt"]), plaintext).hex()
            ok = ok and entry["state"] == "open" and opened == entry["commitment"]
            ok = ok and vector["erased"][name] is None
            ok = ok and vector["erased"]["sealed"][name]["state"] == "erased"
        print(f"vector v2-{number}: {'ok' if ok else 'MISMATCH'} {vector['event_hash']}")
        failures += not ok
        prev = vector["event_hash"]
    return failures


def check_json_vectors(path):
    """docs/vectors/json-v1.json: what each input is stored as, or the field it is refused at."""
    vectors = json.loads(path.read_text(encoding="utf-8"))
    failures = 0
    for case in vectors["canonical"]:
        parsed = parse_input(case["input"])
        got = canonical_text(parsed) if not refused_paths(parsed, "metadata") else None
        ok = got == case["canonical"]
        if not ok:
            print(f"json {case['input']}: MISMATCH {got!r} != {case['canonical']!r}")
        failures += not ok
    for case in vectors["refused"]:
        paths = refused_paths(parse_input(case["input"]), "metadata")
        ok = paths == [case["field"]]
        if not ok:
            print(f"json {case['input']}: MISMATCH refused at {paths}, expected {case['field']}")
        failures += not ok
    for case in vectors["timestamps_accepted"]:
        ok = nanos(case["input"]) == case["timestamp_ns"]
        if not ok:
            print(f"timestamp {case['input']}: MISMATCH {nanos(case['input'])}")
        failures += not ok
    for case in vectors["timestamps_refused"]:
        try:
            got = nanos(case["input"])
        except Refused as refused:
            got = refused.args[0]
        ok = got == case["field"]
        if not ok:
            print(f"timestamp {case['input']}: MISMATCH {got}")
        failures += not ok
    total = sum(len(vectors[kind]) for kind in
                ("canonical", "refused", "timestamps_accepted", "timestamps_refused"))
    print(f"json-v1: {total - failures} of {total} ok")
    return failures


SAMPLING_DOMAIN = b"sealtrail-sampling-v1\n"


def sampling_point(key):
    # "Sampling": the first 8 bytes of SHA-256(domain || key), big-endian, modulo 1,000,000.
    digest = hashlib.sha256(SAMPLING_DOMAIN + key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 1_000_000


def rate_ppm(rate):
    # round(rate x 1,000,000), half away from zero (Python's round() is half-to-even).
    scaled = decimal.Decimal(repr(rate)) * 1_000_000
    return int(scaled.quantize(decimal.Decimal(1), rounding=decimal.ROUND_HALF_UP))


def check_sampling_vectors(path):
    vectors = json.loads(path.read_text(encoding="utf-8"))
    failures = 0
    for case in vectors["cases"]:
        point = sampling_point(case["key"])
        kept = {cls: point < rate_ppm(rate) for cls, rate in vectors["rates"].items()}
        ok = point == case["point"] and kept == case["kept"]
        if not ok:
            print(f"sampling {case['key']!r}: MISMATCH point {point} kept {kept}")
        failures += not ok
    print(f"sampling-v1: {len(vectors['cases']) - failures} of {len(vectors['cases'])} ok")
    return failures


def main():
    vectors_dir = pathlib.Path(__file__).with_name("vectors")
    path = vectors_dir / "event-v1.json"
    failures = check_json_vectors(vectors_dir / "json-v1.json")
    failures += check_sampling_vectors(vectors_dir / "sampling-v1.json")
    failures += check_v2_vectors(vectors_dir / "event-v2.json")
    prev = "00" * 32
    for number, vector in enumerate(parse_input(path.read_text(encoding="utf-8")), 1):
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
