import pytest
import torch

import edgeseq
from edgeseq.formats.torch import TorchRunner
from edgeseq.models.fuse import FoldedConv, fuse_for_inference


@pytest.mark.parametrize("name", ["cbhg", "cbhg-postnet", "attention-cbhg", "cbhg-lite"])
def test_fused_module_matches_the_original(name):
    spec = edgeseq.get_model(name)
    fused = fuse_for_inference(spec.build())
    result = edgeseq.check(TorchRunner(spec, module=fused), spec, times=(1, 7, 50), batches=(1, 3))
    assert result.passed, result.failures


def test_bank_becomes_one_conv_without_batch_norms():
    fused = fuse_for_inference(edgeseq.get_model("cbhg").build())
    assert isinstance(fused.bank, FoldedConv) and fused.bank.weight.shape == (16 * 128, 128, 16)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in fused.modules())
