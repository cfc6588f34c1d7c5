"""Convolutional feature extractors of the recognizers.

Each backbone is an ``nn.Module`` taking ``N, 1, H, W`` images and exposing ``out_channels``.
The heads that use them live in `models.hanzi_cnn`, `models.crnn` and `models.reader`.

- `HanziBody`: the CPS-OCR-Engine stack (64 x 64 -> 512 x 4 x 4 at width 1).
- `ExprBody`: the Baidu-competition stack, three modules of (conv-BN-ReLU twice, max-pool).
- `VGGBackbone`: the seven convolutions of CRNN (Shi, Bai and Yao 2015), height 32 -> 1.
- `GRCNNBackbone`: gated recurrent convolution layers (Wang and Hu, NIPS 2017), height 32 -> 1,
  laid out like clovaai deep-text-recognition-benchmark's ``RCNN_FeatureExtractor``.

Every backbone takes a ``width`` multiplier on its channel counts so that the same architecture
runs as a slim CPU model (0.5) or a tiny smoke-test model (0.125).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from models.registry import check_expr_filters


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1.

    Args:
        channels: The channel count at width 1.
        width: The width multiplier (> 0).
    """
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return max(1, round(channels * width))


def conv_bn_relu(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    padding: int = 1,
    batch_norm: bool = True,
) -> nn.Sequential:
    """Conv (stride 1) -> optional BatchNorm -> ReLU; the conv has no bias when BN follows."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=not batch_norm)
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HanziBody(nn.Module):
    """CPS-OCR-Engine's convolutions.

    conv64-pool, conv128-pool, conv256-pool, conv512, conv512-pool; batch norm after every
    conv. Shapes: ``N, 1, S, S -> N, 512*width, S/16, S/16``.
    """

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        c = [scaled(n, width) for n in (64, 128, 256, 512, 512)]
        self.out_channels = c[4]
        self.features = nn.Sequential(
            conv_bn_relu(1, c[0]),
            nn.MaxPool2d(2),
            conv_bn_relu(c[0], c[1]),
            nn.MaxPool2d(2),
            conv_bn_relu(c[1], c[2]),
            nn.MaxPool2d(2),
            conv_bn_relu(c[2], c[3]),
            conv_bn_relu(c[3], c[4]),
            nn.MaxPool2d(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``N, 1, S, S -> N, C, S/16, S/16``."""
        return self.features(x)


class ExprBody(nn.Module):
    """The Baidu-competition winner's CNN: three modules of (conv3x3-BN-ReLU twice, max-pool).

    Filters 32, 64, 128 (times ``width``), or the three given as ``filters``. The pools are
    (2, 2), (2, 2), (2, 1): the winner's three 2 x 2 pools leave 19 frames for a 180 px image,
    too few for CTC on the longer expressions (16 characters need T >= 33); keeping the third
    pool vertical gives W/4 frames. Shapes: ``N, 1, H, W -> N, C, H // 8, W // 4`` with ``C``
    the last module's filters.

    Args:
        width: Channel multiplier of the winner's 32, 64, 128.
        filters: The three modules' channels, instead of ``width`` (the first module runs at
            full resolution, so its channels cost the most per parameter).
    """

    POOLS = ((2, 2), (2, 2), (2, 1))

    def __init__(self, width: float = 1.0, filters: Sequence[int] | None = None) -> None:
        super().__init__()
        if filters is None:
            filters = [scaled(f, width) for f in (32, 64, 128)]
        else:
            check_expr_filters(filters)
        layers: list[nn.Module] = []
        cin = 1
        for cout, pool in zip(filters, self.POOLS, strict=True):
            layers += [conv_bn_relu(cin, cout), conv_bn_relu(cout, cout), nn.MaxPool2d(pool)]
            cin = cout
        self.out_channels = cin
        self.features = nn.Sequential(*layers)

    @staticmethod
    def output_height(height: int) -> int:
        """Feature-map height for an input of ``height`` px."""
        for ph, _ in ExprBody.POOLS:
            height //= ph
        return height

    @staticmethod
    def output_width(width: int) -> int:
        """Feature-map width (frames) for an input of ``width`` px."""
        for _, pw in ExprBody.POOLS:
            width //= pw
        return width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``N, 1, H, W -> N, C, H // 8, W // 4``."""
        return self.features(x)


