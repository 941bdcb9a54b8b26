"""Your own CBHG, declared once for edgeseq: `edgeseq export examples/models/my_cbhg.py:build`.

A factory returns a ModelSpec: the module (with its trained weights; here seeded ones), one example input, and
which axes are dynamic, named as you like. Output axes that follow the inputs are found by running the module.
"""

import torch
from torch import nn

import edgeseq


class MyCBHG(nn.Module):
    """A compact CBHG as TTS code writes it: a conv bank, a stride-1 max pool cropped back to T, a projection with
    a residual, a BiGRU that calls flatten_parameters() in forward."""

    def __init__(self, dim=40, bank_k=4, channels=32, hidden=32):
        super().__init__()
        self.bank = nn.ModuleList(nn.Conv1d(dim, channels, k, padding=k // 2) for k in range(1, bank_k + 1))
        self.bank_bn = nn.BatchNorm1d(bank_k * channels)
        self.pool = nn.MaxPool1d(2, stride=1, padding=1)
        self.proj = nn.Conv1d(bank_k * channels, dim, 3, padding=1)
        self.gru = nn.GRU(dim, hidden, batch_first=True, bidirectional=True)

    def forward(self, mel):  # [batch, time, dim] -> [batch, time, 2 * hidden]
        x = mel.transpose(1, 2)
        T = x.size(-1)
        x = torch.relu(self.bank_bn(torch.cat([conv(x)[:, :, :T] for conv in self.bank], dim=1)))
        x = self.pool(x)[:, :, :T]
        x = self.proj(x).transpose(1, 2) + mel
        self.gru.flatten_parameters()
        return self.gru(x)[0]


def build() -> edgeseq.ModelSpec:
    torch.manual_seed(0)  # a trained model would load its checkpoint here (or pass --weights to the CLI)
    return edgeseq.ModelSpec.from_module(MyCBHG(), torch.randn(1, 50, 40), input_names=["mel"],
                                         output_names=["encoded"], dynamic_axes={"mel": {0: "B", 1: "T"}},
                                         name="my-cbhg")
