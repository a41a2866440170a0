"""Moved to :mod:`engine.events.storage` (the event storage sits below log/, loss/ and trainer/, which all write to it).

This old path keeps working for code that imports it: it is the very same module object, so
every name, private helper and monkeypatch reaches the module in its new home.
"""

import sys

import engine.events.storage as _moved

sys.modules[__name__] = _moved
