"""bridge.state.common: the meta reads and replay refusals both backends share."""

from __future__ import annotations

import pytest

from bridge.state.common import MetaReads, replay_refusal


class DictMeta(MetaReads):
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get_meta(self, key: str) -> str | None:
        return self.values.get(key)


def test_watermarks_are_floats_per_listing() -> None:
    meta = DictMeta({"watermark": "1700000000.25", "watermark:SYSTEM_ERROR": "5"})
    assert meta.watermark() == 1700000000.25
    assert meta.watermark("watermark:SYSTEM_ERROR") == 5.0
    assert meta.watermark("watermark:DETECTION_ERROR") is None


@pytest.mark.parametrize(
    ("stored", "read"),
    [('{"a": [1, 2]}', {"a": [1, 2]}), ("not json", None), (None, None)],
)
def test_json_values_unreadable_or_absent_read_as_none(stored: str | None, read: object) -> None:
    meta = DictMeta({} if stored is None else {"k": stored})
    assert meta.meta_json("k") == read


def test_a_backend_must_say_how_it_reads_meta() -> None:
    with pytest.raises(NotImplementedError):
        MetaReads().watermark()


def test_replay_refusals() -> None:
    assert replay_refusal(7, None) == "dead letter 7: no such dead letter"
    refusal = replay_refusal(8, ("alert:x:OPEN:alert", None))
    assert refusal is not None and refusal.startswith("dead letter 8: no payload to replay")
    assert "run a backfill" in refusal
    assert replay_refusal(9, ("alert:x:OPEN:alert", b"{}")) is None
