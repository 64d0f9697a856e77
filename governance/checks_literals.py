"""The no_literals check: credential-like strings anywhere; URL, hostname and IP literals
outside surface routes (lines parsed as ``web_*:`` / ``magic:`` routes) and LEARNING sources.
Every pattern is linear in the line's length."""

from __future__ import annotations

import re
from collections.abc import Iterable

from governance.checks_docs import URL_RE, F
from governance.decision import ACTIONS
from governance.ir import Finding, Scope
from governance.parse import Doc

_HOSTISH = re.compile(r"[A-Za-z0-9.-]+")
# A dotted name whose last label is alphabetic (>= 2 letters) is a host, unless that label is
# one of these file extensions (README.md, ir.py, pyproject.toml ...).
FILE_EXTENSIONS = frozenset(
    {
        "md", "py", "pyi", "json", "jsonl", "toml", "yaml", "yml", "txt", "sh", "html", "htm", "css",
        "js", "ts", "cfg", "ini", "lock", "log", "csv", "tsv", "xml", "sarif", "gguf", "pem", "key",
        "crt", "env", "gz", "tar", "zip", "whl", "png", "jpg", "svg", "pdf", "rs", "go", "cpp", "hpp",
    }
)  # fmt: skip
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
        if m.end() < len(text) and text[m.end()] in "_(":
            continue  # an identifier (Settings.binding_values, gateway.app(...)), not a host
        if m.start() > 0 and text[m.start() - 1] == "_":
            continue
        token = m.group(0).strip(".-").lower()
        if token in ACTIONS:
            continue  # a governed action name (inference.chat), declared by the decision model
        if token == "localhost":
            return "hostname"
        labels = token.split(".")
        if len(labels) < 2 or not all(labels):
            continue
        if len(labels) == 4 and all(x.isdigit() and len(x) <= 3 and int(x) <= 255 for x in labels):
            return "IP address"
        last = labels[-1]
        if len(last) >= 2 and last.isascii() and last.isalpha() and last not in FILE_EXTENSIONS:
            return "hostname"
    return None


def surface_lines(scopes: Iterable[Scope]) -> frozenset[tuple[str, int]]:
    """(file, line) of the lines parsed as surface routes (``web_*:`` or ``magic:`` keys)."""
    return frozenset(
        (r.file, r.line)
        for s in scopes
        for r in s.surface_routes
        if r.key == "magic" or r.key.startswith("web_")
    )


def literals(docs: Iterable[Doc], exempt: frozenset[tuple[str, int]], bit_for) -> list[Finding]:
    """Secrets anywhere; URL, host and IP literals except the ``exempt`` surface-route lines and
    LEARNING sources."""
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
            if (doc.path, i + 1) in exempt:
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
