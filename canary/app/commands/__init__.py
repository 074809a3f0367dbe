"""Subcommand modules of the ``canary`` CLI; each exposes ``register(subparsers)``."""

from __future__ import annotations

import argparse

from canary import config as config_mod
from canary import logs


def load_config(args: argparse.Namespace, *, log_to_stdout: bool = False) -> config_mod.Config:
    """The configuration named on the command line, with logging configured from it (``--log-level``
    wins). Commands that print results log to stderr so their stdout stays parseable."""
    cfg = config_mod.load(args.config)
    logs.configure(args.log_level or cfg.canary.log_level, cfg.canary.log_format, stream="stdout" if log_to_stdout else "stderr")
    return cfg
