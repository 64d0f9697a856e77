"""Findings -> text, JSON, SARIF 2.1.0, GitHub annotations, JUnit XML. Pure functions of a
CompileResult; no I/O."""

from __future__ import annotations

import json
from xml.sax.saxutils import escape, quoteattr

from governance.compiler import SINGLE_FILE_NOTE, CompileResult
from governance.ir import BITS

FORMATS = ("text", "json", "sarif", "github", "junit")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
GITHUB_MAX_PER_SEVERITY = 10


def render(result: CompileResult, fmt: str, *, policy_revision: str | None = None) -> str:
    if fmt == "text":
        return text(result)
    if fmt == "json":
        return json.dumps(report_dict(result, policy_revision=policy_revision), indent=2) + "\n"
    if fmt == "sarif":
        return json.dumps(sarif(result), indent=2) + "\n"
    if fmt == "github":
        return github(result)
    if fmt == "junit":
        return junit(result)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def report_dict(result: CompileResult, *, policy_revision: str | None = None) -> dict:
    out = result.as_dict()
    out["policy_revision"] = policy_revision
    if result.mode == "single-file":
        out["note"] = SINGLE_FILE_NOTE
    return out


def text(result: CompileResult) -> str:
    lines = [f"{f.file}:{f.line} {f.severity} {f.kind} {f.code}: {f.message}" for f in result.findings]
    lines.append("chain: " + " -> ".join(s.name for s in result.chain))
    lines.append(
        "bits: " + " ".join(f"{name}={'on' if result.bits[name] else 'off'}({value})" for name, value in BITS)
    )
    c = result.counts()
    lines.append(f"findings: {c['error']} error, {c['warning']} warning, {c['info']} info")
    claimed = "none" if result.claimed_score is None else f"{result.claimed_score}/255"
    lines.append(f"score: {result.score}/255 tier: {result.tier} claimed: {claimed}")
    if result.mode == "single-file":
        lines.append(f"mode: {SINGLE_FILE_NOTE}")
    lines.append("valid" if result.valid else "INVALID")
    return "\n".join(lines) + "\n"


def sarif(result: CompileResult) -> dict:
    codes = sorted({f.code for f in result.findings})
    index = {c: i for i, c in enumerate(codes)}
    rules = [
        {
            "id": c,
            "name": c.title().replace("_", ""),
            "shortDescription": {"text": c.replace("_", " ").lower()},
        }
        for c in codes
    ]
    results = []
    for f in result.findings:
        results.append(
            {
                "ruleId": f.code,
                "ruleIndex": index[f.code],
                "level": _LEVEL.get(f.severity, "note"),
                "message": {"text": f.message},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": f.file},
                            "region": {"startLine": max(1, f.line)},
                        }
                    }
                ],
                "partialFingerprints": {"canonicFinding/v1": f.fingerprint},
                "properties": {"kind": f.kind, "bit": f.bit, "constraint": f.constraint},
            }
        )
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "canonic-validate", "version": "0.1.0", "rules": rules}},
                "results": results,
                "properties": {
                    "score": result.score,
                    "bits": result.bits,
                    "mode": result.mode,
                    "sourcesDigest": result.sources_digest,
                },
            }
        ],
    }


def _gh_escape(s: str, prop: bool = False) -> str:
    s = s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        s = s.replace(":", "%3A").replace(",", "%2C")
    return s


def github(result: CompileResult) -> str:
    """Workflow commands, errors first, at most 10 per severity (GitHub shows no more), then a
    summary line."""
    out: list[str] = []
    for sev, cmd in (("error", "error"), ("warning", "warning"), ("info", "notice")):
        items = [f for f in result.findings if f.severity == sev]
        for f in items[:GITHUB_MAX_PER_SEVERITY]:
            out.append(
                f"::{cmd} file={_gh_escape(f.file, True)},line={max(1, f.line)},title={_gh_escape(f.code, True)}::{_gh_escape(f.message)}"
            )
        if len(items) > GITHUB_MAX_PER_SEVERITY:
            out.append(
                f"::{cmd}::{len(items) - GITHUB_MAX_PER_SEVERITY} more {sev} finding(s); see the SARIF report"
            )
    c = result.counts()
    out.append(
        f"canonic validate: score {result.score}/255, {c['error']} error(s), {c['warning']} warning(s)"
        + (f" ({SINGLE_FILE_NOTE})" if result.mode == "single-file" else "")
    )
    return "\n".join(out) + "\n"


def junit(result: CompileResult) -> str:
    """One testsuite for the scope, one testcase per bit; a failure lists that bit's errors."""
    cases, failures = [], 0
    for name, value in BITS:
        errs = [f for f in result.errors if f.bit == name or (name == "OPERATIONS" and not result.bits[name])]
        body = ""
        if not result.bits[name]:
            failures += 1
            detail = "\n".join(f"{f.file}:{f.line} {f.code}: {f.message}" for f in errs) or "files missing"
            body = f"<failure message={quoteattr(f'{name} ({value}) is off')}>{escape(detail)}</failure>"
        cases.append(
            f"  <testcase classname={quoteattr(result.scope.name)} name={quoteattr(f'{name} ({value})')}>{body}</testcase>"
        )
    head = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>\n<testsuite name={quoteattr(result.scope.name)} '
        f'tests="{len(BITS)}" failures="{failures}" errors="0">'
    )
    return head + "\n" + "\n".join(cases) + "\n</testsuite>\n</testsuites>\n"
