"""The HTTP plumbing both API clients share: one request, timed, counted and classified.

Everything that can go wrong on the wire ends up as one exception of `bridge.errors`, so callers
decide by type (`retriable`), never by aiohttp's exception zoo or by status codes. Messages name
the target, method and endpoint *template*, and never carry a credential: they end up in logs.
"""

from __future__ import annotations

import copy
import re
import ssl
import time
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple
from urllib.parse import urljoin

import aiohttp
import orjson
from aiohttp.helpers import get_env_proxy_for_url
from multidict import CIMultiDictProxy
from yarl import URL

from bridge.errors import (
    ApiError,
    AuthError,
    BadResponseError,
    ConfigError,
    RequestTimeoutError,
    TransportError,
    error_for_status,
)
from bridge.metrics import Metrics

# Response text kept on an error; enough for Panther's `{"message": ...}` or a proxy's error page.
MAX_ERROR_BODY = 1000
# How much of an unexpected body a BadResponseError message quotes.
MAX_QUOTED_BODY = 200

# What to fix when a target refuses our credentials (shared/api/PANTHER.md, BIGPANDA.md: "Auth").
AUTH_HINTS = {
    "panther": (
        "check panther.api_token: the token needs the 'Read Alerts' permission "
        "(and 'View Rules'/'View Policies' for enrichment)"
    ),
    "bigpanda": "check bigpanda.api_token (an org Bearer token) and bigpanda.app_key",
}

_DELTA_SECONDS = re.compile(r"^\s*-?\d+(\.\d+)?\s*$")

