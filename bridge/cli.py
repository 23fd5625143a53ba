"""The `bridge` command (shared/DESIGN.md, "Command line"): run, once, check-config, doctor, demo,
sim, dlq, backfill, health.

Exit codes: 0 success; 1 the work could not be completed (pending events, unreachable service,
state held by another process); 2 the configuration or the command line is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import structlog

from bridge import __version__
from bridge.errors import BridgeError, ConfigError, StateError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

log = structlog.get_logger("bridge.cli")

T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_CONFIG
    try:
        return args.handler(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    except StateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BridgeError as exc:  # raised on purpose: the message says what to do
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridge",
        description="Carries Panther alerts and their status changes into BigPanda.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--config",
            default=None,
            help="YAML config file (default: $BRIDGE_CONFIG)",
        )
        return p

    p = with_config(sub.add_parser("run", help="run the long-running service"))
    p.set_defaults(handler=cmd_run)

    p = with_config(sub.add_parser("once", help="one full cycle; exit 0 when nothing is pending"))
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for delivery")
    p.set_defaults(handler=cmd_once)

    p = with_config(sub.add_parser("check-config", help="validate and print the effective config"))
    p.set_defaults(handler=cmd_check_config)

    p = with_config(
        sub.add_parser("doctor", help="prove tokens, permissions, state and clock before a run")
    )
    p.add_argument(
        "--send-test-alert",
        action="store_true",
        help="send one labelled `ok` test alert to BigPanda (proves the token and app key)",
    )
    p.set_defaults(handler=cmd_doctor)

    p = with_config(sub.add_parser("backfill", help="re-read a past window (no duplicates sent)"))
    p.add_argument("--since", required=True, help="RFC3339 time, epoch seconds, or a duration ago")
    p.add_argument("--until", default=None, help="RFC3339 time, epoch seconds, or a duration ago")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for delivery")
    p.set_defaults(handler=cmd_backfill)

    p = with_config(sub.add_parser("health", help="exit 0 when the running bridge is ready"))
    p.add_argument("--url", default=None, help="base URL of the bridge (default from config)")
    p.set_defaults(handler=cmd_health)

    p = sub.add_parser("demo", help="run both simulators and the bridge against them")
    p.add_argument("--alerts", type=int, default=25, help="alerts to generate in Panther")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for delivery")
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("sim", help="run a Panther or BigPanda simulator")
    p.add_argument("kind", choices=["panther", "bigpanda"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--alerts", type=int, default=0, help="panther: alerts to pre-generate")
    p.add_argument("--rate", type=float, default=0.0, help="panther: new alerts per second")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to each response")
    p.add_argument("--late-fraction", type=float, default=0.0,
                   help="panther: fraction of new alerts listable only --late-by seconds late")
    p.add_argument("--late-by", type=float, default=5.0,
                   help="panther: seconds between a late alert's createdAt and its listing")
    p.add_argument(
        "--faults",
        default="",
        help="scripted responses to the next requests, e.g. 500,429:Retry-After=2,ok",
    )
    p.add_argument(
        "--refuse",
        action="append",
        default=[],
        metavar="PATH[:STATUS]",
        help="panther: answer every request under PATH with STATUS (default 403), e.g. /rules",
    )
    p.add_argument(
        "--date-offset", type=float, default=0.0, help="seconds added to the Date header"
    )
    p.set_defaults(handler=cmd_sim)

    p = with_config(sub.add_parser(
        "status", help="which replica leads the shared state, its term and lease expiry"
    ))
    p.set_defaults(handler=cmd_status)

    state = sub.add_parser("state", help="manage the durable state")
    state_sub = state.add_subparsers(dest="state_command", metavar="ACTION", required=True)
    p = state_sub.add_parser("migrate", help="copy a SQLite state file into PostgreSQL")
    p.add_argument("--from", dest="source", required=True, help="the SQLite state file")
    p.add_argument("--to", dest="target", required=True,
                   help="postgresql:// URL ($BRIDGE_STATE_PASSWORD or PGPASSWORD for the password)")
    p.add_argument("--namespace", default=None,
                   help="target namespace (default: the one --config's bridge uses)")
    p.add_argument("--config", default=None,
                   help="the bridge's YAML config, to derive the namespace from")
    p.set_defaults(handler=cmd_state_migrate)

    dlq = sub.add_parser("dlq", help="inspect and re-drive dead letters")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    p = with_config(dlq_sub.add_parser("list", help="list dead letters"))
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(handler=cmd_dlq_list)
    p = with_config(dlq_sub.add_parser("show", help="show one dead letter in full"))
    p.add_argument("id", type=int)
    p.set_defaults(handler=cmd_dlq_show)
    p = with_config(dlq_sub.add_parser("replay", help="put dead letters back in the outbox"))
    p.add_argument("ids", type=int, nargs="*")
    p.add_argument("--all", action="store_true", help="replay every dead letter")
    p.set_defaults(handler=cmd_dlq_replay)
    p = with_config(dlq_sub.add_parser("purge", help="delete dead letters"))
    p.add_argument("--older-than", default=None, help="only those older than this (e.g. 7d)")
    p.set_defaults(handler=cmd_dlq_purge)
    return parser


# -- helpers ---------------------------------------------------------------------------------------


def _settings(args: argparse.Namespace):  # -> Settings
    from bridge.config import load_config

    return load_config(args.config)


def _configure_logs(settings) -> None:
    from bridge import logs

    logs.configure(settings.logging.level, settings.logging.format)


def _parse_time(text: str, what: str) -> float:
    """RFC3339, epoch seconds, or a duration meaning that long ago."""
    from bridge.config import parse_duration
    from bridge.timeutil import parse_timestamp

    moment = parse_timestamp(text)
    if moment is not None:
        return moment.timestamp()
    try:
        return time.time() - parse_duration(text)
    except ValueError:
        raise ConfigError(
            [
                f"{what}: {text!r} is not a time: use RFC3339 (2026-11-20T14:00:00Z),"
                " epoch seconds, or a duration ago (2h, 7d)"
            ]
        ) from None


# -- commands ------------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    from bridge.config import config_warnings, render_effective

    settings = _settings(args)
    sys.stdout.write(render_effective(settings))
    for warning in config_warnings(settings):
        print(warning, file=sys.stderr)
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from bridge.doctor import run_doctor

    return run_doctor(args.config, send_test_alert=args.send_test_alert)


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _configure_logs(settings)
    return run_loop(_run_service(settings))


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, on uvloop when it is installed: the same program, with the event
    loop, sockets and callbacks in C (less CPU per alert on the service's hot path)."""
    try:
        import uvloop
    except ImportError:
        uvloop = None
    # Outside the `except`: an error of the service must not come chained to the ImportError.
    if uvloop is None:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def _run_service(settings) -> int:
    from bridge.service import Bridge

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            log.warning("bridge.forced_exit", signal=signal.Signals(signum).name)
            os._exit(EXIT_FAILED)
        log.info("bridge.stopping", signal=signal.Signals(signum).name)
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    async with Bridge(settings) as bridge:
        await bridge.run(stopping)
    return EXIT_OK


