"""Subcommands of the `fogline` CLI."""
