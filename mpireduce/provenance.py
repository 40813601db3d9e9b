"""Provenance of a reduction: who made the output, from what, with which settings.

Stored as an NXprocess group: program, version and git hash, the resolved config
(YAML text + sha256), command line, MPI size and hosts, library versions, input
files with size and sha256, model file sha256 and threshold, start and end time.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import platform
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional


def utc_now() -> str:
    """Current UTC time, ISO 8601."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def sha256_file(path, block: int = 1 << 22) -> str:
    """sha256 of a file's bytes, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def git_revision() -> dict:
    """Git hash and dirty flag of the mpireduce source tree ('unknown' when not a checkout)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args) -> Optional[str]:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"git_hash": "unknown", "git_dirty": False}
    status = git("status", "--porcelain", "--untracked-files=no", "--", "mpireduce")
    return {"git_hash": commit, "git_dirty": bool(status)}


def library_versions(used_cupy: bool = False) -> dict:
    """Versions of python, numpy, h5py, HDF5, hdf5plugin, mpi4py + MPI library, torch (and cupy)."""
    import h5py
    import hdf5plugin
    import numpy

    versions = {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
        "hdf5plugin": hdf5plugin.version,
    }
    versions.update(_mpi_versions())
    for name in ("scipy", "torch"):
        versions[name] = _installed_version(name)
    if used_cupy:
        import cupy

        versions["cupy"] = cupy.__version__
        versions["cuda_runtime"] = str(cupy.cuda.runtime.runtimeGetVersion())
    return versions


def _installed_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _mpi_versions() -> dict:
    try:
        import mpi4py
        from mpi4py import MPI
    except ImportError:
        return {}
    return {"mpi4py": mpi4py.__version__, "mpi_library": MPI.Get_library_version().strip().splitlines()[0]}


def write_provenance(group, provenance: dict) -> None:
    """Write ``provenance`` into an HDF5 group as an NXprocess (text as datasets, scalars as attrs)."""
    group.attrs["NX_class"] = "NXprocess"
    for key, value in provenance.items():
        if isinstance(value, (dict, list, tuple)):
            group[key] = json.dumps(value, indent=1, default=str)
        elif isinstance(value, str) and len(value) > 200:
            group[key] = value
        elif value is not None:
            group.attrs[key] = value


def read_provenance(group) -> dict:
    """The provenance written by :func:`write_provenance`, JSON decoded."""
    out = {key: group.attrs[key] for key in group.attrs if key != "NX_class"}
    for key, dset in group.items():
        text = dset[()]
        text = text.decode() if isinstance(text, bytes) else text
        try:
            out[key] = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            out[key] = text
    return out


def hash_inputs(files, comm) -> dict:
    """sha256 of every input file (index -> hex), the files shared out over the ranks.

    Returns the merged dict on rank 0 and ``{}`` elsewhere; psana runs have no file to hash.
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    mine = {i: sha256_file(f.path) for i, f in enumerate(files) if i % size == rank and f.kind != "psana"}
    merged = {}
    for part in comm.gather(mine, root=0) or []:
        merged.update(part)
    return merged


def job_provenance(config, files, hashes: dict, *, started: str, ended: str, mpi_size: int, hosts: list,
                   backend: str, classifier: dict) -> dict:
    """The provenance record of a reduction job (see the module docstring)."""
    from . import __version__

    inputs = [{"path": f.path, "size_bytes": f.size_bytes, "n_events": f.n_events,
               "sha256": hashes.get(i, "not computed")} for i, f in enumerate(files)]
    return {
        "program": "mpireduce", "version": __version__, **git_revision(),
        "command_line": command_line(), "config": config.to_yaml(), "config_sha256": config.sha256(),
        "mpi_size": mpi_size, "hosts": hosts, "libraries": library_versions(used_cupy=backend == "cupy"),
        "array_backend": backend, "classifier": classifier, "inputs": inputs,
        "start_utc": started, "end_utc": ended,
    }


def command_line() -> str:
    """The command as the user typed it (``python -m mpireduce`` shows as ``mpireduce``)."""
    program = os.path.basename(sys.argv[0])
    return " ".join(["mpireduce" if program == "__main__.py" else program, *sys.argv[1:]])
