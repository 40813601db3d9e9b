"""Making ``import psana`` resolve to this shim, only where the real psana is absent.

``mpireduce.psana.install()`` puts this package into ``sys.modules['psana']`` unless a real
psana is importable (or already imported); ``install(force=True)`` installs it anyway.
``python -m mpireduce.psana.run script.py ARGS`` does this and then runs the script.
"""

from __future__ import annotations

import importlib.machinery
import logging
import sys
from types import ModuleType

LOG = logging.getLogger("mpireduce.psana")


def _shim() -> ModuleType:
    """This package, as a module object."""
    import mpireduce.psana as shim

    return shim


def real_psana_available() -> bool:
    """True when a real ``psana`` package is on ``sys.path`` (whatever is in sys.modules)."""
    return importlib.machinery.PathFinder.find_spec("psana") is not None


def install(force: bool = False) -> ModuleType:
    """Make ``import psana`` give this shim; returns the module ``psana`` now names.

    Without ``force`` a real psana wins: it is left alone (and returned once imported).
    """
    shim = _shim()
    current = sys.modules.get("psana")
    if current is shim:
        return shim
    if not force and (current is not None or real_psana_available()):
        LOG.info("a real psana is installed: leaving `import psana` to it (use force=True for the shim)")
        return current if current is not None else importlib.import_module("psana")
    sys.modules["psana"] = shim
    return shim


def uninstall() -> None:
    """Undo :func:`install` (only if the shim is what ``psana`` names)."""
    if sys.modules.get("psana") is _shim():
        del sys.modules["psana"]
