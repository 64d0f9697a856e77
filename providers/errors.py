"""The providers package's error tree. Every adapter translates its vendor's errors into these."""

from __future__ import annotations

BILLING_WARNING = "Could not confirm billing stopped. Check your provider dashboard."


class ProviderError(Exception):
    """Base of every error the providers package raises."""


class ProviderUnavailable(ProviderError):
    """The adapter cannot run here (missing package, model, credentials); says how to fix it."""

    def __init__(self, provider: str, reason: str, hint: str | None = None) -> None:
        self.provider = provider
        self.reason = reason
        self.hint = hint
        message = f"provider {provider!r} is unavailable: {reason}"
        if hint:
            message += f". {hint}"
        super().__init__(message)


class Refused(ProviderError):
    """A request the adapter will not carry out (bad spec, over budget); nothing was created."""


class Unsupported(ProviderError):
    """An operation this provider does not have (for example SSH on local instances)."""


class InstanceNotFound(ProviderError):
    def __init__(self, instance_id: str, provider: str) -> None:
        self.instance_id = instance_id
        super().__init__(f"Instance {instance_id} not found on provider {provider!r}.")


class InstanceTerminated(ProviderError):
    """The instance is TERMINATED; ``consequence`` says what that means for the verb asked."""

    def __init__(self, instance_id: str, consequence: str = "Nothing to download.") -> None:
        self.instance_id = instance_id
        super().__init__(f"Instance {instance_id} is terminated. {consequence}")


class IllegalTransition(ProviderError):
    def __init__(self, current: object, target: object) -> None:
        self.current = current
        self.target = target
        super().__init__(f"illegal lifecycle transition {current} -> {target}")


class DeadlineExceeded(ProviderError):
    """A bounded wait ran out of time (the poll loop raises it; operations translate it)."""

    def __init__(self, what: str, seconds: float, last: object = None) -> None:
        self.what = what
        self.seconds = seconds
        self.last = last
        super().__init__(f"{what} did not finish within {seconds:g} s (last seen: {last})")


class SpinupTimeout(ProviderError):
    """Spinup passed its deadline; the instance was moved to TERMINATED and cleaned up."""


class SpinupFailed(ProviderError):
    """The instance failed before RUNNING (allocation failure, server exited); it was cleaned up."""


class TeardownFailed(ProviderError):
    """One or more instances could not be destroyed."""


class BillingUnconfirmed(ProviderError):
    """Billing could not be confirmed stopped (raised only where a caller asks for strictness)."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        super().__init__(f"Instance {instance_id}: {BILLING_WARNING}")


class PullFailed(ProviderError):
    """A download from an instance failed (missing path, path outside the instance, timeout)."""


class LockTimeout(ProviderError):
    """Another process held the identity lock past the deadline."""
