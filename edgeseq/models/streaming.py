"""cbhg-lite-stream: a CBHG-Lite that runs chunk by chunk with its state carried between calls, for real-time use.

Everything looks only backwards (causal conv bank and projections, a pool over [t-1, t], a unidirectional GRU), so
chunked output can equal the full-sequence output exactly. The state is explicit: each conv's last input frames and
the GRU's hidden state go in as inputs and come back as outputs, so ONNX Runtime and LiteRT (which keep no state
between calls) can stream it, and an app owns the state. The full-sequence run is the same graph with zero state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .cbhg import Highway, HighwayKind


@dataclass(frozen=True)
class StreamConfig:
    in_dim: int = 128
    bank_k: int = 8
    bank_channels: int = 64
    proj_channels: tuple[int, int] = (128, 128)
    highway_layers: int = 2
    gru_hidden: int = 128

    def to_dict(self) -> dict:
        d = asdict(self)
        d["proj_channels"] = list(self.proj_channels)
        return d

    def state_shapes(self) -> dict[str, tuple[int, int]]:
        """Each state input: (frames kept, channels), in the [batch, frames, channels] layout of the features."""
        bank_out = self.bank_k * self.bank_channels
        return {
            "bank_context": (self.bank_k - 1, self.in_dim),  # the widest bank conv looks K - 1 frames back
            "pool_context": (1, bank_out),  # the pool's max over [t-1, t]
            "proj1_context": (2, bank_out),  # kernel 3: two frames back
            "proj2_context": (2, self.proj_channels[0]),
            "gru_state": (1, self.gru_hidden),
        }


class _SepConv(nn.Module):
    """Depthwise k-tap + pointwise + batch norm (+ ReLU), unpadded: [B, C, k-1+T] in, [B, C', T] out."""

    def __init__(self, c_in: int, c_out: int, k: int, relu: bool):
        super().__init__()
        self.k = k
        self.depthwise = nn.Conv1d(c_in, c_in, k, groups=c_in, bias=False)
        self.pointwise = nn.Conv1d(c_in, c_out, 1, bias=False)
        self.bn = nn.BatchNorm1d(c_out)
        self.act = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.pointwise(self.depthwise(x))))


class StreamingCBHGLite(nn.Module):
    """(features [B, T, in], *state) -> (encoded [B, T, hidden], *next state); see StreamConfig.state_shapes."""

    def __init__(self, cfg: StreamConfig = StreamConfig()):
        super().__init__()
        self.cfg = cfg
        bank_out = cfg.bank_k * cfg.bank_channels
        p0, p1 = cfg.proj_channels
        self.bank = nn.ModuleList(_SepConv(cfg.in_dim, cfg.bank_channels, k, relu=True)
                                  for k in range(1, cfg.bank_k + 1))
        self.proj1 = _SepConv(bank_out, p0, 3, relu=True)
        self.proj2 = _SepConv(p0, p1, 3, relu=False)
        self.highway = nn.Sequential(*(Highway(cfg.in_dim, HighwayKind.SIMPLIFIED) for _ in range(cfg.highway_layers)))
        self.gru = nn.GRU(cfg.in_dim, cfg.gru_hidden, batch_first=True)

    def forward(self, features, bank_context, pool_context, proj1_context, proj2_context, gru_state):
        k = self.cfg.bank_k
        x = torch.cat([bank_context, features], dim=1)  # [B, K-1+T, in]
        xc = x.transpose(1, 2)
        banked = torch.cat([conv(xc[:, :, k - conv.k:]) for conv in self.bank], dim=1)  # [B, bank_out, T]
        pooled_in = torch.cat([pool_context.transpose(1, 2), banked], dim=2)  # [B, bank_out, 1+T]
        pooled = torch.maximum(pooled_in[:, :, 1:], pooled_in[:, :, :-1])  # max(x[t-1], x[t])
        p1_in = torch.cat([proj1_context.transpose(1, 2), pooled], dim=2)
        p1 = self.proj1(p1_in)
        p2_in = torch.cat([proj2_context.transpose(1, 2), p1], dim=2)
        y = self.proj2(p2_in).transpose(1, 2) + features
        y = self.highway(y)
        encoded, h = self.gru(y, gru_state.transpose(0, 1).contiguous())
        return (encoded, _last(x, k - 1), _last(pooled_in.transpose(1, 2), 1), _last(p1_in.transpose(1, 2), 2),
                _last(p2_in.transpose(1, 2), 2), h.transpose(0, 1))

    def zero_state(self, batch: int = 1) -> dict[str, torch.Tensor]:
        return {name: torch.zeros(batch, *shape) for name, shape in self.cfg.state_shapes().items()}


def _last(x: torch.Tensor, frames: int) -> torch.Tensor:
    """The last `frames` frames of [B, T', C] (T' >= frames always: the context alone has that many)."""
    return x[:, x.shape[1] - frames:]


CBHG_LITE_STREAM = StreamConfig()
STATE_OUTPUT_SUFFIX = "_next"  # the output that carries an input state to the next call: "gru_state_next"

