"""`source.kind: psana`: mpireduce run reads a psana run (the shim here, real psana when installed)."""

import h5py
import numpy as np

from conftest import check, run_cli, write_job


def test_run_reduces_a_psana_run_on_two_ranks(tmp_path):
    from mpireduce.psana import simulate_run

    simulate_run(tmp_path / "data", exp="xpptut15", runnum=14, n_events=24, hit_fraction=0.5, seed=3)
    job = write_job(tmp_path, [], source={"kind": "psana", "exp": "xpptut15", "run": 14, "dir": "data",
                                          "detector": "jungfrau"},
                    descriptor={"enabled": False})
    check(run_cli("run", job, np=2))
    with h5py.File(tmp_path / "out.cxi", "r") as out, h5py.File(tmp_path / "data" / "xpptut15-r0014.h5") as run:
        status = out["mpireduce/events/status"][()]
        stamps = out["mpireduce/events/timestamp"][()]
        present = run["detectors/jungfrau/present"][()]
        np.testing.assert_array_equal(stamps, run["timestamp"][()])
        assert (status[~present] == 4).all() and (status[present] == 0).all()  # 4 = no_data
        assert out["mpireduce/events/hit"][()][present].sum() > 0


def test_unknown_psana_detector_is_a_clean_error(tmp_path):
    from mpireduce.psana import simulate_run

    simulate_run(tmp_path / "data", exp="xpptut15", runnum=14, n_events=4, seed=3)
    job = write_job(tmp_path, [], source={"kind": "psana", "exp": "xpptut15", "run": 14, "dir": "data",
                                          "detector": "epix"})
    proc = run_cli("run", job)
    assert proc.returncode == 2 and "no detector 'epix'" in proc.stderr
