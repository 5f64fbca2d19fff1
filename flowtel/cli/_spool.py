"""``flowtel spool``: inspect, replay and purge traces waiting in the on-disk spool.

    flowtel spool list [--json]
    flowtel spool replay [--timeout SECONDS]
    flowtel spool purge (--all | DESTINATION ...) [--yes]

The spool root is the one the SDK uses (``FLOWTEL_SPOOL_DIR`` or the user's cache dir);
``--spool-dir`` overrides it. ``replay`` sends each spooled destination's traces with the
current configuration (``MLFLOW_TRACKING_URI`` or the global ``--tracking-uri``), the same way a
traced process does at start-up. Wired into the ``flowtel`` command by :func:`add_spool_commands`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowtel.cli._common import print_table

if TYPE_CHECKING:
    from flowtel.delivery import Destination
    from flowtel.delivery._pipeline import DeliveryOptions
    from flowtel.delivery._spool import SpoolSummary

__all__ = ["ReplayReport", "add_spool_commands", "replay_spools"]


def add_spool_commands(subparsers: Any) -> None:
    """Add ``spool list|replay|purge`` to an argparse sub-parser collection.

    Each command sets ``handler`` (``handler(args) -> int`` exit code) on the namespace.
    """
    spool = subparsers.add_parser("spool", help="traces waiting on local disk for a destination")
    spool.add_argument("--spool-dir", help="spool root (default: $FLOWTEL_SPOOL_DIR or the user cache dir)")
    actions = spool.add_subparsers(dest="spool_action")

    listing = actions.add_parser("list", help="what is waiting, per destination")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=_cmd_list)

    replay = actions.add_parser("replay", help="send spooled traces now, with the current configuration")
    replay.add_argument("--timeout", type=float, default=60.0, help="seconds to keep trying (default 60)")
    replay.set_defaults(handler=_cmd_replay)

    purge = actions.add_parser("purge", help="delete spooled traces (they are lost)")
    purge.add_argument("destinations", nargs="*", help="directory names (or unique prefixes) from `list`")
    purge.add_argument("--all", action="store_true", help="every destination")
    purge.add_argument("--yes", action="store_true", help="really delete (otherwise only show what would go)")
    purge.set_defaults(handler=_cmd_purge)
    spool.set_defaults(handler=lambda args: _usage(spool))


# -- list ----------------------------------------------------------------------------------------
def _cmd_list(args: argparse.Namespace) -> int:
    from flowtel.delivery._spool import list_spools

    root = _root(args)
    if root is None:
        return 1
    summaries = [s for s in list_spools(root) if s.batches]
    if args.json:
        print(json.dumps([_as_json(s) for s in summaries], indent=2))
        return 0
    if not summaries:
        print(f"The spool is empty ({root}).")
        return 0
    rows: list[tuple[str, ...]] = [("DESTINATION", "TRACES", "BATCHES", "SIZE", "OLDEST", "REPLAYING", "IDENTITY")]
    for s in summaries:
        rows.append((
            s.directory.name, str(s.traces), str(s.batches), _human_bytes(s.bytes),
            _age(s.oldest_ns), str(s.claimed_batches), s.destination_key or "?",
        ))
    print_table(rows)
    print(f"\nSpool root: {root}")
    return 0


def _as_json(summary: SpoolSummary) -> dict[str, Any]:
    return {
        "directory": str(summary.directory),
        "destination_key": summary.destination_key,
        "name": summary.name,
        "traces": summary.traces,
        "batches": summary.batches,
        "bytes": summary.bytes,
        "replaying_batches": summary.claimed_batches,
        "oldest_unix_nano": summary.oldest_ns,
    }


# -- replay --------------------------------------------------------------------------------------
@dataclass
class ReplayReport:
    """What a replay did for one destination."""

    destination: str
    directory: str
    sent: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    remaining: int = 0
    state: str = "ok"


def replay_spools(
    destinations: list[Destination], *, options: DeliveryOptions | None = None, timeout: float = 60.0
) -> list[ReplayReport]:
    """Replay the spool of each destination that has one, each for up to ``timeout`` seconds.

    Blocks. Destinations without a ``destination_key`` (local store, memory) have no spool.
    """
    from flowtel.delivery._pipeline import DeliveryOptions, DeliveryPipeline

    options = options or DeliveryOptions.from_env()
    reports = []
    for dest in destinations:
        if not getattr(dest.exporter, "destination_key", None) or options.spool is None:
            continue
        pipeline = DeliveryPipeline(dest.exporter, options)  # its worker starts replaying at once
        try:
            pipeline.drain(timeout)
        finally:
            stats = pipeline.stats()
            pipeline.shutdown(0)
        reports.append(ReplayReport(
            stats.destination, stats.spool_dir or "", stats.sent, dict(stats.dropped), stats.spool_pending, stats.state,
        ))
    return reports


def _cmd_replay(args: argparse.Namespace) -> int:
    from flowtel.delivery._pipeline import DeliveryOptions
    from flowtel.tracing import _runtime

    if getattr(args, "tracking_uri", None):
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    options = DeliveryOptions.from_env()
    if args.spool_dir:
        from dataclasses import replace

        from flowtel.delivery._pipeline import SpoolOptions

        options = replace(options, spool=SpoolOptions(Path(args.spool_dir), require_private_root=False))
    reports = replay_spools(_runtime.default_destinations(), options=options, timeout=args.timeout)
    if not reports:
        print("The current configuration has no destination with a spool "
              "(set MLFLOW_TRACKING_URI or pass --tracking-uri to the one the traces were for).")
        return 1
    for report in reports:
        dropped = ", ".join(f"{k}: {v}" for k, v in sorted(report.dropped.items())) or "none"
        print(f"{report.destination} ({report.directory}): sent {report.sent}, dropped {dropped}, "
              f"still spooled {report.remaining}, destination {report.state}")
    return 0 if all(r.remaining == 0 for r in reports) else 1


# -- purge ---------------------------------------------------------------------------------------
def _cmd_purge(args: argparse.Namespace) -> int:
    from flowtel.delivery._spool import list_spools, purge_directory

    root = _root(args)
    if root is None:
        return 1
    chosen = _select(list_spools(root), args.destinations, everything=args.all)
    if chosen is None:
        return 2
    if not chosen:
        print("Nothing to purge.")
        return 0
    for summary in chosen:
        if args.yes:
            removed = purge_directory(summary.directory)
            print(f"{summary.directory.name}: deleted {removed} trace(s)")
        else:
            print(f"{summary.directory.name}: would delete {summary.traces} trace(s) ({summary.destination_key})")
    if not args.yes:
        print("Nothing deleted; add --yes to delete.")
    return 0


def _select(summaries: list[SpoolSummary], names: list[str], *, everything: bool) -> list[SpoolSummary] | None:
    if everything:
        return [s for s in summaries if s.batches]
    if not names:
        print("Name the destinations to purge (see `flowtel spool list`), or pass --all.", file=sys.stderr)
        return None
    chosen = []
    for name in names:
        matches = [s for s in summaries if s.directory.name.startswith(name)]
        if len(matches) != 1:
            print(f"{name!r} matches {len(matches)} spool directories; give a longer prefix.", file=sys.stderr)
            return None
        chosen.append(matches[0])
    return chosen


# -- helpers -------------------------------------------------------------------------------------
def _root(args: argparse.Namespace) -> Path | None:
    if args.spool_dir:
        return Path(os.path.expanduser(args.spool_dir))
    from flowtel.delivery._pipeline import spool_options_from_env

    options = spool_options_from_env()
    if options is None:
        print("The spool is disabled (FLOWTEL_SPOOL_ENABLED=false) or there is no home directory; "
              "pass --spool-dir.", file=sys.stderr)
        return None
    return options.root


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2



def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _age(ts_ns: int | None) -> str:
    if ts_ns is None:
        return "-"
    seconds = max(time.time() - ts_ns / 1e9, 0.0)
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{seconds / span:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"
