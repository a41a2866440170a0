"""Moved to :mod:`engine.launch` (launcher and process-group helpers sit at the bottom, so checkpoint/ and model/ may use them).

This old path keeps working for code that imports it: it is the very same module object, so
every name, private helper and monkeypatch reaches the module in its new home.
"""

import sys

import engine.launch as _moved

sys.modules[__name__] = _moved
