"""Moved to :mod:`engine.runplan.ds_file` (the run plan and the DeepSpeed config derivation sit below model/ and trainer/, which read them).

This old path keeps working for code that imports it: it is the very same module object, so
every name, private helper and monkeypatch reaches the module in its new home.
"""

import sys

import engine.runplan.ds_file as _moved

sys.modules[__name__] = _moved
