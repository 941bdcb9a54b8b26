"""Analytic FLOP counts (2 x multiply-accumulates of convs, linears, GRUs and attention matmuls).

Elementwise work (activations, norms, gates) is left out: it is a few percent here and is memory-bound anyway.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from .cbhg import SelfAttention


def _conv1d(m: nn.Conv1d, inp, out) -> int:
    batch, c_out, t_out = out.shape
    t_out = min(t_out, inp[0].shape[-1])  # an even kernel's extra frame is cropped away: not useful work
    return 2 * (m.in_channels // m.groups) * m.kernel_size[0] * c_out * t_out * batch


def _linear(m: nn.Linear, inp, out) -> int:
    rows = out.numel() // m.out_features
    return 2 * m.in_features * m.out_features * rows


def _gru(m: nn.GRU, inp, out) -> int:
    x = inp[0]
    if isinstance(x, nn.utils.rnn.PackedSequence):  # packed rows: the steps actually run, sum of the lengths
        batch, time = 1, x.data.shape[0]
    else:
        batch, time = (x.shape[0], x.shape[1]) if m.batch_first else (x.shape[1], x.shape[0])
    dirs = 2 if m.bidirectional else 1
    total, in_size = 0, m.input_size
    for _ in range(m.num_layers):
        total += dirs * 2 * 3 * (in_size * m.hidden_size + m.hidden_size * m.hidden_size) * batch * time
        in_size = m.hidden_size * dirs
    return total


def _attention(m: SelfAttention, inp, out) -> int:
    batch, time, dim = inp[0].shape
    return 2 * 2 * batch * time * time * dim  # Q K^T and A V; the linears are counted on their own


_COUNTERS = {nn.Conv1d: _conv1d, nn.Linear: _linear, nn.GRU: _gru, SelfAttention: _attention}


def flops_by_stage(module: nn.Module, example: dict[str, torch.Tensor]) -> dict[str, int]:
    """FLOPs per top-level child module (the stages: bank, projections, highway, gru, ...)."""
    totals: dict[str, int] = defaultdict(int)
    hooks = []
    for name, sub in module.named_modules():
        counter = _COUNTERS.get(type(sub))
        if counter is None:
            continue
        stage = name.split(".")[0] if name else "model"

        def hook(m, inp, out, counter=counter, stage=stage):
            totals[stage] += int(counter(m, inp, out))

        hooks.append(sub.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            module(*example.values())
    finally:
        for h in hooks:
            h.remove()
    return dict(totals)
