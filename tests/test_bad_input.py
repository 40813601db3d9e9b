"""Bad input: a one-line error that says what to do before any work, or a skipped and counted event."""

import h5py
import numpy as np
import pytest

from conftest import check, run_cli, write_job


def _assert_clean_failure(proc, folder, expected):
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.strip().splitlines() if "error:" in l]
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert not (folder / "out.cxi").exists()
    assert not (folder / "out.cxi.inprogress").exists()


def _write_frames(path, frames, dataset="/entry_1/data_1/data"):
    with h5py.File(path, "w") as f:
        f[dataset] = frames
    return path


@pytest.mark.parametrize("np_ranks", [None, 2])
def test_missing_file(tmp_path, np_ranks):
    job = write_job(tmp_path, [tmp_path / "nope.h5"])
    _assert_clean_failure(run_cli("run", job, np=np_ranks), tmp_path, "does not exist")


def test_no_glob_match(tmp_path):
    job = write_job(tmp_path, [tmp_path / "run_*.h5"])
    _assert_clean_failure(run_cli("run", job), tmp_path, "no input file matches")


def test_wrong_dataset_path_names_candidates(tmp_path):
    src = _write_frames(tmp_path / "a.h5", np.zeros((2, 8, 8), np.float32), dataset="/data/frames")
    job = write_job(tmp_path, [src])
    _assert_clean_failure(run_cli("run", job), tmp_path, "/data/frames")


def test_wrong_rank_of_data(tmp_path):
    src = _write_frames(tmp_path / "a.h5", np.zeros((8, 8), np.float32))
    job = write_job(tmp_path, [src])
    _assert_clean_failure(run_cli("run", job), tmp_path, "expected a (events, ss, fs) stack")


def test_truncated_file(sim_run, tmp_path):
    cut = tmp_path / "cut.h5"
    cut.write_bytes(sim_run.read_bytes()[: sim_run.stat().st_size // 2])
    job = write_job(tmp_path, [cut])
    _assert_clean_failure(run_cli("run", job, np=2), tmp_path, "truncated, corrupt or not HDF5")


def test_unknown_config_key(sim_run, tmp_path):
    job = write_job(tmp_path, [sim_run], detect={"min_snrr": 4})
    _assert_clean_failure(run_cli("run", job, np=2), tmp_path, "did you mean 'min_snr'")


def test_missing_model(sim_run, tmp_path):
    job = write_job(tmp_path, [sim_run], model=tmp_path / "nomodel.pt")
    proc = run_cli("run", job)
    assert proc.returncode == 2 and "nomodel.pt" in proc.stderr


def test_nonfinite_and_wrong_shape_frames_are_skipped_and_counted(tmp_path):
    rng = np.random.default_rng(0)
    good = rng.poisson(3, (6, 32, 32)).astype(np.float32)
    good[1, 4, 4] = np.nan
    good[4, 0, 0] = np.inf
    a = _write_frames(tmp_path / "a.h5", good)
    b = _write_frames(tmp_path / "b.h5", rng.poisson(3, (3, 16, 16)).astype(np.float32))
    job = write_job(tmp_path, [a, b])
    check(run_cli("run", job, np=2))
    with h5py.File(tmp_path / "out.cxi", "r") as f:
        status = f["mpireduce/events/status"][()]
        stats = dict(f["mpireduce/statistics"].attrs)
    assert status.tolist() == [0, 1, 0, 0, 1, 0, 2, 2, 2]
    assert stats["events_skipped"] == 5 and stats["events_read"] == 9 and stats["events_processed"] == 4
