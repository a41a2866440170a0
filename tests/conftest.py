"""Suite-wide fixtures."""

import logging
import os

import pytest


@pytest.fixture(autouse=True)
def _restore_engine_logger():
    """Tests that call setup_logger change the shared ``engine`` logger (handlers, propagate);
    put it back so later tests' ``caplog`` still sees engine's records."""
    logger = logging.getLogger("engine")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    for handler in list(logger.handlers):
        if handler not in saved[0]:
            logger.removeHandler(handler)
            handler.close()
    logger.handlers[:] = saved[0]
    logger.propagate, logger.level = saved[1], saved[2]


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, test files with slow (process-starting) tests go first, in their usual order.

    ``make test`` hands out whole files (``--dist loadfile --no-loadscope-reorder``) in collection order; a
    minute-long file handed out last would leave the other worker idle at the end, while the many fast files
    fill the gaps well wherever they come.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: the order within each group is kept
