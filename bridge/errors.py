"""The one exception tree of the bridge.

Kept in its own small module so every other module can import it without import loops.
Callers decide what to do by the attributes of the type, never by matching messages (the
aiokafka way): `retriable` says whether trying again later can help, `reason` is the bounded
label that metrics and logs use, and `retry_after` the wait a server asked for. What to do with
a failure of a given type is decided in one place, `bridge.failures`.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Root of everything the bridge raises on purpose."""

    retriable: bool = False
    # The bounded `reason` label of metrics such as `bridge_retries_total{target,reason}`.
    reason: str = "other"
    # Seconds the other side asked us to wait (a `Retry-After`), if it said.
    retry_after: float | None = None


class ConfigError(BridgeError):
    """The configuration cannot be used; `problems` holds one line per problem."""

    reason = "config"

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# -- the state file -------------------------------------------------------------------------------


class StateError(BridgeError):
    """The state database cannot be opened, read or written; the message says what to do."""

    reason = "state"


class StateLockedError(StateError):
    """The state is held by another bridge process (its lock file is locked)."""

    reason = "locked"


class StateAccessError(StateError):
    """The state file, its directory or its lock file cannot be created or written (permissions,
    a read-only file system)."""

    reason = "access"


class StateCorruptError(StateError):
    """The file is not a SQLite database or fails SQLite's integrity check: refuse to run on it."""

    reason = "corrupt"


class StateFullError(StateError):
    """The disk (or the file system quota) is full. Retriable: writes work again once space
    returns, and nothing was lost (the write that failed was rolled back whole)."""

    retriable = True
    reason = "disk_full"


class StateBusyError(StateError):
    """SQLite stayed locked beyond its busy timeout (another process holds a long transaction)."""

    retriable = True
    reason = "busy"


class StateIOError(StateError):
    """The operating system failed a read or a write of the state file (I/O error)."""

    retriable = True
    reason = "io"


class FencedError(StateError):
    """A state write by a replica whose lease term is no longer the current one (another replica
    leads the shared PostgreSQL state now): refused, and this replica's work stops."""

    reason = "fenced"


# -- HTTP APIs ------------------------------------------------------------------------------------


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
    reason = "server_error"


class ServerTimeoutError(RetriableApiError):
    """408: the server gave up waiting for our request."""

    reason = "timeout"


class RateLimitedError(RetriableApiError):
    """429: the whole sender for this target pauses, not only this request."""

    reason = "rate_limited"


class TransportError(RetriableApiError):
    """No usable response at all: connection refused or reset, timeout, TLS failure."""

    reason = "transport"


class RequestTimeoutError(TransportError):
    """No complete response within the configured timeout."""

    reason = "timeout"


class BadResponseError(RetriableApiError):
    """A response that is not what the API documents (HTML from a proxy, invalid JSON, ...)."""

    reason = "bad_response"


class PermanentApiError(ApiError):
    """A 4xx that will not change on retry (400, 404, 413, ...)."""

    reason = "rejected"


class AuthError(PermanentApiError):
    """401/403: our credentials are refused. Stop, keep everything, report not ready."""

    reason = "auth"


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
    if status == 408:
        return ServerTimeoutError(message, **kwargs)
    if status >= 500 and status != 501:
        return RetriableApiError(message, **kwargs)
    return PermanentApiError(message, **kwargs)


def retry_reason(exc: BaseException) -> str:
    """The bounded `bridge_retries_total{reason}` label for a failure: the type's `reason`
    (`internal` for an exception the bridge did not raise on purpose: a bug)."""
    return exc.reason if isinstance(exc, BridgeError) else "internal"
