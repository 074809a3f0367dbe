"""Subcommand modules of the ``canary`` CLI; each exposes ``register(subparsers)``."""
