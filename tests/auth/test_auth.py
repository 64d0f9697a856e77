"""Bearer JWT verification over HTTP: algorithm allowlist, no HS/RS confusion, exp/aud/iss, scopes."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jose import jwt

from gateway.app import create_app
from gateway.auth import Verifier, mint_token
from gateway.settings import Settings

SECRET = "auth-test-secret-0123456789abcdef0123"


def _claims(**over):
    now = int(time.time())
    claims = {"sub": "alice", "scope": "governance:read", "iat": now, "exp": now + 300,
              "aud": "canonic-gateway", "iss": "canonic"}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture
def hs_client(tmp_path):
    settings = Settings(jwt_secret=SECRET, bindings_env={}, ledger_path=tmp_path / "l.jsonl", telemetry_enabled=False)
    with TestClient(create_app(settings)) as client:
        yield client


def _get(client, token):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.get("/governance", headers=headers)


def test_valid_token_is_accepted(hs_client):
    r = _get(hs_client, jwt.encode(_claims(), SECRET, algorithm="HS256"))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "token, code",
    [
        (None, "invalid_api_key"),
        ("not-a-jwt", "invalid_api_key"),
        (jwt.encode(_claims(exp=int(time.time()) - 3600), SECRET, algorithm="HS256"), "token_expired"),
        (jwt.encode(_claims(aud="someone-else"), SECRET, algorithm="HS256"), "invalid_api_key"),
        (jwt.encode(_claims(iss="evil"), SECRET, algorithm="HS256"), "invalid_api_key"),
        (jwt.encode(_claims(exp=None), SECRET, algorithm="HS256"), "invalid_api_key"),
        (jwt.encode(_claims(), "wrong-secret-0123456789abcdef", algorithm="HS256"), "invalid_api_key"),
        (jwt.encode(_claims(), SECRET, algorithm="HS512"), "invalid_api_key"),  # not in the allowlist
    ],
    ids=["missing", "malformed", "expired", "audience", "issuer", "no-exp", "bad-signature", "alg-not-allowed"],
)
def test_bad_tokens_are_401_openai_shaped(hs_client, token, code):
    r = _get(hs_client, token)
    assert r.status_code == 401, r.text
    err = r.json()["error"]
    assert err["type"] == "authentication_error" and err["code"] == code
    assert SECRET not in r.text


def test_alg_none_is_refused(hs_client):
    import base64
    import json

    def b64(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(_claims())}."
    assert _get(hs_client, token).status_code == 401


def test_missing_scope_is_403(hs_client):
    r = _get(hs_client, jwt.encode(_claims(scope="inference"), SECRET, algorithm="HS256"))
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "insufficient_scope"


def test_cached_token_still_expires():
    settings = Settings(jwt_secret=SECRET, jwt_leeway_s=0)
    verifier = Verifier(settings)
    token = mint_token(settings, "bob", ["inference"], 1)
    assert verifier.verify(token).sub == "bob"
    assert verifier.verify(token).sub == "bob"  # served from the cache
    time.sleep(2.1)
    with pytest.raises(Exception, match="expired"):
        verifier.verify(token)


def test_rs256_and_no_hs_rs_confusion(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    settings = Settings(jwt_public_key=public_pem, jwt_algorithms=["RS256"], bindings_env={},
                        ledger_path=tmp_path / "l.jsonl", telemetry_enabled=False)
    with TestClient(create_app(settings)) as client:
        assert _get(client, jwt.encode(_claims(), private_pem, algorithm="RS256")).status_code == 200
        # The classic confusion attack: an HS256 token "signed" with the public key as the secret.
        forged = _hs256_by_hand(_claims(), public_pem.encode())
        assert _get(client, forged).status_code == 401


def _hs256_by_hand(claims: dict, key: bytes) -> str:
    import base64
    import hashlib
    import hmac
    import json

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing}.{b64(hmac.new(key, signing.encode(), hashlib.sha256).digest())}"


def test_mixed_algorithm_families_are_refused():
    with pytest.raises(ValueError, match="mix"):
        Verifier(Settings(jwt_secret=SECRET, jwt_algorithms=["HS256", "RS256"]))


def test_token_cli_mints_a_token_the_gateway_accepts(hs_client, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "GATEWAY_JWT_SECRET": SECRET}
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "token", "--sub", "ci", "--scope",
                          "governance:read", "--ttl", "5m"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert _get(hs_client, out.stdout.strip()).status_code == 200
    bad = subprocess.run([sys.executable, "-m", "gateway.cli", "token", "--sub", "ci", "--scope", "root"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown scope" in bad.stderr


@pytest.mark.parametrize("missing", ["aud", "iss"])
def test_token_without_aud_or_iss_is_401(hs_client, missing):
    token = jwt.encode(_claims(**{missing: None}), SECRET, algorithm="HS256")
    r = _get(hs_client, token)
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"


def _pem(public_key) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _private_pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.mark.parametrize("kind, alg", [("rsa", "RS256"), ("p256", "ES256"), ("p384", "ES384")])
def test_public_key_alone_infers_its_algorithm(tmp_path, kind, alg):
    from cryptography.hazmat.primitives.asymmetric import ec

    key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa"
           else ec.generate_private_key(ec.SECP256R1() if kind == "p256" else ec.SECP384R1()))
    settings = Settings(jwt_public_key=_pem(key.public_key()), bindings_env={}, ledger_path=tmp_path / "l.jsonl",
                        telemetry_enabled=False)  # jwt_algorithms left at its default
    assert Verifier(settings).algorithms == [alg]
    with TestClient(create_app(settings)) as client:
        assert _get(client, jwt.encode(_claims(), _private_pem(key), algorithm=alg)).status_code == 200
        assert _get(client, jwt.encode(_claims(), "guess", algorithm="HS256")).status_code == 401


def test_unusable_public_key_is_refused_at_construction():
    with pytest.raises(ValueError, match="not a PEM public key"):
        Verifier(Settings(jwt_public_key="-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"))
