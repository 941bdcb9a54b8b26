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
