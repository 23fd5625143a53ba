"""The one exception tree of the bridge.

Kept in its own small module so every other module can import it without import loops.
Callers decide what to do by the `retriable` attribute of the type, never by matching messages
(the aiokafka way): a retriable error is tried again later with backoff, a permanent one is not.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Root of everything the bridge raises on purpose."""

    retriable: bool = False


class ConfigError(BridgeError):
    """The configuration cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class StateError(BridgeError):
    """The state database cannot be opened or is held by another process."""


class ApiError(BridgeError):
    """An HTTP API answered with something other than success.

    `target` is `panther` or `bigpanda`; `status` the HTTP status (0 when there was no response);
    `body` the response text, shortened; `retry_after` seconds the server asked us to wait, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        target: str,
        status: int = 0,
        body: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.target = target
        self.status = status
        self.body = body
        self.retry_after = retry_after


class RetriableApiError(ApiError):
    """408, 429, 5xx (but 501), or a response we could not read: try again later."""

    retriable = True


class RateLimitedError(RetriableApiError):
    """429: the whole sender for this target pauses, not only this request."""


class TransportError(RetriableApiError):
    """No usable response at all: connection refused or reset, timeout, TLS failure."""


class RequestTimeoutError(TransportError):
    """No complete response within the configured timeout."""


class BadResponseError(RetriableApiError):
    """A response that is not what the API documents (HTML from a proxy, invalid JSON, ...)."""


class PermanentApiError(ApiError):
    """A 4xx that will not change on retry (400, 404, 413, ...)."""


class AuthError(PermanentApiError):
    """401/403: our credentials are refused. Stop, keep everything, report not ready."""


def error_for_status(
    status: int, *, target: str, body: str, retry_after: float | None, what: str
) -> ApiError:
    """Classify a non-success HTTP status into the exception type that says how to react."""
    message = f"{target} {what} answered HTTP {status}: {body[:300]}".rstrip(": ")
    kwargs = {"target": target, "status": status, "body": body, "retry_after": retry_after}
    if status in (401, 403):
        return AuthError(message, **kwargs)
    if status == 429:
        return RateLimitedError(message, **kwargs)
    if status == 408 or (status >= 500 and status != 501):
        return RetriableApiError(message, **kwargs)
    return PermanentApiError(message, **kwargs)


def retry_reason(exc: BaseException) -> str:
    """The bounded `bridge_retries_total{reason}` label for a failed request, by exception type."""
    if isinstance(exc, AuthError):
        return "unauthorized"
    status = getattr(exc, "status", 0)
    if status == 429:
        return "rate_limited"
    if status == 408 or isinstance(exc, RequestTimeoutError):
        return "timeout"
    if status >= 500:
        return "server_error"
    if isinstance(exc, TransportError):
        return "transport"
    if isinstance(exc, BadResponseError):
        return "bad_response"
    return "other"
