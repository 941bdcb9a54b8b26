"""Padding safety: each row of a zero-padded ragged batch against the same row run alone at its own length. A model
that masks with its lengths input passes on PyTorch and ONNX Runtime; the reference CBHGs (no lengths input, a
BiGRU) are reported not padding-safe with their error; the verdict holds just over and just under the tolerance."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import edgeseq
from edgeseq.errors import InputError
from edgeseq.padding import PaddingResult, check_padding, ragged_lengths
from edgeseq.parity import DEFAULT_TOLERANCES

from conftest import assert_one_line_error


class MaskedEncoder(nn.Module):
    """Padding-safe by construction: each conv's input masked to the row's length, the BiGRU over packed rows."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(8, 16, 3, padding=1)
        self.bn = nn.BatchNorm1d(16)
        self.conv2 = nn.Conv1d(16, 8, 3, padding=1)
        self.gru = nn.GRU(8, 6, batch_first=True, bidirectional=True)

    def forward(self, x, lengths):
        T = x.shape[1]
        mask = (torch.arange(T)[None, :] < lengths[:, None]).to(x.dtype)[:, None, :]  # [B, 1, T]
        y = torch.relu(self.bn(self.conv1(x.transpose(1, 2) * mask)))
        y = (self.conv2(y * mask) * mask).transpose(1, 2) + x
        packed = nn.utils.rnn.pack_padded_sequence(y, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
        return out


def masked_spec():
    torch.manual_seed(0)
    module = MaskedEncoder().eval()
    with torch.no_grad():
        module.bn.running_mean.uniform_(-0.2, 0.2)
        module.bn.running_var.uniform_(0.5, 1.5)
    example = (torch.randn(3, 20, 8), torch.tensor([20, 9, 14]))
    return edgeseq.ModelSpec.from_module(module, example, ["x", "lengths"], ["y"],
                                         {"x": {0: "B", 1: "T"}, "lengths": {0: "B"}, "y": {0: "B", 1: "T"}},
                                         name="masked-encoder", lengths=["lengths"])


def test_ragged_lengths_hold_one_and_the_longest():
    for batch in (2, 3, 8):
        lengths = ragged_lengths(batch, 50, seed=batch)
        assert len(lengths) == batch and 1 in lengths and 50 in lengths and all(1 <= n <= 50 for n in lengths)
    assert ragged_lengths(1, 50) == (50,)


def test_a_masked_model_is_padding_safe_in_pytorch_and_onnx(tmp_path):
    from edgeseq.formats.torch import reference

    spec = masked_spec()
    with reference(spec, None) as torch_runner:
        torch_result = check_padding(torch_runner, spec, precision="fp32", tolerances=DEFAULT_TOLERANCES)
    assert torch_result.padding_safe, torch_result.verdict()
    art = edgeseq.export(spec, "onnx", out_dir=tmp_path)
    result = edgeseq.check_padding(art.path, spec)
    assert result.padding_safe and result.lengths_input == "lengths", result.verdict()
    assert [len(c.lengths) for c in result.cases] == [3, 8] and result.worst.rel_l2 < 1e-5
    assert result.verdict().startswith("padding-safe: every row of a padded batch equals its own run")
    assert PaddingResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_the_reference_cbhg_is_reported_not_padding_safe(lite_onnx):
    """No lengths input and a BiGRU: the padding runs through the backward direction into every valid frame."""
    result = edgeseq.check_padding(lite_onnx.path)
    assert not result.padding_safe and result.worst.rel_l2 > 1e-2
    assert "not padding-safe" in result.verdict() and "no lengths input" in result.verdict()
    rows = {len(c.rows) for c in result.cases}
    assert rows == {3, 8}


class _Leaky:
    """Around a real runner: a padded batch (batch > 1) comes back with every frame off by `rel` of its own norm."""

    def __init__(self, runner, rel):
        self.runner, self.rel, self.runtime = runner, rel, runner.runtime
        self.rng = np.random.default_rng(1)

    def infer(self, feed):
        out = self.runner.infer(feed)
        if feed["x"].shape[0] > 1:
            y = out["y"].astype(np.float64)
            noise = self.rng.standard_normal(y.shape)
            noise *= (np.linalg.norm(y, axis=-1, keepdims=True) / np.linalg.norm(noise, axis=-1, keepdims=True))
            out["y"] = (y + self.rel * noise).astype(np.float32)
        return out


@pytest.mark.parametrize("rel, safe", [(1.2e-5, False), (0.8e-5, True)])
def test_the_verdict_just_over_and_just_under_the_fp32_tolerance(rel, safe):
    from edgeseq.formats.torch import reference

    spec = masked_spec()
    with reference(spec, None) as runner:
        result = check_padding(_Leaky(runner, rel), spec, precision="fp32", tolerances=DEFAULT_TOLERANCES)
    assert result.worst.rel_l2 == pytest.approx(rel, rel=0.05)
    assert result.padding_safe is safe


def test_models_with_nothing_to_pad_are_one_line_errors(tmp_path):
    seq = edgeseq.export("seq-cnn", "onnx", out_dir=tmp_path)
    with pytest.raises(InputError, match="has a fixed time axis: there is nothing to pad"):
        edgeseq.check_padding(seq.path)
    stream = edgeseq.export("cbhg-lite-stream", "onnx", out_dir=tmp_path)
    with pytest.raises(InputError, match="streams with state"):
        edgeseq.check_padding(stream.path)


def test_cli_check_padding_and_the_report(run_cli, lite_onnx, tmp_path):
    from edgeseq.plan import MatrixOptions
    from edgeseq.report import render_markdown

    out = tmp_path / "c.json"
    proc = run_cli("check", lite_onnx.path, "--times", "1", "--batches", "1", "--padding", "--json", str(out))
    assert proc.returncode == 0, proc.stderr  # informative: parity passed, padding safety is reported
    assert "padding: not padding-safe: padding reaches valid frames" in proc.stdout
    assert json.loads(out.read_text())["padding"]["padding_safe"] is False
    assert_one_line_error(run_cli("check", lite_onnx.path, "--times", "1", "--padding", "--batches", "x"))
    report = edgeseq.run_matrix("cbhg-lite", ["onnx"], out_dir=tmp_path / "m",
                                options=MatrixOptions(times=(1,), batches=(1,), warmup=1, iterations=2))
    assert report.passed and len(report.padding) == 1 and not report.padding[0].padding_safe
    assert "- padding: not padding-safe" in render_markdown(report.to_dict())


PADDED = "edgeseq.models.padded:cbhg_lite"


def test_the_padded_cbhg_equals_the_plain_one_on_full_rows():
    """Same seed, same weights: with every row at full length the lengths variant is cbhg-lite."""
    padded, plain = edgeseq.get_model(PADDED), edgeseq.get_model("cbhg-lite")
    assert padded.name == "cbhg-lite-lengths" and padded.input_names == ["features", "lengths"]
    feed = plain.example_inputs(batch=2, time=30, source="random")
    with torch.inference_mode():
        want = plain.build()(torch.from_numpy(feed["features"]))
        got = padded.build()(torch.from_numpy(feed["features"]), torch.tensor([30, 30]))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert padded.flops(time=200) == plain.flops(time=200)  # the FLOP counter reads a packed GRU's steps


def test_the_padded_attention_cbhg_masks_its_keys(monkeypatch, tmp_path):
    """attention-cbhg's self-attention would let every valid frame attend to the padding; its lengths variant adds
    a key mask: safe in PyTorch and ONNX Runtime, equal to attention-cbhg on full rows, and not safe without it."""
    from edgeseq.formats.torch import reference
    from edgeseq.models.cbhg import SelfAttention

    spec, plain = edgeseq.get_model("edgeseq.models.padded:attention_cbhg"), edgeseq.get_model("attention-cbhg")
    assert spec.name == "attention-cbhg-lengths"
    feed = plain.example_inputs(batch=2, time=30, source="random")
    with torch.inference_mode():
        want = plain.build()(torch.from_numpy(feed["features"]))
        got = spec.build()(torch.from_numpy(feed["features"]), torch.tensor([30, 30]))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    art = edgeseq.export("edgeseq.models.padded:attention_cbhg", "onnx", out_dir=tmp_path)
    onnx = edgeseq.check_padding(art.path, batches=(3,))
    assert onnx.padding_safe and onnx.worst.rel_l2 < 1e-5, onnx.verdict()
    with reference(spec, None) as runner:
        safe = check_padding(runner, spec, precision="fp32", tolerances=DEFAULT_TOLERANCES, batches=(3,))
    unmasked = SelfAttention.forward
    monkeypatch.setattr(SelfAttention, "forward", lambda self, x, valid=None: unmasked(self, x))
    with reference(spec, None) as runner:
        leaky = check_padding(runner, spec, precision="fp32", tolerances=DEFAULT_TOLERANCES, batches=(3,))
    assert safe.padding_safe and safe.worst.rel_l2 < 1e-5, safe.verdict()
    assert not leaky.padding_safe and leaky.worst.rel_l2 > 1e-3, leaky.verdict()


@pytest.mark.parametrize("fmt", ["torch", "onnx", "tflite"])
def test_the_padded_cbhg_lite_is_padding_safe_everywhere(fmt, tmp_path):
    """The #19 target: every row of ragged batches of 3 and 8 (lengths 1 .. 50) within 1e-5 of its own run, on
    PyTorch, ONNX Runtime and LiteRT; and the usual parity sweep, whose batches carry ragged lengths too."""
    from edgeseq.formats.torch import reference

    spec = edgeseq.get_model(PADDED)
    if fmt == "torch":
        with reference(spec, None) as runner:
            result = check_padding(runner, spec, precision="fp32", tolerances=DEFAULT_TOLERANCES)
    else:
        if fmt == "tflite":
            pytest.importorskip("litert_torch", reason="needs litert-torch: pip install 'edgeseq[tflite]'")
        art = edgeseq.export(PADDED, fmt, out_dir=tmp_path)
        parity = edgeseq.check(art.path, times=(1, 7, 200), batches=(1, 3))
        assert parity.passed and parity.worst.rel_l2 < 1e-5, parity.failures
        result = edgeseq.check_padding(art.path)
    assert result.padding_safe and result.worst.rel_l2 < 1e-5, result.verdict()
    assert [len(c.lengths) for c in result.cases] == [3, 8]
