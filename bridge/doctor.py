"""`bridge doctor`: before the first `bridge run`, prove what can be proven about a config.

Each check prints one line: `✓` passed, `✗` failed (with what to do), `–` not provable from here
(said plainly, never counted as a pass or a failure), `!` a warning (not a failure). Every probe
is the cheapest read that proves its point: one alert, one rule, one policy, one saved query, the
calling token. Nothing is written anywhere, except one clearly labelled `ok` test alert to
BigPanda with `--send-test-alert`.

What BigPanda does not let us prove: it has no endpoint that validates an org token. The probe is
an empty batch (`{"app_key": ..., "alerts": []}`), which creates nothing: 401/403 proves the token
is refused; a 400 only shows it was not refused before the payload was judged (BIGPANDA.md does not
say in which order BigPanda checks). `--send-test-alert` proves token and app key by sending one.

No secret is printed: response bodies are quoted with every credential replaced by `***`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from bridge.errors import ConfigError
from bridge.http import client_session
from bridge.panther.client import API_URL_HINT

__all__ = ["Check", "Doctor", "run_doctor"]

PASS, FAIL, UNPROVEN, WARN = "pass", "fail", "unproven", "warn"
MAX_CLOCK_OFFSET = 5.0  # seconds: alert timestamps are epoch seconds, a skew shows in BigPanda
PROBE_TIMEOUT = 10.0
TEST_ALERT_ID = "panther-bigpanda-bridge-doctor-test"


@dataclass(frozen=True)
class Check:
    """The outcome of one check, printed on one line."""

    outcome: str  # PASS | FAIL | UNPROVEN | WARN (printed, not a failure)
    name: str
    detail: str
    fix: str = ""

    def line(self, symbols: Mapping[str, str]) -> str:
        text = f"{symbols[self.outcome]} {self.name}: {self.detail}"
        return f"{text} -> {self.fix}" if self.fix else text


@dataclass
class _Answer:
    """One probe's response, or the reason there was none (`status` 0)."""

    status: int
    body: bytes = b""
    error: str = ""
    server_time: float | None = None  # from the Date header
    local_time: float = 0.0  # our clock at the middle of the request

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


