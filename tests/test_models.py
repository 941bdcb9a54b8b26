import numpy as np
import pytest
import torch

import edgeseq
from edgeseq.errors import UnknownNameError
from edgeseq.models.cbhg import CBHG_ENCODER, CBHG_LITE, CBHGConfig
from edgeseq.models.weights import state_dict_sha256

NAMES = ["cbhg", "cbhg-postnet", "cbhg-lite", "attention-cbhg", "cbhg-lite-stream", "seq-cnn"]


def run(spec, feed):
    """The model's first output (a streaming model also returns its next state)."""
    with torch.inference_mode():
        out = spec.build()(*[torch.from_numpy(feed[n]) for n in spec.input_names])
    return (out[0] if isinstance(out, tuple) else out).numpy()


def test_registry_has_every_reference_model():
    assert sorted(s.name for s in edgeseq.list_models()) == sorted(NAMES)
    with pytest.raises(UnknownNameError, match="unknown model 'nope'"):
        edgeseq.get_model("nope")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("time", [1, 7, 50])
def test_output_shape_follows_batch_and_time(name, time):
    spec = edgeseq.get_model(name)
    time = time if spec.has_dynamic_time else spec.default_time
    feed = spec.example_inputs(batch=3, time=time, source="random")
    out = run(spec, feed)
    assert out.shape == spec.shape_for(spec.outputs[0], 3, time)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("name", ["cbhg", "cbhg-lite", "attention-cbhg", "cbhg-lite-stream"])
def test_batch_rows_are_independent(name):
    """Row b of a batch gives the same output as that row alone: no cross-batch leakage (e.g. via attention)."""
    spec = edgeseq.get_model(name)
    feed = spec.example_inputs(batch=3, time=23)
    full = run(spec, feed)
    alone = run(spec, {k: v[1:2] for k, v in feed.items()})
    np.testing.assert_allclose(full[1:2], alone, rtol=1e-5, atol=1e-5)


def test_cbhg_matches_table_1_size_and_cost():
    spec = edgeseq.get_model("cbhg")
    c = CBHG_ENCODER
    bank = sum(k * c.in_dim * c.bank_channels for k in range(1, c.bank_k + 1))
    proj = 3 * c.bank_k * c.bank_channels * 128 + 3 * 128 * 128
    highway = c.highway_layers * 2 * 128 * 128
    gru = 2 * 3 * (128 * 128 + 128 * 128)
    macs_per_frame = bank + proj + highway + gru
    assert spec.flops(time=200) == 2 * macs_per_frame * 200
    assert 3.3e6 < spec.parameter_count < 3.5e6  # "about 3.4 M parameters"
    stages = spec.flops_by_stage(time=200)
    assert stages["bank"] / spec.flops(time=200) > 0.6  # two thirds of the work is the conv bank


def test_lite_is_much_smaller_than_cbhg():
    lite, full = edgeseq.get_model("cbhg-lite"), edgeseq.get_model("cbhg")
    assert lite.parameter_count * 10 < full.parameter_count
    assert lite.flops(time=200) * 10 < full.flops(time=200)
    assert CBHG_LITE.conv.value == "separable" and CBHG_LITE.highway_layers == 2 and CBHG_LITE.gru_hidden == 64


def test_config_rejects_a_residual_that_cannot_add():
    with pytest.raises(ValueError, match="residual"):
        CBHGConfig(proj_channels=(128, 64))


def test_weights_are_deterministic_from_the_seed():
    spec = edgeseq.get_model("cbhg-lite")
    assert state_dict_sha256(spec.build()) == state_dict_sha256(spec.build())
    import dataclasses

    other = dataclasses.replace(spec, seed=1)
    assert state_dict_sha256(other.build()) != state_dict_sha256(spec.build())


def test_batch_norm_statistics_are_not_trivial():
    bn = next(m for m in edgeseq.get_model("cbhg").build().modules() if isinstance(m, torch.nn.BatchNorm1d))
    assert bn.running_mean.abs().max() > 0.01 and (bn.running_var - 1).abs().max() > 0.01


def test_speech_inputs_differ_from_random_and_are_real_features():
    spec = edgeseq.get_model("cbhg")
    speech = spec.example_inputs(batch=2, time=100, source="speech")["features"]
    noise = spec.example_inputs(batch=2, time=100, source="random")["features"]
    assert speech.shape == noise.shape == (2, 100, 128)
    # speech has strong correlation between neighbouring frames; white noise has none
    corr = lambda x: np.corrcoef(x[0, :-1].ravel(), x[0, 1:].ravel())[0, 1]  # noqa: E731
    assert corr(speech) > 0.5 > abs(corr(noise)) + 0.4


def test_calibration_inputs_are_varied_speech():
    feeds = list(edgeseq.get_model("cbhg-lite").calibration_inputs(n=3, time=40))
    assert len(feeds) == 3
    assert not np.allclose(feeds[0]["features"], feeds[1]["features"])


def test_from_module_wraps_any_module():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh())
    spec = edgeseq.ModelSpec.from_module(net, torch.randn(2, 5, 4), input_names=["x"], output_names=["y"],
                                         dynamic_axes={"x": {0: "batch", 1: "time"}, "y": {0: "batch", 1: "time"}})
    assert spec.inputs[0].shape == ("batch", "time", 4)
    assert spec.outputs[0].shape == ("batch", "time", 3)
    assert spec.example_inputs(batch=3, time=9)["x"].shape == (3, 9, 4)


def test_same_pool_is_a_width_2_stride_1_max_pool():
    from torch.nn import functional as F

    from edgeseq.models.cbhg import SamePool

    x = torch.randn(2, 5, 33)
    assert torch.equal(SamePool()(x), F.max_pool1d(x, 2, 1, padding=1)[:, :, 1:])
    assert SamePool()(x[:, :, :1]).shape == (2, 5, 1)
