"""The CBHG family (Wang et al. 2017, Tacotron, Table 1), written so that one ONNX export runs at any T.

Every block keeps the time length T (even kernels are padded asymmetrically; the width-2 pool is a max with the
input shifted by one frame, sliced by Shape(x), not by a constant), so one export runs at any T.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum

import torch
from torch import nn
from torch.nn import functional as F


class ConvKind(str, Enum):
    STANDARD = "standard"
    SEPARABLE = "separable"  # depthwise k-tap conv + pointwise 1x1: ~k x fewer weights for the bank


class HighwayKind(str, Enum):
    GATED = "gated"  # Srivastava et al.: transform gate is a second FC of the input
    SIMPLIFIED = "simplified"  # gate is a learned per-channel vector: half the matmuls, no input dependence


@dataclass(frozen=True)
class CBHGConfig:
    in_dim: int = 128
    bank_k: int = 16
    bank_channels: int = 128
    conv: ConvKind = ConvKind.STANDARD
    proj_channels: tuple[int, int] = (128, 128)
    highway_dim: int = 128
    highway_layers: int = 4
    highway: HighwayKind = HighwayKind.GATED
    gru_hidden: int = 128
    attention_heads: int = 0
    out_dim: int | None = None

    def __post_init__(self) -> None:
        if self.proj_channels[-1] != self.in_dim:
            raise ValueError("the last projection must have in_dim channels for the residual add")
        if self.attention_heads and self.highway_dim % self.attention_heads:
            raise ValueError("highway_dim must be divisible by attention_heads")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["conv"] = self.conv.value
        d["highway"] = self.highway.value
        d["proj_channels"] = list(self.proj_channels)
        return d


class ConvBN(nn.Module):
    """conv-k-C (+ batch norm, + optional ReLU) that returns exactly T frames for any kernel size.

    An even kernel is padded asymmetrically (as padding='same' would, without its eager-mode copy warning), so
    the conv itself yields T frames and the batch norm follows it directly: foldable into the conv by ONNX
    simplifiers, where a crop in between would block that.
    """

    def __init__(self, c_in: int, c_out: int, k: int, relu: bool, kind: ConvKind = ConvKind.STANDARD):
        super().__init__()
        if kind is ConvKind.SEPARABLE:
            self.conv = nn.Sequential(
                nn.Conv1d(c_in, c_in, k, padding=0, groups=c_in, bias=False),
                nn.Conv1d(c_in, c_out, 1, bias=False),
            )
        else:
            self.conv = nn.Conv1d(c_in, c_out, k, padding=0, bias=False)
        self.bn = nn.BatchNorm1d(c_out)
        self.act = nn.ReLU() if relu else nn.Identity()
        self.pad = ((k - 1) // 2, k - 1 - (k - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(F.pad(x, self.pad))))


class ConvBank(nn.Module):
    """K convolutions of widths 1..K over the same input, concatenated on channels."""

    def __init__(self, c_in: int, channels: int, k_max: int, kind: ConvKind):
        super().__init__()
        self.convs = nn.ModuleList(ConvBN(c_in, channels, k, relu=True, kind=kind) for k in range(1, k_max + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([conv(x) for conv in self.convs], dim=1)


class SamePool(nn.Module):
    """Max-pool width 2 stride 1 that keeps T: out[t] = max(x[t], x[t+1]), the last frame pooled with -inf.

    Written as an elementwise max with the shifted input (same values as max_pool1d(2, 1, padding=1)[..., 1:]):
    ONNX Runtime's padded MaxPool took 5-10% of cbhg-lite's time; Slice + Pad + Max is about 7% faster overall.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.maximum(x, F.pad(x[:, :, 1:], (0, 1), value=float("-inf")))


