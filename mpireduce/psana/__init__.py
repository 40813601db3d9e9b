"""A psana-compatible shim: LCLS analysis scripts run unchanged on HDF5 runs.

How ``import psana`` is switched to the shim (it never shadows a real psana):

* ``python -m mpireduce.psana.run script.py ARGS`` (or under ``mpiexec -n N``) installs
  the shim and runs the script as ``__main__``; add ``--force-shim`` to prefer it over an
  installed real psana.
* In Python: ``import mpireduce.psana; mpireduce.psana.install()`` before ``import psana``.
  It sets ``sys.modules['psana']`` only when no real psana is importable
  (``install(force=True)`` sets it anyway); ``uninstall()`` undoes it.

Surface: psana2's ``DataSource(exp=, run=, dir=, files=, max_events=, batch_size=, ...)``
with ``runs()``, ``Run``, detectors, ``ds.smalldata(...)`` and MPI event dispatch
(:mod:`.datasource`, :mod:`.detector`, :mod:`.smalldata`, :mod:`.distribute`); psana1's
``DataSource('exp=...:run=...:smd')``, ``Detector(name)``, ``EventId`` and
``MPIDataSource`` (:mod:`.psana1`, :mod:`.psana1_mpi`). Runs are HDF5 files in the layout of
:mod:`.layout`, made by :func:`simulate_run` or converted from xtc2 by ``mpireduce convert``.
"""

from __future__ import annotations

from .datasource import DataSource as DataSource2
from .datasource import Run, Step
from .detector import DetectorNameError
from .event import Event
from .install import install, real_psana_available, uninstall
from .layout import RunNotFoundError
from .psana1 import DataSource as DataSource1
from .psana1 import Detector, EventId, EventTime
from .psana1_mpi import MPIDataSource

__all__ = [
    "DataSource",
    "Detector",
    "DetectorNameError",
    "Event",
    "EventId",
    "EventTime",
    "MPIDataSource",
    "Run",
    "RunNotFoundError",
    "Step",
    "install",
    "real_psana_available",
    "simulate_run",
    "uninstall",
    "write_psana_run",
]


def DataSource(*args, **kwargs):  # noqa: N802 (psana's name)
    """psana1's ``DataSource('exp=...:run=...')`` for a string, else psana2's keyword form."""
    if args and isinstance(args[0], str):
        return DataSource1(*args, **kwargs)
    if args:
        raise TypeError("DataSource takes keywords (psana2) or one 'exp=...:run=...' string (psana1)")
    return DataSource2(**kwargs)


def simulate_run(folder, exp: str = "xpptut15", runnum: int = 14, **options):
    """Write a simulated run (see :func:`mpireduce.psana.simulate.write_psana_run`); returns its path."""
    from .simulate import write_psana_run as write

    return write(folder, exp, runnum, **options)


write_psana_run = simulate_run
