"""A BigPanda Alerts API simulator: the judge of the bridge in integration tests and benchmarks.

It enforces what shared/api/BIGPANDA.md says the real service needs (Bearer token, int epoch-second
timestamps, a primary property, flat tags with bounded names and values) and answers like it does:
201 accepted, 204 for an exact resend, 400 naming the field, 401 for a bad token. It can also be
told to misbehave (`script`, `outage`, `poison`, `job_script`) so the bridge's retries, bisection
and 202 job tracking can be exercised without the real service: `html` answers 200 with an HTML
page (what a proxy or a wrong `api_url` does), a trailing `*` repeats a token for every request
from then on (`400*`: every batch rejected; `202*`: every batch a job), and the job step `404`
makes a job's URL answer 404 (with `job_script("404")`, forever).

Where BIGPANDA.md is silent (the 201 body, the job resource behind a 202 on the Alerts API) the
simulator picks something small and documents it here; it never invents a size or rate limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import orjson
from aiohttp import web

from bridge.sim import serve_app
from bridge.sim.bigpanda_incidents import IncidentStore

__all__ = [
    "AcceptedAlert",
    "BigPandaSimulator",
    "RequestRecord",
    "serve",
    "validate_alert",
]

DEFAULT_TOKEN = "sim-bigpanda-token"
ALERTS_PATH = "/data/v2/alerts"
JOBS_PATH = "/resources/v2.0/jobs"

STATUSES = frozenset({"ok", "critical", "warning", "unknown", "acknowledged"})
# BIGPANDA.md: "host, else service, else application, else device".
PRIMARY_FIELDS = ("host", "service", "application", "device")
# Keys with a meaning of their own; every other key of an alert is a custom tag.
RESERVED = frozenset(
    {
        "status",
        "timestamp",
        "description",
        "incident_identifier",
        "primary_property",
        "secondary_property",
    }
)
TAG_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
MAX_DESCRIPTION = 2048
MAX_TAG_ITEMS = 30
MAX_TAG_CHARS = 512
# Epoch numbers above this are milliseconds (same threshold as bridge.timeutil).
MS_THRESHOLD = 10**11
# BIGPANDA.md documents no payload limit, so do not let aiohttp's 1 MiB default invent one.
MAX_BODY = 256 * 1024 * 1024


Problem = tuple[str, str]  # (field path, what is wrong with it); "" is the alert itself


@dataclass
class AcceptedAlert:
    """One alert the simulator stored, as BigPanda would show it."""

    app_key: str
    alert: dict[str, Any]
    received_at: float


@dataclass
class RequestRecord:
    """One HTTP request as received; `status` is 0 while in progress or if the connection reset."""

    method: str
    path: str
    status: int
    at: float
    alert_count: int
    body: bytes
    headers: dict[str, str]


# What the logging middleware hands the handlers: the request's log entry and its wall-clock time.
_ARRIVAL: Any = (
    web.RequestKey("bigpanda.arrival", tuple)
    if hasattr(web, "RequestKey")  # aiohttp >= 3.12 warns about plain string keys
    else "bigpanda.arrival"
)


@dataclass
class _Fault:
    """One parsed token of a `script()` spec."""

    kind: str  # "status" | "ok" | "job" | "reset" | "slow" | "html"
    status: int = 0
    retry_after: str | None = None  # seconds, or "date:N" for an HTTP-date N seconds ahead
    absolute: bool = False
    delay: float = 0.0
    repeat: bool = False  # `*`: answer every request from now on this way


HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>Welcome</title></head>"
    "<body><h1>It works!</h1><p>This is not the API you are looking for.</p></body></html>"
)


@dataclass
class _Job:
    """A 202 answer's pending work: its alerts are accepted only when the job reaches `done`."""

    job_id: str
    app_key: str
    alerts: list[dict[str, Any]]
    received: int
    steps: list[str]
    polls: int = 0
    status: str = "pending"
    start_time: int = 0
    end_time: int | None = None


# --- validation --------------------------------------------------------------------------------


def validate_alert(alert: object, *, strict: bool = False) -> list[str]:
    """Problems with one alert object of a batch (without `app_key`), each starting with its field.

    `strict` also rejects tag strings over 512 characters, which the real service silently
    truncates (BIGPANDA.md): the bridge's property tests want to know it never sends them.
    """
    return [f"{path or 'alert'}: {text}" for path, text in _problems(alert, strict)]


