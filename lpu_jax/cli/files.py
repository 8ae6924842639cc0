"""`lpu-jax` subcommands: asm, disasm, run."""

from __future__ import annotations

__all__ = ["register"]


def register(sub) -> None:
    """Add this module's subcommands to the `lpu-jax` argument parser's subparsers."""
