"""Every decision, once: the policy.decide span, the decision metrics, and the decision ledger
record. Routes call ``decide`` before acting and ``record`` once the outcome is known (a denial
at once, durably; an allowed inference when its response or stream ends, with bounded lag;
compute and governance actions durably)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import Request

from gateway.errors import GatewayError
from gateway.telemetry import (
    ATTR_DECISION_ALLOW,
    ATTR_DECISION_ID,
    ATTR_POLICY_REVISION,
    ATTR_PRINCIPAL,
    ATTR_RULE_IDS,
)
from governance.decision import Decision, Facts

log = logging.getLogger("canonic.audit")


def rule_label(decision: Decision) -> str:
    """The ``rule`` label of ``canonic_decisions_total`` for a decision, allowed or denied: its
    first rule id (``FILE:L<line>`` of a policy line), "" when it cites none. Rule ids come from the
    compiled policy, never from the caller, so the label set is bounded by the policy's rule count."""
    return decision.rule_ids[0] if decision.rule_ids else ""


def require_ledger(request: Request) -> None:
    """Fail closed: a governed action is refused (503) while the decision ledger cannot record."""
    ledger = getattr(request.app.state, "ledger", None)
    if ledger is not None:
        ledger.check_available()


def decide(request: Request, facts: Facts) -> Decision:
    """``policy.decide`` inside its own span; the decision id goes on the request for headers."""
    state = request.app.state
    policy = state.governance.policy
    telemetry = state.telemetry
    if telemetry.recording_for(request):
        with telemetry.span("policy.decide", {ATTR_PRINCIPAL: facts.principal or "", "canonic.action": facts.action}) as span:
            decision = policy.decide(facts)
            span.set_attributes({
                ATTR_DECISION_ID: decision.id,
                ATTR_DECISION_ALLOW: decision.allow,
                ATTR_RULE_IDS: list(decision.rule_ids),
                ATTR_POLICY_REVISION: decision.policy_revision,
                "canonic.decision.reason_code": decision.reason_code,
            })
    else:
        decision = policy.decide(facts)
    request.state.decision_id = decision.id
    return decision


def ledger_record(request: Request, decision: Decision, facts: Facts, outcome: dict[str, Any]) -> dict[str, Any]:
    usage = outcome.get("usage") or {}
    telemetry = request.app.state.telemetry
    return {
        "decision_id": decision.id,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "principal": facts.principal,
        "action": facts.action,
        "model": facts.model,
        "provider": outcome.get("provider") or facts.provider or decision.obligations.get("provider"),
        "instance": outcome.get("instance"),
        "allow": decision.allow,
        "reason_code": decision.reason_code,
        "rule_ids": list(decision.rule_ids),
        "policy_revision": decision.policy_revision,
        "trace_id": telemetry.request_trace_id(request),
        "request_id": getattr(request.state, "request_id", None),
        "outcome": "denied" if not decision.allow else outcome.get("result", "ok"),
        "status": outcome.get("status"),
        "attempts": outcome.get("attempts"),
        "latency_ms": outcome.get("latency_ms"),
        "input_tokens": usage.get("prompt_tokens"),
        "output_tokens": usage.get("completion_tokens"),
    }


async def record(request: Request, decision: Decision, facts: Facts, outcome: dict[str, Any],
                 *, durable: bool | None = None) -> None:
    """Metrics and the ledger record of one decision. ``durable`` defaults to True for denials and
    for everything but inference; a durable write that fails raises 503 (fail closed)."""
    state = request.app.state
    metrics = state.telemetry.metrics
    metrics.record_decision(facts.action, decision.allow, rule_label(decision))
    usage = outcome.get("usage")
    if usage and decision.allow:
        provider = outcome.get("provider") or ""
        metrics.record_tokens(facts.model or "", provider, usage.get("prompt_tokens") or 0,
                              usage.get("completion_tokens") or 0)
    if durable is None:
        durable = not decision.allow or not facts.action.startswith("inference.")
    ledger = getattr(state, "ledger", None)
    if ledger is None:
        return
    entry = ledger_record(request, decision, facts, outcome)
    try:
        await ledger.append(entry, durable=durable)
    except GatewayError:
        if durable:
            raise
        # A lagged inference record refused after the response is under way: the ledger counts
        # it as a drop and is now unavailable, so the next governed request is refused (503).
        log.warning("decision %s not recorded: the ledger is unavailable", decision.id)
