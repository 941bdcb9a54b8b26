"""The rest of the CBHG family through TFLite: attention (LayerNorm rewritten for a dynamic T), the postnet and cbhg
(short sweeps; cbhg's full sweep and int8 are slow cases in test_tflite.py)."""

import pytest
import torch

import edgeseq
from edgeseq.formats.tflite.rewrites import DecomposedLayerNorm

pytest.importorskip("litert_torch", reason="needs litert-torch: pip install 'edgeseq[tflite]'")


def test_decomposed_layer_norm_matches_torch():
    torch.manual_seed(0)
    norm = torch.nn.LayerNorm(48).eval()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(3, 11, 48) * 4 + 2
    torch.testing.assert_close(DecomposedLayerNorm(norm)(x), norm(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.covers(m, "tflite"))
                                   for m in ("attention-cbhg", "cbhg-postnet", "cbhg")])
def test_family_member_exports_to_tflite_and_runs_any_length(model, tmp_path):
    artifact = edgeseq.export(model, "tflite", out_dir=tmp_path)
    result = edgeseq.check(artifact.path, times=(1, 7, 50), batches=(1, 3))
    assert result.passed, result.worst
