"""Exact module rewrites that let torch.export keep the time axis symbolic (used by the TFLite exporter).

1. nn.GRU -> LoopGRU: a GRU whose recurrence is one opaque op.
2. SamePool (max-pool width 2, stride 1, padding 1, cropped) -> ShiftMaxPool: max(x[t], x[t+1]) written with a
   shifted copy; torch.export specializes T through max_pool1d's padded output-size arithmetic. Any other
   nn.MaxPool1d(k, stride=1, padding=p) -> SlidingMaxPool, the same idea for any window (public CBHG code).
3. nn.MaxPool1d(k) with stride k (non-overlapping windows) -> WindowMaxPool: a reshape to [..., T // k, k] and a max
   over the last axis; litert-torch's lowering of max_pool1d fails on a dynamic batch ("broadcast_in_dim shape must
   have every element be nonnegative").
4. Batch norms folded into convs, Conv1d -> Conv2d over [B, C, 1, T], and CBHG's conv stack as one 4-D stack
   with each conv's padding inside it (for speed: LiteRT then runs it NHWC without transposes in between).

torch.export specializes T through nn.GRU (and a Python loop over time would unroll it). Here every nn.GRU is
replaced, weights and all, by `LoopGRU`:

    gi = x @ W_ih^T + b_ih            one matmul for all t and both directions (hoisted out of the recurrence)
    y  = edgeseq::gru_scan(gi, ...)   the recurrence only: an opaque custom op with a symbolic-T fake kernel

The LiteRT lowering of `edgeseq::gru_scan` (litert_loop.py) emits while loops (chunks of unrolled steps
in blocks), which the converter keeps as TFLite WHILE ops: one artifact for every T. Both directions of a bidirectional layer run in the same loop
step (the backward direction reads gi reversed in time), so a BiGRU costs one loop, not two.

Only torch is used here; nothing in this file touches a TFLite SDK.
"""

from __future__ import annotations

import contextlib
import copy
import sys
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

_OP = "edgeseq::gru_scan"


