"""Verification of compact JWS tokens (JWTs) with PyJWT, strict about everything odd.

- ES256: IAP's signed header `x-goog-iap-jwt-assertion` (keys published as a JWK set).
- RS256: Google ID tokens and service-account-signed JWTs (the test fakes of Google's side).

PyJWT does the cryptography and the claim checks; this module only adds what it leaves to the
caller: the key is looked up by `kid` in our own cached key set, the algorithm comes from the
caller's allow-list (so `none` and algorithm confusion are refused), `exp`, `iat`, `iss` and
`aud` are required, and *every* failure, including inputs PyJWT itself does not expect (deeply
nested JSON, numbers too large to convert, a `kid` that is not a string), becomes `TokenError`,
which the server answers with 401, never 500.

Signing lives in `tests/support/jws.py`: the code that verifies is not the code that signs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jwt

# IAP assertions are about 1 KB; anything this big is not one, and is refused before parsing.
MAX_TOKEN_BYTES = 16 * 1024
# Clock skew we tolerate on exp/iat/nbf. Google's own verifier (google.oauth2.id_token) allows
# 0-300 s and defaults to 0; a few seconds of drift between IAP and the instance is normal.
DEFAULT_LEEWAY_SECONDS = 30
REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud")

PublicKey = Any  # a cryptography public key object, as PyJWT's PyJWK.key returns


class TokenError(ValueError):
    """The token is malformed, unsigned, badly signed, or its claims do not hold."""


def keys_from_jwks(document: Mapping[str, Any]) -> dict[str, PublicKey]:
    """kid -> public key, for every key in a JWK set; keys we cannot use are skipped."""
    keys: dict[str, PublicKey] = {}
    entries = document.get("keys") if isinstance(document, Mapping) else None
    for jwk in entries if isinstance(entries, list) else []:
        if not isinstance(jwk, Mapping) or not isinstance(jwk.get("kid"), str):
            continue
        try:
            keys[jwk["kid"]] = jwt.PyJWK(dict(jwk)).key
        except (jwt.PyJWTError, KeyError, ValueError, TypeError):
            continue
    return keys


def unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header, parsed but not trusted: only to pick the key."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
        raise TokenError("token is not a compact JWS of reasonable size")
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError, OverflowError) as e:
        raise TokenError(f"token header is malformed: {_reason(e)}") from None
    return header


def verify(
    token: str,
    key_for: Callable[[str], PublicKey | None],
    *,
    algorithms: Iterable[str],
    audience: str | Iterable[str],
    issuers: Iterable[str],
    leeway: int = DEFAULT_LEEWAY_SECONDS,
) -> dict[str, Any]:
    """Verify signature and claims; return the claims or raise TokenError saying why."""
    allowed = list(algorithms)
    header = unverified_header(token)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in allowed:
        raise TokenError(f"algorithm {alg!r} is not allowed (expected {', '.join(allowed)})")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenError("token has no key id (kid)")
    key = key_for(kid)
    if key is None:
        raise TokenError(f"unknown key id {kid!r}")
    aud = [audience] if isinstance(audience, str) else list(audience)
    try:
        return jwt.decode(
            token,
            key,
            algorithms=allowed,
            audience=aud,
            issuer=list(issuers),
            leeway=leeway,
            options={"require": list(REQUIRED_CLAIMS), "strict_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token has expired") from None
    except jwt.ImmatureSignatureError:
        raise TokenError("token is not valid yet (iat or nbf in the future)") from None
    except jwt.MissingRequiredClaimError as e:
        raise TokenError(f"token has no {e.claim!r} claim") from None
    except jwt.InvalidAudienceError:
        raise TokenError("audience does not match") from None
    except jwt.InvalidIssuerError:
        raise TokenError("issuer is not accepted") from None
    except jwt.InvalidSignatureError:
        raise TokenError("signature is invalid") from None
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError, OverflowError) as e:
        raise TokenError(f"token is malformed: {_reason(e)}") from None


def _reason(e: BaseException) -> str:
    # Never echo attacker-sized input back: one short line.
    return (str(e).splitlines() or [type(e).__name__])[0][:120] or type(e).__name__
