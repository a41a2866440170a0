"""Rank-aware logging: rank 0 to console and ``<output_dir>/<name>.log``, other ranks to their own file."""

from __future__ import annotations

import logging
import os
import sys

_FORMAT = "[%(asctime)s %(name)s %(levelname)s] %(message)s"
_DATEFMT = "%m/%d %H:%M:%S"


def _not_file_only(record: logging.LogRecord) -> bool:
    """``logger.info(..., extra={"console": False})`` goes to the log file only (the progress bar shows it)."""
    return getattr(record, "console", True)


def setup_logger(output_dir: str, log_name: str, rank: int, name: str = "engine") -> logging.Logger:
    """Configure the ``engine`` logger and the one named ``log_name`` for this rank.

    Rank 0 logs INFO to the console and to ``<log_name>.log``; rank r>0 logs to
    ``<log_name>.rank<r>.log`` and only warnings to the console, so N ranks do not print
    every line N times but a failing rank is still heard.

    ``log_name`` is ``output_log_name``: seed-era code logs with
    ``logging.getLogger(cfg.OUTPUT_LOG_NAME)``, so that logger gets the same handlers and
    its lines land in the same console and file, in order, marked with its name.

    Returns:
        The ``name`` logger.
    """
    formatter = logging.Formatter(_FORMAT if rank == 0 else f"[rank{rank}] {_FORMAT}", _DATEFMT)
    console = logging.StreamHandler(sys.stdout)
    console.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    console.setFormatter(formatter)
    console.addFilter(_not_file_only)
    os.makedirs(output_dir, exist_ok=True)
    file_name = f"{log_name}.log" if rank == 0 else f"{log_name}.rank{rank}.log"
    file_handler = logging.FileHandler(os.path.join(output_dir, file_name), mode="a", encoding="utf-8")
    file_handler.setFormatter(formatter)
    for logger_name in dict.fromkeys((name, log_name)):  # once when output_log_name is "engine"
        _route(logging.getLogger(logger_name), (console, file_handler))
    return logging.getLogger(name)


def _route(logger: logging.Logger, handlers: tuple) -> None:
    """Replace ``logger``'s handlers (a second setup does not log each line twice)."""
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    for handler in handlers:
        logger.addHandler(handler)
