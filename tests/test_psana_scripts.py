"""User psana scripts run unchanged through ``python -m mpireduce.psana.run``, serial and under mpiexec."""

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import mpireduce.psana as shim
from conftest import MPIEXEC, _env

SCRIPTS = Path(__file__).parent / "psana_scripts"
EXP, RUN = "xpptut15", 14


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("psana_scripts")
    shim.simulate_run(folder, EXP, RUN, n_events=40, seed=11)
    return folder


def run_script(script, *args, np_=None, cwd=None, env=None):
    """Run a script with the shim as psana (under mpiexec -n np_ when given)."""
    cmd = [sys.executable, "-m", "mpireduce.psana.run", str(SCRIPTS / script), *map(str, args)]
    if np_ is not None:
        cmd = [MPIEXEC, "-n", str(np_), "--oversubscribe", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd, env=_env(env))
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def rows(path):
    """The smalldata rows sorted by timestamp, and the summary total."""
    with h5py.File(path) as f:
        order = np.argsort(f["timestamp"][:])
        return {k: f[k][:][order] for k in ("timestamp", "npix", "sum")}, f["total"][()], list(f["_parts/file"][:])


@pytest.mark.parametrize("ranks,srv", [(3, 0), (5, 1)])
def test_minimal_psana2_script_serial_equals_mpi(data_dir, tmp_path, ranks, srv):
    serial, parallel = tmp_path / "serial", tmp_path / "mpi"
    serial.mkdir(), parallel.mkdir()
    run_script("minimal_psana2.py", EXP, RUN, data_dir, cwd=serial)
    run_script("minimal_psana2.py", np_=ranks, cwd=parallel,
               env={"PSANA_EXP": EXP, "PSANA_RUN": str(RUN), "PSANA_DIR": str(data_dir), "PS_SRV_NODES": str(srv)})
    one, total_one, parts_one = rows(serial / "out.h5")
    many, total_many, _ = rows(parallel / "out.h5")
    assert 25 < len(one["timestamp"]) < 40  # events without the detector are skipped
    for key in one:
        np.testing.assert_array_equal(one[key], many[key])
    n_workers = ranks - 1 - 1 - srv
    assert total_one[0] == 1.0 and total_many[0] == n_workers
    assert parts_one == [b"out_part0.h5"]


def test_psana2_small_batches_spread_over_workers(data_dir, tmp_path):
    script = tmp_path / "spread.py"
    script.write_text(
        "import os, sys, numpy as np\nfrom psana import DataSource\n"
        f"ds = DataSource(exp='{EXP}', run={RUN}, dir='{data_dir}', batch_size=2)\n"
        "smd = ds.smalldata(filename='o.h5', batch_size=3)\n"
        "n = 0\n"
        "for run in ds.runs():\n"
        "    for evt in run.events():\n"
        "        n += 1; smd.event(evt, rank=int(os.environ.get('OMPI_COMM_WORLD_RANK', 0)))\n"
        "if smd.summary:\n"
        "    smd.save_summary(n=smd.sum(n), most=smd.max(np.array([n])))\n"
        "print('ROLE', ds.is_bd(), ds.is_srv(), ds.unique_user_rank(), n)\n"
        "smd.done()\n")
    cmd = [MPIEXEC, "-n", "5", "--oversubscribe", sys.executable, "-m", "mpireduce.psana.run", str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=_env())
    assert proc.returncode == 0, proc.stderr
    roles = sorted(line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("ROLE"))
    assert sum(r[2] == "True" for r in roles) == 1 and sum(r[0] == "True" for r in roles) == 3
    with h5py.File(tmp_path / "o.h5") as f:
        assert f["n"][()] == [40] and len(f["timestamp"]) == 40 and len(f["_parts/file"]) == 3
        assert len(set(f["rank"][:])) == 3  # every worker got batches


def test_psana1_script_reads_the_same_file(data_dir, tmp_path):
    proc = run_script("psana1_style.py", EXP, RUN, data_dir, cwd=tmp_path)
    lines = proc.stdout.splitlines()
    assert lines[-1] == f"done {EXP} (4, 64, 64)"
    sums = np.array([float(line.split()[2]) for line in lines[:-1]])
    assert all(line.split()[3:5] == ["132", "132"] for line in lines[:-1])
    psana2_dir = tmp_path / "p2"
    psana2_dir.mkdir()
    run_script("minimal_psana2.py", EXP, RUN, data_dir, cwd=psana2_dir)
    np.testing.assert_allclose(sums, rows(psana2_dir / "out.h5")[0]["sum"], rtol=1e-6)


def test_psana1_mpidatasource_round_robin(data_dir, tmp_path):
    run_script("psana1_mpi.py", EXP, RUN, data_dir, "p1.h5", np_=3, cwd=tmp_path)
    with h5py.File(tmp_path / "p1.h5") as f:
        assert f["n_events"][()] == [30]
        assert len(f["calib_sum"]) == len(f["event_time"]) == len(f["nested/npix"]) < 30


def test_unknown_detector_fails_with_keyerror(data_dir, tmp_path):
    script = tmp_path / "bad.py"
    script.write_text(f"from psana import DataSource\nrun = next(DataSource(exp='{EXP}', run={RUN}, "
                      f"dir='{data_dir}').runs())\nrun.Detector('cspad')\n")
    proc = subprocess.run([sys.executable, "-m", "mpireduce.psana.run", str(script)],
                          capture_output=True, text=True, timeout=60, env=_env())
    assert proc.returncode == 1
    assert "DetectorNameError: 'No available detector class matched with cspad" in proc.stderr
