"""Which Panther alerts the bridge forwards (config `panther.filters`).

Filtering happens in Panther's query where `GET /alerts` supports it (shared/api/PANTHER.md):
`severity[]` and `log-type[]` are arrays, `detection-id` takes exactly one id. Globs and the
exclude list have no query parameter, so they are checked here, on the listed alert. Alerts
filtered out still move the watermark: they were read, and decided on.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ALERT_LISTINGS = ("ALERT", "DETECTION_ERROR", "SYSTEM_ERROR")
_GLOB_CHARS = frozenset("*?[")


def listing_of(alert_type: str | None) -> str:
    """Which `GET /alerts?type=` listing an alert's `type` (RULE, RULE_ERROR, ...) comes from."""
    kind = (alert_type or "").upper()
    if kind == "SYSTEM_ERROR":
        return "SYSTEM_ERROR"
    return "DETECTION_ERROR" if kind.endswith("_ERROR") else "ALERT"


@dataclass(frozen=True)
class AlertFilter:
    """The forwarding filter: empty tuples mean "all"."""

    alert_types: tuple[str, ...] = ("ALERT",)
    severities: tuple[str, ...] = ()
    detection_ids: tuple[str, ...] = ()
    exclude_detection_ids: tuple[str, ...] = ()
    log_types: tuple[str, ...] = ()
    _query: Mapping[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    _checks: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        query: dict[str, tuple[str, ...]] = {}
        if self.severities:
            query["severities"] = tuple(s.upper() for s in self.severities)
        if self.log_types:
            query["log_types"] = tuple(self.log_types)
        # `detection-id` is a single string in the spec: usable only for one exact id.
        if len(self.detection_ids) == 1 and not _GLOB_CHARS & set(self.detection_ids[0]):
            query["detection_ids"] = (self.detection_ids[0],)
        object.__setattr__(self, "_query", query)
        # Nothing to check on a listed alert (the default): `accepts` answers at once.
        checks = bool(self.severities or self.detection_ids or self.exclude_detection_ids)
        object.__setattr__(self, "_checks", checks)

    @classmethod
    def from_settings(cls, settings: Any) -> AlertFilter:
        """From `PantherSettings.filters` (or anything with the same attributes)."""
        if settings is None:
            return cls()
        return cls(
            alert_types=tuple(dict.fromkeys(settings.alert_types)) or ("ALERT",),
            severities=tuple(settings.severities),
            detection_ids=tuple(settings.detection_ids),
            exclude_detection_ids=tuple(settings.exclude_detection_ids),
            log_types=tuple(settings.log_types),
        )

    def query(self, listing: str) -> dict[str, Sequence[str]]:
        """Keyword arguments for `PantherClient.iter_alert_pages` that filter in Panther.

        A system error has no detection and no log type: those filters would hide every one, so
        its listing only gets the severity filter.
        """
        if listing == "SYSTEM_ERROR":
            return {k: v for k, v in self._query.items() if k == "severities"}
        return dict(self._query)

    def accepts(self, alert: Mapping[str, Any]) -> bool:
        """Whether a listed alert passes the filters Panther could not apply (globs, excludes).

        Severity is checked again: cheap, and it keeps the filter right even where a listing was
        made without it (status sync, backfill of an older config).
        """
        if not self._checks:
            return True
        severity = str(alert.get("severity") or "").upper()
        if self.severities and severity not in self.severities:
            return False
        if listing_of(alert.get("type")) == "SYSTEM_ERROR":
            return True
        detection = alert.get("detection")
        detection_id = detection.get("id") if isinstance(detection, Mapping) else None
        detection_id = detection_id if isinstance(detection_id, str) else ""
        if self.detection_ids and not _matches(detection_id, self.detection_ids):
            return False
        return not (self.exclude_detection_ids and detection_id
                    and _matches(detection_id, self.exclude_detection_ids))


def _matches(value: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)
