"""The error tree: what to do is carried by the type (`retriable`, `reason`, `retry_after`)."""

from __future__ import annotations

import pytest

from bridge import errors
from bridge.failures import Action, action_for


class TestStatusClassification:
    """Each HTTP status maps to the type that says how to react."""

    @pytest.mark.parametrize(
        ("status", "kind", "retriable", "reason"),
        [
            (400, errors.PermanentApiError, False, "rejected"),
            (401, errors.AuthError, False, "auth"),
            (403, errors.AuthError, False, "auth"),
            (404, errors.PermanentApiError, False, "rejected"),
            (408, errors.ServerTimeoutError, True, "timeout"),
            (413, errors.PermanentApiError, False, "rejected"),
            (429, errors.RateLimitedError, True, "rate_limited"),
            (500, errors.RetriableApiError, True, "server_error"),
            (501, errors.PermanentApiError, False, "rejected"),
            (503, errors.RetriableApiError, True, "server_error"),
        ],
    )
    def test_status(
        self, status: int, kind: type[errors.ApiError], retriable: bool, reason: str
    ) -> None:
        exc = errors.error_for_status(
            status, target="panther", body="b", retry_after=2.0, what="GET x"
        )
        assert type(exc) is kind
        assert (exc.retriable, exc.reason, exc.retry_after, exc.status) == (
            retriable, reason, 2.0, status
        )
        assert errors.retry_reason(exc) == reason


class TestAttributesOnTypes:
    """Every error the bridge raises on purpose answers `retriable`, `reason`, `retry_after`."""

    @pytest.mark.parametrize(
        ("exc", "retriable", "reason"),
        [
            (errors.ConfigError(["x: bad"]), False, "config"),
            (errors.StateError("s"), False, "state"),
            (errors.StateLockedError("s"), False, "locked"),
            (errors.StateAccessError("s"), False, "access"),
            (errors.StateCorruptError("s"), False, "corrupt"),
            (errors.StateFullError("s"), True, "disk_full"),
            (errors.StateBusyError("s"), True, "busy"),
            (errors.StateIOError("s"), True, "io"),
            (errors.TransportError("t", target="bigpanda"), True, "transport"),
            (errors.RequestTimeoutError("t", target="bigpanda"), True, "timeout"),
            (errors.BadResponseError("t", target="bigpanda", status=200), True, "bad_response"),
        ],
    )
    def test_attributes(self, exc: errors.BridgeError, retriable: bool, reason: str) -> None:
        assert (exc.retriable, exc.reason) == (retriable, reason)
        assert exc.retry_after is None
        assert errors.retry_reason(exc) == reason

    def test_a_bug_is_internal(self) -> None:
        assert errors.retry_reason(KeyError("x")) == "internal"


def status_error(status: int) -> errors.ApiError:
    return errors.error_for_status(status, target="t", body="", retry_after=None, what="w")


class TestActions:
    """One decision per type, the same for the Panther loops and the BigPanda sender."""

    @pytest.mark.parametrize(
        ("exc", "action"),
        [
            (status_error(401), Action.REFUSED),
            (status_error(429), Action.PAUSE),
            (status_error(503), Action.RETRY),
            (status_error(408), Action.RETRY),
            (status_error(400), Action.REJECTED),
            (status_error(404), Action.REJECTED),
            (errors.BadResponseError("html", target="bigpanda", status=200), Action.RETRY),
            (errors.TransportError("reset", target="panther"), Action.RETRY),
            (errors.StateFullError("full"), Action.RETRY),
            (errors.StateCorruptError("damaged"), Action.HALT),
            (ValueError("a bug"), Action.HALT),
        ],
    )
    def test_action(self, exc: BaseException, action: Action) -> None:
        assert action_for(exc) is action
