"""Token verification (deployer.server.jose, PyJWT) against tokens signed by tests/support/jws.py,
and the IAP key set's caching, single flight and backoff."""

from __future__ import annotations

import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from google.auth import crypt
from google.auth import jwt as google_jwt

from deployer.server import iap, jose
from deployer.server.iap import IapVerifier, KeyFetchError, KeySet
from deployer.server.settings import IAP_ISSUER
from tests.support import jws

AUD = "/projects/1/locations/us-central1/services/mlflow"


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def _claims(**extra):
    now = int(time.time())
    return {
        "iss": IAP_ISSUER,
        "aud": AUD,
        "iat": now,
        "exp": now + 600,
        "sub": "accounts.google.com:1",
        "email": "accounts.google.com:alice@example.com",
        **extra,
    }


def _verifier(ec_key) -> IapVerifier:
    jwks = {"keys": [jws.jwk_from_public_key(ec_key.public_key(), "e1")]}
    return IapVerifier(AUD, KeySet("http://keys", fetch=lambda url: jwks))


def test_signing_helpers_agree_with_google_auth(rsa_key, ec_key):
    """The test signer is itself checked against an independent verifier."""
    from cryptography.hazmat.primitives import serialization

    token = jws.sign(_claims(aud="https://svc"), rsa_key, "k1")
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert google_jwt.decode(token, certs={"k1": pem.decode()}, audience="https://svc")
    token = jws.sign(_claims(), ec_key, "e1")
    pem = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input, signature = token.rsplit(".", 1)
    assert crypt.ES256Verifier.from_string(pem).verify(
        signing_input.encode(), jws.b64url_decode(signature)
    )


def test_a_good_assertion_gives_the_bare_email(ec_key):
    who = _verifier(ec_key).verify(jws.sign(_claims(), ec_key, "e1"))
    assert who.email == "alice@example.com"


def test_algorithm_is_taken_from_the_allow_list_not_the_token(rsa_key):
    token = jws.sign(_claims(), rsa_key, "k1")
    with pytest.raises(jose.TokenError, match="not allowed"):
        jose.verify(
            token,
            lambda kid: rsa_key.public_key(),
            algorithms=["ES256"],
            audience=AUD,
            issuers=[IAP_ISSUER],
        )


def test_each_claim_is_checked(ec_key):
    v = _verifier(ec_key)
    now = int(time.time())

    def check(claims):
        return v.verify(jws.sign(claims, ec_key, "e1"))

    with pytest.raises(jose.TokenError, match="expired"):
        check(_claims(exp=now - 60))
    assert check(_claims(exp=now - 10))  # within the documented 30 s leeway
    with pytest.raises(jose.TokenError, match="audience"):
        check(_claims(aud="/projects/2/locations/x/services/y"))
    with pytest.raises(jose.TokenError, match="issuer"):
        check(_claims(iss="https://evil"))
    with pytest.raises(jose.TokenError, match="not valid yet"):
        check(_claims(iat=now + 600))
    for claim in jose.REQUIRED_CLAIMS:
        claims = _claims()
        del claims[claim]
        with pytest.raises(jose.TokenError, match=claim):
            check(claims)


BIG = "9" * 5000  # more digits than Python converts from text by default


def _odd_tokens(ec_key) -> dict[str, str]:
    good = jws.sign(_claims(), ec_key, "e1")
    h, p, s = good.split(".")
    claims = jws.encode_segments({}, _claims()).split(".")[1]
    nested = b"[" * 100_000 + b"]" * 100_000
    return {
        "alg as a list": jws.sign(_claims(), ec_key, "e1", alg=["ES256"]),
        "alg none": jws.encode_segments({"alg": "none", "kid": "e1"}, _claims()) + ".",
        "alg HS256 keyed with the public key": jws.encode_segments(
            {"alg": "HS256", "kid": "e1"}, _claims()
        )
        + ".c2ln",
        "kid as an object": jws.sign_raw(b'{"alg":"ES256","kid":{"a":1}}', p.encode(), ec_key),
        "kid missing": jws.sign_raw(b'{"alg":"ES256"}', p.encode(), ec_key),
        "unsigned": f"{h}.{p}.",
        "bad signature": f"{h}.{p}.{s[:-4]}AAAA",
        "signature too short": f"{h}.{p}.AAAA",
        "huge integer exp": jws.sign_raw(
            b'{"alg":"ES256","kid":"e1"}', f'{{"exp":{BIG},"iat":1}}'.encode(), ec_key
        ),
        "huge integer in header": jws.sign_raw(
            f'{{"alg":"ES256","kid":"e1","x":{BIG}}}'.encode(), p.encode(), ec_key
        ),
        "exp infinity": jws.sign_raw(
            b'{"alg":"ES256","kid":"e1"}',
            jws.b64url_decode(claims).replace(b'"exp":', b'"exp":1e999,"x":'),
            ec_key,
        ),
        "exp as text": jws.sign(_claims(exp="tomorrow"), ec_key, "e1"),
        "exp NaN": jws.sign_raw(b'{"alg":"ES256","kid":"e1"}', b'{"exp":NaN,"iat":1}', ec_key),
        "aud as an object": jws.sign(_claims(aud={"x": AUD}), ec_key, "e1"),
        "iss as a list": jws.sign(_claims(iss=[IAP_ISSUER]), ec_key, "e1"),
        "deeply nested header": jws.sign_raw(
            b'{"alg":"ES256","kid":"e1","x":' + nested + b"}", p.encode(), ec_key
        ),
        "deeply nested claims": jws.sign_raw(
            b'{"alg":"ES256","kid":"e1"}', b'{"x":' + nested[:4000] + b"}", ec_key
        ),
        "payload a list": jws.sign_raw(b'{"alg":"ES256","kid":"e1"}', b"[1,2]", ec_key),
        "header a string": jws.sign_raw(b'"ES256"', p.encode(), ec_key),
        "header not JSON": f"e30x.{p}.{s}",
        "not base64": "!!!.@@@.###",
        "two parts": f"{h}.{p}",
        "email missing": jws.sign(
            {k: v for k, v in _claims().items() if k != "email"}, ec_key, "e1"
        ),
        "email not text": jws.sign(_claims(email=["a@b.c"]), ec_key, "e1"),
        "empty": " ",
    }


