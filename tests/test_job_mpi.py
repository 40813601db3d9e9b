"""End to end: ``mpiexec -n 2 mpireduce run`` on a simulated run, checked against its truth."""

import hashlib
import json

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from mpireduce.simulate import read_truth
from conftest import check, run_cli, write_job

pytestmark = pytest.mark.mpi


def _read(path):
    with h5py.File(path, "r") as f:
        events = {k: f[f"mpireduce/events/{k}"][()] for k in f["mpireduce/events"] if k != "source_files"}
        peaks = {k: f[f"mpireduce/peaks/{k}"][()] for k in f["mpireduce/peaks"]}
        cxi = {k: f[f"entry_1/result_1/{k}"][()] for k in f["entry_1/result_1"]}
        return {
            "events": events, "peaks": peaks, "cxi": cxi,
            "frames": f["entry_1/data_1/data"][()], "event_index": f["entry_1/data_1/event_index"][()],
            "cxi_version": int(f["cxi_version"][()]),
            "stats": dict(f["mpireduce/statistics"].attrs),
            "per_rank": json.loads(f["mpireduce/statistics/per_rank"][()]),
            "prov_attrs": dict(f["mpireduce/provenance"].attrs),
            "prov_config": f["mpireduce/provenance/config"][()].decode(),
            "prov_inputs": json.loads(f["mpireduce/provenance/inputs"][()]),
        }


@pytest.fixture(scope="module")
def two_rank_output(sim_run, trained_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("job2")
    job = write_job(folder, [sim_run], model=trained_model)
    proc = check(run_cli("run", job, np=2))
    return folder / "out.cxi", proc


def test_output_matches_truth(sim_run, two_rank_output):
    out, proc = two_rank_output
    assert "kept" in proc.stdout
    assert not out.with_name(out.name + ".inprogress").exists()
    data = _read(out)
    truth = read_truth(sim_run)
    n = len(truth.kind)
    assert data["cxi_version"] == 150
    assert len(data["events"]["status"]) == n and (data["events"]["status"] == 0).all()
    assert (data["events"]["index_in_file"] == np.arange(n)).all()
    names = list(truth.kind_names)
    hit_truth = truth.kind != names.index("miss")
    strong = np.isin(truth.kind, [names.index("hit"), names.index("multi")])
    kept = data["events"]["hit"]
    assert kept[strong].all(), "every strong true hit must be kept"
    assert kept[truth.kind == names.index("miss")].mean() <= 0.05
    assert data["stats"]["events_kept"] == kept.sum() == len(data["frames"])
    assert abs(data["stats"]["hit_rate"] - kept.mean()) < 1e-9
    assert hit_truth.sum() > 5


def test_kept_frames_are_the_input_frames(sim_run, two_rank_output):
    out, _ = two_rank_output
    data = _read(out)
    with h5py.File(sim_run, "r") as f:
        source = f["entry_1/data_1/data"]
        for row, event in enumerate(data["event_index"]):
            np.testing.assert_array_equal(data["frames"][row], source[event])
    kept_index = data["events"]["kept_index"]
    assert (kept_index[data["event_index"]] == np.arange(len(data["event_index"]))).all()
    assert (kept_index[~data["events"]["hit"]] == -1).all()


def test_cxi_peaks_agree_with_event_table(two_rank_output):
    data = _read(two_rank_output[0])
    n_cxi = data["cxi"]["nPeaks"]
    assert (n_cxi == data["events"]["n_peaks"][data["event_index"]]).all()
    for row, event in enumerate(data["event_index"]):
        mine = data["peaks"]["event"] == event
        np.testing.assert_allclose(np.sort(data["cxi"]["peakXPosRaw"][row, : n_cxi[row]]),
                                   np.sort(data["peaks"]["fs"][mine]))
    assert np.bincount(data["peaks"]["event"], minlength=len(data["events"]["n_peaks"])).tolist() == \
        data["events"]["n_peaks"].tolist()


def test_provenance(sim_run, trained_model, two_rank_output):
    data = _read(two_rank_output[0])
    prov = data["prov_attrs"]
    assert prov["program"] == "mpireduce" and prov["mpi_size"] == 2
    assert hashlib.sha256(data["prov_config"].encode()).hexdigest() == prov["config_sha256"]
    assert data["prov_inputs"][0]["sha256"] == hashlib.sha256(sim_run.read_bytes()).hexdigest()
    assert len(data["per_rank"]) == 2 and all(r["events"] > 0 for r in data["per_rank"])
    assert sum(r["events"] for r in data["per_rank"]) == data["stats"]["events_read"]


def test_one_and_two_ranks_identical(sim_run, trained_model, two_rank_output, tmp_path):
    job = write_job(tmp_path, [sim_run], model=trained_model)
    check(run_cli("run", job))  # plain, one rank, no mpiexec
    one, two = _read(tmp_path / "out.cxi"), _read(two_rank_output[0])
    for key in ("hit", "n_peaks", "score", "kept_index", "status"):
        np.testing.assert_array_equal(one["events"][key], two["events"][key])
    np.testing.assert_array_equal(one["frames"], two["frames"])
    for key in one["peaks"]:
        np.testing.assert_array_equal(one["peaks"][key], two["peaks"][key])
    assert one["prov_attrs"]["mpi_size"] == 1


def test_inspect_prints_summary(two_rank_output):
    proc = check(run_cli("inspect", two_rank_output[0]))
    for text in ("hit rate", "reduction", "frames/s", "rank 1", "config sha256", "mpi4py"):
        assert text in proc.stdout


def test_existing_output_needs_overwrite(sim_run, tmp_path):
    job = write_job(tmp_path, [sim_run])
    (tmp_path / "out.cxi").write_text("precious")
    proc = run_cli("run", job, np=2)
    assert proc.returncode != 0 and "--overwrite" in proc.stderr
    assert (tmp_path / "out.cxi").read_text() == "precious"
    check(run_cli("run", job, "--overwrite", np=2))
    assert h5py.is_hdf5(tmp_path / "out.cxi")


def test_failure_on_one_rank_aborts_job(sim_run, tmp_path):
    job = write_job(tmp_path, [sim_run])
    # event 5 is in chunk 1 (chunk_size 4), which rank 1 processes
    proc = run_cli("run", job, np=2, env={"MPIREDUCE_FAIL_AT_EVENT": "5"}, timeout=120)
    assert proc.returncode != 0
    assert "injected failure" in proc.stderr
    assert not (tmp_path / "out.cxi").exists()


def test_descriptor_stored_per_event(two_rank_output):
    with h5py.File(two_rank_output[0], "r") as f:
        descriptor = f["mpireduce/events/descriptor"][()]
        columns = json.loads(f["mpireduce/events/descriptor"].attrs["columns"])
        n_peaks = f["mpireduce/events/n_peaks"][()]
    assert descriptor.shape == (len(n_peaks), len(columns)) == (len(n_peaks), 64)
    assert (descriptor.sum(axis=1) <= n_peaks).all()
    hits = n_peaks >= 20
    assert (descriptor[hits].sum(axis=1) >= 0.5 * n_peaks[hits]).all()
