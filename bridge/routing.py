"""Routing: which BigPanda integration (app key) a Panther alert goes to, and with which tags.

Routes are tried in order and the first whose conditions all hold decides (`routing.routes`);
a condition left out always holds, a list holds when any of its values matches. Severity, status
and alert type compare exactly (case-insensitive; alert types also as globs), detection ids and log
types as globs. Log types come from the catalog detection (`logTypes`, or `resourceTypes` for a
policy): without enrichment a route that names log types does not match.

An alert no route matches goes to `bigpanda.app_key`, or is dropped when `routing.unmatched` is
`drop`. Routing is pure and compiled once (globs become one regex per condition).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.mapping import MappingRules
from bridge.panther.models import Alert

__all__ = ["DROP_ROUTE", "DROP_UNROUTED", "Dropped", "Route", "RouteRule", "Router"]

DROP_UNROUTED = "unrouted"  # bridge_events_dropped_total{reason}: no route matched, unmatched: drop
DROP_ROUTE = "route"  # a matching route says drop: true


@dataclass(frozen=True, slots=True)
class Route:
    """Where one alert goes: the app key, and the mapping rules with the route's tags merged.

    `app_key` is None when the alert is dropped; `drop_reason` then says why.
    """

    name: str
    app_key: str | None
    rules: MappingRules
    drop_reason: str | None = None

    @property
    def dropped(self) -> bool:
        return self.app_key is None


@dataclass(frozen=True, slots=True)
class Dropped:
    """An alert routing decided not to send: not an error, so not a dead letter."""

    alert_id: str
    route: str
    reason: str


def _globs(patterns: Iterable[str], *, ignore_case: bool = False) -> re.Pattern[str] | None:
    patterns = list(patterns)
    if not patterns:
        return None
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns), flags)


@dataclass(frozen=True, slots=True)
class RouteRule:
    """One compiled routing rule (`routing.routes[i]`)."""

    name: str
    severities: frozenset[str] | None
    statuses: frozenset[str] | None
    alert_types: re.Pattern[str] | None
    detection_ids: re.Pattern[str] | None
    log_types: re.Pattern[str] | None
    route: Route

    @classmethod
    def compile(
        cls,
        *,
        name: str,
        severity: Sequence[str] = (),
        status: Sequence[str] = (),
        alert_type: Sequence[str] = (),
        detection_id: Sequence[str] = (),
        log_type: Sequence[str] = (),
        app_key: str,
        rules: MappingRules,
        drop: bool = False,
    ) -> RouteRule:
        route = Route(name, None, rules, DROP_ROUTE) if drop else Route(name, app_key, rules)
        return cls(
            name=name,
            severities=frozenset(s.upper() for s in severity) or None,
            statuses=frozenset(s.upper() for s in status) or None,
            alert_types=_globs(alert_type, ignore_case=True),
            detection_ids=_globs(detection_id),
            log_types=_globs(log_type),
            route=route,
        )

    def matches(self, alert: Alert, log_types: Sequence[str]) -> bool:
        if self.severities is not None and (alert.severity or "").upper() not in self.severities:
            return False
        if self.statuses is not None and (alert.status or "").upper() not in self.statuses:
            return False
        if self.alert_types is not None and not self.alert_types.fullmatch(alert.type or ""):
            return False
        if self.detection_ids is not None:
            detection_id = alert.detection.id if alert.detection is not None else None
            if not detection_id or not self.detection_ids.fullmatch(detection_id):
                return False
        if self.log_types is not None:
            pattern = self.log_types
            if not any(isinstance(t, str) and pattern.fullmatch(t) for t in log_types):
                return False
        return True


class Router:
    """First matching rule wins; otherwise the default app key, or a drop."""

    def __init__(
        self,
        rules: Sequence[RouteRule],
        *,
        default_app_key: str,
        base_rules: MappingRules,
        drop_unmatched: bool = False,
    ) -> None:
        self.rules = tuple(rules)
        self.base_rules = base_rules
        if drop_unmatched:
            self.unmatched = Route("unmatched", None, base_rules, DROP_UNROUTED)
        else:
            self.unmatched = Route("unmatched", default_app_key, base_rules)

    @classmethod
    def from_config(
        cls, routing: Any, *, default_app_key: str, base_rules: MappingRules
    ) -> Router:
        """A router from `RoutingSettings` (bridge.config), already validated there."""
        compiled = [
            RouteRule.compile(
                name=route.name or f"routes[{index}]",
                severity=route.severity,
                status=route.status,
                alert_type=route.alert_type,
                detection_id=route.detection_id,
                log_type=route.log_type,
                app_key=route.app_key or default_app_key,
                rules=base_rules.with_tags(route.tags),
                drop=route.drop,
            )
            for index, route in enumerate(routing.routes)
        ]
        return cls(
            compiled,
            default_app_key=default_app_key,
            base_rules=base_rules,
            drop_unmatched=routing.unmatched == "drop",
        )

    def route(self, alert: Alert, detection: Mapping[str, Any] | None = None) -> Route:
        """Where `alert` goes; `detection` (the catalog object) supplies its log types."""
        log_types: Sequence[str] = ()
        if detection:
            found = detection.get("logTypes") or detection.get("resourceTypes")
            if isinstance(found, list):
                log_types = found
        for rule in self.rules:
            if rule.matches(alert, log_types):
                return rule.route
        return self.unmatched

    def app_key_for(self, alert: Alert) -> str | None:
        """The app key of `alert` (None: dropped), without catalog log types."""
        return self.route(alert).app_key