def _problems(alert: object, strict: bool) -> list[Problem]:
    if not isinstance(alert, dict):
        return [("", f"must be a JSON object, got {_json_type(alert)}")]
    problems: list[Problem] = []
    for key, value in alert.items():
        if value is None:
            problems.append((_name(key), "null is not allowed: omit the key instead"))
        elif key in RESERVED:
            _check_reserved(key, value, problems)
        elif key == "app_key":
            problems.append(("app_key", "belongs at the top level of a batch, not inside an alert"))
        else:
            _check_tag(key, value, strict, problems)
    if "status" not in alert:
        problems.append(("status", f"required, one of {_STATUS_LIST}"))
    _check_primary(alert, problems)
    secondary = alert.get("secondary_property")
    if isinstance(secondary, str) and secondary and secondary not in alert:
        problems.append(
            ("secondary_property", f"must name a key present in the alert, got {secondary!r}")
        )
    return problems


_STATUS_LIST = "|".join(sorted(STATUSES))


def _check_reserved(key: str, value: object, problems: list[Problem]) -> None:
    if key == "status":
        if not isinstance(value, str) or value not in STATUSES:
            problems.append(("status", f"must be one of {_STATUS_LIST}, got {_show(value)}"))
    elif key == "timestamp":
        _check_timestamp(value, problems)
    elif key == "description":
        if not isinstance(value, str):
            problems.append(("description", f"must be a string, got {_json_type(value)}"))
        elif len(value) > MAX_DESCRIPTION:
            problems.append(
                ("description", f"{len(value)} characters, over the {MAX_DESCRIPTION} allowed")
            )
    elif key == "incident_identifier":
        if not isinstance(value, str) or not value:
            problems.append(
                ("incident_identifier", f"must be a non-empty string, got {_show(value)}")
            )
    elif not isinstance(value, str) or not value:  # primary_property / secondary_property
        problems.append((key, f"must be a non-empty string naming a tag, got {_show(value)}"))


def _check_timestamp(value: object, problems: list[Problem]) -> None:
    """BIGPANDA.md: int epoch seconds, never milliseconds, never RFC3339 text."""
    expected = "must be an integer of epoch seconds, got"
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(("timestamp", f"{expected} {_show(value)} (a {_json_type(value)})"))
    elif value > MS_THRESHOLD:
        problems.append(("timestamp", f"{expected} {value} (milliseconds?)"))
    elif value < 0:
        problems.append(("timestamp", f"{expected} {value} (negative)"))


def _check_primary(alert: dict[str, Any], problems: list[Problem]) -> None:
    """BIGPANDA.md: "A payload without a primary property is dropped" (silently, for real)."""
    named = alert.get("primary_property")
    if named is not None:
        if (
            isinstance(named, str)
            and named
            and (named in RESERVED or not _filled(alert.get(named)))
        ):
            problems.append(
                ("primary_property", f"must name a present, non-empty tag, got {named!r}")
            )
        return
    for key in PRIMARY_FIELDS:
        value = alert.get(key)
        if isinstance(value, str) and value:
            return
    problems.append(
        (
            "host",
            "no primary property: set a non-empty host, service, application or device, "
            "or name a tag with primary_property",
        )
    )


def _filled(value: object) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    return isinstance(value, int) or (isinstance(value, str | list) and len(value) > 0)


def _check_tag(key: str, value: object, strict: bool, problems: list[Problem]) -> None:
    """BIGPANDA.md: a string, an int or an array of them; nothing nested; bounded names/values."""
    name = _name(key)
    if not _valid_tag_name(key):
        problems.append(
            (
                name,
                "invalid tag name: must start with a letter and use only lowercase a-z 0-9 _ -, "
                "at most 64 characters",
            )
        )
    if isinstance(value, str):
        if strict and len(value) > MAX_TAG_CHARS:
            problems.append((name, _too_long(value)))
    elif isinstance(value, list):
        if len(value) > MAX_TAG_ITEMS:
            problems.append((name, f"at most {MAX_TAG_ITEMS} items, got {len(value)}"))
        for index, item in enumerate(value):
            if isinstance(item, str):
                if strict and len(item) > MAX_TAG_CHARS:
                    problems.append((f"{name}[{index}]", _too_long(item)))
            elif not _scalar_int(item):
                problems.append((f"{name}[{index}]", _bad_value(item, in_list=True)))
    elif not _scalar_int(value):
        problems.append((name, _bad_value(value, in_list=False)))


