"""The printed-hanzi classifier of AstarLight/CPS-OCR-Engine (3755 GB2312 level-1 classes).

conv3x3(64)-pool, conv(128)-pool, conv(256)-pool, conv(512), conv(512)-pool, flatten, dropout,
FC 1024, dropout, FC classes; batch norm after every conv and after the hidden FC.
"""

from __future__ import annotations

import torch
from torch import nn

from models.backbones import HanziBody, scaled


class HanziCNN(nn.Module):
    """Single-character classifier on square images.

    Args:
        num_classes: Number of characters (the charset size).
        width: Channel multiplier of the convolutions and the hidden FC layer.
        dropout: Drop probability before each FC layer (the original's keep_prob 0.8).
        input_size: Image side in px, a multiple of 16 (the task's ``size``).
    """

    def __init__(
        self, num_classes: int, width: float = 1.0, dropout: float = 0.2, input_size: int = 64
    ) -> None:
        super().__init__()
        if input_size < 16 or input_size % 16:
            raise ValueError(f"hanzi_cnn input_size must be a multiple of 16, got {input_size}")
        self.input_size = input_size
        self.body = HanziBody(width)
        side = input_size // 16
        hidden = scaled(1024, width)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(self.body.out_channels * side * side, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify characters.

        Args:
            x: Images ``N, 1, S, S`` with ``S == input_size``.

        Returns:
            Logits ``N, num_classes`` (softmax is the family's job).
        """
        s = self.input_size
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != s or x.shape[3] != s:
            raise ValueError(f"hanzi_cnn expects images N,1,{s},{s}, got {tuple(x.shape)}")
        return self.head(self.body(x))


def hanzi_cnn(
    num_classes: int, *, width: float = 1.0, dropout: float = 0.2, input_size: int = 64
) -> HanziCNN:
    """Build the CPS-OCR-Engine classifier (``N, 1, 64, 64 -> N, num_classes``)."""
    return HanziCNN(num_classes, width=width, dropout=dropout, input_size=input_size)
