"""Errors to exit codes, in exactly one place, and the wrapper every command body runs through.

Its own module so that the command modules can import it without importing the package that
registers them (which would be a circle).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer

from ..errors import (
    BanditError,
    ConfigError,
    ConflictError,
    DataError,
    ModelFileError,
    NotFoundError,
    StoreBusyError,
    ValidationError,
    lookup_by_type,
)

__all__ = ["EXIT_CODES", "exit_code_for", "run"]

T = TypeVar("T")

EXIT_CODES: dict[type[BaseException], int] = {
    ConfigError: 3,
    ValidationError: 3,
    ConflictError: 3,
    NotFoundError: 4,
    FileNotFoundError: 4,
    ModelFileError: 5,
    DataError: 6,
    StoreBusyError: 7,
    KeyboardInterrupt: 130,
}


def exit_code_for(exc: BaseException) -> int:
    """The exit code of an exception (the single error -> exit code mapping)."""
    return lookup_by_type(exc, EXIT_CODES, 1)


def run(body: Callable[[], T]) -> T:
    """Run a command body, turning expected errors into a message on stderr and an exit code."""
    try:
        return body()
    except typer.Exit:
        raise
    except (BanditError, FileNotFoundError, KeyboardInterrupt) as exc:
        message = str(exc) if not isinstance(exc, KeyboardInterrupt) else "interrupted"
        typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
        raise typer.Exit(exit_code_for(exc)) from None