class VGGBackbone(nn.Module):
    """CRNN's CNN (Shi, Bai and Yao 2015; the layout of meijieru/crnn.pytorch).

    conv64 - pool 2x2 - conv128 - pool 2x2 - conv256 (BN) - conv256 - pool (2,2)/(2,1)/pad (0,1) -
    conv512 (BN) - conv512 - same pool - conv512 2x2 no pad (BN). Shapes:
    ``N, 1, 32, W -> N, 512*width, 1, W // 4 + 1``.

    Args:
        width: Channel multiplier.
        batch_norm_all: Batch norm after all seven convolutions, not only the three of
            meijieru's layout (the paper's table has two; the convolutions then without bias).
            With it a slim CPU model (width 0.25) left CTC's plateau of character frequencies in
            a run where that layout stayed on it; over six seeds it was leaving the plateau by
            step 3000 in five, that layout in three of five (BENCHMARKS.md, "Line models that
            read on a CPU", sessions 38-40).
    """

    def __init__(self, width: float = 1.0, batch_norm_all: bool = False) -> None:
        super().__init__()
        c = [scaled(n, width) for n in (64, 128, 256, 256, 512, 512, 512)]
        self.out_channels = c[6]
        bn = batch_norm_all
        self.features = nn.Sequential(
            conv_bn_relu(1, c[0], batch_norm=bn),
            nn.MaxPool2d(2, 2),
            conv_bn_relu(c[0], c[1], batch_norm=bn),
            nn.MaxPool2d(2, 2),
            conv_bn_relu(c[1], c[2]),
            conv_bn_relu(c[2], c[3], batch_norm=bn),
            nn.MaxPool2d(2, (2, 1), (0, 1)),
            conv_bn_relu(c[3], c[4]),
            conv_bn_relu(c[4], c[5], batch_norm=bn),
            nn.MaxPool2d(2, (2, 1), (0, 1)),
            conv_bn_relu(c[5], c[6], kernel_size=2, padding=0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``N, 1, 32, W -> N, C, 1, W // 4 + 1``."""
        return self.features(x)


class GRCLUnit(nn.Module):
    """One iteration of a gated recurrent convolution layer: its own batch norms, no weights.

    ``G = sigmoid(BN(w_g * u) + BN(w_gr * x))``,
    ``x' = ReLU(BN(w_f * u) + BN(BN(w_r * x) * G))``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn_gate_input = nn.BatchNorm2d(channels)
        self.bn_gate_state = nn.BatchNorm2d(channels)
        self.bn_input = nn.BatchNorm2d(channels)
        self.bn_state = nn.BatchNorm2d(channels)
        self.bn_gated = nn.BatchNorm2d(channels)

    def forward(
        self,
        gate_input: torch.Tensor,
        gate_state: torch.Tensor,
        feed_input: torch.Tensor,
        feed_state: torch.Tensor,
    ) -> torch.Tensor:
        gate = torch.sigmoid(self.bn_gate_input(gate_input) + self.bn_gate_state(gate_state))
        context = self.bn_gated(self.bn_state(feed_state) * gate)
        return torch.relu(self.bn_input(feed_input) + context)


class GRCL(nn.Module):
    """Gated recurrent convolution layer (Wang and Hu 2017).

    The recurrent weights (``recurrent``, ``gate_recurrent``) are shared across the
    ``iterations`` unrolled steps; each step has its own batch norms. The gate is computed from
    the input and the state with 1x1 convolutions. Shapes: ``N, C_in, H, W -> N, C_out, H, W``.
    """

    def __init__(self, in_channels: int, out_channels: int, iterations: int = 5) -> None:
        super().__init__()
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        self.gate_feed = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.gate_recurrent = nn.Conv2d(out_channels, out_channels, 1, bias=False)
        self.feed = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.recurrent = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn_init = nn.BatchNorm2d(out_channels)
        self.units = nn.ModuleList(GRCLUnit(out_channels) for _ in range(iterations))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """``N, C_in, H, W -> N, C_out, H, W``."""
        gate_input = self.gate_feed(u)
        feed_input = self.feed(u)
        x = torch.relu(self.bn_init(feed_input))
        for unit in self.units:
            x = unit(gate_input, self.gate_recurrent(x), feed_input, self.recurrent(x))
        return x


class GRCNNBackbone(nn.Module):
    """GRCNN feature extractor: conv64 - pool - GRCL64 - pool - GRCL128 - pool (2,1) -
    GRCL256 - pool (2,1) - conv512 2x2 no pad (BN).

    The pools match `VGGBackbone`, so both give the same number of frames. Shapes:
    ``N, 1, 32, W -> N, 512*width, 1, W // 4 + 1``.
    """

    def __init__(self, width: float = 1.0, iterations: int = 5) -> None:
        super().__init__()
        c = [scaled(n, width) for n in (64, 128, 256, 512)]
        self.out_channels = c[3]
        self.features = nn.Sequential(
            conv_bn_relu(1, c[0], batch_norm=False),
            nn.MaxPool2d(2, 2),
            GRCL(c[0], c[0], iterations),
            nn.MaxPool2d(2, 2),
            GRCL(c[0], c[1], iterations),
            nn.MaxPool2d(2, (2, 1), (0, 1)),
            GRCL(c[1], c[2], iterations),
            nn.MaxPool2d(2, (2, 1), (0, 1)),
            conv_bn_relu(c[2], c[3], kernel_size=2, padding=0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``N, 1, 32, W -> N, C, 1, W // 4 + 1``."""
        return self.features(x)