@dataclass
class Doctor:
    """Runs the checks of one config and collects their lines."""

    settings: Any
    send_test_alert: bool = False
    out: Callable[[str], None] = print
    checks: list[Check] = field(default_factory=list)
    _offsets: dict[str, float] = field(default_factory=dict)
    _secrets: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        s = self.settings
        self._secrets = [
            s.panther.api_token.get_secret_value(),
            s.bigpanda.api_token.get_secret_value(),
        ]
        sync = _sync_back(s)
        if sync is not None and getattr(sync, "api_key", None) is not None:
            self._secrets.append(_secret(sync.api_key))
        self._symbols = _symbols()

    def report(self, check: Check) -> None:
        self.checks.append(check)
        self.out(self._redact(check.line(self._symbols)))

    @property
    def ok(self) -> bool:
        return all(c.outcome != FAIL for c in self.checks)

    async def run(self) -> bool:
        self.report(Check(PASS, "config", "valid"))
        for warning in _config_warnings(self.settings):
            self.report(Check(WARN, "config", warning[0], warning[1]))
        self.check_state()
        await self.check_panther()
        await self.check_bigpanda()
        await self.check_sync_back()
        self.check_clock()
        return self.ok

    # -- state ---------------------------------------------------------------------------------

    def check_state(self) -> None:
        url = getattr(self.settings.state, "url", None)
        if url:
            self._check_postgres(_secret(url))
            return
        self.report(_state_path_check(Path(self.settings.state.path)))

    def _check_postgres(self, url: str) -> None:
        parts = urlsplit(url)
        where = f"PostgreSQL at {parts.hostname or 'localhost'}:{parts.port or 5432}"
        try:
            import psycopg  # optional: only a state.url config needs it
        except ImportError:
            self.report(
                Check(
                    UNPROVEN,
                    "state",
                    f"{where} not checked: the psycopg package is not installed here",
                    "install the bridge with its PostgreSQL extra to check it",
                )
            )
            return
        from bridge.state import namespace_of
        from bridge.state.postgres_schema import schema_name

        schema = schema_name(namespace_of(self.settings))
        try:
            with psycopg.connect(url, connect_timeout=5) as conn:
                # The bridge keeps its tables in a schema of its own (one per namespace): it
                # needs CREATE on the database until that schema exists, then rights in it.
                row = conn.execute(
                    "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)"
                    " THEN has_schema_privilege(%s, 'USAGE,CREATE')"
                    " ELSE has_database_privilege(current_database(), 'CREATE') END",
                    (schema, schema),
                ).fetchone()
        except Exception as exc:  # any driver error is the answer to report
            self.report(
                Check(
                    FAIL,
                    "state",
                    f"{where} not reachable: {type(exc).__name__}: {self._redact(str(exc))[:200]}",
                    "check state.url (host, port, database, user) and that the server is up",
                )
            )
            return
        if row and row[0]:
            self.report(
                Check(PASS, "state", f"{where} reachable, may keep its tables in {schema}")
            )
        else:
            self.report(
                Check(
                    FAIL,
                    "state",
                    f"{where} reachable, but the user may not create schema {schema} or its"
                    " tables",
                    f"GRANT CREATE ON DATABASE <database> TO <user> (or, once {schema} exists,"
                    f" GRANT USAGE, CREATE ON SCHEMA {schema}), or use a database it owns",
                )
            )

    # -- Panther -------------------------------------------------------------------------------

    async def check_panther(self) -> None:
        p = self.settings.panther
        headers = {"X-API-Key": p.api_token.get_secret_value(), "Accept": "application/json"}
        async with client_session(p.api_url, p.ca_bundle, limit=4) as session:

            async def get(path: str, params: dict[str, str] | None = None) -> _Answer:
                return await _request(session, "GET", p.api_url + path, headers, params, p.timeout)

            first = await get("/alerts", {"limit": "1", "type": "ALERT"})
            self._clock("Panther", first)
            if not self._answered(
                "Panther reachable", p.api_url, first,
                "check panther.api_url, DNS, HTTPS_PROXY/NO_PROXY, and panther.ca_bundle for a "
                "private CA",
            ):
                self.report(Check(UNPROVEN, "Panther token", "not checked: Panther not reachable"))
                return
            if first.status == 404:
                self.report(
                    Check(
                        FAIL,
                        "Panther reachable",
                        f"GET {p.api_url}/alerts answered 404",
                        API_URL_HINT,
                    )
                )
                return
            if first.status == 401:
                self.report(Check(PASS, "Panther reachable", f"{p.api_url} answers"))
                self.report(
                    Check(
                        FAIL,
                        "Panther token",
                        "refused (GET /alerts answered 401)",
                        "check panther.api_token (PANTHER_API_TOKEN); a new token takes 30-60 s "
                        "to start working",
                    )
                )
                return
            self.report(Check(PASS, "Panther reachable", f"{p.api_url} answers"))
            if first.status == 403:
                self.report(
                    Check(
                        FAIL,
                        "Panther Read Alerts",
                        "GET /alerts answered 403: the token lacks the permission (or is invalid)",
                        "give the API token the Read Alerts permission in Panther's console",
                    )
                )
            elif first.status == 200 and isinstance(_results(first), list):
                self.report(
                    Check(PASS, "Panther token", "accepted; Read Alerts proven (listed 1 alert)")
                )
            else:
                self.report(self._unexpected("Panther Read Alerts", "GET /alerts", first))
            if self.settings.catalog.enabled:
                for path, permission in (
                    ("/rules", "View Rules"),
                    ("/policies", "View Policies"),
                    ("/queries", "data-analytics read (saved queries)"),
                ):
                    answer = await get(path, {"limit": "1"})
                    self.report(self._permission(f"Panther {permission}", path, answer, permission))
            await self._token_self(get)

    def _permission(self, name: str, path: str, answer: _Answer, permission: str) -> Check:
        if answer.status == 200 and isinstance(_results(answer), list):
            return Check(PASS, name, f"proven (GET {path}?limit=1 answered 200)")
        if answer.status in (401, 403):
            return Check(
                FAIL,
                name,
                f"GET {path} answered {answer.status}: the token lacks this permission",
                f"give the API token {permission} in Panther's console, or set "
                "catalog.enabled: false to run without enrichment",
            )
        return self._unexpected(name, f"GET {path}", answer)

    async def _token_self(self, get: Callable[..., Any]) -> None:
        answer = await get("/api-tokens/self")
        sync = _sync_back(self.settings)
        wants_modify = sync is not None and bool(getattr(sync, "enabled", False))
        body = answer.json() if answer.status == 200 else None
        if not isinstance(body, dict):
            why = (
                f"GET /api-tokens/self answered {answer.status or answer.error}"
                if answer.status != 200
                else "GET /api-tokens/self did not answer a token object"
            )
            self.report(Check(UNPROVEN, "Panther token identity", f"not provable: {why}"))
            if wants_modify:
                self.report(
                    Check(
                        UNPROVEN,
                        "Panther alert-modify",
                        "not provable without changing an alert (needed by sync_back)",
                        "make sure the token has the Manage Alerts (AlertModify) permission",
                    )
                )
            return
        name = body.get("name") or body.get("id") or "?"
        self.report(Check(PASS, "Panther token identity", f"the token is {name!r}"))
        permissions = body.get("permissions")
        if wants_modify:
            if isinstance(permissions, list):
                if "AlertModify" in permissions:
                    self.report(Check(PASS, "Panther alert-modify", "AlertModify granted"))
                else:
                    self.report(
                        Check(
                            FAIL,
                            "Panther alert-modify",
                            "the token lacks AlertModify, which sync_back needs",
                            "give the API token the Manage Alerts permission, or disable sync_back",
                        )
                    )
            else:
                self.report(
                    Check(
                        UNPROVEN, "Panther alert-modify", "the token's permissions are not listed"
                    )
                )

    # -- BigPanda ------------------------------------------------------------------------------

    async def check_bigpanda(self) -> None:
        b = self.settings.bigpanda
        url = b.api_url + "/data/v2/alerts"
        headers = {
            "Authorization": f"Bearer {b.api_token.get_secret_value()}",
            "Content-Type": "application/json",
        }
        async with client_session(b.api_url, b.ca_bundle, limit=4) as session:
            # An empty batch: invalid, so it creates nothing, and what refuses it tells us whether
            # the token was refused first.
            probe = orjson.dumps({"app_key": b.app_key, "alerts": []})
            answer = await _request(session, "POST", url, headers, None, b.timeout, probe)
            self._clock("BigPanda", answer)
            if not self._answered(
                "BigPanda reachable", b.api_url, answer,
                "check bigpanda.api_url (US https://api.bigpanda.io, EU "
                "https://eu-api.bigpanda.io), HTTPS_PROXY/NO_PROXY and bigpanda.ca_bundle",
            ):
                return
            if answer.status == 404:
                self.report(
                    Check(
                        FAIL,
                        "BigPanda reachable",
                        f"POST {url} answered 404",
                        "check bigpanda.api_url: the API host with no path, e.g. "
                        "https://api.bigpanda.io",
                    )
                )
                return
            self.report(Check(PASS, "BigPanda reachable", f"{b.api_url} answers"))
            if answer.status in (401, 403):
                self.report(
                    Check(
                        FAIL,
                        "BigPanda org token",
                        f"refused (HTTP {answer.status} to an empty batch)",
                        "check bigpanda.api_token (BIGPANDA_API_TOKEN): the org token of the "
                        "Alerts API integration, sent as Bearer",
                    )
                )
                return
            if answer.status == 400:
                self.report(
                    Check(
                        PASS,
                        "BigPanda org token",
                        "not refused: an empty batch (nothing created) answered 400, not 401/403",
                    )
                )
            else:
                self.report(self._unexpected("BigPanda org token", "POST /data/v2/alerts", answer))
            if not self.send_test_alert:
                self.report(
                    Check(
                        UNPROVEN,
                        "BigPanda app key",
                        "not provable without sending an alert (BigPanda has no validation "
                        "endpoint); that the token is accepted for alerts is not proven either",
                        "run `bridge doctor --send-test-alert` to send one labelled ok test alert",
                    )
                )
                return
            now = int(time.time())
            alert = {
                "app_key": b.app_key,
                "status": "ok",
                "host": "panther-bigpanda-bridge",
                "check": "bridge doctor test alert",
                "description": "Test alert sent by `bridge doctor --send-test-alert`, status ok: "
                "nothing to do, safe to ignore.",
                "incident_identifier": TEST_ALERT_ID,
                "timestamp": now,
                "panther_bridge_test": "true",
            }
            sent = await _request(
                session, "POST", url, headers, None, b.timeout, orjson.dumps(alert)
            )
            if sent.status in (200, 201, 202, 204):
                self.report(
                    Check(
                        PASS,
                        "BigPanda test alert",
                        f"accepted (HTTP {sent.status}): org token and app key proven; look for "
                        f"incident_identifier {TEST_ALERT_ID} (status ok)",
                    )
                )
            else:
                self.report(
                    Check(
                        FAIL,
                        "BigPanda test alert",
                        f"refused: HTTP {sent.status or sent.error} {self._body(sent)}",
                        "check bigpanda.app_key (BIGPANDA_APP_KEY) and bigpanda.api_token",
                    )
                )

    # -- sync-back -----------------------------------------------------------------------------

    async def check_sync_back(self) -> None:
        sync = _sync_back(self.settings)
        if sync is None or not getattr(sync, "enabled", False):
            return
        api_key = getattr(sync, "api_key", None)
        environment = getattr(sync, "environment_id", None)
        b = self.settings.bigpanda
        base = getattr(sync, "api_url", None) or b.api_url
        if api_key is None:
            self.report(
                Check(
                    FAIL,
                    "sync-back",
                    "no api_key",
                    "set sync_back.api_key (a BigPanda User API key)",
                )
            )
            return
        headers = {"Authorization": f"Bearer {_secret(api_key)}", "Accept": "application/json"}
        url = base + "/resources/v2.0/environments"
        async with client_session(base, b.ca_bundle, limit=4) as session:
            answer = await _request(session, "GET", url, headers, None, b.timeout)
        self._clock("BigPanda", answer)
        if answer.status in (401, 403):
            self.report(
                Check(
                    FAIL,
                    "sync-back User API key",
                    f"refused (GET /resources/v2.0/environments answered {answer.status})",
                    "check sync_back.api_key: a BigPanda User API key (Settings > API Keys), "
                    "not the org token",
                )
            )
            return
        body = answer.json() if answer.status == 200 else None
        items = body.get("items") if isinstance(body, dict) else body
        if not isinstance(items, list):
            self.report(
                self._unexpected(
                    "sync-back User API key", "GET /resources/v2.0/environments", answer
                )
            )
            return
        self.report(Check(PASS, "sync-back User API key", f"accepted ({len(items)} environments)"))
        ids = {str(e.get("id")) for e in items if isinstance(e, dict)}
        if environment is not None and str(environment) in ids:
            self.report(Check(PASS, "sync-back environment", f"{environment} exists"))
        else:
            names = ", ".join(
                f"{e.get('name')} ({e.get('id')})" for e in items[:5] if isinstance(e, dict)
            )
            self.report(
                Check(
                    FAIL,
                    "sync-back environment",
                    f"{environment!r} is not among the environments this key sees",
                    f"set sync_back.environment_id to one of: {names or 'none visible'}",
                )
            )

    # -- clock ---------------------------------------------------------------------------------

    def _clock(self, target: str, answer: _Answer) -> None:
        if answer.server_time is not None and target not in self._offsets:
            self._offsets[target] = answer.server_time - answer.local_time

    def check_clock(self) -> None:
        if not self._offsets:
            self.report(Check(UNPROVEN, "clock", "no Date header received: offset not measurable"))
            return
        worst = max(self._offsets.items(), key=lambda kv: abs(kv[1]))
        target, offset = worst
        if abs(offset) > MAX_CLOCK_OFFSET:
            direction = "behind" if offset > 0 else "ahead of"
            self.report(
                Check(
                    FAIL,
                    "clock",
                    f"this host is {abs(offset):.0f} s {direction} {target} (its Date header); "
                    f"alerts carry epoch-second timestamps",
                    "synchronise this host's clock (NTP: chronyd, systemd-timesyncd)",
                )
            )
            return
        seen = ", ".join(f"{t} {o:+.0f} s" for t, o in self._offsets.items())
        self.report(Check(PASS, "clock", f"within {MAX_CLOCK_OFFSET:.0f} s ({seen})"))

    # -- helpers -------------------------------------------------------------------------------

    def _answered(self, name: str, base_url: str, answer: _Answer, fix: str) -> bool:
        """Whether `answer` is an answer at all; if not, `name` is reported failed with `fix`."""
        if answer.status != 0:
            return True
        self.report(Check(FAIL, name, f"no answer from {base_url}: {answer.error}", fix))
        return False

    def _unexpected(self, name: str, what: str, answer: _Answer) -> Check:
        if answer.status == 0:
            return Check(
                FAIL, name, f"{what}: no answer: {answer.error}", "retry; check the network"
            )
        return Check(
            FAIL,
            name,
            f"{what} answered HTTP {answer.status} {self._body(answer)}",
            "retry later; if it persists, check the API URL and the service's status page",
        )

    def _body(self, answer: _Answer) -> str:
        text = answer.body.decode("utf-8", errors="replace").strip().replace("\n", " ")
        return self._redact(text[:200])

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