def _refuse_beside_leader(settings, command: str) -> None:
    """With PostgreSQL, `once` and `backfill` do not run while replicas lead the same state
    (with SQLite, the state file's lock refuses them the same way)."""
    from bridge.state import namespace_of, open_lease, open_state

    namespace = namespace_of(settings)
    lease = open_lease(settings.state, namespace=namespace)
    if lease is None:
        return
    open_state(settings.state, namespace=namespace, exclusive=False).close()
    try:
        info = lease.info()
    finally:
        lease.close()
    if info.holder and info.valid:
        raise StateError(
            f"namespace {namespace} is led by {info.holder} (term {info.term}): `bridge {command}`"
            " cannot run beside `bridge run` on the same state; stop the replicas first"
        )


def cmd_once(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _refuse_beside_leader(settings, "once")
    _configure_logs(settings)

    async def go() -> bool:
        from bridge.service import Bridge

        async with Bridge(settings) as bridge:
            return await bridge.once(timeout=args.timeout, progress=_report_progress)

    return EXIT_OK if run_loop(go()) else EXIT_FAILED


def cmd_backfill(args: argparse.Namespace) -> int:
    settings = _settings(args)
    since = _parse_time(args.since, "--since")
    until = _parse_time(args.until, "--until") if args.until else time.time()
    if since >= until:
        raise ConfigError(["--since must be before --until"])
    _refuse_beside_leader(settings, "backfill")
    _configure_logs(settings)

    async def go() -> bool:
        from bridge.service import Bridge

        async with Bridge(settings) as bridge:
            return await bridge.backfill(
                since, until, timeout=args.timeout, progress=_report_progress
            )

    return EXIT_OK if run_loop(go()) else EXIT_FAILED


def _report_progress(backlog: Mapping[str, int], seconds_left: float) -> None:
    """A line on stderr every few seconds while `once` or `backfill` waits for delivery."""
    jobs = f", {backlog['jobs']} in BigPanda jobs" if backlog.get("jobs") else ""
    print(
        f"waiting for delivery: {backlog.get('pending', 0)} event(s) pending{jobs}; "
        f"giving up in {seconds_left:.0f} s (--timeout)",
        file=sys.stderr,
        flush=True,
    )


def cmd_health(args: argparse.Namespace) -> int:
    url = args.url
    if url is None:
        settings = _settings(args)
        host = settings.server.host
        host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        url = f"http://{host}:{settings.server.port}"

    async def go() -> int:
        import aiohttp

        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    url.rstrip("/") + "/readyz", timeout=aiohttp.ClientTimeout(total=5)
                ) as resp,
            ):
                body = await resp.text()
                print(body)
                return EXIT_OK if resp.status == 200 else EXIT_FAILED
        except (aiohttp.ClientError, TimeoutError) as exc:
            print(f"bridge at {url} is not answering: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_FAILED

    return asyncio.run(go())


def cmd_demo(args: argparse.Namespace) -> int:
    from bridge.demo import run_demo

    return asyncio.run(run_demo(alerts=args.alerts, timeout=args.timeout))


def cmd_sim(args: argparse.Namespace) -> int:
    async def go() -> None:
        # The options both simulators take; the Panther one has its alert source's too.
        common = {"latency": args.latency, "faults": args.faults, "date_offset": args.date_offset}
        if args.kind == "panther":
            from bridge.sim.panther import serve

            await serve(
                args.host,
                args.port,
                alerts=args.alerts,
                rate=args.rate,
                refuse=tuple(args.refuse),
                late_fraction=args.late_fraction,
                late_by=args.late_by,
                **common,
            )
        else:
            from bridge.sim.bigpanda import serve

            await serve(args.host, args.port, **common)

    try:
        asyncio.run(go())
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _open_outbox(args: argparse.Namespace):  # -> Outbox (or the PostgreSQL store)
    from bridge.state import namespace_of, open_state

    settings = _settings(args)
    # Read-mostly commands may run beside `bridge run`: SQLite's own locking keeps them safe.
    return open_state(settings.state, namespace=namespace_of(settings), exclusive=False)


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cmd_dlq_list(args: argparse.Namespace) -> int:
    outbox = _open_outbox(args)
    try:
        letters = outbox.dead_letters(limit=args.limit)
        if not letters:
            print("no dead letters")
            return EXIT_OK
        print(f"{'ID':>6}  {'DEAD AT':20}  {'REASON':18}  {'ALERT':34}  DETAIL")
        for dl in letters:
            detail = " ".join(dl.detail.split())[:60]
            print(f"{dl.id:>6}  {_when(dl.dead_at):20}  {dl.reason:18}  {dl.alert_id:34}  {detail}")
        return EXIT_OK
    finally:
        outbox.close()


def cmd_dlq_show(args: argparse.Namespace) -> int:
    outbox = _open_outbox(args)
    try:
        dl = outbox.dead_letter_by_id(args.id)
        if dl is None:
            print(f"no dead letter with id {args.id} (see `bridge dlq list`)", file=sys.stderr)
            return EXIT_FAILED
        doc = {
            "id": dl.id,
            "alert_id": dl.alert_id,
            "kind": dl.kind,
            "app_key": dl.app_key,
            "reason": dl.reason,
            "detail": dl.detail,
            "attempts": dl.attempts,
            "event_time": _when(dl.event_time),
            "dead_at": _when(dl.dead_at),
            "payload": orjson.loads(dl.payload) if dl.payload else None,
            "original_alert": orjson.loads(dl.original) if dl.original else None,
        }
        print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        return EXIT_OK
    finally:
        outbox.close()


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    if not args.ids and not args.all:
        raise ConfigError(["dlq replay: name dead letter ids, or pass --all"])
    outbox = _open_outbox(args)
    try:
        replayed, problems = outbox.replay_dead_letters(None if args.all else args.ids)
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"replayed {len(replayed)} dead letter(s) into the outbox")
        return EXIT_OK if not problems else EXIT_FAILED
    finally:
        outbox.close()