def _scan_reference(gi: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor, h0: Optional[torch.Tensor]):
    """gi [T, D, B, 3H] in scan order, w_hh [D, 3H, H], b_hh [D, 1, 3H], h0 [D, B, H] -> [T, D, B, H]."""
    hidden = w_hh.shape[-1]
    h = gi.new_zeros((gi.shape[1], gi.shape[2], hidden)) if h0 is None else h0
    outs = []
    w_t = w_hh.transpose(1, 2)
    for t in range(gi.shape[0]):
        gh = torch.matmul(h, w_t) + b_hh
        xr, xz, xn = gi[t].split(hidden, dim=-1)
        hr, hz, hn = gh.split(hidden, dim=-1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = n + z * (h - n)
        outs.append(h)
    if not outs:
        return gi.new_zeros((0, gi.shape[1], gi.shape[2], hidden))
    return torch.stack(outs, 0)


def _register():
    if hasattr(torch.ops.edgeseq, "gru_scan"):  # already defined (module reloaded)
        return
    torch.library.define(_OP, "(Tensor gi, Tensor w_hh, Tensor b_hh, Tensor? h0) -> Tensor")

    @torch.library.impl(_OP, "CompositeExplicitAutograd")
    def _impl(gi, w_hh, b_hh, h0):
        return _scan_reference(gi, w_hh, b_hh, h0)

    @torch.library.register_fake(_OP)
    def _fake(gi, w_hh, b_hh, h0):
        return gi.new_empty((gi.shape[0], gi.shape[1], gi.shape[2], w_hh.shape[-1]))


_register()

_MASK_OP = "edgeseq::length_mask"


def _register_mask():
    if hasattr(torch.ops.edgeseq, "length_mask"):
        return
    torch.library.define(_MASK_OP, "(Tensor ref, Tensor lengths) -> Tensor")

    @torch.library.impl(_MASK_OP, "CompositeExplicitAutograd")
    def _impl(ref, lengths):
        steps = torch.arange(ref.shape[0], device=ref.device)[:, None]
        return (steps < lengths[None, :]).to(torch.float32)

    @torch.library.register_fake(_MASK_OP)
    def _fake(ref, lengths):
        return ref.new_empty((ref.shape[0], lengths.shape[0]), dtype=torch.float32)


_register_mask()


def length_mask(ref: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[T, B] float32: 1 where step t < lengths[b] (ref: any tensor whose axis 0 is T). An opaque op lowered to
    TFLite RANGE + LESS: aten.arange / cumsum / gather fail to lower with a dynamic T or batch."""
    return torch.ops.edgeseq.length_mask(ref, lengths)


def gru_scan(gi, w_hh, b_hh, h0=None):
    return torch.ops.edgeseq.gru_scan(gi, w_hh, b_hh, h0)


class LoopGRU(nn.Module):
    """Drop-in for an eval-mode nn.GRU (any layers, bidirectional, batch_first, bias); same outputs."""

    def __init__(self, gru: nn.GRU):
        super().__init__()
        if getattr(gru, "proj_size", 0):
            raise ValueError("GRU with proj_size is not supported")
        self.hidden = gru.hidden_size
        self.layers = gru.num_layers
        self.directions = 2 if gru.bidirectional else 1
        self.batch_first = gru.batch_first
        suffixes = ["", "_reverse"][: self.directions]
        h3 = 3 * self.hidden
        for layer in range(self.layers):
            names = [f"l{layer}{s}" for s in suffixes]
            w_ih = torch.cat([getattr(gru, f"weight_ih_{n}").detach() for n in names], 0)
            w_hh = torch.stack([getattr(gru, f"weight_hh_{n}").detach() for n in names], 0)
            if gru.bias:
                b_ih = torch.cat([getattr(gru, f"bias_ih_{n}").detach() for n in names], 0)
                b_hh = torch.stack([getattr(gru, f"bias_hh_{n}").detach() for n in names], 0)
            else:
                b_ih = w_ih.new_zeros(self.directions * h3)
                b_hh = w_ih.new_zeros(self.directions, h3)
            # b_hh's reset and update parts add straight onto gi: fold them there; only b_hn stays in the loop
            fold = b_hh.clone()
            fold[:, 2 * self.hidden:] = 0
            b_ih = b_ih + fold.reshape(-1)
            b_hh = b_hh.clone()
            b_hh[:, : 2 * self.hidden] = 0
            self.register_buffer(f"w_ih_{layer}", w_ih.clone())
            self.register_buffer(f"b_ih_{layer}", b_ih)
            self.register_buffer(f"w_hh_{layer}", w_hh.clone())
            self.register_buffer(f"b_hh_{layer}", b_hh.unsqueeze(1))

    def flatten_parameters(self) -> None:
        """nn.GRU's cuDNN weight-layout call, which public CBHG code makes in forward(): nothing to do here."""

    def forward(self, x, hx: Optional[torch.Tensor] = None):
        packed = isinstance(x, MaskedSequence)
        if packed:  # a padded batch with lengths, in place of a PackedSequence (see masked_packing)
            lengths = x.lengths
            x = x.data if x.batch_first else x.data.transpose(0, 1)
        elif x.dim() != 3:
            raise ValueError("LoopGRU takes batched 3-D input")
        elif not self.batch_first:
            x = x.transpose(0, 1)
        batch, time = x.shape[0], x.shape[1]
        d, h = self.directions, self.hidden
        if packed:
            valid = length_mask(x.transpose(0, 1), lengths)  # [T, B]
            after = torch.cat([valid, torch.zeros_like(valid[:1])], 0)[1:]  # append-then-crop: T stays symbolic
            last = (valid - after)[:, :, None]  # [T, B, 1]: 1 at each row's last frame
            # the backward direction runs the flipped batch, where a row's padding comes first: its update gate is
            # saturated there (z = 1 exactly), so h stays at h0 (n + (0 - n) = 0 exactly) until the row's last
            # real frame, where a PackedSequence starts it. No gather: litert-torch lowers none with a dynamic batch
            hold = torch.flip(1.0 - valid, [0])[:, :, None]  # [T, B, 1]
        finals = []
        y = x
        for layer in range(self.layers):
            gi = F.linear(y, getattr(self, f"w_ih_{layer}"), getattr(self, f"b_ih_{layer}"))  # [B, T, D*3H]
            gi = gi.reshape(batch, time, d, 3 * h).permute(1, 2, 0, 3)  # [T, D, B, 3H]
            if d == 2:
                back = torch.flip(gi[:, 1], [0])
                if packed:
                    r, z, n = back.split(h, dim=-1)
                    back = torch.cat([r, z * (1.0 - hold) + hold * _SATURATED, n], dim=-1)
                gi = torch.stack([gi[:, 0], back], 1)
            h0 = None if hx is None else hx[layer * d:(layer + 1) * d]
            s = gru_scan(gi, getattr(self, f"w_hh_{layer}"), getattr(self, f"b_hh_{layer}"), h0)  # [T, D, B, H]
            if d == 2:
                s = torch.stack([s[:, 0], torch.flip(s[:, 1], [0])], 1)
            if packed:  # forward: the state at each row's last frame; backward: the state after frame 0
                finals.append(torch.stack([(s[:, 0] * last).sum(0)] + ([s[0, 1]] if d == 2 else []), 0))
                s = s * valid[:, None, :, None]  # padded steps are zero, as pad_packed_sequence gives
            else:
                finals.append(torch.stack([s[-1, 0]] + ([s[0, 1]] if d == 2 else []), 0))
            y = s.permute(2, 0, 1, 3).reshape(batch, time, d * h)
        if packed:
            return MaskedSequence(y, lengths, True), torch.cat(finals, 0)
        out = y if self.batch_first else y.transpose(0, 1)
        return out, torch.cat(finals, 0)


_SATURATED = 1e4  # a gate input whose sigmoid is exactly 1.0 in fp32 and fp16


class MaskedSequence:
    """What pack_padded_sequence returns while a model is traced for export: the padded batch and its lengths.
    LoopGRU runs it as a masked recurrence; pad_packed_sequence gives the batch back with zeros past each length."""

    def __init__(self, data: torch.Tensor, lengths: torch.Tensor, batch_first: bool):
        self.data, self.lengths, self.batch_first = data, lengths, batch_first


def _pack(input, lengths, batch_first=False, enforce_sorted=True):
    return MaskedSequence(input, torch.as_tensor(lengths, device=input.device).to(torch.int64), batch_first)


def _pad(sequence, batch_first=False, padding_value=0.0, total_length=None):
    data = sequence.data if sequence.batch_first else sequence.data.transpose(0, 1)  # [B, T, ...]
    if padding_value:
        pad = 1.0 - length_mask(data.transpose(0, 1), sequence.lengths).transpose(0, 1)  # [B, T]
        pad = pad.reshape(*data.shape[:2], *([1] * (data.dim() - 2)))
        data = data * (1.0 - pad) + pad * padding_value
    return (data if batch_first else data.transpose(0, 1)), sequence.lengths


@contextlib.contextmanager
def masked_packing(module: nn.Module):
    """While a model is traced for export, pack_padded_sequence / pad_packed_sequence carry a padded batch and
    its lengths (MaskedSequence) instead of a PackedSequence, which torch.export cannot trace with a dynamic batch
    and T. Replaced in torch.nn.utils.rnn and wherever the model's own modules imported them by name."""
    from torch.nn.utils import rnn

    swaps = {rnn.pack_padded_sequence: _pack, rnn.pad_packed_sequence: _pad}
    spaces = [vars(rnn)] + [vars(sys.modules[type(m).__module__]) for m in module.modules()
                            if type(m).__module__ in sys.modules]
    undo = []
    for space in {id(s): s for s in spaces}.values():
        for name, value in list(space.items()):
            if callable(value) and value in swaps:
                undo.append((space, name, value))
                space[name] = swaps[value]
    try:
        yield
    finally:
        for space, name, value in undo:
            space[name] = value


class ShiftMaxPool(nn.Module):
    """out[t] = max(x[t], x[t+1]) over the last axis, the last frame kept as is: SamePool without max_pool1d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # append-then-crop keeps the shifted copy's length symbolic: x[..., 1:] alone makes torch.export guard on
        # T - 1, and F.pad / max_pool1d specialize T or fail to lower with a dynamic T
        return torch.maximum(x, torch.cat([x, x[..., -1:]], dim=-1)[..., 1:])


class SlidingMaxPool(nn.Module):
    """nn.MaxPool1d(k, stride=1, padding=p) (dilation 1) as the max of k shifted copies of the -inf padded input:
    the same values, and no max_pool1d output-size arithmetic for torch.export to specialize T through (the pool
    + crop `[:, :, :T]` of public CBHG code). Each shifted copy is appended-then-cropped so its length stays the
    padded length, then the result is cut to T + 2p - k + 1."""

    def __init__(self, pool: nn.MaxPool1d):
        super().__init__()
        if not sliding_pool_ok(pool):
            raise ValueError("SlidingMaxPool needs MaxPool1d(k, stride=1, padding=p) with dilation 1")
        self.k, self.p = _single(pool.kernel_size), _single(pool.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p:
            edge = torch.full_like(x[..., :1], float("-inf")).expand(*x.shape[:-1], self.p)
            x = torch.cat([edge, x, edge], dim=-1)
        out = x
        for j in range(1, self.k):
            out = torch.maximum(out, torch.cat([x, x[..., -j:]], dim=-1)[..., j:])
        return out[..., : x.shape[-1] - self.k + 1] if self.k > 1 else out


def sliding_pool_ok(pool: nn.MaxPool1d) -> bool:
    k, p = _single(pool.kernel_size), _single(pool.padding)
    return (_single(pool.stride or k) == 1 and _single(pool.dilation) == 1 and p <= k // 2
            and not pool.return_indices)


class WindowMaxPool(nn.Module):
    """nn.MaxPool1d(k, stride=k) without padding or dilation, as crop + reshape + max (same values, floor mode)."""

    def __init__(self, pool: nn.MaxPool1d):
        super().__init__()
        k = _single(pool.kernel_size)
        if not window_pool_ok(pool):
            raise ValueError("WindowMaxPool needs MaxPool1d(k) with stride k, no padding, dilation 1, floor mode")
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[-1] // self.k
        return x[..., : frames * self.k].unflatten(-1, (frames, self.k)).amax(-1)


def _single(value) -> int:
    return value[0] if isinstance(value, (tuple, list)) else value


def window_pool_ok(pool: nn.MaxPool1d) -> bool:
    k = _single(pool.kernel_size)
    return (_single(pool.stride or k) == k and _single(pool.padding) == 0 and _single(pool.dilation) == 1
            and not pool.ceil_mode and not pool.return_indices)


def _swap(module: nn.Module, kind, make, where=lambda m: True) -> tuple[nn.Module, int]:
    if isinstance(module, kind) and where(module):
        return make(module).eval(), 1
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, kind) and where(child):
                setattr(parent, name, make(child).eval())
                count += 1
    return module, count


def replace_grus(module: nn.Module) -> tuple[nn.Module, int]:
    """A copy of `module` with every nn.GRU swapped for an equivalent LoopGRU; returns (copy, how many)."""
    return _swap(copy.deepcopy(module).eval(), nn.GRU, LoopGRU)


class Conv1dAs2d(nn.Module):
    """Conv1d run as a Conv2d over [B, C, 1, T]: the converter's own 1-D -> 2-D expansion breaks on a dynamic T
    (it emits a rank-3 permutation for a rank-4 tensor); a real 2-D conv converts cleanly."""

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("Conv1dAs2d needs numeric zero padding")
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, (1, conv.kernel_size[0]),
                              stride=(1, conv.stride[0]), padding=(0, conv.padding[0]),
                              dilation=(1, conv.dilation[0]), groups=conv.groups, bias=conv.bias is not None)
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight.unsqueeze(2))
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.unsqueeze(2)).flatten(2)  # [B, C, 1, T] -> [B, C, T]: a RESHAPE, no copy


class ConvChainAs2d(nn.Module):
    """Consecutive Conv1d layers (a depthwise-separable conv) run as Conv2d layers over one [B, C, 1, T] view:
    with no reshape between them, the converter's layout pass cancels the NHWC <-> NCHW transposes it puts
    between the two convs."""

    def __init__(self, convs):
        super().__init__()
        self.convs = nn.ModuleList(Conv1dAs2d(c).conv for c in convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(2)
        for conv in self.convs:
            x = conv(x)
        return x.flatten(2)


class ConvBN2d(nn.Module):
    """A CBHG ConvBN (batch norm folded) on [B, C, 1, T]: its zero padding moves into the first Conv2d (an even
    kernel pads one frame more on the left and crops it), so nothing but convs, crops, ReLU, concat and max
    sits between the convs of the conv stack, and the converter's layout pass keeps all of it NHWC (no
    transposes between layers; a PAD op would block that)."""

    def __init__(self, block):
        super().__init__()
        convs = list(block.conv) if isinstance(block.conv, nn.Sequential) else [block.conv]
        left, right = block.pad
        self.crop = right - left
        layers = []
        for i, conv in enumerate(convs):
            c2 = Conv1dAs2d(conv).conv
            if i == 0:
                c2.padding = (0, right)
            layers.append(c2)
        # the same attribute names as the ConvBN it replaces (conv, or conv.0 / conv.1 when separable): tensor
        # names in the .tflite then map back to the PyTorch modules (layer bisection)
        self.conv = nn.Sequential(*layers) if isinstance(block.conv, nn.Sequential) else layers[0]
        self.act = block.act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.crop:
            x = x[..., self.crop:]
        return self.act(x)


class ConvBank2d(nn.Module):
    """CBHG's ConvBank: [B, C, T] in, [B, C', 1, T] out (stays 4-D for the pool and projections)."""

    def __init__(self, bank):
        super().__init__()
        self.convs = nn.ModuleList(ConvBN2d(c) for c in bank.convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(2)
        return torch.cat([conv(x) for conv in self.convs], dim=1)


class Projections2d(nn.Module):
    """CBHG's projection ConvBNs: [B, C, 1, T] in, [B, C', T] out."""

    def __init__(self, projections):
        super().__init__()
        self.convs = nn.ModuleList(ConvBN2d(c) for c in projections)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = conv(x)
        return x.flatten(2)


class LengthMaskOp(nn.Module):
    """models.cbhg.LengthMask through edgeseq's length_mask op (TFLite RANGE + LESS): [B, 1, T] float."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return length_mask(x.transpose(0, 1), lengths).transpose(0, 1)[:, None, :]


