"""CTC line recognizers: CRNN (on a VGG or a GRCNN backbone) and the Baidu-competition model.

All of them return raw logits ``T, N, num_classes + 1`` (index 0 is the CTC blank); log-softmax
and the CTC loss are `models.families.CTCFamily`'s job. The number of frames of a ``W`` px wide
image is ``models.registry.output_length(name, W, **kwargs)``; for a padded batch the family
computes each sample's length from its own width.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from models.backbones import ExprBody, GRCNNBackbone, VGGBackbone

CRNN_HEIGHT = 32


def recurrent(rnn: nn.RNNBase, seq: torch.Tensor) -> torch.Tensor:
    """``rnn``'s output sequence for ``seq`` (``T, N, features``), in fp32 under autocast.

    Under CUDA autocast, PyTorch runs a cuDNN LSTM or GRU in fp16 whatever autocast's dtype (its
    autocast wrapper for ``_cudnn_rnn`` casts input, states and weights to half), so in bf16
    training the recurrence would run in fp16 with no gradient scaler, where small CTC gradients
    underflow and bf16 activations past 65504 overflow. The recurrence is a small share of the
    work: it runs in fp32 with autocast off. Without autocast (CPU training, evaluation,
    export) this is ``rnn(seq)``, the same graph.
    """
    if not torch.is_autocast_enabled(seq.device.type):
        return rnn(seq)[0]
    with torch.autocast(device_type=seq.device.type, enabled=False):
        return rnn(seq.float())[0]


def set_forget_bias(lstm: nn.LSTM, value: float) -> None:
    """Start every forget gate of ``lstm`` with bias ``value`` (Gers, Schmidhuber and Cummins
    2000; Jozefowicz, Zaremba and Sutskever 2015 recommend 1): each layer's and direction's
    ``bias_ih`` forget quarter is set to ``value`` and its ``bias_hh`` one to 0 (PyTorch adds
    the two; its gates are ordered input, forget, cell, output). The other weights keep PyTorch's
    draws, so the random stream is the same as without it.
    """
    h = lstm.hidden_size
    with torch.no_grad():
        for name, param in lstm.named_parameters():
            if name.startswith("bias_ih"):
                param[h : 2 * h].fill_(value)
            elif name.startswith("bias_hh"):
                param[h : 2 * h].zero_()


class CRNN(nn.Module):
    """CRNN head (Shi, Bai and Yao 2015): a height-collapsing CNN, two BiLSTM layers, a linear map.

    The backbone is passed in (any module ``N, 1, 32, W -> N, C, 1, T`` with ``out_channels``),
    so the GRCNN recognizer is this head on another backbone.

    Args:
        backbone: The feature extractor.
        num_classes: Charset size; the output has one more class, the blank (index 0).
        hidden: Hidden units per direction of each BiLSTM layer.
        forget_bias: When given, every BiLSTM forget gate's bias starts at this value
            (`set_forget_bias`) instead of PyTorch's uniform draw.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        hidden: int = 256,
        forget_bias: float | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.rnn = nn.LSTM(backbone.out_channels, hidden, num_layers=2, bidirectional=True)
        if forget_bias is not None:
            set_forget_bias(self.rnn, forget_bias)
        self.classifier = nn.Linear(2 * hidden, num_classes + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Transcribe text lines.

        Args:
            x: Images ``N, 1, 32, W`` (W >= 8; pad a batch on the right to its widest image).

        Returns:
            Logits ``T, N, num_classes + 1`` with ``T = W // 4 + 1``; class 0 is the blank.
        """
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != CRNN_HEIGHT:
            raise ValueError(
                f"CRNN expects images N,1,{CRNN_HEIGHT},W (height {CRNN_HEIGHT}), "
                f"got {tuple(x.shape)}"
            )
        features = self.backbone(x)  # N, C, 1, T
        if features.shape[2] != 1:
            raise ValueError(f"CRNN backbone must give feature height 1, got {features.shape[2]}")
        seq = features.squeeze(2).permute(2, 0, 1)  # T, N, C
        out = recurrent(self.rnn, seq)
        return self.classifier(out)


def _crnn(
    backbone_fn: Callable[..., nn.Module],
    num_classes: int,
    hidden: int,
    forget_bias: float | None,
    **backbone_kwargs: object,
) -> CRNN:
    return CRNN(backbone_fn(**backbone_kwargs), num_classes, hidden=hidden, forget_bias=forget_bias)


def crnn_vgg(
    num_classes: int,
    *,
    width: float = 1.0,
    hidden: int = 256,
    batch_norm_all: bool = False,
    forget_bias: float | None = None,
) -> CRNN:
    """CRNN with its original VGG backbone: ``N, 1, 32, W -> T, N, num_classes + 1``.

    ``batch_norm_all`` puts batch norm after every convolution, not only the three of
    meijieru/crnn.pytorch's layout (`VGGBackbone`); ``forget_bias`` starts the BiLSTM forget
    gates' biases there (`CRNN`).
    """
    return _crnn(
        VGGBackbone, num_classes, hidden, forget_bias, width=width, batch_norm_all=batch_norm_all
    )


def crnn_grcnn(
    num_classes: int,
    *,
    width: float = 1.0,
    hidden: int = 256,
    iterations: int = 5,
    forget_bias: float | None = None,
) -> CRNN:
    """CRNN head on a GRCNN backbone (Wang and Hu 2017): ``N, 1, 32, W -> T, N, num_classes + 1``.

    Fewer parameters than `crnn_vgg` at equal ``width``/``hidden``; ``iterations`` is the number
    of unrolled steps of each GRCL (5 in the paper); ``forget_bias`` as for `crnn_vgg`.
    """
    return _crnn(
        GRCNNBackbone, num_classes, hidden, forget_bias, width=width, iterations=iterations
    )


class ExprCRNN(nn.Module):
    """The Baidu 2017 competition winner's recognizer for arithmetic expressions.

    Three conv modules (`ExprBody`), a dense layer (+BN, ReLU) applied to each column over
    channels x height, two bidirectional GRU layers (the first one's directions summed, the
    second's concatenated, as in the winner's Keras model), dropout, a linear map to classes +
    blank. The first ``drop_frames`` frames are dropped (the winner dropped 2: edge artefacts).

    Args:
        num_classes: Charset size; the output has one more class, the blank (index 0).
        width: Channel multiplier of the convolutions.
        hidden: GRU units per direction.
        dense: Units of the per-column dense layer.
        filters: The three conv modules' channels, instead of ``width`` (`ExprBody`).
        dropout: Drop probability before the classifier.
        drop_frames: Leading frames removed from the output.
        input_height: Image height in px (the task's ``height``).
    """

    def __init__(
        self,
        num_classes: int,
        width: float = 1.0,
        hidden: int = 128,
        dense: int = 128,
        dropout: float = 0.2,
        drop_frames: int = 2,
        input_height: int = 60,
        filters: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if ExprBody.output_height(input_height) < 1:
            raise ValueError(f"expr_crnn input_height must be >= 8, got {input_height}")
        if drop_frames < 0:
            raise ValueError(f"expr_crnn drop_frames must be >= 0, got {drop_frames}")
        self.input_height = input_height
        self.drop_frames = drop_frames
        self.hidden = hidden
        self.body = ExprBody(width, filters)
        features = self.body.out_channels * ExprBody.output_height(input_height)
        self.dense = nn.Linear(features, dense, bias=False)
        self.dense_bn = nn.BatchNorm1d(dense)
        self.rnn1 = nn.GRU(dense, hidden, bidirectional=True)
        self.rnn2 = nn.GRU(hidden, hidden, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * hidden, num_classes + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Transcribe expressions.

        Args:
            x: Images ``N, 1, input_height, W``.

        Returns:
            Logits ``T, N, num_classes + 1`` with ``T = W // 4 - drop_frames``; class 0 is the
            blank.
        """
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != self.input_height:
            raise ValueError(
                f"expr_crnn expects images N,1,{self.input_height},W, got {tuple(x.shape)}"
            )
        f = self.body(x)  # N, C, h, T
        n, c, h, t = f.shape
        if t <= self.drop_frames:
            raise ValueError(
                f"expr_crnn: image width {x.shape[3]} gives {t} frames, "
                f"not more than drop_frames={self.drop_frames}"
            )
        seq = f.permute(3, 0, 1, 2).reshape(t * n, c * h)
        seq = torch.relu(self.dense_bn(self.dense(seq))).reshape(t, n, -1)  # T, N, dense
        out = recurrent(self.rnn1, seq)
        out = out[..., : self.hidden] + out[..., self.hidden :]
        out = recurrent(self.rnn2, out)
        logits = self.classifier(self.dropout(out))
        return logits[self.drop_frames :]


def expr_crnn(
    num_classes: int,
    *,
    width: float = 1.0,
    hidden: int = 128,
    dense: int = 128,
    dropout: float = 0.2,
    drop_frames: int = 2,
    input_height: int = 60,
    filters: Sequence[int] | None = None,
) -> ExprCRNN:
    """Build the Baidu-competition recognizer: ``N, 1, 60, W -> T, N, num_classes + 1``."""
    return ExprCRNN(
        num_classes,
        width=width,
        hidden=hidden,
        dense=dense,
        dropout=dropout,
        drop_frames=drop_frames,
        input_height=input_height,
        filters=filters,
    )
