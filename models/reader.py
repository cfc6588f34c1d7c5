"""The recurrent attention reader of jaromiru/deep_reader.

At each step a mask (all ones at the first step) multiplies the image; three convolutions and an
LSTM cell read the masked image; two linear heads on the LSTM output give the next mask (sigmoid,
image-sized) and the next character (or the terminal symbol). The reader runs a fixed number of
steps, ``max_len + 1``, so the longest label still gets its terminal symbol.

The mask multiplies *ink*, not the normalised pixels: the original draws grey text on black, so
a masked-out pixel reads as background. Our images are dark on light (or inverted), so the reader
first maps each image to ink = ``|x - background| / 2`` in [0, 1] (background = the mean of the
image's border pixels): polarity does not matter and a masked-out region reads as background.

Differences from the original: the 2nd and 3rd convolutions have stride 2, with 16, 32, 64
channels (times ``width``) instead of 8, 8, 8, each followed by batch norm; and the LSTM reads
the feature map's maximum over its rows (``C x W/4`` values) rather than the whole map (the
original feeds it 4,608 values for a 30 px image). Text may sit at any height, so the maximum
over rows makes the features the same wherever the line is, and the LSTM only has to learn
where along the line each character is, which it must know to read them in order. On the
default config's data of the time (digits and capitals at 10-14 px, 40x40) the whole-map
reader was at chance after 1,200 batches of 32, and this one had begun to read (8.6% whole
words on held-out fonts after 2,400 batches, 17% after 3,000); see BENCHMARKS.md.

The maximum over rows keeps only what each column of the last map saw, and after three
convolutions that is a 9 px square, less than one of the default config's glyphs. ``convs``
adds 3x3 stride-1 convolutions on the last map, 8 px more of view each; the default model keeps
the original's three, and the default config uses four (BENCHMARKS.md, session 9).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from models.backbones import scaled


class ReaderOutput(NamedTuple):
    """What `Reader.forward` returns.

    Attributes:
        logits: ``N, S, num_classes + 1`` per-step logits, ``S = max_len + 1``; class 0 is the
            terminal symbol (end of text), class ``i`` the charset's ``i - 1``-th character.
        masks: ``N, S, H, W`` the mask the image was multiplied with at each step, in [0, 1]
            (the first is all ones): mask ``s`` is where the reader looked to emit character ``s``.
    """

    logits: torch.Tensor
    masks: torch.Tensor


def _strided_side(side: int) -> int:
    """Output side of a 3x3, stride-2, pad-1 convolution."""
    return (side - 1) // 2 + 1


def ink(x: torch.Tensor) -> torch.Tensor:
    """Normalised images ``N, 1, H, W`` in [-1, 1] -> ink in [0, 1] (background 0), either
    polarity: ``|x - b| / 2`` with ``b`` the mean of each image's border pixels."""
    border = torch.cat([x[:, :, 0, :], x[:, :, -1, :], x[:, :, 1:-1, 0], x[:, :, 1:-1, -1]], dim=2)
    background = border.mean(dim=2, keepdim=True).unsqueeze(-1)
    return (x - background).abs() * 0.5


class Reader(nn.Module):
    """Recurrent attention reader.

    Args:
        num_classes: Charset size; the output has one more class, the terminal symbol (index 0).
        width: Channel multiplier of the convolutions.
        hidden: LSTM cell units (128 in the original).
        max_len: Longest text it reads; it runs ``max_len + 1`` steps.
        input_size: Image side in px (the task's ``size``).
        convs: Convolutions (3 in the original: 3x3, strides 1, 2, 2); each one more is a 3x3,
            stride-1 convolution on the last feature map, widening what each column sees.
    """

    def __init__(
        self,
        num_classes: int,
        width: float = 1.0,
        hidden: int = 128,
        max_len: int = 4,
        input_size: int = 40,
        convs: int = 3,
    ) -> None:
        super().__init__()
        if max_len < 1:
            raise ValueError(f"reader max_len must be >= 1, got {max_len}")
        if input_size < 8:
            raise ValueError(f"reader input_size must be >= 8, got {input_size}")
        if convs < 3:
            raise ValueError(f"reader convs must be >= 3, got {convs}")
        self.input_size = input_size
        self.steps = max_len + 1
        self.hidden = hidden
        c = [scaled(n, width) for n in (16, 32, 64)]
        self.features = nn.Sequential(
            nn.Conv2d(1, c[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(c[0]),
            nn.ReLU(inplace=True),
            nn.Conv2d(c[0], c[1], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c[1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(c[1], c[2], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c[2]),
            nn.ReLU(inplace=True),
            *(
                layer
                for _ in range(convs - 3)
                for layer in (
                    nn.Conv2d(c[2], c[2], 3, padding=1, bias=False),
                    nn.BatchNorm2d(c[2]),
                    nn.ReLU(inplace=True),
                )
            ),
        )
        side = _strided_side(_strided_side(input_size))
        self.rnn = nn.LSTMCell(c[2] * side, hidden)
        self.mask_head = nn.Linear(hidden, input_size * input_size)
        self.char_head = nn.Linear(hidden, num_classes + 1)

    def forward(self, x: torch.Tensor) -> ReaderOutput:
        """Read up to ``max_len`` characters.

        Args:
            x: Images ``N, 1, S, S`` with ``S == input_size`` (the mask scales the pixels it
                hides towards 0).

        Returns:
            `ReaderOutput`: logits ``N, max_len + 1, num_classes + 1`` and masks
            ``N, max_len + 1, S, S``.
        """
        s = self.input_size
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != s or x.shape[3] != s:
            raise ValueError(f"reader expects images N,1,{s},{s}, got {tuple(x.shape)}")
        n = x.shape[0]
        x = ink(x)
        mask = torch.ones_like(x)
        h = x.new_zeros(n, self.hidden)
        c = x.new_zeros(n, self.hidden)
        logits, masks = [], []
        for _ in range(self.steps):
            masks.append(mask)
            features = self.features(x * mask).amax(dim=2).flatten(1)  # max over rows
            h, c = self.rnn(features, (h, c))
            logits.append(self.char_head(h))
            mask = torch.sigmoid(self.mask_head(h)).view(n, 1, s, s)
        return ReaderOutput(torch.stack(logits, dim=1), torch.cat(masks, dim=1))


def reader(
    num_classes: int,
    *,
    width: float = 1.0,
    hidden: int = 128,
    max_len: int = 4,
    input_size: int = 40,
    convs: int = 3,
) -> Reader:
    """Build the attention reader: ``N, 1, 40, 40 -> (N, S, num_classes + 1), (N, S, 40, 40)``."""
    return Reader(
        num_classes,
        width=width,
        hidden=hidden,
        max_len=max_len,
        input_size=input_size,
        convs=convs,
    )