def _conv_stack_2d(module: nn.Module) -> int:
    """Run each CBHG's bank -> pool -> projections as one 4-D (NHWC after conversion) conv stack (not a CBHG that
    takes lengths: it masks between its convs)."""
    from ...models.cbhg import CBHG, ConvBN

    done = 0
    for m in list(module.modules()):
        plain = isinstance(m, CBHG) and not m.takes_lengths
        blocks = list(m.bank.convs) + list(m.projections) if plain else []
        if blocks and all(isinstance(b, ConvBN) and isinstance(b.bn, nn.Identity) for b in blocks) \
                and isinstance(m.pool, ShiftMaxPool):  # ShiftMaxPool works on the last axis of any rank
            m.bank = ConvBank2d(m.bank).eval()
            m.projections = Projections2d(m.projections).eval()
            done += 1
    return done


def _chain_convs(module: nn.Module) -> int:
    chained = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            kids = list(child.children()) if isinstance(child, nn.Sequential) else []
            if len(kids) > 1 and all(isinstance(c, nn.Conv1d) for c in kids):
                setattr(parent, name, ConvChainAs2d(kids).eval())
                chained += 1
    return chained


class DecomposedLayerNorm(nn.Module):
    """LayerNorm over the last axis written as mean / variance / rsqrt: litert-torch's layer_norm lowering builds its
    result type from the export sizes and fails on a dynamic T; these elementwise ops and reductions convert."""

    def __init__(self, norm: nn.LayerNorm):
        super().__init__()
        if len(norm.normalized_shape) != 1:
            raise ValueError("DecomposedLayerNorm normalizes the last axis only")
        self.eps = norm.eps
        self.weight = norm.weight
        self.bias = norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        centered = x - mean
        y = centered * torch.rsqrt(centered.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.weight is not None:
            y = y * self.weight
        return y + self.bias if self.bias is not None else y


def _fold_conv_bn(module: nn.Module) -> int:
    """Fold eval-mode BatchNorm1d into the Conv1d right before it (CBHG's ConvBN, and Sequential(conv, bn))."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    from ...models.cbhg import ConvBN

    folded = 0
    for parent in list(module.modules()):
        if isinstance(parent, ConvBN) and isinstance(parent.bn, nn.BatchNorm1d):
            conv = parent.conv
            if isinstance(conv, nn.Sequential):
                conv[-1] = fuse_conv_bn_eval(conv[-1], parent.bn)
            else:
                parent.conv = fuse_conv_bn_eval(conv, parent.bn)
            parent.bn = nn.Identity()
            folded += 1
        elif isinstance(parent, nn.Sequential):
            items = list(parent.named_children())
            for (name_a, a), (name_b, b) in zip(items, items[1:]):
                if isinstance(a, nn.Conv1d) and isinstance(b, nn.BatchNorm1d) and b.track_running_stats:
                    setattr(parent, name_a, fuse_conv_bn_eval(a, b))
                    setattr(parent, name_b, nn.Identity())
                    folded += 1
    return folded


def rewrite_for_export(module: nn.Module) -> tuple[nn.Module, int]:
    """A copy with every nn.GRU -> LoopGRU, every CBHG SamePool -> ShiftMaxPool, every non-overlapping MaxPool1d ->
    WindowMaxPool, batch norms folded into the convs before them (what ONNX simplifiers do too) and LayerNorms
    decomposed; returns (copy, GRU count)."""
    from ...models.cbhg import LengthMask, SamePool

    module, n_grus = replace_grus(module)
    module, _ = _swap(module, LengthMask, lambda _: LengthMaskOp())
    module, _ = _swap(module, SamePool, lambda _: ShiftMaxPool())
    module, _ = _swap(module, nn.MaxPool1d, WindowMaxPool, where=window_pool_ok)
    module, _ = _swap(module, nn.MaxPool1d, SlidingMaxPool, where=sliding_pool_ok)
    with torch.no_grad():
        _fold_conv_bn(module)
        _conv_stack_2d(module)
        _chain_convs(module)
    module, _ = _swap(module, nn.Conv1d, Conv1dAs2d)
    module, _ = _swap(module, nn.LayerNorm, DecomposedLayerNorm)
    return module, n_grus


def contains(module: nn.Module, kinds: tuple[type, ...]) -> list[str]:
    return [name or type(module).__name__ for name, m in module.named_modules() if isinstance(m, kinds)]
