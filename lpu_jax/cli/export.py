"""`lpu-jax` subcommands: trace-to-vcd, trace-to-perfetto."""

from __future__ import annotations

__all__ = ["register"]


def register(sub) -> None:
    """Add this module's subcommands to the `lpu-jax` argument parser's subparsers."""
