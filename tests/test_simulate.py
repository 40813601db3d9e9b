"""Tests of the SFX simulator: physics, reproducibility, file layout and CLI."""

from __future__ import annotations

import h5py
import hdf5plugin  # noqa: F401  (reads the compressed frames)
import numpy as np
import pytest

from mpireduce import cli
from mpireduce.simulate import (
    KIND_NAMES,
    SimulationConfig,
    make_detector_layout,
    read_truth,
    simulate_frame,
    simulate_run,
    truth_path,
)
from mpireduce.simulate.detector import BackgroundPhotons, parse_detector_size
from mpireduce.simulate.lattice import (
    UNIT_CELLS,
    PartialityModel,
    cell_matrix,
    excited_reflections,
    oriented_reciprocal_basis,
    project_to_detector,
    random_rotation,
    reciprocal_matrix,
    wilson_intensities,
)
from mpireduce.simulate.runfile import PSANA_EPOCH_UNIX_S
from mpireduce.simulate.sfx import HIT, MISS, MULTI, WEAK, _spot_patches, choose_kind, render_frame

# 256x256 frames get 300 um pixels by default: the angles of a 1M detector of 75 um pixels.
SMALL = dict(detector="256x256")


def small_config(**overrides) -> SimulationConfig:
    return SimulationConfig(**{**SMALL, "seed": 11, **overrides})


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    config = small_config(n_frames=24, hit_fraction=0.6, seed=5)
    path = tmp_path_factory.mktemp("sim") / "run.h5"
    summary = simulate_run(path, config)
    return path, config, summary


# --- lattice -----------------------------------------------------------------------------


def test_reciprocal_basis_is_dual_to_cell():
    for cell in UNIT_CELLS.values():
        assert np.allclose(cell_matrix(cell) @ reciprocal_matrix(cell).T, np.eye(3), atol=1e-12)


def test_random_rotation_is_proper_and_uniform():
    rng = np.random.default_rng(0)
    rotations = np.array([random_rotation(rng) for _ in range(2000)])
    assert np.allclose(rotations[0] @ rotations[0].T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(rotations[0]), 1.0)
    # a uniform rotation sends z to a uniform direction: mean 0, <z_i^2> = 1/3
    z = rotations[:, :, 2]
    assert np.all(np.abs(z.mean(axis=0)) < 0.05)
    assert np.allclose((z**2).mean(axis=0), 1 / 3, atol=0.03)


def test_excited_reflections_lie_on_the_ewald_sphere_and_project_along_s1():
    wavelength, model = 1.0, PartialityModel()
    cell = UNIT_CELLS["lysozyme"]
    basis = oriented_reciprocal_basis(cell, random_rotation(np.random.default_rng(3)))
    refl = excited_reflections(cell, basis, wavelength, 2.0, model)
    assert len(refl.hkl) > 100
    s1 = refl.hkl @ basis + [0.0, 0.0, 1.0 / wavelength]
    assert np.allclose(s1, refl.s1)
    excitation = np.linalg.norm(s1, axis=1) - 1.0 / wavelength
    assert np.allclose(excitation, refl.excitation)
    sigma = model.sigma(1.0 / refl.d_A, wavelength)
    assert np.all(np.abs(excitation) <= 3.5 * sigma)
    assert np.allclose(refl.partiality, np.exp(-0.5 * (excitation / sigma) ** 2))
    # the spot is where the ray from the crystal along s1 meets the plane z = D
    distance, pixel = 0.1, 75e-6
    fs, ss, forward = project_to_detector(refl.s1, distance, pixel, 500.0, 510.0)
    ray = np.stack([(fs - 500.0) * pixel, (ss - 510.0) * pixel, np.full(fs.shape, distance)], axis=1)
    cosine = np.einsum("ij,ij->i", ray, s1) / np.linalg.norm(ray, axis=1) / np.linalg.norm(s1, axis=1)
    assert np.all(forward) and np.allclose(cosine[forward], 1.0, atol=1e-12)


