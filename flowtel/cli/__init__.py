"""``flowtel`` command line: read traces and sessions in the embedded store or an MLflow server.

    flowtel traces list [--limit N] [--since 2h] [--filter ...] [--order-by ...] [--json]
    flowtel traces show|export TRACE_ID
    flowtel traces delete TRACE_ID ... | --before 30d
    flowtel traces tag TRACE_ID KEY=VALUE ... / untag TRACE_ID KEY ...
    flowtel traces feedback TRACE_ID --name NAME --value JSON [--expectation]
    flowtel sessions list / show SESSION_ID
    flowtel spool list|replay|purge
    flowtel mcp                      (MCP server over stdio for coding agents; flowtel[mcp])

Every command reads ``--tracking-uri`` / ``MLFLOW_TRACKING_URI`` (an MLflow server) or else the
embedded store (``--store`` / ``FLOWTEL_STORE_PATH``). Bad input prints one ``error:`` line on
stderr and exits non-zero.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from flowtel.cli._common import CliError
from flowtel.cli._push import add_push_commands
from flowtel.cli._traces import render_trace
from flowtel.cli._ui import add_ui_commands

__all__ = ["main", "render_trace"]


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line (no usage block) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        (getattr(args, "help_parser", None) or parser).print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `flowtel traces list | head`
        return 0
    except Exception as exc:  # noqa: BLE001 - a CLI prints one clear line, not a traceback
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    from flowtel._config import ConfigError
    from flowtel._exceptions import FlowtelException

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (CliError, FlowtelException, ConfigError)):
        return text
    return f"{type(exc).__name__}: {text}"


def _parser() -> argparse.ArgumentParser:
    from flowtel.cli._sessions import add_session_commands
    from flowtel.cli._spool import add_spool_commands
    from flowtel.cli._traces import add_trace_commands

    parser = _Parser(prog="flowtel", description="Inspect flowtel traces and sessions.")
    parser.add_argument(
        "--store", help="path of the embedded store (default: $FLOWTEL_STORE_PATH or ./flowtel-traces.db)"
    )
    parser.add_argument(
        "--tracking-uri", help="read an MLflow server instead (http://host:port; default $MLFLOW_TRACKING_URI)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    add_push_commands(add_trace_commands(sub))
    add_session_commands(sub)
    add_spool_commands(sub)
    add_ui_commands(sub)
    mcp = sub.add_parser("mcp", help="serve traces to coding agents over MCP (stdio); needs flowtel[mcp]")
    mcp.set_defaults(handler=_mcp)
    for name, child in sub.choices.items():
        if name != "mcp":
            child.set_defaults(help_parser=child)
    _add_store_options_to_leaves(parser, top=True)
    return parser


def _add_store_options_to_leaves(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """``--store`` / ``--tracking-uri`` are accepted after the command too (``flowtel traces
    list --store x.db``); there they default to nothing so the global ones still count."""
    children = [
        child for action in parser._actions if isinstance(action, argparse._SubParsersAction)
        for child in action.choices.values()
    ]
    if not children and not top:
        for flag, dest in (("--store", "store"), ("--tracking-uri", "tracking_uri")):
            try:
                parser.add_argument(flag, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
            except argparse.ArgumentError:
                pass  # the command has its own option of that name
    for child in children:
        _add_store_options_to_leaves(child)


def _mcp(args: argparse.Namespace) -> int:
    from flowtel.cli._mcp import serve

    return serve(args)


if __name__ == "__main__":
    raise SystemExit(main())
