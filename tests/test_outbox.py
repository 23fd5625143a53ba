"""bridge.outbox: the module the state lived in before the state package, kept for scripts."""

from __future__ import annotations


def test_the_old_module_keeps_its_names_for_scripts() -> None:
    import bridge.outbox as old
    from bridge.state import records, sqlite

    assert old.Outbox is sqlite.Outbox and old.NewEvent is records.NewEvent
    assert set(records.__all__) <= set(old.__all__)
    assert all(getattr(old, name) is getattr(records, name) for name in records.__all__)