# --- module helpers ---------------------------------------------------------------------------


def _symbols() -> dict[str, str]:
    """✓ ✗ – where the terminal can print them, OK FAIL -- otherwise."""
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "✓✗–".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return {PASS: "OK  ", FAIL: "FAIL", UNPROVEN: "--  ", WARN: "!   "}
    return {PASS: "✓", FAIL: "✗", UNPROVEN: "–", WARN: "!"}


def _secret(value: Any) -> str:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def _sync_back(settings: Any) -> Any:
    """The `sync_back` section when the config model has one (two-way sync), else None."""
    return getattr(settings, "sync_back", None)


def _results(answer: _Answer) -> Any:
    body = answer.json()
    return body.get("results") if isinstance(body, dict) else None


def _config_warnings(settings: Any) -> list[tuple[str, str]]:
    from bridge.config import config_warnings

    return [(w.problem, w.fix) for w in config_warnings(settings)]


def _state_path_check(path: Path) -> Check:
    """Can the bridge create (or write) its SQLite file? Tried for real: root ignores modes."""
    if path.is_dir():
        return Check(FAIL, "state", f"state.path {path} is a directory", "give a file path")
    directory = path.parent if str(path.parent) else Path(".")
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return Check(
            FAIL,
            "state",
            f"state.path {path}: {existing} is a file, not a directory",
            "set state.path to a file in a writable directory (a volume in a container)",
        )
    try:
        if existing != directory:
            directory.mkdir(parents=True, exist_ok=True)
            created = f" (created {directory})"
        else:
            created = ""
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".bridge-doctor-")
        os.close(fd)
        os.unlink(probe)
        if path.exists():
            with open(path, "ab"):
                pass
    except OSError as exc:
        return Check(
            FAIL,
            "state",
            f"state.path {path}: cannot write in {directory}: {exc.strerror}",
            "make the directory writable by this user, or set state.path elsewhere",
        )
    return Check(PASS, "state", f"{path} writable{created}")


