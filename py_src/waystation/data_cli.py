"""The data commands of `waystation`: publishing feature tables, exporting relayed events.

    waystation features publish items items.jsonl --key item_id [--data data]
    waystation features list [--data data]
    waystation events export clicks [--bundle demo] [--since 7d | 2026-12-01T00:00:00Z] [--format jsonl|csv] [--data data]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["add_data_commands", "parse_since"]


def add_data_commands(commands: Any) -> None:
    """Add `features` and `events` to the `waystation` command's subparsers."""
    data_help = "the server's data folder (default: data)"
    features = commands.add_parser("features", help="publish global feature tables for devices")
    sub = features.add_subparsers(required=True, metavar="COMMAND")
    publish = sub.add_parser("publish", help="publish FILE (CSV or JSON lines) as table NAME; a new version holds what changed")
    publish.add_argument("name", help="table name (lower-case letters, digits, _)")
    publish.add_argument("file", type=Path, help="a .csv file (vectors as JSON arrays in cells) or JSON lines (.jsonl)")
    publish.add_argument("--key", required=True, help="the column that identifies a row")
    publish.add_argument("--data", type=Path, default=Path("data"), help=data_help)
    publish.set_defaults(handler=_features_publish)
    listing = sub.add_parser("list", help="the published tables and their versions")
    listing.add_argument("--data", type=Path, default=Path("data"), help=data_help)
    listing.set_defaults(handler=_features_list)

    events = commands.add_parser("events", help="export the events devices relayed")
    sub = events.add_subparsers(required=True, metavar="COMMAND")
    export = sub.add_parser("export", help="print the relayed events of table NAME, oldest first")
    export.add_argument("name", help="event table name")
    export.add_argument("--bundle", default=None, help="only this bundle's events (default: every bundle's)")
    export.add_argument("--since", default=None, help="an ISO time (2026-12-01T00:00:00Z) or an age (30m, 12h, 7d)")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--data", type=Path, default=Path("data"), help=data_help)
    export.set_defaults(handler=_events_export)


def parse_since(text: str, now: float | None = None) -> float:
    """'7d' -> now - 7 days; '2026-12-01T00:00:00Z' -> its epoch seconds (UTC when no zone is given)."""
    from .device.data.schema import parse_duration
    from .device.errors import DataError

    now = time.time() if now is None else now
    try:
        return now - parse_duration(text, "--since")
    except DataError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text!r} is neither an ISO time (2026-12-01T00:00:00Z) nor an age (30m, 12h, 7d)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _features_publish(args: argparse.Namespace) -> None:
    from .server.features_store import FeatureStore

    result = FeatureStore(args.data).publish(args.name, args.file, args.key)
    print(json.dumps(result))
    print(f"{args.name} version {result['version']}: {result['added']} added, {result['changed']} changed, "
          f"{result['deleted']} deleted, {result['unchanged']} unchanged", file=sys.stderr)


def _features_list(args: argparse.Namespace) -> None:
    from .server.features_store import FeatureStore

    for table in FeatureStore(args.data).tables():
        print(json.dumps(table))


def _events_export(args: argparse.Namespace) -> None:
    from .server.events_store import EventLog

    since = None if args.since is None else parse_since(args.since)
    for chunk in EventLog(args.data).export(args.name, args.bundle, since, args.format):
        sys.stdout.write(chunk)
