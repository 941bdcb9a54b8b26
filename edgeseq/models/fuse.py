"""Inference-time rewrites of a CBHG that keep its function: fewer, larger kernels for launch-bound GPUs.

- every conv + batch norm becomes one conv (the norm's scale and shift folded into weight and bias);
- the K convolutions of the bank become ONE convolution with K x C output channels and kernel K: each width-k
  kernel is zero-padded to width K, aligned so it sees the same frames as before. That costs more FLOPs (zeros) but
  replaces 3K launches (conv, norm, ReLU per branch) with 2.

- optionally (gru="triton", CUDA only) the BiGRU becomes `kernels.triton_gru.TritonBiGRU`: one matmul and one
  persistent Triton kernel launch for all steps of both directions; gru="cuda" runs the same module with the
  hand-written CUDA kernel of `kernels.cuda_gru` instead (no triton needed; NVRTC compiles it at run time); gru="auto"
  (`kernels.triton_gru.AutoBiGRU`) runs, per call, the one that measured fastest: the CUDA kernel where it runs (fp32
  and fp16, hidden a multiple of 16 up to 128), else Triton where it beat cuDNN (fp16; fp32 at hidden <= 64), else
  cuDNN.

The result is checked against the original by the same parity harness as any exported artifact.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from ..enums import GruKernel
from .cbhg import CBHG, ConvBank, ConvBN, ConvKind


def _folded(block: ConvBN) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of conv followed by eval-mode batch norm, for a standard (non-separable) ConvBN."""
    bn = block.bn
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    weight = block.conv.weight * scale[:, None, None]
    bias = bn.bias - bn.running_mean * scale
    return weight, bias


class FoldedConv(nn.Module):
    """conv (+ folded batch norm) + optional ReLU with the same asymmetric 'same' padding as ConvBN."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, pad: tuple[int, int], relu: bool):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.pad, self.relu = pad, relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv1d(F.pad(x, self.pad), self.weight, self.bias)
        return torch.relu(y) if self.relu else y


def _fold_block(block: ConvBN) -> FoldedConv:
    weight, bias = _folded(block)
    return FoldedConv(weight, bias, block.pad, relu=isinstance(block.act, nn.ReLU))


def _merge_bank(bank: ConvBank) -> FoldedConv:
    """K branches of widths 1..K -> one conv of width K whose zero-padded kernels keep each branch's alignment."""
    k_max = len(bank.convs)
    left_max = (k_max - 1) // 2
    weights, biases = [], []
    for k, block in enumerate(bank.convs, start=1):
        weight, bias = _folded(block)
        left = (k - 1) // 2  # the branch looks left..(k-1-left) frames around t; place it inside the K-wide window
        offset = left_max - left
        padded = weight.new_zeros(weight.shape[0], weight.shape[1], k_max)
        padded[:, :, offset:offset + k] = weight
        weights.append(padded)
        biases.append(bias)
    return FoldedConv(torch.cat(weights), torch.cat(biases), (left_max, k_max - 1 - left_max), relu=True)


def fuse_for_inference(module: CBHG, gru: GruKernel | str = GruKernel.TORCH, gru_config=None) -> CBHG:
    """A copy of `module` with batch norms folded and the bank merged (standard convs only; separable ones keep
    their depthwise + pointwise pair and only get the norm folded into the pointwise conv). gru="triton" swaps
    the BiGRU for a TritonBiGRU (optionally run with `gru_config`, a kernels.triton_gru.GruKernelConfig), which runs on
    CUDA tensors only (or under TRITON_INTERPRET=1); gru="auto" for an AutoBiGRU, which picks the CUDA kernel, Triton
    or cuDNN per call from the input's dtype and device and records it in `.gru.choice`; gru="cuda" for a TritonBiGRU that runs
    the CUDA kernel (GruKernelConfig(kind="cuda")); gru="torch" (or "cudnn") keeps nn.GRU."""
    gru = GruKernel.parse(gru)
    fused = copy.deepcopy(module).eval()
    with torch.no_grad():
        if module.cfg.conv is ConvKind.STANDARD:
            fused.bank = _merge_bank(module.bank)
            fused.projections = nn.Sequential(*(_fold_block(b) for b in module.projections))
        if gru is GruKernel.TRITON:
            from ..kernels.triton_gru import TritonBiGRU

            fused.gru = TritonBiGRU(module.gru.rnn, gru_config)
        elif gru is GruKernel.CUDA:
            from ..kernels.triton_gru import CUDA_KERNEL, TritonBiGRU

            fused.gru = TritonBiGRU(module.gru.rnn, gru_config or CUDA_KERNEL)
        elif gru is GruKernel.AUTO:
            from ..kernels.triton_gru import AutoBiGRU

            fused.gru = AutoBiGRU(fused.gru.rnn, gru_config)
    return fused
