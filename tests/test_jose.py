"""JWS signing and verification: cross-checked against google-auth's own verifier."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from google.auth import crypt
from google.auth import jwt as google_jwt

from deployer import jose


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _claims(**extra):
    now = int(time.time())
    return {
        "iss": "https://accounts.google.com",
        "aud": "https://svc",
        "iat": now,
        "exp": now + 600,
        "sub": "1",
        **extra,
    }


def test_rs256_tokens_verify_with_google_auth(rsa_key):
    token = jose.sign(_claims(), rsa_key, "k1")
    from cryptography.hazmat.primitives import serialization

    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = google_jwt.decode(token, certs={"k1": pem.decode()}, audience="https://svc")
    assert claims["sub"] == "1"


def test_es256_round_trip_and_google_auth_agrees():
    key = ec.generate_private_key(ec.SECP256R1())
    token = jose.sign(_claims(iss="https://cloud.google.com/iap"), key, "e1")
    jwk = jose.jwk_from_public_key(key.public_key(), "e1")
    keys = jose.keys_from_jwks({"keys": [jwk]})
    claims = jose.verify(
        token,
        keys.get,
        algorithms=["ES256"],
        audience="https://svc",
        issuers=["https://cloud.google.com/iap"],
    )
    assert claims["sub"] == "1"
    from cryptography.hazmat.primitives import serialization

    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert crypt.ES256Verifier.from_string(pem).verify(
        token.rsplit(".", 1)[0].encode(), jose.b64url_decode(token.rsplit(".", 1)[1])
    )


def test_algorithm_is_taken_from_the_allow_list_not_the_token(rsa_key):
    token = jose.sign(_claims(), rsa_key, "k1")
    with pytest.raises(jose.TokenError, match="not allowed"):
        jose.verify(
            token,
            lambda kid: rsa_key.public_key(),
            algorithms=["ES256"],
            audience="https://svc",
            issuers=["https://accounts.google.com"],
        )


def test_each_claim_is_checked(rsa_key):
    pub = rsa_key.public_key()

    def check(claims, **kw):
        return jose.verify(
            jose.sign(claims, rsa_key, "k"),
            lambda kid: pub,
            algorithms=["RS256"],
            audience="https://svc",
            issuers=["https://accounts.google.com"],
            **kw,
        )

    now = int(time.time())
    with pytest.raises(jose.TokenError, match="expired"):
        check(_claims(exp=now - 60))
    assert check(_claims(exp=now - 10))  # within the default 30 s clock skew
    with pytest.raises(jose.TokenError, match="audience"):
        check(_claims(aud="https://other"))
    with pytest.raises(jose.TokenError, match="issuer"):
        check(_claims(iss="https://evil"))
    with pytest.raises(jose.TokenError, match="not valid yet"):
        check(_claims(iat=now + 600))
    claims = _claims()
    del claims["exp"]
    with pytest.raises(jose.TokenError, match="no expiry"):
        check(claims)
