"""Exact module rewrites for the ExecuTorch path: the TFLite path's where they fit, and ExecuTorch's own where its
lowering differs. Only torch here.

- nn.GRU -> `SeqGRU` (a LoopGRU whose recurrence op takes the input projection and gives the output in the model's
  own [B, T, D*3H] / [B, T, D*H] layout, every direction in time order): the reshape / flip / stack around the
  TFLite op would stay on ExecuTorch's portable kernels and cut the XNNPACK delegate in pieces; the runner flips the
  backward direction itself. A packed (MaskedSequence) input takes `gru_seq_len`, the same op with each row's
  length: the runner (which runs a batch row by row) runs the recurrence over the row's own frames.
- batch norms folded into convs (tflite.rewrites._fold_conv_bn), CBHG's conv stack run 4-D (ConvStack4d) with
  its pads as pad ops, and SamePool -> PadMaxPool (-inf pad + max_pool2d): all delegated. SamePool's x[:, :, 1:]
  makes torch.export guard T != 2, max_pool1d specializes T, and the TFLite path's crops stay on portable kernels.
- the TFLite path's pool rewrites for other MaxPool1d (public CBHG code).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..tflite import rewrites as _tfl

SEQ_OP = "edgeseq::gru_seq"
SEQ_LEN_OP = "edgeseq::gru_seq_len"  # the same over a packed batch: each row's own length (the runner crops to it)


def _seq_reference(gi: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor, h0: torch.Tensor | None):
    """gi [B, T, D*3H] in time order -> y [B, T, D*H]; direction 1 runs backward in time."""
    d, hidden = w_hh.shape[0], w_hh.shape[-1]
    batch, time = gi.shape[0], gi.shape[1]
    scan = gi.reshape(batch, time, d, 3 * hidden).permute(1, 2, 0, 3)  # [T, D, B, 3H]
    if d == 2:
        scan = torch.stack([scan[:, 0], torch.flip(scan[:, 1], [0])], 1)
    s = _tfl._scan_reference(scan, w_hh, b_hh, h0)
    if d == 2:
        s = torch.stack([s[:, 0], torch.flip(s[:, 1], [0])], 1)
    return s.permute(2, 0, 1, 3).reshape(batch, time, d * hidden)


def _seq_len_reference(gi, w_hh, b_hh, h0, lengths):
    """_seq_reference over each row's own frames [0, lengths[b]) (the backward direction starts at the row's last
    frame, as over a PackedSequence); zeros past them, as pad_packed_sequence gives."""
    y = gi.new_zeros((gi.shape[0], gi.shape[1], w_hh.shape[0] * w_hh.shape[-1]))
    for b in range(gi.shape[0]):
        n = int(lengths[b])
        if n > 0:
            y[b:b + 1, :n] = _seq_reference(gi[b:b + 1, :n], w_hh, b_hh, None if h0 is None else h0[:, b:b + 1])
    return y


def _register():
    if hasattr(torch.ops.edgeseq, "gru_seq"):
        return
    torch.library.define(SEQ_OP, "(Tensor gi, Tensor w_hh, Tensor b_hh, Tensor? h0) -> Tensor")
    torch.library.define(SEQ_LEN_OP, "(Tensor gi, Tensor w_hh, Tensor b_hh, Tensor? h0, Tensor lengths) -> Tensor")

    @torch.library.impl(SEQ_OP, "CompositeExplicitAutograd")
    def _impl(gi, w_hh, b_hh, h0):
        return _seq_reference(gi, w_hh, b_hh, h0)

    @torch.library.register_fake(SEQ_OP)
    def _fake(gi, w_hh, b_hh, h0):
        return gi.new_empty((gi.shape[0], gi.shape[1], w_hh.shape[0] * w_hh.shape[-1]))

    @torch.library.impl(SEQ_LEN_OP, "CompositeExplicitAutograd")
    def _impl_len(gi, w_hh, b_hh, h0, lengths):
        return _seq_len_reference(gi, w_hh, b_hh, h0, lengths)

    @torch.library.register_fake(SEQ_LEN_OP)
    def _fake_len(gi, w_hh, b_hh, h0, lengths):
        return gi.new_empty((gi.shape[0], gi.shape[1], w_hh.shape[0] * w_hh.shape[-1]))


_register()


class SeqGRU(_tfl.LoopGRU):
    """LoopGRU (same weights, same outputs) whose recurrence op works in the model's layout (see the module doc)."""

    def forward(self, x, hx: torch.Tensor | None = None):
        packed = isinstance(x, _tfl.MaskedSequence)
        if packed:  # a padded batch and its lengths (masked_packing), in place of a PackedSequence
            lengths = x.lengths
            x = x.data if x.batch_first else x.data.transpose(0, 1)
        elif x.dim() != 3:
            raise ValueError("SeqGRU takes batched 3-D input")
        elif not self.batch_first:
            x = x.transpose(0, 1)
        y, d, h = x, self.directions, self.hidden
        finals = []
        for layer in range(self.layers):
            gi = F.linear(y, getattr(self, f"w_ih_{layer}"), getattr(self, f"b_ih_{layer}"))  # [B, T, D*3H]
            h0 = None if hx is None else hx[layer * d:(layer + 1) * d]
            weights = (getattr(self, f"w_hh_{layer}"), getattr(self, f"b_hh_{layer}"), h0)
            if packed:
                y = torch.ops.edgeseq.gru_seq_len(gi, *weights, lengths)
                last = (torch.arange(y.shape[1]) == lengths[:, None] - 1).to(y.dtype)[:, :, None]  # [B, T, 1]
                finals.append((y[:, :, :h] * last).sum(1))  # the forward state at each row's last frame
            else:
                y = torch.ops.edgeseq.gru_seq(gi, *weights)
                finals.append(y[:, -1, :h])
            if d == 2:
                finals.append(y[:, 0, h:])
        if packed:
            return _tfl.MaskedSequence(y, lengths, True), torch.stack(finals, 0)
        out = y if self.batch_first else y.transpose(0, 1)
        return out, torch.stack(finals, 0)


