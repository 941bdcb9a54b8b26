"""Error over time: per-frame error whose RMS is the case's rel L2, start / middle / end windows, growth along the
recurrence (the backward half reversed), the flag just over and just under its limit, and the report renderers."""

import io
import json

import numpy as np
import pytest

import edgeseq
from edgeseq.errors import InputError
from edgeseq.parity import DEFAULT_TOLERANCES, Tolerance, Tolerances, compare, sweep
from edgeseq.timesteps import (
    DEFAULT_MAX_GROWTH,
    MIN_FRAMES,
    TimestepError,
    frame_errors,
    keep_longest,
    timestep_errors,
)

RNG = np.random.default_rng(0)


def _ramp_error(ref: np.ndarray, start: float, end: float, time_axis: int = 1) -> np.ndarray:
    """ref plus noise whose per-frame error runs linearly from `start` to `end` (in frame_errors' unit)."""
    frames = ref.shape[time_axis]
    noise = RNG.standard_normal(ref.shape)
    moved = np.moveaxis(noise, time_axis, 0)
    moved /= np.linalg.norm(moved.reshape(frames, -1), axis=1)[(...,) + (None,) * (ref.ndim - 1)]
    scale = np.sqrt(np.mean(np.square(np.linalg.norm(np.moveaxis(ref, time_axis, 0).reshape(frames, -1), axis=1))))
    level = np.linspace(start, end, frames)[(...,) + (None,) * (ref.ndim - 1)]
    return ref + np.moveaxis(moved * level * scale, 0, time_axis)


def _windows_ratio(ref, got, **kw):
    (te,) = timestep_errors("y", ref, got, time_axis=1, halves=False, tolerance=1e-3, max_growth=None, batch=1,
                            time=ref.shape[1], source="random", **kw)
    return te


def test_rms_of_the_frame_errors_is_the_rel_l2():
    ref = RNG.standard_normal((3, 200, 8))
    got = ref + 1e-3 * RNG.standard_normal(ref.shape) * np.linspace(0.1, 3, 200)[None, :, None]
    errors = frame_errors(ref, got, time_axis=1)
    assert errors.shape == (200,)
    rel_l2 = compare("y", ref, got, Tolerance(1.0)).rel_l2
    np.testing.assert_allclose(np.sqrt(np.mean(errors ** 2)), rel_l2, rtol=1e-12)
    assert errors[-20:].mean() > 5 * errors[:20].mean()  # the error's own shape survives


def test_growth_just_over_and_just_under_the_limit():
    """Error a over the first nine tenths, b over the last tenth: the end window over the start one is b / a."""
    ref = RNG.standard_normal((1, 400, 16))
    unit = _ramp_error(ref, 1.0, 1.0) - ref  # per-frame error exactly 1
    for end_over_start, flagged in ((DEFAULT_MAX_GROWTH * 1.05, True), (DEFAULT_MAX_GROWTH * 0.95, False)):
        a = 1e-2
        level = np.full(400, a)
        level[-40:] = a * end_over_start
        te = _windows_ratio(ref, ref + unit * level[None, :, None])
        assert te.growth == pytest.approx(end_over_start, rel=1e-9)
        assert te.flagged is flagged and te.max_growth == DEFAULT_MAX_GROWTH
        assert te.start == pytest.approx(a) and te.end == pytest.approx(a * end_over_start)


def test_a_tolerance_sets_its_own_growth_limit():
    ref = RNG.standard_normal((1, 100, 4))
    got = _ramp_error(ref, 1e-3, 4e-3)
    common = dict(time_axis=1, halves=False, tolerance=1e-2, batch=1, time=100, source="random")
    loose, = timestep_errors("y", ref, got, max_growth=10.0, **common)
    tight, = timestep_errors("y", ref, got, max_growth=1.5, **common)
    assert loose.growth == tight.growth and not loose.flagged and tight.flagged
    with pytest.raises(InputError, match="max_growth must be a number >= 1"):
        Tolerance(rel_l2=1e-3, max_growth=0.5)
    assert Tolerance(rel_l2=1e-3, max_growth=1).max_growth == 1


def test_the_backward_half_grows_towards_the_first_frame():
    """A BiGRU's backward direction runs from the last frame to the first: its error grows towards t = 0."""
    ref = RNG.standard_normal((2, 300, 8))
    got = ref.copy()
    got[..., :4] = _ramp_error(ref[..., :4], 1e-3, 1e-3)  # forward: flat
    got[..., 4:] = _ramp_error(ref[..., 4:], 8e-3, 1e-3)  # backward: large at t = 0, where it ends
    fwd, bwd = timestep_errors("encoded", ref, got, time_axis=1, halves=True, tolerance=1e-2, max_growth=None,
                               batch=2, time=300, source="speech")
    assert (fwd.half, bwd.half) == ("forward", "backward")
    assert not fwd.flagged and bwd.flagged and bwd.start > bwd.end and bwd.growth > 4
    assert bwd.label == "encoded (backward half)" and len(bwd.curve) == 50


def test_noise_below_the_floor_does_not_grow():
    """fp32 rounding at 1e-9 then 1e-8 is 10x, but both sit under 1% of the tolerance: no growth to speak of."""
    ref = RNG.standard_normal((1, 200, 8))
    te, = timestep_errors("y", ref, _ramp_error(ref, 1e-9, 1e-8), time_axis=1, halves=False, tolerance=1e-5,
                          max_growth=None, batch=1, time=200, source="random")
    assert te.growth == 1.0 and not te.flagged


