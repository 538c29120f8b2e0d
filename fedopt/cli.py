"""The ``fedopt`` command line: ``run``, ``plot``, ``topology``, ``rates``.

Each subcommand lives next to the code it drives and registers itself here
through a ``register(subparsers)`` function; errors from bad input are printed
as one line (``fedopt: error: ...``) with exit status 2, never a traceback.
What the library logs (choices made for the user, e.g. runs sent to Ray tasks)
is printed to stderr as ``fedopt: ...``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

#: Modules that define a ``register(subparsers)`` function, in help order.
SUBCOMMAND_MODULES = (
    "fedopt.experiment.cli",
    "fedopt.topology.cli",
    "fedopt.topology.rates_cli",
)


class UserError(Exception):
    """Bad input from the user (config, data, graph): printed as one line."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedopt",
        description="Simulate distributed and federated optimization: run experiments, plot them, "
        "inspect topologies and optimize gossip rates.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for mod in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            what = "is missing from this install" if exc.name == mod else f"needs {exc.name!r}, which is not installed"
            raise UserError(f"the subcommands of {mod} are unavailable: the module {what}; reinstall fedopt "
                            "(pip install -e .)") from None
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("fedopt: %(message)s"))
    logger = logging.getLogger("fedopt")
    level = logger.level
    logger.addHandler(handler)
    if level == logging.NOTSET or level > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        try:
            parser = build_parser()
        except UserError as exc:
            print(f"fedopt: error: {exc}", file=sys.stderr)
            return 2
        args = parser.parse_args(argv)
        try:
            return int(args.func(args) or 0)
        except (UserError, ValueError, FileNotFoundError, KeyError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            print(f"fedopt: error: {msg}", file=sys.stderr)
            return 2
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