_TAG_NAME_VERDICTS: dict[str, bool] = {}


def _valid_tag_name(key: str) -> bool:
    """Tag names repeat across every alert: remember the verdict instead of re-matching."""
    verdict = _TAG_NAME_VERDICTS.get(key)
    if verdict is None:
        verdict = TAG_NAME.fullmatch(key) is not None
        if len(_TAG_NAME_VERDICTS) < 100_000:
            _TAG_NAME_VERDICTS[key] = verdict
    return verdict


def _scalar_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bad_value(value: object, *, in_list: bool) -> str:
    if isinstance(value, dict):
        return "nested objects are not supported: flatten them"
    if isinstance(value, list):
        return "nested lists are not supported"
    if value is None:
        return "null is not allowed"
    allowed = "a string or an integer" if in_list else "a string, an integer or a list of them"
    return f"must be {allowed}, got {_show(value)} (a {_json_type(value)})"


def _too_long(value: str) -> str:
    return f"{len(value)} characters, over the {MAX_TAG_CHARS} BigPanda keeps (it would truncate)"


def _name(key: object) -> str:
    return str(key) if key else '""'


def _show(value: object) -> str:
    text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    return text if len(text) <= 80 else text[:77] + "..."


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array", str: "string", int: "integer", float: "float"}.get(
        type(value), type(value).__name__
    )


class _Rejected(Exception):
    """A request answered with a failure status and a JSON body naming the problems."""

    def __init__(self, status: int, errors: list[str], headers: dict[str, str] | None = None):
        super().__init__(errors[0] if errors else str(status))
        self.status = status
        self.errors = errors
        self.headers = headers or {}


# --- faults ------------------------------------------------------------------------------------


def parse_script(spec: str) -> list[_Fault]:
    """Parse `500,429:Retry-After=2,202abs,reset,slow:0.5,html,ok,400*` into faults (ValueError
    if bad). A token ending in `*` answers every request from then on; nothing after it is used."""
    faults = []
    for raw in spec.split(","):
        token = raw.strip()
        if not token:
            continue
        repeat = token.endswith("*")
        token = token.removesuffix("*").strip()
        lowered = token.lower()
        if lowered in ("ok", "201"):
            fault = _Fault("ok")
        elif lowered in ("202", "202abs"):
            fault = _Fault("job", absolute=lowered == "202abs")
        elif lowered == "reset":
            fault = _Fault("reset")
        elif lowered == "html":
            fault = _Fault("html", status=200)
        elif lowered.startswith("slow:"):
            fault = _Fault("slow", delay=float(token[5:]))
        else:
            fault = _parse_status_token(token)
        fault.repeat = repeat
        faults.append(fault)
    return faults


def _parse_status_token(token: str) -> _Fault:
    code, _, option = token.partition(":")
    if not code.isdigit() or not 400 <= int(code) <= 599:
        raise ValueError(
            f"script token {token!r}: expected a 4xx/5xx code, ok, 202, reset, html, slow:S"
        )
    retry_after = None
    if option:
        name, _, value = option.partition("=")
        if name.lower() != "retry-after" or not value:
            raise ValueError(f"script token {token!r}: only Retry-After=N or =date:N is supported")
        seconds = value[5:] if value.lower().startswith("date:") else value
        float(seconds)  # fail now, not when the token is consumed
        retry_after = value
    return _Fault("status", status=int(code), retry_after=retry_after)


async def _misbehave(request: web.Request, fault: _Fault) -> web.Response | None:
    """Apply a scripted fault: answer a failure without processing, drop the line, or stall;
    returns the answer to give instead of processing the request (`html`), if any."""
    if fault.kind == "status":
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = _retry_after_header(fault.retry_after)
        raise _Rejected(fault.status, [f"scripted {fault.status}"], headers)
    if fault.kind == "reset":
        # The client must see a dropped connection, not a response: abort the socket and end the
        # handler the way aiohttp ends one whose peer went away.
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError
    if fault.kind == "slow":
        await asyncio.sleep(fault.delay)
    if fault.kind == "html":
        return web.Response(status=200, text=HTML_PAGE, content_type="text/html")
    return None


def _retry_after_header(value: str) -> str:
    if value.lower().startswith("date:"):
        return formatdate(time.time() + float(value[5:]), usegmt=True)
    return value