def test_wilson_intensities_are_exponential_and_obey_friedel():
    hkl = np.random.default_rng(1).integers(-40, 41, size=(20000, 3))
    intensity = wilson_intensities(hkl, seed=4)
    assert abs(intensity.mean() - 1.0) < 0.03 and abs(intensity.std() - 1.0) < 0.05
    assert np.array_equal(intensity, wilson_intensities(-hkl, seed=4))
    assert not np.array_equal(intensity, wilson_intensities(hkl, seed=5))


# --- detector ----------------------------------------------------------------------------


def test_detector_sizes_and_default_pixels():
    assert SimulationConfig().pixel_size_m == 75e-6
    assert SimulationConfig(detector="4M").pixel_size_m == 75e-6
    assert SimulationConfig(detector="256x256").pixel_size_m == pytest.approx(300e-6)
    assert SimulationConfig(detector="256x256", pixel_size_m=1e-4).pixel_size_m == 1e-4
    assert parse_detector_size("1M") == (1024, 1024)
    assert parse_detector_size("4m") == (2048, 2048)
    assert parse_detector_size("128x256") == (128, 256)
    with pytest.raises(Exception, match="SSxFS"):
        parse_detector_size("big")


def test_layout_has_gaps_beamstop_and_bad_pixels():
    layout = make_detector_layout(small_config())
    n_ss, n_fs = layout.panel_grid
    assert n_ss * layout.panel_shape[0] < layout.shape[0] and n_fs * layout.panel_shape[1] < layout.shape[1]
    gaps = layout.transmission == 0
    assert gaps.any() and np.all(layout.mask[gaps] == 0) and np.all(layout.background[gaps] == 0)
    ss, fs = np.indices(layout.shape)
    near_beam = np.hypot(fs - layout.beam_center_fs, ss - layout.beam_center_ss) <= 2.5
    assert np.all(layout.mask[near_beam] == 0)
    assert np.all(layout.transmission[near_beam] < 0.1) and np.any(layout.transmission[near_beam] > 0)
    hot_masked = layout.mask.reshape(-1)[layout.hot_index] == 0
    assert hot_masked.any() and not hot_masked.all()
    assert np.all(layout.hot_value > 10_000)


def test_background_has_a_water_ring_and_falling_air_scatter():
    layout = make_detector_layout(SimulationConfig())
    geometry = layout.geometry()
    radius = np.rint(geometry.radius_px()).astype(int)
    good = layout.mask == 1
    profile = np.bincount(radius[good], layout.background[good]) / np.maximum(np.bincount(radius[good]), 1)
    ring = 60 + np.argmax(profile[60:500])
    assert 3.2 <= geometry.resolution_A(ring) <= 3.7
    assert profile[20] > profile[40] > profile[60]  # air scatter falls off with angle
    assert 0.5 < profile[ring] < 3.0  # photons per pixel at background = 1


def test_background_photons_are_poisson():
    expected = np.linspace(0.0, 3.0, 5000, dtype=np.float32).reshape(50, 100)
    sampler = BackgroundPhotons(expected)
    rng = np.random.default_rng(0)
    counts = np.stack([sampler.sample(2.0, rng) for _ in range(400)]).astype(np.float64)
    assert np.all(counts[:, expected == 0] == 0)
    mean, var = counts.mean(axis=0), counts.var(axis=0)
    assert np.allclose(mean, 2.0 * expected, atol=0.45)  # 5 sigma at the largest mean
    assert abs(mean.sum() / (2.0 * expected.sum()) - 1.0) < 0.002
    bright = expected > 1.0
    assert abs(var[bright].mean() / mean[bright].mean() - 1.0) < 0.03


# --- frames ------------------------------------------------------------------------------


def test_frames_are_reproducible_from_seed_and_index():
    config = small_config(hit_fraction=1.0)
    frame, kind, spots = simulate_frame(config, 3)
    again, kind_again, spots_again = simulate_frame(small_config(hit_fraction=1.0, n_frames=7), 3)
    assert frame.dtype == np.int32 and kind == kind_again
    assert np.array_equal(frame, again) and np.array_equal(spots["fs"], spots_again["fs"])
    other, _, _ = simulate_frame(small_config(hit_fraction=1.0, seed=12), 3)
    assert not np.array_equal(frame, other)
    assert not np.array_equal(frame, simulate_frame(config, 4)[0])