def test_short_runs_non_finite_outputs_and_inf_tolerances():
    ref = RNG.standard_normal((1, MIN_FRAMES - 1, 4))
    assert timestep_errors("y", ref, ref, time_axis=1, halves=False, tolerance=1e-5, max_growth=None, batch=1,
                           time=MIN_FRAMES - 1, source="random") == []
    ref = RNG.standard_normal((1, MIN_FRAMES, 4))
    bad = ref.copy()
    bad[0, 3, 0] = np.nan
    assert timestep_errors("y", ref, bad, time_axis=1, halves=False, tolerance=1e-5, max_growth=None, batch=1,
                           time=MIN_FRAMES, source="random") == []
    te, = timestep_errors("y", ref, _ramp_error(ref, 1e-3, 3e-3), time_axis=1, halves=False, tolerance=float("inf"),
                          max_growth=None, batch=1, time=MIN_FRAMES, source="random")
    assert te.growth > DEFAULT_MAX_GROWTH  # an inf tolerance (bench_quant's) measures without a floor


def test_keep_longest_and_json_round_trip():
    ref = RNG.standard_normal((1, 100, 4))
    found = []
    for time, end in ((40, 3e-3), (100, 1e-3), (100, 5e-3)):
        found += timestep_errors("y", ref[:, :time], _ramp_error(ref[:, :time], 1e-3, end), time_axis=1,
                                 halves=False, tolerance=1e-2, max_growth=None, batch=1, time=time, source="random")
    kept, = keep_longest(found)
    assert kept.time == 100 and kept.growth == max(f.growth for f in found if f.time == 100)
    again = TimestepError.from_dict(json.loads(json.dumps(kept.to_dict())))
    assert again == kept and kept.to_dict()["flagged"] is True


class _Fixed:
    runtime = "fake"

    def __init__(self, outputs):
        self.outputs = outputs

    def infer(self, feed):
        return self.outputs(feed)


def test_a_row_that_passes_on_average_is_flagged_when_its_error_grows():
    ref = RNG.standard_normal((1, 500, 8)).astype(np.float32)
    grown = _ramp_error(ref.astype(np.float64), 1e-5, 1e-3).astype(np.float32)  # RMS ~5.8e-4 < fp16's 1e-3
    result = sweep(_Fixed(lambda f: {"y": ref}), _Fixed(lambda f: {"y": grown}), [(1, 500, "random", {})],
                   DEFAULT_TOLERANCES, "fp16", model="m", artifact="a.onnx", time_axes={"y": (1, False)})
    assert result.passed and len(result.growth_flags) == 1 and "error grows" in result.growth_flags[0]
    data = json.loads(json.dumps(result.to_dict()))
    assert data["timestep_error"][0]["flagged"] is True
    assert type(result).from_dict(data).timestep_error == result.timestep_error
    flat = sweep(_Fixed(lambda f: {"y": ref}), _Fixed(lambda f: {"y": ref}), [(1, 500, "random", {})],
                 Tolerances({"fp16": Tolerance(1e-3)}), "fp16", model="m", artifact="a.onnx",
                 time_axes={"y": (1, False)})
    assert flat.growth_flags == [] and flat.timestep_error[0].growth == 1.0


def _report_with(row: dict) -> dict:
    from edgeseq.report import load_report
    from pathlib import Path

    data = load_report(Path(__file__).resolve().parents[1] / "bench" / "results" / "gpu-h200-matrix-cbhg-lite.json")
    data = json.loads(json.dumps(data))
    data["parity"][0]["timestep_error"] = [row]
    return data


def test_every_renderer_says_a_row_grows():
    from rich.console import Console

    from edgeseq.report import print_table, render_junit, render_markdown
    from edgeseq.report.html import html_available, render_html

    ref = RNG.standard_normal((1, 300, 8))
    te, = timestep_errors("encoded", ref, _ramp_error(ref, 1e-4, 9e-4), time_axis=1, halves=False,
                          tolerance=1e-3, max_growth=None, batch=1, time=300, source="speech")
    data = _report_with(te.to_dict())
    assert "error grows" in render_markdown(data) and "FLAGGED" in render_markdown(data)
    assert "error over t (T=300" in render_junit(data)
    out = io.StringIO()
    print_table(data, Console(file=out, width=200))
    assert "error grows" in out.getvalue()
    if html_available():
        page = render_html(data)
        assert "error grows" in page and "alt='error over time'" in page
    calm = _report_with({**te.to_dict(), "growth": 1.0})
    assert "error grows" not in render_markdown(calm) and "x1.00" in render_markdown(calm)


def test_a_reference_model_row_carries_its_error_over_time(tmp_path):
    """cbhg-lite's output is its BiGRU's: the longest case gives a forward and a backward half, neither growing."""
    art = edgeseq.export("cbhg-lite", "onnx", out_dir=tmp_path)
    result = edgeseq.check(art.path, times=(1, 50), batches=(1,))
    assert result.passed
    halves = {te.half: te for te in result.timestep_error}
    assert set(halves) == {"forward", "backward"} and all(te.time == 50 for te in halves.values())
    assert all(te.growth < DEFAULT_MAX_GROWTH for te in halves.values()) and not result.growth_flags
    assert edgeseq.get_model("cbhg-postnet").time_axes() == {"spectrogram": (1, False)}


def test_bidirectional_outputs_must_name_an_output():
    import torch

    with pytest.raises(InputError, match=r"bidirectional_outputs names \['nope'\]"):
        edgeseq.ModelSpec.from_module(torch.nn.Identity(), torch.randn(1, 30, 4), ["x"], ["y"],
                                      {"x": {0: "B", 1: "T"}}, bidirectional_outputs=("nope",))
