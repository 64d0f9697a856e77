"""Bearer JWT -> Principal. python-jose with an explicit algorithm allowlist; nothing else."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fastapi import Request
from jose import jwt
from jose.exceptions import ExpiredSignatureError, JWTClaimsError, JWTError

from gateway.errors import Forbidden, Unauthorized
from gateway.settings import Settings

SCOPES = ("inference", "compute:read", "compute:write", "governance:read")
_SYMMETRIC = {"HS256", "HS384", "HS512"}
_ASYMMETRIC = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}


@dataclass(frozen=True)
class Principal:
    sub: str
    scopes: frozenset[str]
    token_id: str | None = None


class Verifier:
    """Verifies bearer tokens against one key family: HS with a shared secret, or RS/ES with a
    public key. Mixing families is refused at construction, which rules out HS/RS confusion."""

    def __init__(self, settings: Settings) -> None:
        algs = _algorithms(settings)
        if not algs or any(a not in _SYMMETRIC | _ASYMMETRIC for a in algs):
            raise ValueError(f"unsupported JWT algorithms {algs}; allowed: {sorted(_SYMMETRIC | _ASYMMETRIC)}")
        if set(algs) & _SYMMETRIC and set(algs) & _ASYMMETRIC:
            raise ValueError("JWT algorithms mix HMAC and public-key families; choose one")
        self.algorithms = algs
        if set(algs) <= _SYMMETRIC:
            self.key = settings.jwt_secret
        else:
            self.key = settings.jwt_public_key
        self.audience = settings.jwt_audience
        self.issuer = settings.jwt_issuer
        self.leeway = settings.jwt_leeway_s
        # Verified tokens, kept until they expire: signature checks cost ~80 us each and a client
        # reuses one token for many calls. Bounded; an entry is dropped once past its exp.
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = 1024

    @property
    def configured(self) -> bool:
        return bool(self.key)

    def verify(self, token: str) -> Principal:
        hit = self._verified.get(token)
        if hit is not None:
            principal, expires = hit
            if time.time() <= expires:
                return principal
            del self._verified[token]
        principal, exp = self._verify(token)
        self._verified[token] = (principal, exp + self.leeway)
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        if not self.key:
            raise Unauthorized("no token verification key is configured on this gateway", code="invalid_api_key")
        try:
            header = jwt.get_unverified_header(token)
        except JWTError:
            raise Unauthorized("malformed bearer token", code="invalid_api_key") from None
        if str(header.get("alg", "")).upper() not in self.algorithms:
            raise Unauthorized("token algorithm is not allowed", code="invalid_api_key")
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                options={"require_exp": True, "require_sub": True, "require_aud": True, "require_iss": True,
                         "leeway": self.leeway},
            )
        except ExpiredSignatureError:
            raise Unauthorized("token has expired", code="token_expired") from None
        except JWTClaimsError as exc:
            raise Unauthorized(f"token claims rejected: {exc}", code="invalid_api_key") from None
        except JWTError:
            raise Unauthorized("invalid bearer token", code="invalid_api_key") from None
        scopes = claims.get("scope", "")
        if isinstance(scopes, str):
            scope_set = frozenset(scopes.split())
        elif isinstance(scopes, list):
            scope_set = frozenset(str(s) for s in scopes)
        else:
            scope_set = frozenset()
        principal = Principal(sub=str(claims["sub"]), scopes=scope_set, token_id=claims.get("jti"))
        return principal, float(claims["exp"])


def _algorithms(settings: Settings) -> list[str]:
    """The configured algorithms; when only a public key is set and ``jwt_algorithms`` was left at
    its default, the family is inferred from the key (RSA -> RS256, EC -> ES256/384/512 by curve)."""
    algs = [a.upper() for a in settings.jwt_algorithms]
    if "jwt_algorithms" in settings.model_fields_set or settings.jwt_secret or not settings.jwt_public_key:
        return algs
    return [key_algorithm(settings.jwt_public_key)]


def key_algorithm(pem: str) -> str:
    """The JWT algorithm a PEM public key (or certificate) verifies; ValueError for anything else."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    data = pem.strip().encode()
    try:
        key = (x509.load_pem_x509_certificate(data).public_key() if b"CERTIFICATE" in data
               else load_pem_public_key(data))
    except ValueError:
        raise ValueError("GATEWAY_JWT_PUBLIC_KEY is not a PEM public key or certificate") from None
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        if key.curve.name in by_curve:
            return by_curve[key.curve.name]
        raise ValueError(f"GATEWAY_JWT_PUBLIC_KEY uses the unsupported curve {key.curve.name}")
    raise ValueError(f"GATEWAY_JWT_PUBLIC_KEY is a {type(key).__name__}; use an RSA or EC (P-256/384/521) key")


def mint_token(settings: Settings, sub: str, scopes: Iterable[str], ttl_s: int) -> str:
    """Mint an HS256 token with the configured shared secret."""
    if not settings.jwt_secret:
        raise ValueError("no GATEWAY_JWT_SECRET is configured; cannot mint a token")
    scope_list = list(dict.fromkeys(s for s in scopes if s))
    unknown = [s for s in scope_list if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope(s) {unknown}; known scopes: {', '.join(SCOPES)}")
    if ttl_s <= 0:
        raise ValueError("ttl must be positive")
    now = int(time.time())
    claims = {
        "sub": sub,
        "scope": " ".join(scope_list),
        "iat": now,
        "exp": now + ttl_s,
        "aud": settings.jwt_audience,
        "iss": settings.jwt_issuer,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "missing bearer token: send 'Authorization: Bearer <JWT>'", code="invalid_api_key"
        )
    return token.strip()


def require(scope: str) -> Callable[[Request], Principal]:
    """A FastAPI dependency: the request's principal, which must hold ``scope``."""

    async def dependency(request: Request) -> Principal:
        state = request.app.state
        telemetry = getattr(state, "telemetry", None)
        if telemetry is None or not telemetry.recording_for(request):
            return _authorize(request, state.verifier, scope)
        with telemetry.span("auth", {"canonic.auth.scope": scope}) as span:
            principal = _authorize(request, state.verifier, scope)
            span.set_attribute("canonic.principal", principal.sub)
            return principal

    return dependency


def _authorize(request: Request, verifier: Verifier, scope: str) -> Principal:
    principal = verifier.verify(bearer_token(request))
    if scope not in principal.scopes:
        raise Forbidden(f"token lacks the '{scope}' scope", code="insufficient_scope")
    request.state.principal = principal
    return principal
