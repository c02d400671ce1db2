"""The HTTP client huggingface_hub talks to the hub through, while moesd resolves and fetches:
connect and read timeouts, and a patience for a hub that keeps failing.

huggingface_hub's own client waits without a timeout on API calls and retries a 5xx answer or a
timeout five times, logging a line each time. Here every request gets the connect and read
timeouts, huggingface_hub's retry lines stay out of the log, and once the hub has failed for
PATIENCE seconds in a row (no answer, a closed connection, a 5xx or 429 answer) the next request
stops with one line saying what the hub last did: "the hub answered 500 for GET <url>", or "no
answer to GET <url>". A long download is never cut: every answer resets the clock.
"""

from __future__ import annotations

import logging
import os
import time

import httpx2

PATIENCE_ENV = "MOESD_HUB_PATIENCE"  # seconds of failure in a row before a download gives up
DEFAULT_PATIENCE = 60.0
CONNECT_TIMEOUT = 10.0


class HubUnanswered(RuntimeError):
    """The hub failed for longer than the patience; the message says how it failed last."""


def patience() -> float:
    """Seconds of failure before giving up: MOESD_HUB_PATIENCE, else 60."""
    text = os.environ.get(PATIENCE_ENV)
    if text is None:
        return DEFAULT_PATIENCE
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{PATIENCE_ENV}={text!r}: not a number of seconds") from None
    if not 0 < value < 1e6:
        raise ValueError(f"{PATIENCE_ENV}={text!r}: must be a positive number of seconds below 10^6")
    return value


def _redacted(url) -> str:
    """The URL without its query (a signed download link carries credentials there)."""
    return str(url.copy_with(query=None))


class PatientTransport(httpx2.BaseTransport):
    """Every request within the remaining patience (connect at most CONNECT_TIMEOUT, reads at
    most the patience); a run of failures longer than the patience raises HubUnanswered."""

    def __init__(self, seconds: float, inner: httpx2.BaseTransport | None = None):
        self.seconds = seconds
        self.inner = inner or httpx2.HTTPTransport()
        self.failing_since: float | None = None
        self.problem = ""  # what the hub did last, when it failed
        self.tries = 0  # failed requests in the current run of failures

    def _left(self, now: float) -> float:
        return self.seconds - (now - self.failing_since) if self.failing_since is not None else self.seconds

    def give_up(self) -> HubUnanswered:
        took = time.monotonic() - (self.failing_since or time.monotonic())
        tries = f"{self.tries} {'try' if self.tries == 1 else 'tries'} in {took:.0f} s"
        return HubUnanswered(f"{self.problem} ({tries}; the patience is {self.seconds:g} s: {PATIENCE_ENV})")

    def _failed(self, start: float, problem: str) -> None:
        self.failing_since = start if self.failing_since is None else self.failing_since
        self.problem, self.tries = problem, self.tries + 1

    def _stop_when_spent(self) -> None:
        if self._left(time.monotonic()) <= 0:
            raise self.give_up() from None

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        start = time.monotonic()
        left = self._left(start)
        if left <= 0:
            raise self.give_up()
        read = min(left, request.extensions.get("timeout", {}).get("read") or left)
        request.extensions["timeout"] = {
            "connect": min(CONNECT_TIMEOUT, left),
            "read": read,
            "write": read,
            "pool": read,
        }
        where = f"{request.method} {_redacted(request.url)}"
        try:
            response = self.inner.handle_request(request)
        except httpx2.TimeoutException:
            self._failed(start, f"no answer to {where}")
            self._stop_when_spent()
            raise
        except httpx2.TransportError as error:
            self._failed(start, f"{where} failed: {type(error).__name__}: {str(error)[:120]}")
            self._stop_when_spent()
            raise
        if response.status_code >= 500 or response.status_code in (408, 429):
            self._failed(start, f"the hub answered {response.status_code} for {where}")
            return response
        self.failing_since, self.problem, self.tries = None, "", 0
        response.stream = _Watched(response.stream, self, start, where)  # a body that breaks off counts too
        return response

    def close(self) -> None:
        self.inner.close()


class _Watched(httpx2.SyncByteStream):
    """A response body whose breaking off (a closed connection, a read timeout) is a failure of
    the hub, like a 5xx answer."""

    def __init__(self, inner, transport: PatientTransport, start: float, where: str):
        self.inner, self.transport, self.start, self.where = inner, transport, start, where

    def __iter__(self):
        try:
            yield from self.inner
        except httpx2.TransportError as error:
            self.transport._failed(self.start, f"{self.where} broke off: {type(error).__name__}: {str(error)[:120]}")
            self.transport._stop_when_spent()
            raise

    def close(self) -> None:
        self.inner.close()


_ACTIVE: PatientTransport | None = None


def active() -> PatientTransport:
    """The installed transport (installed at the first call, with the patience of the environment)."""
    return _ACTIVE if _ACTIVE is not None else install()


def install(seconds: float | None = None) -> PatientTransport:
    """Make huggingface_hub's shared client a patient one (a new client: the old one is closed)
    and keep its retry warnings out of the log; the transport, whose `problem` names the last
    failure."""
    from huggingface_hub.utils import _http

    transport = PatientTransport(patience() if seconds is None else seconds)

    def factory() -> httpx2.Client:  # huggingface_hub's default client (its user agent and token), our transport
        hook = _http.hf_request_event_hook
        return httpx2.Client(event_hooks={"request": [hook]}, follow_redirects=True, timeout=None, transport=transport)

    global _ACTIVE
    _ACTIVE = transport
    _http.set_client_factory(factory)
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    return transport