class PadMaxPool(_tfl.ShiftMaxPool):
    """CBHG's SamePool (out[t] = max(x[t], x[t+1]), the last frame pooled with -inf) as -inf pad + max_pool2d over
    [B, C, 1, T] (max_pool1d makes torch.export specialize T); 3-D input goes through a 4-D view."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            return self.forward(x.unsqueeze(2)).squeeze(2)
        return F.max_pool2d(F.pad(x, (0, 1), value=float("-inf")), (1, 2), 1)


class ConvBN4d(nn.Module):
    """A CBHG ConvBN (batch norm folded) on [B, C, 1, T]: zero pad (asymmetric for an even kernel), Conv2d(s),
    activation: every op XNNPACK takes with a dynamic T (the TFLite version's crop would stay portable)."""

    def __init__(self, block):
        super().__init__()
        convs = list(block.conv) if isinstance(block.conv, nn.Sequential) else [block.conv]
        self.pad = tuple(block.pad)
        layers = [_tfl.Conv1dAs2d(c).conv for c in convs]
        self.conv = nn.Sequential(*layers) if isinstance(block.conv, nn.Sequential) else layers[0]
        self.act = block.act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(F.pad(x, self.pad)))


class ConvStack4d(nn.Module):
    """CBHG's bank (3-D in) or projections (3-D out) as one 4-D stack, so the pool between them stays 4-D."""

    def __init__(self, blocks, bank: bool):
        super().__init__()
        self.convs, self.bank = nn.ModuleList(ConvBN4d(b) for b in blocks), bank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bank:
            x = x.unsqueeze(2)
            return torch.cat([conv(x) for conv in self.convs], dim=1)
        for conv in self.convs:
            x = conv(x)
        return x.flatten(2)


