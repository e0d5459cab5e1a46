"""`--data` and `--database`: where the server's state is, for every command that reads or
writes it (`serve`, `bundle publish`, `features publish`, `events export`, `db migrate`, ...).

    add_state_arguments(parser)
    storage = state_storage(args)     # SQLite files under --data, or PostgreSQL at --database
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server.storage import Storage

__all__ = ["add_state_arguments", "state_storage"]

DATABASE_HELP = ("PostgreSQL URL holding the server's state, shared by every instance "
                 "(default: $WAYSTATION_DATABASE; unset: SQLite files under --data)")


def add_state_arguments(parser: argparse.ArgumentParser, data_help: str = "the server's data folder (default: data)") -> None:
    parser.add_argument("--data", type=Path, default=Path("data"), help=data_help)
    parser.add_argument("--database", default=None, metavar="URL", help=DATABASE_HELP)


def state_storage(args: argparse.Namespace) -> Storage:
    """The storage `--data` and `--database` name (a bad URL stops here, with its reason)."""
    from .server.storage import Storage

    return Storage.at(args.data, args.database)
