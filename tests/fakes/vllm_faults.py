"""The fake vLLM's fault switches (``fake.faults``), changeable at run time from the test thread."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Faults:
    status: int | None = None  # answer completions with this status (500/502/503/429/...)
    fail_next: int = -1  # how many completion requests the status fault applies to; -1 = all
    body_style: str = "vllm"  # vllm | flat | plain: shape of the error body
    retry_after: str | None = None  # Retry-After header on a status fault
    retry_after_ms: str | None = None  # retry-after-ms header on a status fault
    first_byte_delay_ms: int = 0  # before the response headers (non-stream) / first content chunk
    slow_body_ms: int = 0  # non-stream: headers at once, body after this delay
    stall_after: int | None = None  # stream: after K chunks keep the socket open, send nothing
    cut_after: int | None = None  # stream: after K chunks end the body cleanly, no [DONE]
    reset_after: int | None = None  # stream: after K chunks abort the TCP connection
    inband_error_after: int | None = None  # stream: after K chunks an error event + [DONE]
    malformed_after: int | None = None  # stream: after K chunks one invalid JSON data line
    split_events: bool = False  # stream: write each event in two halves
    health_status: int = 200  # /health status (503 = engine dead)
    health_flap: bool = False  # /health alternates between 503 and health_status, call by call
    echo_request_id: bool = True  # echo the caller's x-request-id on completions
    chunk_delay_ms: int = 0  # stream: pause before every content chunk after the first
    huge_body_bytes: int = 0  # non-stream: answer with this many bytes, chunked (no Content-Length)
    models_id: str | None = None  # /v1/models reports this id instead of the served one
    models_max_len: int | None = None  # /v1/models reports this max_model_len instead
    api_key: str | None = None  # when set, /v1/* needs "Authorization: Bearer <key>"
