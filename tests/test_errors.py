"""The error tree: what to do is carried by the type (`retriable`, `reason`, `retry_after`)."""

from __future__ import annotations

import pytest

from bridge.errors import (
    ApiError,
    AuthError,
    BadResponseError,
    BridgeError,
    ConfigError,
    PermanentApiError,
    RateLimitedError,
    RequestTimeoutError,
    RetriableApiError,
    ServerTimeoutError,
    StateAccessError,
    StateBusyError,
    StateCorruptError,
    StateError,
    StateFullError,
    StateIOError,
    StateLockedError,
    TransportError,
    error_for_status,
    retry_reason,
)
from bridge.failures import Action, action_for


class TestStatusClassification:
    """Each HTTP status maps to the type that says how to react."""

    @pytest.mark.parametrize(
        ("status", "kind", "retriable", "reason"),
        [
            (400, PermanentApiError, False, "rejected"),
            (401, AuthError, False, "auth"),
            (403, AuthError, False, "auth"),
            (404, PermanentApiError, False, "rejected"),
            (408, ServerTimeoutError, True, "timeout"),
            (413, PermanentApiError, False, "rejected"),
            (429, RateLimitedError, True, "rate_limited"),
            (500, RetriableApiError, True, "server_error"),
            (501, PermanentApiError, False, "rejected"),
            (503, RetriableApiError, True, "server_error"),
        ],
    )
    def test_status(self, status: int, kind: type[ApiError], retriable: bool, reason: str) -> None:
        exc = error_for_status(status, target="panther", body="b", retry_after=2.0, what="GET x")
        assert type(exc) is kind
        assert (exc.retriable, exc.reason, exc.retry_after, exc.status) == (
            retriable, reason, 2.0, status
        )
        assert retry_reason(exc) == reason


class TestAttributesOnTypes:
    """Every error the bridge raises on purpose answers `retriable`, `reason`, `retry_after`."""

    @pytest.mark.parametrize(
        ("exc", "retriable", "reason"),
        [
            (ConfigError(["x: bad"]), False, "config"),
            (StateError("s"), False, "state"),
            (StateLockedError("s"), False, "locked"),
            (StateAccessError("s"), False, "access"),
            (StateCorruptError("s"), False, "corrupt"),
            (StateFullError("s"), True, "disk_full"),
            (StateBusyError("s"), True, "busy"),
            (StateIOError("s"), True, "io"),
            (TransportError("t", target="bigpanda"), True, "transport"),
            (RequestTimeoutError("t", target="bigpanda"), True, "timeout"),
            (BadResponseError("t", target="bigpanda", status=200), True, "bad_response"),
        ],
    )
    def test_attributes(self, exc: BridgeError, retriable: bool, reason: str) -> None:
        assert (exc.retriable, exc.reason) == (retriable, reason)
        assert exc.retry_after is None
        assert retry_reason(exc) == reason

    def test_a_bug_is_internal(self) -> None:
        assert retry_reason(KeyError("x")) == "internal"


class TestActions:
    """One decision per type, the same for the Panther loops and the BigPanda sender."""

    @pytest.mark.parametrize(
        ("exc", "action"),
        [
            (error_for_status(401, target="t", body="", retry_after=None, what="w"),
             Action.REFUSED),
            (error_for_status(429, target="t", body="", retry_after=None, what="w"),
             Action.PAUSE),
            (error_for_status(503, target="t", body="", retry_after=None, what="w"),
             Action.RETRY),
            (error_for_status(408, target="t", body="", retry_after=None, what="w"),
             Action.RETRY),
            (error_for_status(400, target="t", body="", retry_after=None, what="w"),
             Action.REJECTED),
            (error_for_status(404, target="t", body="", retry_after=None, what="w"),
             Action.REJECTED),
            (BadResponseError("html", target="bigpanda", status=200), Action.RETRY),
            (TransportError("reset", target="panther"), Action.RETRY),
            (StateFullError("full"), Action.RETRY),
            (StateCorruptError("damaged"), Action.HALT),
            (ValueError("a bug"), Action.HALT),
        ],
    )
    def test_action(self, exc: BaseException, action: Action) -> None:
        assert action_for(exc) is action