Params = Sequence[tuple[str, str]] | Mapping[str, str]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date); None if unusable.

    A date in the past or a negative delta means "now" (0); anything unreadable is None, so the
    caller falls back to its own backoff instead of trusting garbage.
    """
    if value is None or not value.strip():
        return None
    if _DELTA_SECONDS.match(value):
        return max(0.0, float(value))
    try:
        moment = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:  # "-0000" in an HTTP-date means UTC (RFC 5322)
        moment = moment.replace(tzinfo=UTC)
    reference = time.time() if now is None else now
    return max(0.0, moment.timestamp() - reference)


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with an ellipsis when something was cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Response(NamedTuple):
    """What `HttpTarget.request` returns: status, headers and the whole body."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class HttpTarget:
    """One remote API (`panther` or `bigpanda`) reached through a shared `aiohttp.ClientSession`.

    The session is the caller's: it owns connection pooling and is closed by whoever created it.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        target: str,
        base_url: str,
        headers: Mapping[str, str],
        timeout: float,
        metrics: Metrics | None = None,
        auth_hint: str | None = None,
    ) -> None:
        self.session = session
        self.target = target
        self.base_url = base_url.rstrip("/")
        self._headers = dict(headers)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.timeout = timeout
        self._metrics = metrics
        self._auth_hint = AUTH_HINTS.get(target, "") if auth_hint is None else auth_hint
        # Header values are credentials (X-API-Key, Bearer token): scrub them from any text we
        # build from foreign material (exception strings, response bodies) before it is logged.
        self._secrets = [v for v in self._headers.values() if len(v) >= 8]
        for value in list(self._secrets):
            if value.lower().startswith("bearer "):
                self._secrets.append(value[7:])

    def url(self, path_or_url: str) -> str:
        """An absolute URL: absolute ones are kept, paths are resolved against the base URL."""
        if "://" in path_or_url:
            return path_or_url
        return urljoin(self.base_url + "/", path_or_url.lstrip("/"))

    def with_auth_hint(self, hint: str) -> HttpTarget:
        """The same target (session, URL, credentials, metrics) for requests whose refusal
        calls for another remedy than the target's usual one."""
        other = copy.copy(self)
        other._auth_hint = hint
        return other

    def redact(self, text: str) -> str:
        """`text` with every credential this target sends replaced by `***`."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def request(
        self,
        method: str,
        path_or_url: str,
        *,
        endpoint: str,
        params: Params | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        accept: Collection[int] = (),
    ) -> Response:
        """Perform one request and return the response, or raise the `ApiError` that classifies it.

        `endpoint` is the template used in metrics and messages (`/alerts/{id}`, `job`), never the
        raw path: ids would make label values unbounded. Any 2xx and the statuses in `accept`
        (e.g. 404 for "does not exist") are returned; everything else raises.
        """
        what = f"{method} {endpoint}"
        sent_headers = {**self._headers, **(headers or {})}
        started = time.perf_counter()
        status = 0
        try:
            async with self.session.request(
                method,
                self.url(path_or_url),
                params=params,
                data=data,
                headers=sent_headers,
                timeout=self._timeout,
            ) as resp:
                status = resp.status
                body = await resp.read()
                resp_headers = resp.headers
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            status = 0  # a response cut short (ClientPayloadError) is no usable response either
            kind = RequestTimeoutError if isinstance(exc, TimeoutError) else TransportError
            raise kind(
                f"{self.target} {what} failed: {self._describe(exc)}", target=self.target
            ) from None
        finally:
            self._record(endpoint, status, time.perf_counter() - started)
        if 200 <= status < 300 or status in accept:
            return Response(status, resp_headers, body)
        raise self._error(status, resp_headers, body, what)

    def decode_json(self, resp: Response, what: str) -> Any:
        """The parsed JSON body, or BadResponseError saying what came instead (a proxy page...)."""
        try:
            return orjson.loads(resp.body)
        except orjson.JSONDecodeError:
            kind = resp.headers.get("Content-Type", "no content type").split(";")[0].strip()
            raise self.bad_response(
                f"returned a body that is not JSON ({kind}): "
                f"{shorten(self._text(resp.body), MAX_QUOTED_BODY)!r}",
                what,
                resp,
            ) from None

    def decode_json_object(self, resp: Response, what: str) -> dict[str, Any]:
        """The parsed JSON body, which must be an object."""
        value = self.decode_json(resp, what)
        if not isinstance(value, dict):
            raise self.bad_response(
                f"returned JSON that is not an object ({type(value).__name__})", what, resp
            )
        return value

    def bad_response(self, problem: str, what: str, resp: Response) -> BadResponseError:
        """BadResponseError `<target> <what> <problem>` with the response's status and body."""
        return BadResponseError(
            f"{self.target} {what} {problem}",
            target=self.target,
            status=resp.status,
            body=shorten(self._text(resp.body), MAX_ERROR_BODY),
        )

    def _error(
        self, status: int, headers: CIMultiDictProxy[str], body: bytes, what: str
    ) -> ApiError:
        error = error_for_status(
            status,
            target=self.target,
            body=shorten(self._text(body), MAX_ERROR_BODY),
            retry_after=parse_retry_after(headers.get("Retry-After")),
            what=what,
        )
        if isinstance(error, AuthError) and self._auth_hint:
            # The status alone does not say what to do; the operator needs the setting to fix.
            error = AuthError(
                f"{error}; {self._auth_hint}",
                target=error.target,
                status=error.status,
                body=error.body,
                retry_after=error.retry_after,
            )
        return error

    def _describe(self, exc: BaseException) -> str:
        name = type(exc).__name__
        detail = self.redact(str(exc)).strip()
        if not detail and isinstance(exc, TimeoutError):
            detail = f"no complete response within {self.timeout:g} s"
        return f"{name}: {detail}" if detail else name

    def _text(self, body: bytes) -> str:
        return self.redact(body.decode("utf-8", errors="replace"))

    def _record(self, endpoint: str, status: int, seconds: float) -> None:
        if self._metrics is None:
            return
        self._metrics.http_requests.labels(
            target=self.target, endpoint=endpoint, code=str(status)
        ).inc()
        self._metrics.http_duration.labels(target=self.target, endpoint=endpoint).observe(seconds)


# -- sessions ------------------------------------------------------------------------------------


def client_session(api_url: str, ca_bundle: str | None, *, limit: int) -> aiohttp.ClientSession:
    """A session for one target: certificates verified (against `ca_bundle` when given), through
    the proxy HTTP(S)_PROXY / NO_PROXY name for `api_url`, at most `limit` connections.

    One session per target: each trusts its own CAs, and a slow Panther cannot take the
    connections BigPanda deliveries need. The proxy is resolved once here, not per request:
    aiohttp's `trust_env` looks the proxy and ~/.netrc up again on every request, in a thread
    each, which cost a tenth of the bridge's CPU during a catch-up.
    """
    proxy, proxy_auth = env_proxy(api_url)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=tls_context(ca_bundle)),
        proxy=proxy,
        proxy_auth=proxy_auth,
    )


def env_proxy(url: str) -> tuple[str | None, aiohttp.BasicAuth | None]:
    """The proxy (and its credentials) HTTP_PROXY / HTTPS_PROXY / NO_PROXY give for `url`;
    (None, None) to connect directly."""
    try:
        proxy, auth = get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None
    return str(proxy), auth


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Certificate and host name verification always on; `ca_bundle` replaces the system CAs."""
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            [f"ca_bundle {ca_bundle}: cannot load CA certificates ({exc}): give a PEM file"]
        ) from exc
