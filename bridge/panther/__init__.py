"""Panther's REST API: the models the bridge reads and the client that reads them."""

from bridge.panther.models import Alert, AlertPage, DetectionRef

__all__ = ["Alert", "AlertPage", "DetectionRef"]