async def _request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: Mapping[str, str],
    params: Mapping[str, str] | None,
    timeout: float,
    data: bytes | None = None,
) -> _Answer:
    started = time.time()
    try:
        async with session.request(
            method,
            url,
            params=params,
            data=data,
            headers=dict(headers),
            timeout=aiohttp.ClientTimeout(total=min(timeout, PROBE_TIMEOUT)),
            allow_redirects=False,
        ) as resp:
            body = await resp.read()
            ended = time.time()
            return _Answer(
                resp.status,
                body,
                server_time=_date(resp.headers.get("Date")),
                local_time=(started + ended) / 2,
            )
    except TimeoutError:
        return _Answer(0, error=f"no answer within {min(timeout, PROBE_TIMEOUT):g} s")
    except (aiohttp.ClientError, OSError) as exc:
        detail = str(exc).strip()
        return _Answer(0, error=f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__)


def _date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def run_doctor(
    config: str | None, *, send_test_alert: bool = False, out: Callable[[str], None] = print
) -> int:
    """The `bridge doctor` command: 0 when every check passed, 1 otherwise."""
    from bridge.config import load_config

    symbols = _symbols()
    try:
        settings = load_config(config)
    except ConfigError as exc:
        out(f"{symbols[FAIL]} config: invalid -> fix these, or run `bridge check-config`:")
        for problem in exc.problems:
            out(f"    {problem}")
        return 1
    doctor = Doctor(settings, send_test_alert=send_test_alert, out=out)
    try:
        ok = asyncio.run(doctor.run())
    except ConfigError as exc:  # e.g. a CA bundle that is not PEM
        for problem in exc.problems:
            out(f"{symbols[FAIL]} config: {problem}")
        return 1
    return 0 if ok else 1