class Im2colConv(nn.Module):
    """A CBHG ConvBN (batch norm folded, groups 1) on channels-last [B, T, C] as one Linear over its k shifted
    input copies side by side (im2col): what int8-dynamic's quantizer takes, and 2-2.4x faster than the executorch
    1.5.1 x86 wheel's f32 convolution kernel on AVX2-only CPUs (options.CONV_FORMS)."""

    def __init__(self, block):
        super().__init__()
        conv = block.conv
        self.k, self.pad, self.act = conv.kernel_size[0], tuple(block.pad), block.act
        weight = conv.weight.detach()  # [O, C, k] -> [O, k * C], shift-major like the copies
        self.register_buffer("weight", weight.permute(0, 2, 1).reshape(weight.shape[0], -1).contiguous().clone())
        bias = conv.bias.detach() if conv.bias is not None else weight.new_zeros(weight.shape[0])
        self.register_buffer("bias", bias.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.k == 1:
            return self.act(F.linear(x, self.weight, self.bias))
        x = F.pad(x, (0, 0, *self.pad))
        t = x.shape[1] - self.k + 1
        cols = torch.cat([x[:, j:j + t] for j in range(self.k)], dim=2)
        return self.act(F.linear(cols, self.weight, self.bias))


class Im2colStack(nn.Module):
    """CBHG's bank ([B, C, T] in, channels-last out) or projections (channels-last in, [B, C, T] out) as
    Im2colConv layers, so that the pool between them works channels-last too and no layout changes in between."""

    def __init__(self, blocks, bank: bool):
        super().__init__()
        self.convs, self.bank = nn.ModuleList(Im2colConv(b) for b in blocks), bank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bank:
            x = x.transpose(1, 2)
            return torch.cat([conv(x) for conv in self.convs], dim=2)
        for conv in self.convs:
            x = conv(x)
        return x.transpose(1, 2)


class LastPool(nn.Module):
    """SamePool on channels-last [B, T, C]: out[t] = max(x[t], x[t + 1]), the last frame kept (append-then-crop:
    x[:, 1:] alone makes torch.export guard on T)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.maximum(x, torch.cat([x, x[:, -1:]], dim=1)[:, 1:])


def _conv_stack(module: nn.Module, gemm: bool = False) -> None:
    """A CBHG's conv stack: run 4-D (XNNPACK's convolutions), or as im2col GEMMs where `gemm` and every conv is a
    plain one (cbhg, cbhg-postnet; cbhg-lite's are depthwise-separable). A lengths CBHG masks between its convs
    (models/cbhg.py): kept as written."""
    from ...models.cbhg import CBHG, ConvBN

    for m in list(module.modules()):
        blocks = list(m.bank.convs) + list(m.projections) if isinstance(m, CBHG) and not m.takes_lengths else []
        if not blocks or not all(isinstance(b, ConvBN) and isinstance(b.bn, nn.Identity) for b in blocks) \
                or not isinstance(m.pool, PadMaxPool):
            continue
        n_bank = len(m.bank.convs)
        if gemm and all(isinstance(b.conv, nn.Conv1d) and b.conv.groups == 1 for b in blocks):
            m.bank = Im2colStack(blocks[:n_bank], True).eval()
            m.pool = LastPool()
            m.projections = Im2colStack(blocks[n_bank:], False).eval()
        else:
            m.bank = ConvStack4d(blocks[:n_bank], True).eval()
            m.projections = ConvStack4d(blocks[n_bank:], False).eval()


def rewrite_for_export(module: nn.Module, gemm_convs: bool = False) -> tuple[nn.Module, int]:
    """A copy with every nn.GRU -> SeqGRU, SamePool -> PadMaxPool, other MaxPool1d as the TFLite path rewrites
    them, batch norms folded, a CBHG's conv stack 4-D or as GEMMs (`gemm_convs`); returns (copy, GRU count)."""
    import copy

    from ...models.cbhg import SamePool

    module, n_grus = _tfl._swap(copy.deepcopy(module).eval(), nn.GRU, SeqGRU)
    module, _ = _tfl._swap(module, SamePool, lambda _: PadMaxPool())
    module, _ = _tfl._swap(module, nn.MaxPool1d, _tfl.WindowMaxPool, where=_tfl.window_pool_ok)
    module, _ = _tfl._swap(module, nn.MaxPool1d, _tfl.SlidingMaxPool, where=_tfl.sliding_pool_ok)
    with torch.no_grad():
        _tfl._fold_conv_bn(module)
        _conv_stack(module, gemm_convs)
    return module, n_grus
