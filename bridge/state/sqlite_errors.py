"""What goes wrong with a SQLite state file, said so that the user knows what to do: the lock
that keeps two bridges off one file, and SQLite's result codes turned into typed `StateError`s."""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
from pathlib import Path

from bridge.errors import (
    StateAccessError,
    StateBusyError,
    StateCorruptError,
    StateError,
    StateFullError,
    StateIOError,
    StateLockedError,
)


def lock(path: Path) -> int:
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if lock_path.exists():
            raise StateAccessError(
                f"state.path {path}: lock file {lock_path} exists but cannot be opened for"
                f" writing ({exc.strerror}): give the bridge's user write access to it (chown,"
                " chmod), or remove it while no bridge runs on this state"
            ) from None
        raise StateAccessError(
            f"state.path {path}: cannot create lock file {lock_path}: {exc.strerror}; the"
            f" directory {path.parent} must be writable by the bridge's user"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise StateAccessError(
                f"state.path {path}: cannot lock {lock_path}: {exc.strerror}"
            ) from None
        raise StateLockedError(
            f"state.path {path} is in use by another bridge process (lock {lock_path} is held);"
            " stop it first (a backfill cannot run beside `bridge run` on the same state)"
        ) from None
    return fd


# SQLite's primary result codes (https://sqlite.org/rescode.html) that say what to do.
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 3, 5, 6, 8
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN = 10, 11, 13, 14
_SQLITE_NOTADB = 26


def corrupt_message(path: Path, detail: str) -> str:
    return (
        f"state.path {path} is damaged ({detail[:300]}); the bridge will not run on it. Stop"
        f" every bridge using it, then restore it from a backup, or move it aside"
        f" (mv {path} {path}.damaged, with its -wal and -shm files) to start with a fresh state:"
        " a fresh state re-reads panther.initial_lookback of alerts (BigPanda drops the exact"
        " resends) and starts without the old dead letters and status tracking"
    )


def state_error(exc: sqlite3.Error, path: Path, doing: str) -> StateError:
    """The typed `StateError` for a SQLite failure, with a message that says what to do."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc)
    lowered = text.lower()
    if primary == _SQLITE_FULL or "disk is full" in lowered:
        return StateFullError(
            f"state.path {path}: the disk is full ({text}) while {doing}: free space on the"
            f" file system of {path.parent} (or raise its quota). Nothing was lost (the write"
            " was rolled back whole); intake waits and resumes by itself once space returns,"
            " and queued events keep being delivered meanwhile"
        )
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or "malformed" in lowered:
        return StateCorruptError(corrupt_message(path, text))
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED) or "database is locked" in lowered:
        return StateBusyError(
            f"state.path {path} stayed locked beyond the busy timeout ({text}) while {doing}:"
            " another program holds a long transaction on it (an open sqlite3 shell?): end it"
        )
    if primary in (_SQLITE_READONLY, _SQLITE_PERM, _SQLITE_CANTOPEN) or any(
        words in lowered for words in ("readonly database", "unable to open")
    ):
        return StateAccessError(
            f"state.path {path}: cannot write the state ({text}) while {doing}: the file, its"
            f" -wal and -shm files and the directory {path.parent} must be writable by the"
            " bridge's user, on a file system mounted read-write"
        )
    if primary == _SQLITE_IOERR or "i/o error" in lowered:
        return StateIOError(
            f"state.path {path}: I/O error ({text}) while {doing}: check the disk and the"
            " mount (the kernel log says more); the bridge retries"
        )
    return StateError(f"state.path {path}: {text} while {doing}")
