"""Preview images: which panels a sample gets (curves for 1-D fields, a space-time image for a 1-D
trajectory, frames labelled with their times), and that each renders as a PNG."""

import numpy as np

from pdeforge.workers.dataset import read_sample
from pdeforge.workers.preview import _panels, render_png
from pdeforge.workers.standalone import generate_local
from tests.cluster import make_job


def first_sample(tmp_path, family, **extra):
    job = make_job(family, samples=2, split={"train": 1.0, "valid": 0.0, "test": 0.0}, **extra)
    manifest = generate_local(job, tmp_path, workers=1)
    shard = next(f for f in manifest["files"] if "shard" in f)
    return read_sample(tmp_path / shard["path"], 0)


def test_a_1d_trajectory_is_curves_and_a_space_time_image(tmp_path):
    sample = first_sample(tmp_path, "burgers", n=32, grid={"dim": 1}, params={"nu_min": 0.01, "nu_max": 0.1},
                          time={"t_end": 0.1, "dt": 1e-3, "frames": 3})
    panels = _panels(sample)
    assert [p["kind"] for p in panels] == ["line", "line", "spacetime"]
    assert panels[2]["data"].shape == (3, 32) and panels[2]["extent"] == (0.0, 1.0, 0.0, 0.1)
    np.testing.assert_array_equal(sample["grid_points"], np.arange(32) / 32)
    assert render_png(sample)[:4] == b"\x89PNG"


def test_2d_trajectory_frames_are_labelled_with_their_times(tmp_path):
    sample = first_sample(tmp_path, "heat", n=8, time={"t_end": 0.01, "dt": 0.005, "frames": 3})
    titles = [p["title"] for p in _panels(sample)]
    assert titles == ["x: a", "x: u0", "y: u (t = 0)", "y: u (t = 0.005)", "y: u (t = 0.01)"]
    assert render_png(sample)[:4] == b"\x89PNG"
