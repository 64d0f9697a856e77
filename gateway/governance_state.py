"""The gateway's compiled governance: the chain read from ``settings.scope_dir`` and compiled
(documents only, the same compile as ``canonic validate``), and the Policy built from it plus the
bindings' values. A chain with any error finding yields a Policy that refuses every governed
action; a missing or mistyped binding yields a Policy that refuses with ``binding_missing``;
``readiness()`` says which."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gateway.settings import BINDING_DEFAULTS, Settings
from governance.checks_spec import effective_bindings, env_values
from governance.compiler import CompileResult, compile_files, compile_policy
from governance.ir import Finding
from governance.policy import Policy
from governance.sources import SourceError, read_scope

ROOT_SCOPE = "MAGIC"


@dataclass
class GovernanceState:
    settings: Settings
    result: CompileResult | None
    policy: Policy
    load_error: str | None = None
    env_findings: tuple[Finding, ...] = ()  # the bindings' values (never quoted), from the Policy's rules
    last_validation: dict[str, Any] | None = None  # the startup compile of the gateway's own scope
    last_request_validation: dict[str, Any] | None = None  # the latest POST /validate

    def readiness(self) -> dict[str, Any]:
        if self.result is None:
            return {"ok": False, "detail": f"governance could not be read: {self.load_error}"}
        if not self.result.valid:
            errs = self.result.errors
            causes = [f for f in errs if f.code != "COVERAGE_DRIFT"] or list(errs)
            first = causes[0]
            codes = ", ".join(sorted({f.code for f in errs}))
            return {
                "ok": False,
                "detail": f"{len(errs)} error finding(s) in the governance chain ({codes}); first: "
                f"{first.file}:{first.line} {first.code}: {first.message}",
            }
        if self.policy.missing:
            first = self.env_findings[0] if self.env_findings else None
            cause = f"; first: {first.code} {first.message}" if first else ""
            return {
                "ok": False,
                "detail": f"{len(self.policy.missing)} binding problem(s): "
                f"{', '.join(self.policy.missing)}{cause}",
            }
        return {
            "ok": True,
            "detail": f"chain {' -> '.join(s.name for s in self.result.chain)} compiled, "
            f"score {self.result.score}/255, revision {self.policy.revision}",
        }

    def vendored_parents(self) -> dict[str, str]:
        """The parent scopes' files under ``canon/`` from the gateway's own scope directory."""
        if self.result is None:
            return {}
        prefix = self.settings.canon_dir.rstrip("/") + "/"
        return {p: t for s in self.result.chain for p, t in s.files.items() if p.startswith(prefix)}

    @staticmethod
    def validation_summary(result: CompileResult, *, mode: str = "scope") -> dict[str, Any]:
        out: dict[str, Any] = {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "mode": mode,
            "scope": result.scope.name,
            "valid": result.valid,
            "score": result.score if mode == "scope" else None,
            "counts": result.counts(),
            "sources_digest": result.sources_digest,
        }
        return out

    def record_validation(self, result: CompileResult, *, mode: str = "scope") -> None:
        """A caller's POST /validate; never replaces the startup compile's ``last_validation``."""
        self.last_request_validation = self.validation_summary(result, mode=mode)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ready": self.readiness()["ok"],
            "policy_revision": self.policy.revision,
            "sources_digest": self.policy.sources_digest,
            "last_validation": self.last_validation,
            "last_request_validation": self.last_request_validation,
        }
        if self.result is None:
            out["error"] = self.load_error
            return out
        r = self.result
        env = self.settings.binding_values()
        out.update(
            scope=r.scope.name,
            valid=r.valid,
            score=r.score,
            tier=r.tier,
            bits=dict(r.bits),
            counts=r.counts(),
            chain=[
                {
                    "name": s.name,
                    "dir": s.dir or ".",
                    "inherits": s.inherits,
                    "axiom": s.axiom,
                    "files": sorted(s.files),
                }
                for s in r.chain
            ],
            capabilities=sorted({c for s in r.chain for c in s.capabilities}),
            routes=[
                {"method": x.method, "path": x.path, "action": x.action, "id": f"{x.file}:L{x.line}"}
                for x in r.scope.routes
            ],
            bindings=[
                {
                    "name": b.name,
                    "kind": "secret" if b.secret else "var",
                    "type": b.type,
                    "required": not b.optional,
                    "present": bool((env.get(b.name) or "").strip()),
                    "source": "env"
                    if b.name in self.settings.bindings_env
                    else ("default" if b.name in BINDING_DEFAULTS else None),
                    "id": b.id,
                }
                for b in effective_bindings(r.chain).values()
            ],
            missing=list(self.policy.missing),
            binding_problems=[f.as_dict() for f in self.env_findings],
            errors=[f.as_dict() for f in r.errors],
        )
        return out


def load_governance(settings: Settings) -> GovernanceState:
    """Read and compile the scope at ``settings.scope_dir``; never raises."""
    try:
        files = read_scope(settings.scope_dir, settings.canon_dir)
    except SourceError as exc:
        return GovernanceState(
            settings, None, Policy.refusing(f"governance could not be read: {exc}"), load_error=str(exc)
        )
    env = settings.binding_values()
    try:
        result = compile_files(
            files,
            root=ROOT_SCOPE,
            canon_dir=settings.canon_dir,
            fallback_name=settings.scope_dir.resolve().name,
        )
        policy = compile_policy(result, env)
        env_findings = tuple(env_values(result.chain, env)) if result.valid else ()
    except Exception as exc:  # a compiler crash must not open the gateway
        reason = f"governance compiler failed: {exc.__class__.__name__}"
        return GovernanceState(settings, None, Policy.refusing(reason), load_error=reason)
    state = GovernanceState(settings, result, policy, env_findings=env_findings)
    state.last_validation = state.validation_summary(result)
    return state
