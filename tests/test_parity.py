import math

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import edgeseq
from edgeseq.parity import DEFAULT_TOLERANCES, SNR_CAP_DB, Tolerance, Tolerances, compare


def test_metrics_follow_their_definitions():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(1000)
    noise = 1e-3 * rng.standard_normal(1000)
    got = (ref + noise).astype(np.float32)
    e = compare("y", ref, got, Tolerance(rel_l2=1e-2))
    diff = got.astype(np.float64) - ref
    assert e.max_abs == pytest.approx(np.abs(diff).max())
    assert e.rel_l2 == pytest.approx(np.linalg.norm(diff) / np.linalg.norm(ref))
    assert e.snr_db == pytest.approx(20 * math.log10(np.linalg.norm(ref) / np.linalg.norm(diff)))
    assert e.cosine == pytest.approx(ref @ got / (np.linalg.norm(ref) * np.linalg.norm(got)))
    assert e.passed


def test_exact_match_caps_snr():
    e = compare("y", np.ones(4), np.ones(4, np.float32), Tolerance(rel_l2=1e-12))
    assert e.passed and e.rel_l2 == 0.0 and e.snr_db == SNR_CAP_DB and e.cosine == pytest.approx(1.0)


def test_out_of_tolerance_fails_with_reason():
    e = compare("y", np.ones(4), np.full(4, 1.1, np.float32), Tolerance(rel_l2=1e-5, max_abs=0.05, min_cosine=0.9))
    assert not e.passed
    assert "rel_l2" in e.reason and "max_abs" in e.reason and "cosine" not in e.reason


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_outputs_fail_never_pass(bad):
    got = np.ones(4, np.float32)
    got[2] = bad
    e = compare("y", np.ones(4), got, Tolerance(rel_l2=9.0))  # the loosest tolerance there is
    assert not e.passed and "non-finite" in e.reason


def test_shape_mismatch_fails():
    e = compare("y", np.ones((2, 3)), np.ones((3, 2), np.float32), Tolerance(rel_l2=1.0))
    assert not e.passed and "shape" in e.reason


def test_tolerances_by_precision_then_output():
    tol = Tolerances({"fp32": Tolerance(1e-5)}, {"fp32": {"logits": Tolerance(1e-3)}})
    assert tol.get("fp32", "encoded").rel_l2 == 1e-5
    assert tol.get("fp32", "logits").rel_l2 == 1e-3
    assert DEFAULT_TOLERANCES.get("fp16", "x").rel_l2 == 1e-3
    with pytest.raises(KeyError):
        tol.get("int8-static", "x")