def cmd_dlq_purge(args: argparse.Namespace) -> int:
    from bridge.config import parse_duration

    older_than = None
    if args.older_than:
        try:
            older_than = time.time() - parse_duration(args.older_than)
        except ValueError as exc:
            raise ConfigError([f"--older-than: {exc}"]) from None
    outbox = _open_outbox(args)
    try:
        n = outbox.purge_dead_letters(older_than=older_than)
        print(f"purged {n} dead letter(s)")
        return EXIT_OK
    finally:
        outbox.close()


__all__ = ["BridgeError", "main"]


def cmd_status(args: argparse.Namespace) -> int:
    from bridge.state import namespace_of, open_lease, open_state, shown_state

    settings = _settings(args)
    namespace = namespace_of(settings)
    lease = open_lease(settings.state, namespace=namespace)
    if lease is None:
        print(f"state: SQLite file {settings.state.path}")
        print("leader: the one process holding that file (no lease; term 0)")
        return EXIT_OK
    # Opening the store creates or upgrades the schema, so the lease row exists.
    open_state(settings.state, namespace=namespace, exclusive=False).close()
    try:
        info = lease.info()
    finally:
        lease.close()
    print(f"state: PostgreSQL {shown_state(settings.state)}")
    print(f"namespace: {namespace}")
    if info.holder and info.valid:
        print(f"leader: {info.holder}")
    else:
        print("leader: none (the lease is free or expired: a standby takes it on its next try)")
    print(f"term: {info.term}")
    print(f"lease expires: {info.expires_at.isoformat()} ({info.remaining:+.1f}s)")
    return EXIT_OK


def cmd_state_migrate(args: argparse.Namespace) -> int:
    import os

    from bridge.config import StateSettings
    from bridge.state import namespace_of
    from bridge.state.migrate import migrate_sqlite
    from bridge.state.postgres import redact_url

    target = os.path.expandvars(args.target)  # ${BRIDGE_STATE_PASSWORD} in the URL
    try:
        StateSettings(url=target)
    except ValueError:
        raise ConfigError(
            [f"--to {redact_url(target)}: give a postgresql://user@host:5432/database URL"]
        ) from None
    if args.namespace:
        namespace = args.namespace
    elif args.config or os.environ.get("BRIDGE_CONFIG"):
        namespace = namespace_of(_settings(args))
    else:
        raise ConfigError(
            ["state migrate: give --namespace NAME or --config FILE (the bridge that will use it)"]
        )
    copied = migrate_sqlite(args.source, target, namespace)
    shown = ", ".join(f"{n} {table}" for table, n in copied.rows.items())
    print(f"copied {args.source} into {redact_url(target)} namespace {namespace}: {shown}")
    return EXIT_OK
