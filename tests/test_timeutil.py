"""Every timestamp shape Panther produces becomes the right instant and epoch second."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.timeutil import epoch_seconds, format_rfc3339, parse_timestamp


class TestParse:
    """RFC3339 with any fraction and offset, and epoch seconds or milliseconds."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2024-11-14T17:09:49.841715953Z", datetime(2024, 11, 14, 17, 9, 49, 841715, UTC)),
            ("2024-11-14T17:09:49.999999999Z", datetime(2024, 11, 14, 17, 9, 49, 999999, UTC)),
            ("2026-11-20T16:20:11.5Z", datetime(2026, 11, 20, 16, 20, 11, 500000, UTC)),
            ("2026-11-20t16:20:11.5z", datetime(2026, 11, 20, 16, 20, 11, 500000, UTC)),
            ("2026-11-19T10:45:00+02:00", datetime(2026, 11, 19, 8, 45, tzinfo=UTC)),
            ("2026-11-19T08:45:00", datetime(2026, 11, 19, 8, 45, tzinfo=UTC)),
            (1732000000, datetime(2024, 11, 19, 7, 6, 40, tzinfo=UTC)),
            (1732000000123, datetime(2024, 11, 19, 7, 6, 40, 123000, UTC)),
            ("1732000000", datetime(2024, 11, 19, 7, 6, 40, tzinfo=UTC)),
        ],
    )
    def test_shapes(self, text: object, expected: datetime) -> None:
        assert parse_timestamp(text) == expected

    @pytest.mark.parametrize("junk", [None, "", "  ", "garbage", True, [], {}, 10**30])
    def test_junk_is_none(self, junk: object) -> None:
        assert parse_timestamp(junk) is None

    def test_nanoseconds_never_round_into_the_next_second(self) -> None:
        assert epoch_seconds("2026-11-20T14:03:27.999999999Z") == 1795183407

    def test_format_round_trips(self) -> None:
        moment = datetime(2026, 1, 2, 3, 4, 5, 6, UTC)
        assert format_rfc3339(moment) == "2026-01-02T03:04:05.000006Z"
        assert parse_timestamp(format_rfc3339(moment)) == moment