def test_kinds_follow_the_fractions():
    config = small_config(hit_fraction=0.3, weak_fraction=0.2, multi_fraction=0.3)
    kinds = np.array([choose_kind(config, np.random.default_rng([config.seed, i])) for i in range(6000)])
    hits = kinds != MISS
    assert abs(hits.mean() - 0.3) < 0.025
    assert abs((kinds[hits] == WEAK).mean() - 0.2) < 0.04
    assert abs((kinds[hits] == MULTI).mean() - 0.3) < 0.04
    assert np.all(kinds[:10] == [simulate_frame(config, i)[1] for i in range(10)])


def test_visible_spot_counts_per_kind():
    config = small_config(hit_fraction=1.0, weak_fraction=0.3, multi_fraction=0.3)
    visible = {HIT: [], WEAK: [], MULTI: []}
    for i in range(24):
        _, kind, spots = simulate_frame(config, i)
        visible[kind].append(int(spots["visible"].sum()))
    assert all(visible.values()), visible
    assert all(6 <= n <= 15 for n in visible[WEAK])
    assert min(visible[HIT]) >= 20 and np.mean(visible[HIT]) > 3 * np.mean(visible[WEAK])
    assert np.mean(visible[MULTI]) > np.mean(visible[HIT])
    _, kind, spots = simulate_frame(small_config(hit_fraction=0.0), 0)
    assert kind == MISS and len(spots["fs"]) == 0


def test_spot_visibility_definition():
    config = small_config(hit_fraction=1.0)
    layout = make_detector_layout(config)
    rendered = render_frame(config, 1, layout)
    spots = rendered.spots
    pixel = np.rint(spots["ss"]).astype(int) * layout.shape[1] + np.rint(spots["fs"]).astype(int)
    rng = np.random.default_rng([config.seed, 1])
    choose_kind(config, rng)
    bg3 = layout.background3.reshape(-1)[pixel] * config.background * rng.uniform(0.8, 1.2)
    snr = spots["photons"] / np.sqrt(spots["photons"] + bg3)
    good = layout.mask.reshape(-1)[pixel] == 1
    assert np.array_equal(spots["visible"], good & (snr >= 5.0 * (1 - 1e-5)))


