"""A plain sequential classifier: shows the toolkit is not CBHG-only (and handles a fixed time axis)."""

from __future__ import annotations

from torch import nn


class SeqCNN(nn.Module):
    """[batch, frames=32, n_mels=40] -> class probabilities [batch, 10]."""

    def __init__(self, n_mels: int = 40, frames: int = 32, channels: int = 32, hidden: int = 64, classes: int = 10):
        super().__init__()
        self.frames = frames
        self.features = nn.Sequential(
            nn.Conv1d(n_mels, channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(channels * (frames // 2), hidden),
            nn.ReLU(),
            nn.Linear(hidden, classes),
            nn.Softmax(dim=-1),
        )

    def forward(self, x):
        return self.classifier(self.features(x.transpose(1, 2)))
