"""Moved to :mod:`engine.weights.safe_load` (weight-file reading sits below model/, which loads pretrained weights, and checkpoint/).

This old path keeps working for code that imports it: it is the very same module object, so
every name, private helper and monkeypatch reaches the module in its new home.
"""

import sys

import engine.weights.safe_load as _moved

sys.modules[__name__] = _moved