def corrupt(src, dst, initializer_index=0):
    model = onnx.load(src)
    init = model.graph.initializer[initializer_index]
    arr = numpy_helper.to_array(init).copy()
    arr.flat[: max(1, arr.size // 10)] *= 3.0
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(model, dst)
    return init.name


def test_a_corrupted_weight_fails_parity(lite_onnx, tmp_path):
    bad = tmp_path / "bad.onnx"
    corrupt(lite_onnx.path, bad)
    result = edgeseq.check(bad, "cbhg-lite", times=(7, 50), batches=(1,))
    assert not result.passed
    assert result.failures and all("rel_l2" in f for f in result.failures)
    assert result.to_dict()["passed"] is False


def test_result_round_trips_through_json(lite_onnx):
    import json

    from edgeseq.parity import ParityResult

    result = edgeseq.check(lite_onnx.path, times=(7,), batches=(1, 2))  # the model name comes from the metadata
    again = ParityResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result and again.passed


def test_check_needs_a_model_for_foreign_files(tmp_path):
    from edgeseq.errors import InputError

    model = onnx.load(edgeseq.export("seq-cnn", "onnx", out_dir=tmp_path).path)
    del model.metadata_props[:]
    onnx.save(model, tmp_path / "anon.onnx")
    with pytest.raises(InputError, match="--model"):
        edgeseq.check(tmp_path / "anon.onnx")
    assert edgeseq.check(tmp_path / "anon.onnx", "seq-cnn").passed


def test_weights_mismatch_is_noted(lite_onnx, tmp_path):
    import torch

    state = {k: v + 0.01 if v.is_floating_point() else v
             for k, v in edgeseq.get_model("cbhg-lite").build().state_dict().items()}
    torch.save(state, tmp_path / "other.pt")
    result = edgeseq.check(lite_onnx.path, weights=tmp_path / "other.pt", times=(7,), batches=(1,))
    assert any("other weights" in n for n in result.notes)
    assert not result.passed


def test_bad_sweep_values(lite_onnx):
    from edgeseq.api import parity_feeds
    from edgeseq.errors import InputError

    with pytest.raises(InputError, match=">= 1"):
        edgeseq.check(lite_onnx.path, times=(0,))
    with pytest.raises(InputError, match="fixed time axis"):  # checked before any case runs
        list(parity_feeds(edgeseq.get_model("seq-cnn"), (7,), None, None))


# ---- the gates at their edges: a case just inside and just outside each tolerance ----------------------------------


def _with_rel_l2(target, n=1000):
    """(reference, actual) whose relative L2 error is `target` to float64 precision."""
    rng = np.random.default_rng(1)
    ref = rng.standard_normal(n)
    noise = rng.standard_normal(n)
    noise *= target * np.linalg.norm(ref) / np.linalg.norm(noise)
    return ref, ref + noise


@pytest.mark.parametrize("tol", [1e-5, 1e-3, 2.5e-2])
def test_rel_l2_gate_sits_exactly_at_the_tolerance(tol):
    for factor, passes in ((0.95, True), (1.05, False)):
        ref, got = _with_rel_l2(factor * tol)
        e = compare("y", ref, got, Tolerance(rel_l2=tol))
        assert e.rel_l2 == pytest.approx(factor * tol)
        assert e.passed is passes, (factor, e.reason)
        assert ("rel_l2" in e.reason) is not passes


def test_max_abs_gate_sits_exactly_at_the_tolerance():
    ref = np.zeros(8) + 1.0
    for step, passes in ((0.0095, True), (0.0105, False)):
        got = ref.copy()
        got[3] += step
        e = compare("y", ref, got, Tolerance(rel_l2=1.0, max_abs=0.01))
        assert e.max_abs == pytest.approx(step)
        assert e.passed is passes and ("max_abs" in e.reason) is not passes


def test_cosine_gate_sits_exactly_at_the_tolerance():
    ref = np.array([1.0, 0.0])
    for angle, passes in ((0.99 * math.acos(0.99), True), (1.01 * math.acos(0.99), False)):
        got = np.array([math.cos(angle), math.sin(angle)])
        e = compare("y", ref, got, Tolerance(rel_l2=9.0, min_cosine=0.99))
        assert e.cosine == pytest.approx(math.cos(angle))
        assert e.passed is passes and ("cosine" in e.reason) is not passes


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_reference_fails_never_passes(bad):
    """A reference holding inf gives a NaN error (inf / inf): NaN compares false both ways, so it must fail."""
    ref = np.ones(4)
    ref[1] = bad
    e = compare("y", ref, np.ones(4, np.float32), Tolerance(rel_l2=9.0, max_abs=None))
    assert not e.passed and e.reason


# ---- the sweep: outputs matched by name, runner errors, empty sweeps ------------------------------------------------


class _Fixed:
    """A stand-in runner (the sweep only calls infer and reads runtime) answering with fixed outputs or an error."""

    runtime = "fixed"

    def __init__(self, outputs=None, error=None):
        self.outputs, self.error = outputs, error

    def infer(self, feed):
        if self.error:
            raise self.error
        return dict(self.outputs)


_FEEDS = [(1, 7, "random", {"x": np.zeros((1, 7, 2), np.float32)})]
_BOTH = {"encoded": np.ones(3), "logits": np.full(2, 2.0)}


def _sweep(candidate):
    from edgeseq.parity import sweep

    return sweep(_Fixed(_BOTH), candidate, _FEEDS, DEFAULT_TOLERANCES, "fp32", model="m", artifact="a")


def test_sweep_passes_when_every_output_matches():
    result = _sweep(_Fixed(_BOTH))
    assert result.passed and [o.output for o in result.cases[0].outputs] == ["encoded", "logits"]


def test_an_output_missing_from_the_candidate_fails():
    result = _sweep(_Fixed({"encoded": np.ones(3)}))
    assert not result.passed
    assert result.failures == ["batch=1 T=7 random logits: output missing"]


def test_a_candidate_that_refuses_a_case_fails_it():
    from edgeseq.errors import RuntimeFailure

    result = _sweep(_Fixed(error=RuntimeFailure("the runtime refused T=7")))
    assert not result.passed and not result.cases[0].passed
    assert result.failures == ["batch=1 T=7 random: the runtime refused T=7"]


def test_a_sweep_without_cases_is_not_a_pass():
    from edgeseq.parity import ParityResult

    assert not ParityResult("m", "r", "fp32", "a", ()).passed