class Highway(nn.Module):
    def __init__(self, dim: int, kind: HighwayKind):
        super().__init__()
        self.kind = kind
        self.h = nn.Linear(dim, dim)
        if kind is HighwayKind.GATED:
            self.t = nn.Linear(dim, dim)
            nn.init.constant_(self.t.bias, -1.0)  # the paper's carry bias: start close to identity
        else:
            self.gate = nn.Parameter(torch.full((dim,), -1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.h(x))
        t = torch.sigmoid(self.t(x) if self.kind is HighwayKind.GATED else self.gate)
        return h * t + x * (1.0 - t)


class SelfAttention(nn.Module):
    """Multi-head self-attention + residual + layer norm; written out so that batch and T stay symbolic."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """valid ([B, 1, T] float, 1 on each row's valid frames): the key mask; a padded key gets -1e9 added to its
        score, so its softmax weight is exactly 0 in fp32 and no valid frame attends to padding."""
        b, t = x.shape[0], x.shape[1]
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        if valid is not None:  # additions and multiplications only: every exporter lowers them
            scores = scores + (valid[:, :, None, :] - 1.0) * 1e9
        y = torch.matmul(torch.softmax(scores, dim=-1), v)
        y = y.transpose(1, 2).reshape(b, t, self.heads * self.head_dim)
        return self.norm(x + self.proj(y))


class BiGRU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.rnn = nn.GRU(dim, hidden, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """lengths: each row's valid frames; the backward direction then starts at the row's own last frame (ONNX
        exports it as the GRU's sequence_lens, TFLite as edgeseq's masked loop) and padded frames come out zero."""
        if lengths is None:
            return self.rnn(x)[0]
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


class LengthMask(nn.Module):
    """[B, 1, T] float: 1 on each row's valid frames of x [B, T, C]. A module of its own so that an exporter that
    cannot lower a dynamic arange (TFLite) swaps in its own op."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(x.shape[1], device=x.device)
        return (steps[None, :] < lengths[:, None]).to(x.dtype)[:, None, :]


class CBHG(nn.Module):
    """Input [batch, time, in_dim] -> [batch, time, 2 * gru_hidden] (or out_dim with a final linear).
    takes_lengths: the padding-safe variant (models/padded.py), whose forward gets each row's length too."""

    def __init__(self, cfg: CBHGConfig, takes_lengths: bool = False):
        super().__init__()
        self.cfg = cfg
        self.takes_lengths = takes_lengths
        if takes_lengths:
            self.length_mask = LengthMask()
        bank_out = cfg.bank_k * cfg.bank_channels
        p0, p1 = cfg.proj_channels
        self.bank = ConvBank(cfg.in_dim, cfg.bank_channels, cfg.bank_k, cfg.conv)
        self.pool = SamePool()
        self.projections = nn.Sequential(
            ConvBN(bank_out, p0, 3, relu=True, kind=cfg.conv),
            ConvBN(p0, p1, 3, relu=False, kind=cfg.conv),
        )
        self.pre_highway = nn.Linear(cfg.in_dim, cfg.highway_dim) if cfg.in_dim != cfg.highway_dim else nn.Identity()
        self.highway = nn.Sequential(*(Highway(cfg.highway_dim, cfg.highway) for _ in range(cfg.highway_layers)))
        self.attention = (
            SelfAttention(cfg.highway_dim, cfg.attention_heads) if cfg.attention_heads else nn.Identity()
        )
        self.gru = BiGRU(cfg.highway_dim, cfg.gru_hidden)
        self.out = nn.Linear(2 * cfg.gru_hidden, cfg.out_dim) if cfg.out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """lengths (optional, [batch] int): each row's valid frames. Given, the model is padding-safe: every conv
        and the pool see zeros / -inf past a row's end, as they do at the end of an unpadded row, and the BiGRU runs
        over each row's own length; without it, the graph is the plain CBHG."""
        if lengths is None:
            y = x.transpose(1, 2)
            y = self.projections(self.pool(self.bank(y)))
            y = y.transpose(1, 2) + x
            y = self.attention(self.highway(self.pre_highway(y)))
            return self.out(self.gru(y))
        if not self.takes_lengths:
            raise ValueError("this CBHG was built without lengths (CBHG(cfg, takes_lengths=True) takes them)")
        valid = self.length_mask(x, lengths)
        # the bank ends in ReLU, so its outputs are >= 0 and a zeroed frame is what the pool's -inf edge is: max(x, 0)
        # = x; multiplications only (TFLite's lowering of a broadcast `where` over conv outputs fails)
        y = self.pool(self.bank(x.transpose(1, 2) * valid) * valid) * valid
        y = self.projections[1](self.projections[0](y) * valid)
        y = y.transpose(1, 2) + x
        y = self.highway(self.pre_highway(y))
        if self.cfg.attention_heads:
            y = self.attention(y, valid)
        return self.out(self.gru(y, lengths))

    def output_dim(self) -> int:
        return self.cfg.out_dim or 2 * self.cfg.gru_hidden


# The configs the registry serves; docs' model tables come from these.
CBHG_ENCODER = CBHGConfig()
CBHG_POSTNET = CBHGConfig(in_dim=80, bank_k=8, proj_channels=(256, 80), out_dim=1025)
CBHG_LITE = CBHGConfig(
    bank_k=8,
    bank_channels=64,
    conv=ConvKind.SEPARABLE,
    highway_dim=64,
    highway_layers=2,
    highway=HighwayKind.SIMPLIFIED,
    gru_hidden=64,
)
ATTENTION_CBHG = CBHGConfig(attention_heads=4)
