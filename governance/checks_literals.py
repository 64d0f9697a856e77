"""The no_literals check: credential-like strings anywhere; URL, hostname and IP literals
outside surface routes and LEARNING sources. Every pattern is linear in the line's length."""

from __future__ import annotations

import re
from collections.abc import Iterable

from governance.checks_docs import URL_RE, F
from governance.ir import Finding
from governance.parse import Doc

_HOSTISH = re.compile(r"[A-Za-z0-9.-]+")
TLDS = frozenset(
    {"com", "org", "net", "io", "ai", "dev", "cloud", "co", "xyz", "info", "biz", "internal", "local"}
)
SECRET_PATTERNS = (
    ("private key block", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("OpenAI-style API key", re.compile(r"\bsk-[A-Za-z0-9_-]{20,}")),
    ("GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}")),
    ("Slack token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}")),
    ("JSON web token", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")),
    ("bearer credential", re.compile(r"\bBearer\s+[A-Za-z0-9._~+/-]{16,}=*")),
    (
        "assigned secret",
        re.compile(
            r"(?i)\b(?:api[_-]?key|secret|token|password|passwd)\s*[:=]\s*['\"]?[A-Za-z0-9/+_.-]{16,}"
        ),
    ),
)


def host_literal(text: str) -> str | None:
    """'hostname' or 'IP address' when ``text`` holds one, else None."""
    for m in _HOSTISH.finditer(text):
        token = m.group(0).strip(".-").lower()
        if token == "localhost":
            return "hostname"
        labels = token.split(".")
        if len(labels) < 2 or not all(labels):
            continue
        if len(labels) == 4 and all(x.isdigit() and len(x) <= 3 and int(x) <= 255 for x in labels):
            return "IP address"
        if labels[-1] in TLDS:
            return "hostname"
    return None


def literals(docs: Iterable[Doc], spec_path: str, bit_for) -> list[Finding]:
    """Secrets anywhere; URL, host and IP literals except surface routes and LEARNING sources."""
    out: list[Finding] = []
    for doc in docs:
        learning = re.search(r"(^|/)LEARNING(-[^/]*)?\.md$", doc.path) is not None
        for i, raw in enumerate(doc.lines):
            if not raw.strip():
                continue
            for label, rx in SECRET_PATTERNS:
                if rx.search(raw):
                    out.append(
                        F(
                            "LITERAL_SECRET",
                            "no_literals",
                            bit_for(doc.path, "STRUCTURE"),
                            doc.path,
                            i + 1,
                            f"credential-like literal ({label}); declare a secret binding instead",
                        )
                    )
                    break
            text = raw
            if learning and raw.lstrip().startswith("|"):
                text = raw.rstrip().rstrip("|").rsplit("|", 1)[0]  # the Source cell may cite a URL
            if (
                doc.path == spec_path
                and doc.section[i].lower().startswith("routes")
                and "://" in raw
                and not raw.lstrip().startswith("|")
            ):
                continue  # a surface route
            what = "URL" if URL_RE.search(text) else host_literal(URL_RE.sub(" ", text))
            if what:
                out.append(
                    F(
                        "LITERAL_ENDPOINT",
                        "no_literals",
                        bit_for(doc.path, None),
                        doc.path,
                        i + 1,
                        f"{what} literal in a governance document; endpoints come from bindings",
                    )
                )
    return out