def test_rendered_spot_centroid_and_photons_match_truth():
    config = small_config(hit_fraction=1.0, background=0.0, spot_sigma_px=0.8)
    layout = make_detector_layout(config)
    checked = 0
    for i in range(4):
        rendered = render_frame(config, i, layout, noise=False)
        image, spots = rendered.frame.astype(np.float64), rendered.spots
        image.reshape(-1)[layout.hot_index] = 0.0
        for j in np.flatnonzero(spots["photons"] > 20):
            fs, ss = float(spots["fs"][j]), float(spots["ss"][j])
            others = np.hypot(spots["fs"] - fs, spots["ss"] - ss)
            c_ss, c_fs = int(round(ss)), int(round(fs))
            window = (slice(c_ss - 3, c_ss + 4), slice(c_fs - 3, c_fs + 4))
            if np.sort(others)[1:2].min(initial=99) < 10 or min(c_ss, c_fs) < 3 or max(c_ss, c_fs) > 252:
                continue
            if np.any(layout.transmission[window] < 1):
                continue
            patch = image[window]
            yy, xx = np.mgrid[window]
            # faint unlisted neighbours (S < 1 photon) may add a little
            assert abs(patch.sum() / spots["photons"][j] - 1.0) < 0.01
            assert abs((patch * xx).sum() / patch.sum() - fs) < 0.02
            assert abs((patch * yy).sum() / patch.sum() - ss) < 0.02
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize("sigma", [0.6, 0.75, 0.9])
def test_spot_profile_conserves_photons_and_centroid(sigma):
    layout = make_detector_layout(small_config())
    fs = np.array([40.0, 41.37, 200.81], dtype=np.float32)
    ss = np.array([60.0, 62.5, 199.13], dtype=np.float32)
    flat, values = _spot_patches(layout, fs, ss, np.array([100.0, 50.0, 7.0], np.float32), sigma)
    assert len(flat) == 3 * 49
    for k, (x, y, total) in enumerate(zip(fs, ss, [100.0, 50.0, 7.0])):
        f, v = flat[k * 49 : (k + 1) * 49], values[k * 49 : (k + 1) * 49].astype(np.float64)
        assert abs(v.sum() - total) < 1e-4 * total
        # the 7x7 patch truncates the tails: the centroid moves by < 0.003 px at sigma 0.9
        assert abs((v * (f % 256)).sum() / total - x) < 3e-3
        assert abs((v * (f // 256)).sum() / total - y) < 3e-3
        # FWHM of the pixel-integrated profile ~ 2.355 sigma (+ the pixel width in quadrature)
        rms = np.sqrt((v * ((f % 256) - x) ** 2).sum() / total)
        assert abs(rms - np.sqrt(sigma**2 + 1 / 12)) < 0.02


def test_gaps_and_dead_pixels_read_zero_and_hot_pixels_are_constant():
    config = small_config(hit_fraction=1.0, background=3.0)
    layout = make_detector_layout(config)
    frames = [simulate_frame(config, i, layout)[0] for i in range(3)]
    insensitive = layout.transmission == 0
    for frame in frames:
        assert np.all(frame[insensitive] == 0)
        assert frame[~insensitive & (layout.mask == 1)].mean() > 1.0
        assert np.array_equal(frame.reshape(-1)[layout.hot_index], layout.hot_value)


# --- files -------------------------------------------------------------------------------


def test_run_file_layout(run_file):
    path, config, summary = run_file
    n, shape = config.n_frames, parse_detector_size(config.detector)
    assert sum(summary["counts"].values()) == n and summary["frames_per_s"] > 0
    with h5py.File(path, "r") as f:
        assert f["cxi_version"][()] == 150
        data = f["entry_1/data_1/data"]
        assert data.shape == (n, *shape) and data.dtype == np.uint16 and data.chunks == (1, *shape)
        assert f["entry_1/data_1/mask"].dtype == np.int8 and f["entry_1/data_1/mask"].shape == shape
        stamps = f["entry_1/data_1/timestamp"][()]
        assert stamps.dtype == np.uint64 and stamps.shape == (n,)
        det = f["entry_1/instrument_1/detector_1"]
        for name in ("beam_center_fs_px", "beam_center_ss_px", "distance", "x_pixel_size", "y_pixel_size"):
            assert det[name].shape == () and det[name].dtype == np.float64
        assert tuple(det.attrs["panel_grid"]) == (2, 2) and len(det.attrs["panel_shape"]) == 2
        assert f["entry_1/instrument_1/source_1/wavelength_A"][()] == config.wavelength_A
        assert abs(f["entry_1/instrument_1/source_1/photon_energy_eV"][()] - 12398.4) < 0.1
        assert SimulationConfig.from_json(f.attrs["simulation_config"]) == config
        assert f.attrs["generator"].startswith("mpireduce.simulate ")
        assert np.array_equal(data[7], simulate_frame(config, 7)[0])  # any frame can be regenerated
    seconds = (stamps >> np.uint64(32)).astype(np.int64)
    nanoseconds = (stamps & np.uint64(0xFFFFFFFF)).astype(np.int64)
    assert np.all(nanoseconds < 10**9)
    step_ns = np.diff(seconds * 10**9 + nanoseconds)
    assert np.all(np.abs(step_ns - 1e9 / 120) <= 1)
    assert 2020 <= 1970 + (seconds[0] + PSANA_EPOCH_UNIX_S) / 365.25 / 86400 < 2026


def test_truth_file_layout_and_reader(run_file):
    path, config, _ = run_file
    assert truth_path(path).name == "run.truth.h5" and truth_path("x/a.cxi").name == "a.truth.h5"
    with h5py.File(truth_path(path), "r") as f:
        assert f["kind"].dtype == np.int8 and list(f["kind"].attrs["names"]) == list(KIND_NAMES)
        assert f["spot_offsets"].dtype == np.int64 and f["spot_offsets"].shape == (config.n_frames + 1,)
        for name in ("fs", "ss", "photons", "d_A"):
            assert f[f"spot_{name}"].dtype == np.float32
        assert f["spot_visible"].dtype == bool and f["spot_lattice"].dtype == np.int8
    truth = read_truth(path)
    assert truth.kind_names == KIND_NAMES and len(truth) == config.n_frames
    for i in range(config.n_frames):
        _, kind, spots = simulate_frame(config, i)
        assert truth.kind[i] == kind
        assert np.array_equal(truth.spots(i)["photons"], spots["photons"])
        fs, ss = truth.visible_spots(i)
        assert len(fs) == spots["visible"].sum() == truth.n_visible()[i]
        assert (len(truth.spots(i)["fs"]) == 0) == (kind == MISS)


def test_truth_spots_satisfy_the_ewald_condition(run_file):
    path, config, _ = run_file
    truth, layout = read_truth(path), make_detector_layout(config)
    model = config.partiality_model()
    checked = 0
    for i in np.flatnonzero(truth.is_hit):
        spots, bases = truth.spots(i), truth.bases(i)
        assert len(bases) == {HIT: 1, WEAK: 1, MULTI: len(bases)}[truth.kind[i]] and len(bases) <= 3
        for lattice, basis in enumerate(bases):
            mine = spots["lattice"] == lattice
            q = spots["hkl"][mine].astype(np.float64) @ basis
            s1 = q + [0.0, 0.0, 1.0 / config.wavelength_A]
            excitation = np.linalg.norm(s1, axis=1) - 1.0 / config.wavelength_A
            sigma = model.sigma(np.linalg.norm(q, axis=1), config.wavelength_A)
            assert np.all(np.abs(excitation) <= 3.5 * sigma)
            assert np.allclose(1.0 / np.linalg.norm(q, axis=1), spots["d_A"][mine], rtol=1e-5)
            fs, ss, _ = project_to_detector(
                s1, layout.distance_m, layout.pixel_size_m, layout.beam_center_fs, layout.beam_center_ss
            )
            assert np.allclose(fs, spots["fs"][mine], atol=1e-3)
            assert np.allclose(ss, spots["ss"][mine], atol=1e-3)
            checked += mine.sum()
    assert checked > 100


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_other_compressions_round_trip(tmp_path, compression):
    config = small_config(n_frames=2, hit_fraction=1.0, compression=compression)
    simulate_run(tmp_path / "r.h5", config)
    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert np.array_equal(f["entry_1/data_1/data"][1], simulate_frame(config, 1)[0])


def test_cli_writes_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "cli.h5"
    argv = ["simulate", str(out), "--frames", "3", "--detector", "128x128"]
    assert cli.main(argv) == 0
    assert "frames/s" in capsys.readouterr().out
    assert out.exists() and truth_path(out).exists()
    assert not list(tmp_path.glob("*.inprogress"))
    before = out.stat().st_mtime_ns
    assert cli.main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err and out.stat().st_mtime_ns == before
    assert cli.main(argv + ["--overwrite", "--compression", "gzip"]) == 0
    assert cli.main(["simulate", str(tmp_path / "bad.h5"), "--hit-fraction", "2"]) == 2
    assert "hit_fraction" in capsys.readouterr().err


def test_interrupted_run_leaves_no_file(tmp_path):
    from mpireduce.simulate.runfile import atomic_run_files

    with pytest.raises(RuntimeError):
        with atomic_run_files(tmp_path / "r.h5", tmp_path / "r.truth.h5") as (run, truth):
            run.write_text("half a run")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
