"""Clients ride out a sleeping database: on 503 + Retry-After, wait as told and send again.

The server answers 503 with Retry-After while it wakes its database (deployer/server/wake.py),
for about a minute. MLflow's own HTTP retries honour Retry-After too, but only for
MLFLOW_HTTP_REQUEST_MAX_RETRIES attempts; this `requests` response hook keeps waiting, bounded
by a total budget (MLFLOW_WAKE_MAX_WAIT_SECONDS, default 300), so a script that starts while
the database sleeps waits and then succeeds instead of failing.

Use: `request.register_hook("response", RetryAfterHook.from_env())` in an auth object, or
`install(session)` for a `requests.Session`.
"""

from __future__ import annotations

import email.utils
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests
from requests.utils import rewind_body

ENV_MAX_WAIT = "MLFLOW_WAKE_MAX_WAIT_SECONDS"
DEFAULT_MAX_WAIT_SECONDS = 300.0
RETRY_STATUSES = frozenset({503})
# A server that says "retry in an hour" is not waking up: never wait longer than this at once.
MAX_SINGLE_WAIT_SECONDS = 60.0


def retry_after_seconds(response: requests.Response, now: float | None = None) -> float | None:
    """Seconds to wait before resending, or None when the response asks for no retry."""
    if response.status_code not in RETRY_STATUSES:
        return None
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    if value.isdigit():
        return min(float(value), MAX_SINGLE_WAIT_SECONDS)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when - (time.time() if now is None else now)), MAX_SINGLE_WAIT_SECONDS)


def max_wait_from_env(env: Mapping[str, str] | None = None) -> float:
    env = os.environ if env is None else env
    raw = env.get(ENV_MAX_WAIT) or str(DEFAULT_MAX_WAIT_SECONDS)
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{ENV_MAX_WAIT}={raw!r} is not a number of seconds") from None
    if value < 0:
        raise ValueError(f"{ENV_MAX_WAIT}={raw!r} must not be negative")
    return value


class RetryAfterHook:
    """A `requests` response hook: resend after Retry-After until success or the budget ends."""

    def __init__(
        self,
        max_wait: float = DEFAULT_MAX_WAIT_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.max_wait = max_wait
        self.sleep = sleep
        self.echo = echo

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RetryAfterHook:
        return cls(max_wait_from_env(env))

    def __call__(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        waited = 0.0
        while True:
            delay = retry_after_seconds(response)
            if delay is None or waited + delay > self.max_wait:
                return response
            if self.echo:
                self.echo(f"server busy ({response.status_code}): retrying in {delay:.0f} s")
            self.sleep(delay)
            waited += delay
            response = self._resend(response, **kwargs)

    @staticmethod
    def _resend(response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        retry = request.copy()
        if getattr(request, "_body_position", None) is not None:
            rewind_body(retry)
        response.content  # noqa: B018 - release the connection before reusing it
        response.close()
        second = response.connection.send(retry, **kwargs)
        second.history = [*response.history, response]
        second.request = retry
        return second


def install(session: requests.Session, hook: RetryAfterHook | None = None) -> requests.Session:
    """Make every request of this session wait out 503 + Retry-After."""
    session.hooks["response"].append(hook or RetryAfterHook.from_env())
    return session
