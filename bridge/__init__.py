"""Carries Panther security alerts and their status changes into BigPanda."""

__version__ = "0.1.0"