def _parse_steps(spec: str) -> list[str]:
    steps = [step.strip() for step in spec.split(",") if step.strip()]
    if not steps:
        raise ValueError("job script is empty: give statuses like pending,started,done")
    return steps


# --- the simulator -----------------------------------------------------------------------------


class BigPandaSimulator:
    """The BigPanda Alerts API (plus a job resource for 202 answers), in memory."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        app_keys: Iterable[str] | None = None,
        latency: float = 0.0,
        incidents: IncidentStore | None = None,
    ) -> None:
        self.token = token
        # The incident side (correlation, Incidents V2, activities): bridge.sim.bigpanda_incidents.
        self.incidents = incidents or IncidentStore()
        self.app_keys = None if app_keys is None else frozenset(app_keys)
        self.latency = latency
        self.accepted: list[AcceptedAlert] = []
        self.duplicates = 0
        self.requests: list[RequestRecord] = []
        self._seen: set[tuple[str, bytes]] = set()
        self._by_incident: dict[str, list[dict[str, Any]]] = {}
        self._script: list[_Fault] = []
        self._outage_until = 0.0
        self._outage_status = 503
        self._poison: list[str] = []
        self._job_steps = ["pending", "started", "done"]
        self._jobs: dict[str, _Job] = {}
        # Seconds added to the Date header of every answer: a server whose clock disagrees.
        self.date_offset = 0.0
        self.app = web.Application(middlewares=[self._record], client_max_size=MAX_BODY)
        self.app.router.add_post(ALERTS_PATH, self._post_alerts)
        self.app.router.add_get(JOBS_PATH + "/{job_id}", self._get_job)
        self.incidents.install(self.app.router)
        self.app.router.add_route("*", "/{tail:.*}", self._not_found)

    # -- knobs for tests --

    def script(self, spec: str) -> None:
        """Queue scripted answers for the next alerts POSTs (one token each), after queued ones;
        a token ending in `*` stays, answering every later POST."""
        self._script.extend(parse_script(spec))

    def clear_script(self) -> None:
        """Forget the scripted answers not used yet (a repeating `*` token included)."""
        self._script.clear()

    def outage(self, seconds: float, *, status: int = 503) -> None:
        """Answer every alerts POST with `status` for the next `seconds`."""
        self._outage_until = time.monotonic() + seconds
        self._outage_status = status

    def poison(self, marker: str) -> None:
        """Reject (400) any alert whose JSON contains `marker`: a known-bad event to bisect to."""
        self._poison.append(marker)

    def job_script(self, spec: str) -> None:
        """Statuses the next 202 jobs go through, one per GET; kept until changed. The step
        `404` answers that GET with 404 (no such job), as a job URL that leads nowhere does."""
        self._job_steps = _parse_steps(spec)

    def alerts_for(self, incident_identifier: str) -> list[dict[str, Any]]:
        """Accepted alerts with this `incident_identifier`, in order."""
        return list(self._by_incident.get(incident_identifier, ()))

    # -- HTTP --

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Log every request (raw body, redacted headers) in arrival order; errors become JSON."""
        body = await request.read()
        record = RequestRecord(
            method=request.method,
            path=request.path,
            status=0,
            at=time.monotonic(),
            alert_count=0,
            body=body,
            headers=_redacted(request),
        )
        self.requests.append(record)
        request[_ARRIVAL] = (record, time.time())
        try:
            response = await handler(request)
        except _Rejected as exc:
            response = _failure(exc.status, exc.errors, exc.headers)
        record.status = response.status
        if self.date_offset:
            response.headers["Date"] = formatdate(time.time() + self.date_offset, usegmt=True)
        return response

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        raise _Rejected(404, [f"no such resource: {request.method} {request.path}"])

    async def _post_alerts(self, request: web.Request) -> web.StreamResponse:
        record, received_at = request[_ARRIVAL]
        body, json_error = _loads(record.body)
        record.alert_count = _count_alerts(body)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if time.monotonic() < self._outage_until:
            raise _Rejected(self._outage_status, [f"simulated outage ({self._outage_status})"])
        fault = self._script[0] if self._script else None
        if fault is not None and not fault.repeat:
            self._script.pop(0)
        if fault is not None:
            answer = await _misbehave(request, fault)
            if answer is not None:
                return answer
        self._authorize(request)
        if request.content_type != "application/json":
            got = request.content_type
            raise _Rejected(415, [f"Content-Type: must be application/json, got {got!r}"])
        if json_error is not None:
            raise _Rejected(400, [f"body: invalid JSON: {json_error}"])
        app_key, alerts = self._parse(body)
        received = int(received_at)
        if fault is not None and fault.kind == "job":
            return self._start_job(request, app_key, alerts, received, absolute=fault.absolute)
        created, duplicates = self._accept(app_key, alerts, received)
        if created == 0:
            return web.Response(status=204)
        return _json(201, {"status": "created", "accepted": created, "duplicates": duplicates})

    async def _get_job(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        job = self._jobs.get(request.match_info["job_id"])
        if job is None:
            raise _Rejected(404, [f"job_id: no such job {request.match_info['job_id']!r}"])
        self._advance(job)
        if job.status == "404":
            raise _Rejected(404, [f"job_id: no such job {job.job_id!r}"])
        body = {
            "job_id": job.job_id,
            "status": job.status,
            "start_time": job.start_time,
            "end_time": job.end_time,
        }
        return _json(200, body)

    def _authorize(self, request: web.Request) -> None:
        """BIGPANDA.md: `Authorization: Bearer <org token>`; a bare token is a known mistake."""
        header = request.headers.get("Authorization")
        if header is None:
            raise _Rejected(401, ["Authorization: missing header (expected Bearer <token>)"])
        if not header.startswith("Bearer "):
            raise _Rejected(401, ["Authorization: missing Bearer prefix"])
        if header[7:] != self.token:
            raise _Rejected(401, ["Authorization: invalid token"])

    def _parse(self, body: object) -> tuple[str, list[dict[str, Any]]]:
        """Validate a single or batched body; any bad alert rejects the whole request (400)."""
        if not isinstance(body, dict):
            raise _Rejected(400, [f"body: must be a JSON object, got {_json_type(body)}"])
        app_key = body.get("app_key")
        if not isinstance(app_key, str) or not app_key:
            raise _Rejected(400, [f"app_key: required, a non-empty string, got {_show(app_key)}"])
        if self.app_keys is not None and app_key not in self.app_keys:
            raise _Rejected(400, [f"app_key: unknown app key {app_key!r}"])
        if "alerts" in body:
            alerts = body["alerts"]
            extra = sorted(set(body) - {"app_key", "alerts"})
            if extra:
                raise _Rejected(400, [f"{extra[0]}: unexpected top-level key in a batch"])
            if not isinstance(alerts, list):
                raise _Rejected(400, [f"alerts: must be an array, got {_json_type(alerts)}"])
            if not alerts:
                raise _Rejected(400, ["alerts: must not be empty"])
            errors = self._batch_errors(alerts)
        else:
            del body["app_key"]
            alerts = [body]
            errors = [f"{path or 'alert'}: {text}" for path, text in self._alert_problems(body)]
        if errors:
            raise _Rejected(400, errors)
        return app_key, alerts

    def _batch_errors(self, alerts: list[Any]) -> list[str]:
        errors = []
        for index, alert in enumerate(alerts):
            for path, text in self._alert_problems(alert):
                where = f"alerts[{index}].{path}" if path else f"alerts[{index}]"
                errors.append(f"{where}: {text}")
        return errors

    def _alert_problems(self, alert: object) -> list[Problem]:
        problems = _problems(alert, strict=False)
        if self._poison and isinstance(alert, dict):
            for marker in self._poison:
                if marker in orjson.dumps(alert).decode():
                    problems.append((_poisoned_field(alert, marker), f"poisoned by {marker!r}"))
        return problems

    def _start_job(
        self,
        request: web.Request,
        app_key: str,
        alerts: list[dict[str, Any]],
        received: int,
        *,
        absolute: bool,
    ) -> web.StreamResponse:
        """BIGPANDA.md: a 202 means "accepted, outcome pending" until the job is done or failed."""
        job_id = uuid.uuid4().hex
        self._jobs[job_id] = _Job(
            job_id, app_key, alerts, received, list(self._job_steps), start_time=int(time.time())
        )
        location = f"{JOBS_PATH}/{job_id}"
        if absolute:
            location = f"{request.scheme}://{request.host}{location}"
        response = _json(202, {"job_id": job_id, "status": "pending"})
        response.headers["Location"] = location
        return response

    def _advance(self, job: _Job) -> None:
        if job.status in ("done", "failed"):
            return
        job.status = job.steps[min(job.polls, len(job.steps) - 1)]
        job.polls += 1
        if job.status in ("done", "failed"):
            job.end_time = int(time.time())
            if job.status == "done":
                self._accept(job.app_key, job.alerts, job.received)
            job.alerts = []

    def _accept(self, app_key: str, alerts: list[dict[str, Any]], received: int) -> tuple[int, int]:
        """Store what is new; drop exact resends (BIGPANDA.md: deduplicated with 204)."""
        created = duplicates = 0
        now = time.time()
        for alert in alerts:
            key = (app_key, orjson.dumps(alert, option=orjson.OPT_SORT_KEYS))
            if key in self._seen:
                duplicates += 1
                continue
            self._seen.add(key)
            stored = _as_stored(alert, received)
            self.accepted.append(AcceptedAlert(app_key, stored, now))
            incident = stored.get("incident_identifier")
            if isinstance(incident, str):
                self._by_incident.setdefault(incident, []).append(stored)
            self.incidents.on_alert(stored, now)
            created += 1
        self.duplicates += duplicates
        return created, duplicates


def _as_stored(alert: dict[str, Any], received: int) -> dict[str, Any]:
    """The alert as BigPanda keeps it: stamped with the receive time if it had none, tags truncated.

    BIGPANDA.md: tag values longer than 512 characters are truncated by BigPanda.
    """
    stored = dict(alert)
    stored.setdefault("timestamp", received)
    for key, value in stored.items():
        if key in RESERVED:
            continue
        if isinstance(value, str) and len(value) > MAX_TAG_CHARS:
            stored[key] = value[:MAX_TAG_CHARS]
        elif isinstance(value, list) and any(
            isinstance(item, str) and len(item) > MAX_TAG_CHARS for item in value
        ):
            stored[key] = [
                item[:MAX_TAG_CHARS] if isinstance(item, str) else item for item in value
            ]
    return stored


def _loads(body: bytes) -> tuple[object, str | None]:
    try:
        return orjson.loads(body), None
    except orjson.JSONDecodeError as exc:
        return None, str(exc)


def _count_alerts(body: object) -> int:
    if not isinstance(body, dict):
        return 0
    alerts = body.get("alerts")
    if alerts is None:
        return 1
    return len(alerts) if isinstance(alerts, list) else 0


def _poisoned_field(alert: dict[str, Any], marker: str) -> str:
    for key, value in alert.items():
        if marker in key or marker in orjson.dumps(value).decode():
            return _name(key)
    return ""


def _redacted(request: web.Request) -> dict[str, str]:
    """Request headers in Title-Case, with the token hidden: the log may be printed by tests."""
    headers = {}
    for name, value in request.headers.items():
        title = "-".join(part.capitalize() for part in name.split("-"))
        if title == "Authorization":
            value = "Bearer ***" if value.startswith("Bearer ") else "***"
        headers[title] = value
    return headers


def _json(status: int, body: object) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _failure(status: int, errors: list[str], headers: dict[str, str]) -> web.Response:
    response = _json(status, {"status": "failure", "error": "; ".join(errors), "errors": errors})
    response.headers.update(headers)
    return response


# --- command line ------------------------------------------------------------------------------


async def serve(
    host: str,
    port: int,
    *,
    token: str = DEFAULT_TOKEN,
    latency: float = 0.0,
    faults: str = "",
    date_offset: float = 0.0,
) -> None:
    """Run the simulator until cancelled (`bridge sim bigpanda`); `faults` is a `script()` spec."""
    sim = BigPandaSimulator(token=token, latency=latency)
    sim.date_offset = date_offset
    if faults:
        sim.script(faults)
    async with serve_app(sim.app, host, port) as url:
        print(f"bigpanda simulator on {url} (Bearer {token})", flush=True)
        reported = 0
        try:
            while True:
                await asyncio.sleep(10)
                if len(sim.accepted) != reported:
                    reported = len(sim.accepted)
                    print(f"bigpanda simulator: {reported} alerts accepted", flush=True)
        finally:
            with contextlib.suppress(Exception):
                print(
                    f"bigpanda simulator: {len(sim.accepted)} alerts accepted, "
                    f"{sim.duplicates} duplicates dropped",
                    flush=True,
                )