def test_every_odd_token_is_a_token_error_never_a_crash(ec_key):
    v = _verifier(ec_key)
    for case, token in _odd_tokens(ec_key).items():
        with pytest.raises(jose.TokenError):
            v.verify(token)
            pytest.fail(case)


class FakeJwks:
    def __init__(self, ec_key, clock) -> None:
        self.doc = {"keys": [jws.jwk_from_public_key(ec_key.public_key(), "e1")]}
        self.fail = False
        self.calls = 0
        self.clock = clock
        self.gate: threading.Event | None = None

    def __call__(self, url):
        self.calls += 1
        if self.gate is not None:
            assert self.gate.wait(5)
        if self.fail:
            raise OSError("connection refused")
        return self.doc


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failed_fetch_keeps_the_last_good_keys_and_backs_off(ec_key):
    clock = Clock()
    fetch = FakeJwks(ec_key, clock)
    keys = KeySet("http://keys", fetch=fetch, clock=clock)
    assert keys.key_for("e1") is not None and fetch.calls == 1
    fetch.fail = True
    clock.now += iap.KEYS_MAX_AGE_SECONDS + 1  # stale: refetch, which fails
    assert keys.key_for("e1") is not None, "the last good keys keep serving"
    assert fetch.calls == 2
    # Unknown kids during the backoff fetch nothing.
    for _ in range(15):
        clock.now += 0.1
        assert keys.key_for("forged") is None
    assert fetch.calls == 2
    clock.now += iap.BACKOFF_FIRST_SECONDS - 1.5
    keys.key_for("forged")
    assert fetch.calls == 3  # the second failure doubles the wait
    clock.now += iap.BACKOFF_FIRST_SECONDS * 1.5
    keys.key_for("forged")
    assert fetch.calls == 3
    clock.now += iap.BACKOFF_FIRST_SECONDS
    fetch.fail = False
    assert keys.key_for("e1") is not None and fetch.calls == 4


def test_no_keys_at_all_is_a_401_reason_not_a_crash(ec_key):
    clock = Clock()
    fetch = FakeJwks(ec_key, clock)
    fetch.fail = True
    v = IapVerifier(AUD, KeySet("http://keys", fetch=fetch, clock=clock))
    with pytest.raises(KeyFetchError, match="connection refused"):
        v.verify(jws.sign(_claims(), ec_key, "e1"))
    with pytest.raises(jose.TokenError):  # within the backoff: no second fetch
        v.verify(jws.sign(_claims(), ec_key, "e1"))
    assert fetch.calls == 1


def test_fetch_runs_outside_the_lock_with_one_in_flight(ec_key):
    clock = Clock()
    fetch = FakeJwks(ec_key, clock)
    keys = KeySet("http://keys", fetch=fetch, clock=clock)
    assert keys.key_for("e1") is not None
    fetch.gate = threading.Event()
    clock.now += iap.MIN_REFRESH_SECONDS + 1
    results: list[object] = []
    slow = [threading.Thread(target=lambda: results.append(keys.key_for("new"))) for _ in range(5)]
    for t in slow:
        t.start()
    time.sleep(0.2)
    # While the fetch hangs, a request for a known kid is answered at once.
    started = time.monotonic()
    assert keys.key_for("e1") is not None
    assert time.monotonic() - started < 0.1
    fetch.gate.set()
    for t in slow:
        t.join(5)
    assert fetch.calls == 2, "one fetch for five waiting threads"
    assert results == [None] * 5
