"""What both state backends do alike, written once: the reads of the meta table (over each
backend's own `get_meta`) and why a dead letter cannot be replayed (`bridge dlq replay` prints it).
"""

from __future__ import annotations

import json


class MetaReads:
    """Typed reads of the meta table; a backend supplies `get_meta` (its own query)."""

    def get_meta(self, key: str) -> str | None:
        raise NotImplementedError

    def watermark(self, key: str = "watermark") -> float | None:
        """Epoch seconds (float) of the newest alert `createdAt` durably recorded, or None.

        `key` names one listing's watermark (`watermark` is the ALERT listing's, for
        compatibility; `watermark:DETECTION_ERROR`, ... the others').
        """
        value = self.get_meta(key)
        return float(value) if value is not None else None

    def meta_json(self, key: str) -> object:
        """A meta value stored as JSON (None when absent or unreadable)."""
        value = self.get_meta(key)
        if value is None:
            return None
        try:
            return json.loads(value)
        except ValueError:
            return None


def replay_refusal(dl_id: int, row: tuple[str, bytes | None] | None) -> str | None:
    """Why dead letter `dl_id` cannot go back in the queue, given its (dedup key, payload) row;
    None when it can. One without a payload is an alert that never became an event."""
    if row is None:
        return f"dead letter {dl_id}: no such dead letter"
    if row[1] is None:
        return (
            f"dead letter {dl_id}: no payload to replay (the alert itself was invalid); fix the"
            " mapping and run a backfill instead"
        )
    return None
