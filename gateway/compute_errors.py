"""The providers package's errors, translated at the seam into the gateway's one error shape."""

from __future__ import annotations

from typing import Any

from gateway.errors import Forbidden, GatewayError
from governance.decision import Decision
from providers import errors as pe
from providers.errors import InstanceNotFound, ProviderError, ProviderUnavailable

# (error class, HTTP status, code); the first match wins, so subclasses come first.
_TABLE: tuple[tuple[type[pe.ProviderError], int, str], ...] = (
    (pe.ProviderUnavailable, 503, "provider_unavailable"),
    (pe.InstanceNotFound, 404, "instance_not_found"),
    (pe.InstanceTerminated, 409, "instance_terminated"),
    (pe.Unsupported, 400, "unsupported"),
    (pe.Refused, 409, "refused"),
    (pe.LockTimeout, 409, "spinup_in_progress"),
    (pe.SpinupTimeout, 504, "spinup_timeout"),
    (pe.DeadlineExceeded, 504, "deadline_exceeded"),
    (pe.SpinupFailed, 502, "spinup_failed"),
    (pe.TeardownFailed, 502, "teardown_failed"),
    (pe.BillingUnconfirmed, 502, "billing_unconfirmed"),
    (pe.PullFailed, 400, "pull_failed"),
)


def translate(exc: pe.ProviderError) -> GatewayError:
    """A provider error as an OpenAI-shaped GatewayError with a specific status and code."""
    status, code = 502, "provider_error"
    for kind, kind_status, kind_code in _TABLE:
        if isinstance(exc, kind):
            status, code = kind_status, kind_code
            break
    headers = {"x-should-retry": "false"}
    if status in (503, 409) and code in ("provider_unavailable", "spinup_in_progress"):
        headers["Retry-After"] = "5"
    param = "instance_id" if code in ("instance_not_found", "instance_terminated") else None
    return GatewayError(str(exc), status=status, code=code, param=param, headers=headers)


# How a CLI run ends: 2 could not run (bad arguments, bad settings or scope, provider or ledger
# unavailable), 1 refused by policy or the provider, or the operation failed.
_COULD_NOT_RUN_503 = frozenset({"provider_unavailable", "ledger_unavailable", "ledger_locked"})
_FAILED_400 = frozenset({"unsupported", "pull_failed"})  # the verb ran and could not be carried out


def exit_code(err: GatewayError) -> int:
    if err.status == 400 and err.code not in _FAILED_400:
        return 2
    if err.status == 503 and err.code in _COULD_NOT_RUN_503:
        return 2
    return 1


def denial(decision: Decision) -> Forbidden:
    reason = "; ".join(decision.reasons) or decision.reason_code
    rules = f" (rule {', '.join(decision.rule_ids)})" if decision.rule_ids else ""
    return Forbidden(f"denied by policy: {reason}{rules}", code=decision.reason_code,
                     headers={"x-should-retry": "false", "x-canonic-decision-id": decision.id})


def unavailable(name: str, availability: Any) -> ProviderError:
    return ProviderUnavailable(name, availability.reason, availability.install_hint)


def not_found(instance_id: str, providers: str) -> ProviderError:
    return InstanceNotFound(instance_id, providers)


class NullSpan:
    def __enter__(self) -> NullSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_attribute(self, key: str, value: object) -> None:
        return None


class AdmissionDenied(Exception):
    """Raised in the worker when the count cap, checked again right before the create, denies."""

    def __init__(self, decision: Decision, facts: Any) -> None:
        super().__init__(decision.reason_code)
        self.decision = decision
        self.facts = facts
