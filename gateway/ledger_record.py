"""What a decision-ledger record may hold: a whitelist of fields, scalar values only, and every
string scrubbed of anything that looks like a credential. Prompt text (``messages``, ``prompt``)
and any other field not named here is never written."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

# Present in every record (null when the caller has no value).
FIELDS: tuple[str, ...] = (
    "decision_id",
    "time",
    "principal",
    "action",
    "model",
    "provider",
    "instance",
    "allow",
    "rule_ids",
    "policy_revision",
    "trace_id",
    "request_id",
    "outcome",
    "latency_ms",
)
# Written only when the caller gives them.
OPTIONAL_FIELDS: tuple[str, ...] = (
    "reason_code",
    "status",
    "attempts",
    "error_type",
    "input_tokens",
    "output_tokens",
)
MASK = "[masked]"
MAX_STRING = 1024
MAX_LIST = 64

_SECRET_PATTERNS = re.compile(
    "|".join(
        (
            r"(?i:\bbearer\s+[A-Za-z0-9._~+/=-]+)",
            r"(?i:\bbasic\s+[A-Za-z0-9+/=]{8,})",
            r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
            r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{12,}",
            r"\bAKIA[0-9A-Z]{16}\b",
            r"\bgh[pousr]_[A-Za-z0-9]{20,}",
            r"(?i:\b(?:api[_-]?key|secret|password|passwd|token|authorization)\b\s*[:=]\s*\S+)",
        )
    )
)
# Hex digests, trace ids and uuids cannot match any pattern above (no space, ':', '=', '_' or the
# letters the prefixes need): skip the scan for them. Exact known secrets are still replaced.
_HEXLIKE = re.compile(r"[0-9a-fA-F-]*")
_SECRET_ENV_NAME = re.compile(r"(?i)(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)")


def known_secrets(jwt_secret: str | None, env: Mapping[str, str]) -> tuple[str, ...]:
    """Exact values to scrub: the JWT secret and every env value whose name says it is a secret."""
    values = {jwt_secret} if jwt_secret else set()
    values |= {v for k, v in env.items() if _SECRET_ENV_NAME.search(k) and len(v) >= 8}
    # Longest first, so a secret containing another is replaced whole.
    return tuple(sorted(values, key=len, reverse=True))


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    if not _HEXLIKE.fullmatch(text):
        text = _SECRET_PATTERNS.sub(MASK, text)
    if len(text) > MAX_STRING:
        text = text[:MAX_STRING] + "..."
    return text


def _scalar(value: Any, secrets: tuple[str, ...]) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return mask_text(value, secrets)
    return mask_text(str(value), secrets)


def _value(value: Any, secrets: tuple[str, ...]) -> Any:
    t = type(value)  # exact-type fast path: this runs for every field of every record
    if t is str:
        return mask_text(value, secrets)
    if value is None or t is bool or t is int:
        return value
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
        return [_scalar(v, secrets) for v in items[:MAX_LIST]]
    if isinstance(value, Mapping):
        return None  # nested objects are not part of the record shape
    return _scalar(value, secrets)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def build_record(data: Mapping[str, Any], secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """The whitelisted, masked body of a record (without the chain fields)."""
    rec: dict[str, Any] = {name: _value(data.get(name), secrets) for name in FIELDS}
    for name in OPTIONAL_FIELDS:
        if name in data:
            rec[name] = _value(data[name], secrets)
    t = data.get("time")
    if isinstance(t, datetime):
        t = t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)
        rec["time"] = t.isoformat(timespec="microseconds").replace("+00:00", "Z")
    elif not rec["time"]:
        rec["time"] = now_iso()
    if not rec["decision_id"]:
        rec["decision_id"] = uuid.uuid4().hex
    if isinstance(rec["rule_ids"], str):
        rec["rule_ids"] = [rec["rule_ids"]]
    return rec
