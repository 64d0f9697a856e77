"""The providers package's errors, translated at the seam into the gateway's one error shape."""

from __future__ import annotations

from gateway.errors import GatewayError
from providers import errors as pe

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


# How a CLI run ends for each status: 1 refused or failed, 2 could not run.
def exit_code(err: GatewayError) -> int:
    return 2 if err.status in (503,) and err.code in ("provider_unavailable", "ledger_unavailable") else 1
