"""The `tidemesh` command line."""

from clients.cli._main import main

__all__ = ["main"]
