"""Suite-wide fixtures."""

import logging

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
