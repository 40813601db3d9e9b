"""Run a psana script unchanged on HDF5 runs: ``python -m mpireduce.psana.run script.py ARGS``.

``import psana`` inside the script gets the shim (unless a real psana is installed; pass
``--force-shim`` to use the shim anyway). Under MPI, an exception on any rank is printed
and aborts the whole job (``MPI.COMM_WORLD.Abort(1)``) instead of leaving others waiting.
Example::

    mpiexec -n 4 python -m mpireduce.psana.run my_analysis.py --run 14
"""

from __future__ import annotations

import runpy
import sys
import traceback
from pathlib import Path
from typing import List, Optional

from .install import install

USAGE = "usage: python -m mpireduce.psana.run [--force-shim] SCRIPT.py [ARGS...]"


def _abort_if_parallel() -> None:
    """Abort all ranks when more than one runs (mpi4py already imported by the shim)."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.COMM_WORLD.Get_size() > 1:
        sys.stderr.flush()
        mpi.COMM_WORLD.Abort(1)


def main(argv: Optional[List[str]] = None) -> int:
    """Install the shim and run the script as ``__main__`` with its own argv."""
    argv = list(sys.argv[1:] if argv is None else argv)
    force = "--force-shim" in argv[:1]
    argv = argv[1:] if force else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    script = Path(argv[0])
    if not script.is_file():
        print(f"mpireduce.psana.run: error: script {script} not found", file=sys.stderr)
        return 2
    install(force=force)
    sys.argv = [str(script), *argv[1:]]
    sys.path.insert(0, str(script.resolve().parent))
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        _abort_if_parallel()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
