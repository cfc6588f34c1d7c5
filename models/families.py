"""Label codecs, losses and decoders of the three task families.

A model's family (``models.registry.family_of``) says how its labels are encoded, how its output
is scored and how it is read back:

- ``classification`` (`ClassificationFamily`): one character per image; class ``i`` is
  ``charset[i]``; cross-entropy (optionally label-smoothed); softmax top-k.
- ``ctc`` (`CTCFamily`): class 0 is the blank, class ``i`` is ``charset[i - 1]``; CTC loss in
  fp32 with ``zero_infinity``; greedy or prefix-beam-search decoding with an n-best list, the
  beam optionally held to a `Grammar` (``grammar``: only readings the task's grammar accepts).
- ``attention`` (`AttentionFamily`): class 0 is the terminal symbol, class ``i`` is
  ``charset[i - 1]``; per-step cross-entropy up to and including the terminal symbol, the steps
  after it ignored (optionally label-smoothed); greedy decoding until the terminal symbol.

Usage (one interface for every family)::

    family = make_family(model_name, charset, model_kwargs)
    model = build_model(model_name, family.num_classes, **model_kwargs)
    targets = family.encode(texts).to(device)
    loss = family.loss(model(images), targets, widths)     # widths: N image widths (CTC)
    predictions = family.decode(model(images), widths)     # list of Prediction

``widths`` are the widths in px of the images before they were padded into the batch; CTC
models return only logits, and the family turns widths into each sample's number of frames with
``models.registry.output_length``. Without widths every sample uses all ``T`` frames.
Label errors are never silent: a character outside the charset raises `LabelError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from models.registry import DECODERS, entry_source, family_of, get_entry, output_length
from synth.charset import SPACE, SPACE_HINT, label_spaces
from synth.text import Value, grammar_accepts

BLANK = 0  # CTC blank class
EOS = 0  # attention terminal symbol
IGNORE_INDEX = -100  # attention targets after the terminal symbol


class Grammar(Protocol):
    """What the ``grammar`` decoder needs of a grammar (`synth.text.ExpressionGrammar`): states
    that are hashable values, advanced one character at a time."""

    def start(self) -> Any:
        """The state before any character."""

    def advance(self, state: Any, char: str) -> Any | None:
        """The state after ``char``, or None when no text of the grammar continues this way."""

    def accepts(self, state: Any) -> bool:
        """Whether the text read so far is a whole text of the grammar."""


class NonFiniteOutputError(ValueError):
    """A model's outputs hold NaN or inf where they are decoded (`Family.readable_logits`)."""


class LabelError(ValueError):
    """A label the charset cannot encode (or that the family cannot represent).

    Attributes:
        text: The label.
        char: The offending character, if one is at fault.
    """

    def __init__(self, text: str, char: str | None = None, reason: str | None = None) -> None:
        self.text = text
        self.char = char
        if reason is None:
            reason = f"character {char!r} (U+{ord(char):04X}) is not in the charset" if char else ""
            if char == SPACE:
                reason += f" ({SPACE_HINT})"
        super().__init__(f"label {text!r}: {reason}")


@dataclass
class Prediction:
    """One decoded sample.

    Attributes:
        text: The best transcription.
        confidence: Its probability in [0, 1] (see each family's ``decode`` for what it means).
        top_k: ``(text, probability)`` alternatives, best first; ``top_k[0][0] == text``.
        value: The value of an arithmetic expression, filled in by whoever evaluates it.
        grammatical: False when the ``grammar`` decoder kept no whole expression and ``text``
            is the best prefix, which its grammar rejects: it is given no value.
    """

    text: str
    confidence: float
    top_k: list[tuple[str, float]] = field(default_factory=list)
    value: Value | None = None
    grammatical: bool = True


@dataclass(frozen=True)
class Targets:
    """Encoded labels of a batch.

    Attributes:
        indices: classification ``N``; CTC ``sum(lengths)`` (labels concatenated);
            attention ``N, S`` padded with ``IGNORE_INDEX`` after the terminal symbol.
        lengths: ``N`` label lengths (classification: ones; attention: including the terminal).
    """

    indices: torch.Tensor
    lengths: torch.Tensor

    def to(self, device: torch.device | str) -> Targets:
        return Targets(self.indices.to(device), self.lengths.to(device))


def _logits(outputs: Any) -> torch.Tensor:
    """The logits tensor of a model output (the reader returns ``(logits, masks)``)."""
    return outputs[0] if isinstance(outputs, tuple | list) else outputs


class Family:
    """Base class: the charset and its codec. Subclasses define encode, loss and decode.

    Args:
        charset: The characters, each a single code point, no duplicates.
    """

    kind: ClassVar[str]
    offset: ClassVar[int] = 0  # class index of charset[0]
    # The logits' axes, the batch's among them, and the classes on the last (the registry's
    # contract, `models.registry`); `logits` checks a model's output against them.
    layout: ClassVar[str] = "N, C"
    ndim: ClassVar[int] = 2
    batch_axis: ClassVar[int] = 0
    longest_label: int = 0  # the longest label `encode` accepts (0: no bound)
    model_name: str = "model"  # for messages (`make_family` sets it)

    def __init__(self, charset: Sequence[str]) -> None:
        if not charset:
            raise ValueError("charset is empty")
        index: dict[str, int] = {}
        for i, ch in enumerate(charset):
            if not isinstance(ch, str) or len(ch) != 1:
                raise ValueError(f"charset entry {i} ({ch!r}) is not a single character")
            if ch in index:
                raise ValueError(f"charset has {ch!r} (U+{ord(ch):04X}) twice")
            index[ch] = i + self.offset
        self.charset = tuple(charset)
        self.num_classes = len(self.charset)  # what build_model takes
        self._index = index

    def label_indices(self, text: str) -> list[int]:
        """Class indices of ``text``'s characters; `LabelError` naming the first unknown one."""
        try:
            return [self._index[ch] for ch in text]
        except KeyError as e:
            raise LabelError(text, e.args[0]) from None

    def text_of(self, indices: Sequence[int]) -> str:
        """Inverse of `label_indices` (indices must be character classes)."""
        return "".join(self.charset[i - self.offset] for i in indices)

    def readings_of(
        self, hypotheses: Sequence[tuple[Sequence[int], float]], k: int
    ) -> list[tuple[str, float]]:
        """The ``k`` best readings of ranked class sequences with their log-probabilities, as
        (text, probability): sequences `reading_of` reads alike (``" a"`` and ``"a"`` where the
        charset has the space) are one reading, their probabilities summed, in the order of
        the sums (ties in the hypotheses' order)."""
        merged: dict[str, float] = {}
        for labels, logp in hypotheses:
            text = self.reading_of(labels)
            merged[text] = merged.get(text, 0.0) + math.exp(logp)
        return sorted(merged.items(), key=lambda item: -item[1])[: max(1, k)]

    def reading_of(self, indices: Sequence[int]) -> str:
        """The text a decoded class sequence reads: `text_of`, spaced as every line label is
        (`synth.charset.label_spaces`) where the charset has the space. A model may emit one
        at either end, two together or beside a hanzi, which no label holds and Tesseract's
        readings are cleaned of (`models.tesseract.normalize_reading`): both are scored alike."""
        text = self.text_of(indices)
        return label_spaces(text) if SPACE in self._index else text

    @property
    def output_classes(self) -> int:
        """The size of the logits' last axis: the characters, and the blank or terminal symbol."""
        return self.num_classes + self.offset

    def check_output(self, outputs: Any, images: torch.Tensor | None = None) -> None:
        """Raise `ValueError` unless a model's output has what this family's models return
        besides the logits, and (CTC) as many frames as its ``output_length`` counts for the
        ``images`` it read (the training loop checks every step's output)."""

    def logits(self, outputs: Any, batch: int | None = None) -> torch.Tensor:
        """The logits of a model's output, checked against `layout` (and the batch's size when
        known), so that a model breaking the registry's contract (batch first instead of time
        first, no class for the blank) fails naming its output, not somewhere after it. Only an
        attention model returns more than its logits: a CTC model or a classifier returning a
        tuple (``logits, None``, say) is named here, not at its ONNX export."""
        if isinstance(outputs, tuple | list) and self.kind != "attention":
            raise ValueError(
                f"model {self.model_name!r} returned a {type(outputs).__name__} of "
                f"{len(outputs)}: a {self.kind} model returns one tensor, its logits "
                f"{self.layout} ({entry_source(self.model_name)}; README.md, "
                "'Adding an architecture')"
            )
        logits = _logits(outputs)
        shape = tuple(logits.shape)
        if (
            len(shape) != self.ndim
            or shape[-1] != self.output_classes
            or (batch is not None and shape[self.batch_axis] != batch)
        ):
            known = f"C = {self.num_classes} characters" + (
                f" and N = {batch} images" if batch is not None else ""
            )
            raise ValueError(
                f"model {self.model_name!r} returned logits of shape {shape}: a "
                f"{self.kind} model returns {self.layout}, with {known}"
                f"{self._shape_hint(shape, batch)} "
                f"({entry_source(self.model_name)}; README.md, 'Adding an architecture')"
            )
        return logits

    def _shape_hint(self, shape: tuple[int, ...], batch: int | None) -> str:
        """What a wrong logits shape looks like it is: batch first where time comes first, one
        class short of the blank or terminal symbol."""
        hints = []
        if (
            len(shape) == self.ndim
            and batch is not None
            and self.batch_axis != 0
            and shape[0] == batch != shape[self.batch_axis]
        ):
            hints.append("it looks batch first")
        if len(shape) == self.ndim and shape[-1] == self.output_classes - 1 and self.offset:
            hints.append("it is one class short: the class 0 its family adds to the characters")
        return f"; {', and '.join(hints)}" if hints else ""

    def readable_logits(self, outputs: Any, batch: int | None = None) -> torch.Tensor:
        """The logits to decode (detached, fp32), none NaN or +inf: a model that gives them
        (in eval mode alone, say, from broken batch-norm statistics) is an error naming it, not
        images read as nothing or confidences of ``nan``."""
        logits = self.logits(outputs, batch).detach().float()
        bad = torch.isnan(logits) | (logits == math.inf)  # -inf: a class ruled out, not a fault
        if bool(bad.any()):
            per_image = bad.transpose(0, self.batch_axis).reshape(logits.shape[self.batch_axis], -1)
            raise NonFiniteOutputError(
                f"model {self.model_name!r} gave outputs that are not finite (NaN or +inf) for "
                f"{int(per_image.any(1).sum())} of {per_image.shape[0]} images: its weights or "
                "its batch-norm statistics hold NaN, or its forward overflows "
                f"({entry_source(self.model_name)})"
            )
        return logits

    def encode(self, texts: Sequence[str]) -> Targets:
        raise NotImplementedError

    def loss(
        self,
        outputs: Any,
        targets: Targets,
        widths: torch.Tensor | Sequence[int] | None = None,
        *,
        label_smoothing: float = 0.0,
    ) -> torch.Tensor:
        raise NotImplementedError

    def decode(
        self,
        outputs: Any,
        widths: torch.Tensor | Sequence[int] | None = None,
        *,
        decoder: str = "greedy",
        beam_width: int = 5,
        k: int = 5,
        grammar: Grammar | None = None,
    ) -> list[Prediction]:
        raise NotImplementedError


class ClassificationFamily(Family):
    """One character per image; the model gives logits ``N, num_classes``."""

    kind = "classification"
    longest_label = 1

    def encode(self, texts: Sequence[str]) -> Targets:
        """``N`` labels of exactly one character -> `Targets` (indices ``N``)."""
        out = []
        for text in texts:
            if len(text) != 1:
                raise LabelError(text, reason=f"expected one character, got {len(text)}")
            out.extend(self.label_indices(text))
        indices = torch.tensor(out, dtype=torch.long)
        return Targets(indices, torch.ones_like(indices))

    def loss(
        self,
        outputs: Any,
        targets: Targets,
        widths: torch.Tensor | Sequence[int] | None = None,
        *,
        label_smoothing: float = 0.0,
    ) -> torch.Tensor:
        """Mean cross-entropy (fp32) of logits ``N, C``, ``label_smoothing`` as in
        `torch.nn.functional.cross_entropy`; ``widths`` is ignored."""
        logits = self.logits(outputs, len(targets.indices)).float()
        return F.cross_entropy(
            logits, targets.indices.to(logits.device), label_smoothing=label_smoothing
        )

    def decode(
        self,
        outputs: Any,
        widths: torch.Tensor | Sequence[int] | None = None,
        *,
        decoder: str = "greedy",
        beam_width: int = 5,
        k: int = 5,
        grammar: Grammar | None = None,
    ) -> list[Prediction]:
        """Softmax top-``k``: ``confidence`` is the top-1 probability."""
        _check_decoder(decoder, self.kind)
        probs = self.readable_logits(outputs).softmax(-1).cpu()
        values, indices = probs.topk(min(k, probs.shape[-1]), dim=-1)
        preds = []
        for vals, idx in zip(values.tolist(), indices.tolist(), strict=True):
            top = [(self.charset[i], p) for i, p in zip(idx, vals, strict=True)]
            preds.append(Prediction(top[0][0], top[0][1], top))
        return preds


class CTCFamily(Family):
    """CTC: the model gives logits ``T, N, num_classes + 1``, class 0 the blank.

    Args:
        charset: The characters.
        model_name: The CTC model (its `output_length` turns widths into frame counts).
        model_kwargs: The model's keyword arguments (the frame count may depend on them).
    """

    kind = "ctc"
    offset = 1
    layout = "T, N, C + 1 (time first, class 0 the blank)"
    ndim = 3
    batch_axis = 1

    def __init__(
        self,
        charset: Sequence[str],
        model_name: str,
        model_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(charset)
        self.model_name = model_name
        self.model_kwargs = dict(model_kwargs or {})
        if get_entry(model_name).output_length is None:
            raise ValueError(f"model {model_name!r} is not a CTC model")

    def encode(self, texts: Sequence[str]) -> Targets:
        """Labels -> `Targets` (indices concatenated, lengths ``N``); empty labels are errors."""
        flat: list[int] = []
        lengths = []
        for text in texts:
            if not text:
                raise LabelError(text, reason="empty labels cannot be trained with CTC")
            ids = self.label_indices(text)
            flat.extend(ids)
            lengths.append(len(ids))
        return Targets(
            torch.tensor(flat, dtype=torch.long), torch.tensor(lengths, dtype=torch.long)
        )

    def input_lengths(
        self, widths: torch.Tensor | Sequence[int] | None, frames: int, batch: int
    ) -> torch.Tensor:
        """Frames of each sample (``N`` long tensor): from the image widths, or all ``frames``."""
        if widths is None:
            return torch.full((batch,), frames, dtype=torch.long)
        w = torch.as_tensor(widths, dtype=torch.long).cpu()
        if w.shape != (batch,):
            raise ValueError(f"widths has shape {tuple(w.shape)}, expected ({batch},)")
        lengths = output_length(self.model_name, w, **self.model_kwargs)
        if int(lengths.max()) > frames or int(lengths.min()) < 1:
            raise ValueError(
                f"widths {w.tolist()} give frame counts {lengths.tolist()} outside 1..{frames} "
                "(the logits' T): pass the widths in px of the images as fed to the model, "
                f"before padding; or the output_length of model {self.model_name!r} "
                f"({entry_source(self.model_name)}) does not count the frames its forward gives"
            )
        return lengths

    def check_output(self, outputs: Any, images: torch.Tensor | None = None) -> None:
        """The frames of the logits are those ``output_length`` counts for the batch's (padded)
        width: a count one short would leave the last frame out of the loss unnoticed."""
        if images is None:
            return
        width = int(images.shape[-1])
        # With the batch's size: logits batch first (N, T, C + 1) are named as such, not taken
        # for N frames (when N and T are equal, the conformance check's batch of 2 tells).
        frames = int(self.logits(outputs, batch=int(images.shape[0])).shape[0])
        counted = int(output_length(self.model_name, width, **self.model_kwargs))
        if counted != frames:
            raise ValueError(
                f"model {self.model_name!r} gave {frames} frames for images {width} px wide, "
                f"but its output_length counts {counted} "
                f"({entry_source(self.model_name)}): the CTC loss takes each image's frames "
                "from output_length, so the two must agree"
            )

    def loss(
        self,
        outputs: Any,
        targets: Targets,
        widths: torch.Tensor | Sequence[int] | None = None,
        *,
        label_smoothing: float = 0.0,
    ) -> torch.Tensor:
        """CTC loss (fp32, ``zero_infinity=True``, mean over the batch of per-length losses).

        Args:
            outputs: Logits ``T, N, C + 1``.
            targets: From `encode`.
            widths: ``N`` image widths before padding (None: every sample uses all T frames).
            label_smoothing: Must be 0: CTC has no per-class target to smooth.
        """
        if label_smoothing:
            raise ValueError(f"label_smoothing {label_smoothing}: CTC losses take no smoothing")
        log_probs = self.logits(outputs, len(targets.lengths)).float().log_softmax(-1)
        frames, batch = log_probs.shape[:2]
        lengths = self.input_lengths(widths, frames, batch)
        device = log_probs.device
        if device.type == "mps":  # PyTorch has had no MPS kernel for the CTC loss
            log_probs = log_probs.cpu()  # the gradient flows back to the MPS tensor
        loss = F.ctc_loss(
            log_probs,
            targets.indices.to(log_probs.device),
            lengths.to(log_probs.device),
            targets.lengths.to(log_probs.device),
            blank=BLANK,
            reduction="mean",
            zero_infinity=True,
        )
        return loss.to(device)

    def align_loss(
        self,
        outputs: Any,
        targets: Targets,
        centers: Sequence[Sequence[float] | None],
        widths: torch.Tensor | Sequence[int],
    ) -> torch.Tensor:
        """Cross-entropy of each label character at the frame over its centre (fp32, the mean
        over the batch's characters): where a synthetic line draws each character is known, so
        that frame is told what it reads, as a classifier is, rather than left for CTC to find.
        CTC alone first learns only the characters' frequencies, for tens of thousands of lines
        of a 1000-character charset; this term lets the frames read from the first steps
        (``train.align_weight``). The frame over a centre ``x`` of an image ``w`` px wide with
        ``L`` frames is ``floor(x * L / w)``, and nothing is said of the frames between
        centres (the blanks), which CTC places.

        Args:
            outputs: Logits ``T, N, C + 1``.
            targets: From `encode` (the characters in the order of ``centers``).
            centers: ``N`` tuples: the x of each label character's centre, px (`Batch.centers`).
            widths: ``N`` image widths before padding.

        Raises:
            ValueError: a sample without centres, or with another count than its label's.
        """
        logits = self.logits(outputs, len(targets.lengths))
        frames, batch = logits.shape[:2]
        lengths = self.input_lengths(widths, frames, batch).tolist()
        w = torch.as_tensor(widths, dtype=torch.long).tolist()
        counts = targets.lengths.tolist()
        at: list[int] = []
        for i, xs in enumerate(centers):
            if xs is None or len(xs) != counts[i]:
                raise ValueError(
                    f"sample {i} of the batch has {'no' if xs is None else len(xs)} centres for "
                    f"its {counts[i]} characters: the alignment loss needs one per character"
                )
            at += [min(lengths[i] - 1, max(0, int(x * lengths[i] / w[i]))) for x in xs]
        device = logits.device
        frame = torch.tensor(at, dtype=torch.long, device=device)
        sample = torch.repeat_interleave(
            torch.arange(batch, device=device), targets.lengths.to(device)
        )
        # the softmax of the centres' frames alone (a few hundred of the batch's T x N)
        log_probs = logits[frame, sample].float().log_softmax(-1)
        picked = log_probs.gather(1, targets.indices.to(device)[:, None])
        return -picked.mean()

    def decode(
        self,
        outputs: Any,
        widths: torch.Tensor | Sequence[int] | None = None,
        *,
        decoder: str = "greedy",
        beam_width: int = 5,
        k: int = 5,
        grammar: Grammar | None = None,
    ) -> list[Prediction]:
        """Decode logits ``T, N, C + 1``.

        ``greedy``: best class per frame, repeats collapsed, blanks dropped; ``confidence`` is the
        probability of that best path (the product of the per-frame maxima); ``top_k`` holds it
        alone. ``beam``: prefix beam search; ``confidence`` is the total probability of the best
        prefix (summed over its alignments); ``top_k`` the ``min(k, beam_width)`` best prefixes.
        ``grammar``: the same search, extending only prefixes ``grammar`` can continue and
        ending on texts it accepts (`ctc_beam_search`).
        """
        _check_decoder(decoder, self.kind)
        if decoder == "grammar" and grammar is None:
            raise ValueError("decoder 'grammar' needs a grammar (this task has none)")
        if decoder != "grammar":
            grammar = None
        symbols = [None, *self.charset] if grammar is not None else None
        batch = None if widths is None else len(widths)
        log_probs = self.readable_logits(outputs, batch).log_softmax(-1).cpu()
        frames, batch = log_probs.shape[:2]
        lengths = self.input_lengths(widths, frames, batch).tolist()
        lp = log_probs.numpy()
        preds = []
        for i, n in enumerate(lengths):
            if decoder == "greedy":
                labels, logp = ctc_greedy_decode(lp[:n, i])
                text = self.reading_of(labels)
                preds.append(Prediction(text, math.exp(logp), [(text, math.exp(logp))]))
            else:
                beams = ctc_beam_search(lp[:n, i], beam_width, grammar=grammar, symbols=symbols)
                top = self.readings_of(beams, k)
                whole = grammar is None or grammar_accepts(grammar, top[0][0])
                preds.append(Prediction(top[0][0], top[0][1], top, grammatical=whole))
        return preds


def _check_decoder(decoder: str, kind: str) -> None:
    """A known decoder for this family: classifiers decode greedily (``beam`` gives them the
    same result), the reader's ``beam`` reads its most likely text, and ``grammar``, a CTC
    search, is refused for both."""
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; valid: {', '.join(DECODERS)}")
    if decoder == "grammar" and kind != "ctc":
        raise ValueError(f"decoder 'grammar' constrains CTC decoding; {kind} models have none")


def ctc_greedy_decode(log_probs: np.ndarray, blank: int = BLANK) -> tuple[list[int], float]:
    """Best-path decoding of one sample.

    Args:
        log_probs: ``T, C`` log-probabilities.
        blank: The blank class.

    Returns:
        The class indices (repeats collapsed, blanks dropped) and the log-probability of the path.
    """
    best = log_probs.argmax(-1)
    logp = float(log_probs[np.arange(len(best)), best].sum())
    labels = []
    prev = blank
    for c in best.tolist():
        if c != blank and c != prev:
            labels.append(c)
        prev = c
    return labels, logp


def _logaddexp(a: float, b: float) -> float:
    """``log(exp(a) + exp(b))`` on Python floats (numpy scalars are slow in this inner loop)."""
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


def ctc_beam_search(
    log_probs: np.ndarray,
    beam_width: int = 5,
    blank: int = BLANK,
    prune: float = 1e-4,
    *,
    grammar: Grammar | None = None,
    symbols: Sequence[str | None] | None = None,
) -> list[tuple[tuple[int, ...], float]]:
    """Prefix beam search of one sample, optionally held to a grammar (no language model).

    Each prefix keeps the log-probabilities of its alignments ending in a blank and in a
    character, so two alignments of the same text add up. At each frame only the ``beam_width``
    most likely characters with probability >= ``prune`` are tried as extensions (and each
    prefix's own last character): on a trained model most frames then try one character or none.

    With a ``grammar``, a prefix is extended only by characters the grammar allows after it
    (the ``beam_width`` most likely of those), and the texts returned are those it accepts as
    whole; when no prefix left at the last frame is whole, the best prefixes are returned as
    they are (the caller sees a text the grammar rejects).

    Args:
        log_probs: ``T, C`` log-probabilities.
        beam_width: Prefixes kept after each frame.
        blank: The blank class.
        prune: Characters less likely than this in a frame do not start a new prefix there
            (0 keeps the top ``beam_width`` regardless).
        grammar: A `Grammar` the texts must follow (None: any text).
        symbols: With ``grammar``: the character of each class (``symbols[blank]`` unused).

    Returns:
        Up to ``beam_width`` ``(labels, log_probability)`` pairs, most likely first.
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be >= 1, got {beam_width}")
    neg_inf = -math.inf
    log_prune = math.log(prune) if prune > 0 else neg_inf
    lp = np.asarray(log_probs, dtype=np.float64)
    frames, num_classes = lp.shape
    if grammar is not None and (symbols is None or len(symbols) != num_classes):
        raise ValueError(f"a grammar needs the symbols of all {num_classes} classes")
    masked = lp.copy()
    masked[:, blank] = neg_inf
    # Candidate extensions of every frame at once, blank excluded: without a grammar the
    # beam_width most likely characters; with one, every character in the order of likelihood
    # (each prefix then takes the first beam_width it allows).
    if grammar is None:
        n_cand = min(beam_width, num_classes - 1)
        top = np.argpartition(-masked, n_cand - 1, axis=1)[:, :n_cand]
    else:
        top = np.argsort(-masked, axis=1, kind="stable")[:, : num_classes - 1]
    top_lp = np.take_along_axis(lp, top, axis=1)
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, neg_inf)}
    states: dict[tuple[int, ...], Any] = {(): grammar.start() if grammar is not None else None}
    for t in range(frames):
        row = lp[t]
        p_blank_frame = float(row[blank])
        cand = [
            (c, v)
            for c, v in zip(top[t].tolist(), top_lp[t].tolist(), strict=True)
            if v >= log_prune
        ]
        nxt: dict[tuple[int, ...], list[float]] = {}
        for prefix, (p_blank, p_char) in beams.items():
            total = _logaddexp(p_blank, p_char)
            cur = nxt.setdefault(prefix, [neg_inf, neg_inf])
            cur[0] = _logaddexp(cur[0], total + p_blank_frame)
            if prefix:
                # the last character again, not separated by a blank: same prefix
                cur[1] = _logaddexp(cur[1], p_char + float(row[prefix[-1]]))
            for c, v in _extensions(cand, prefix, states, grammar, symbols, beam_width):
                # a repeated character needs a blank in between
                value = (p_blank if prefix and c == prefix[-1] else total) + v
                ext = nxt.setdefault((*prefix, c), [neg_inf, neg_inf])
                ext[1] = _logaddexp(ext[1], value)
        scored = [(_logaddexp(*p), prefix, p) for prefix, p in nxt.items()]
        scored = sorted((x for x in scored if x[0] > neg_inf), key=lambda x: -x[0])[:beam_width]
        beams = {prefix: (p[0], p[1]) for _, prefix, p in scored}
    out = [(prefix, _logaddexp(*p)) for prefix, p in beams.items()]
    if grammar is not None:
        whole = [x for x in out if grammar.accepts(states[x[0]])]
        out = whole or out
    return out


def _extensions(
    cand: list[tuple[int, float]],
    prefix: tuple[int, ...],
    states: dict[tuple[int, ...], Any],
    grammar: Grammar | None,
    symbols: Sequence[str | None] | None,
    limit: int,
) -> list[tuple[int, float]]:
    """The characters that may extend ``prefix`` (best first, at most ``limit`` with a
    grammar); records the grammar state of each extended prefix in ``states``."""
    if grammar is None:
        return cand
    allowed = []
    state = states[prefix]
    for c, v in cand:
        after = grammar.advance(state, symbols[c])  # type: ignore[index]
        if after is not None:
            states[(*prefix, c)] = after
            allowed.append((c, v))
            if len(allowed) == limit:
                break
    return allowed


class AttentionFamily(Family):
    """The reader: logits ``N, S, num_classes + 1`` (``S = max_len + 1`` steps), class 0 the
    terminal symbol.

    Args:
        charset: The characters.
        max_len: The model's ``max_len`` (it runs ``max_len + 1`` steps).
    """

    kind = "attention"
    offset = 1
    layout = "N, S, C + 1 (S = max_len + 1 steps, class 0 the terminal symbol)"
    ndim = 3

    def __init__(self, charset: Sequence[str], max_len: int) -> None:
        super().__init__(charset)
        self.max_len = max_len
        self.longest_label = max_len
        self.steps = max_len + 1

    def check_output(self, outputs: Any, images: torch.Tensor | None = None) -> None:
        """The masks are the plots' and the ONNX export's: a model without them fails here."""
        if not (isinstance(outputs, tuple | list) and len(outputs) == 2):
            raise ValueError(
                f"model {self.model_name!r} returned {type(outputs).__name__}: an attention "
                "model returns (logits N, S, C + 1; masks N, S, H, W), as "
                f"models.reader.ReaderOutput ({entry_source(self.model_name)}; README.md, "
                "'Adding an architecture')"
            )

    def encode(self, texts: Sequence[str]) -> Targets:
        """Labels -> indices ``N, max_len + 1``: characters, the terminal symbol, then
        ``IGNORE_INDEX``; lengths include the terminal symbol."""
        indices = torch.full((len(texts), self.steps), IGNORE_INDEX, dtype=torch.long)
        lengths = []
        for row, text in enumerate(texts):
            if len(text) > self.max_len:
                raise LabelError(
                    text, reason=f"{len(text)} characters, the reader reads at most {self.max_len}"
                )
            ids = [*self.label_indices(text), EOS]
            indices[row, : len(ids)] = torch.tensor(ids)
            lengths.append(len(ids))
        return Targets(indices, torch.tensor(lengths, dtype=torch.long))

    def loss(
        self,
        outputs: Any,
        targets: Targets,
        widths: torch.Tensor | Sequence[int] | None = None,
        *,
        label_smoothing: float = 0.0,
    ) -> torch.Tensor:
        """Mean cross-entropy (fp32) over the steps up to and including the terminal symbol,
        ``label_smoothing`` as in `torch.nn.functional.cross_entropy`."""
        logits = self.logits(outputs, len(targets.indices)).float()
        if logits.shape[1] != targets.indices.shape[1]:
            raise ValueError(
                f"reader gave {logits.shape[1]} steps, targets have {targets.indices.shape[1]}: "
                "family and model disagree on max_len"
            )
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            targets.indices.to(logits.device).reshape(-1),
            ignore_index=IGNORE_INDEX,
            label_smoothing=label_smoothing,
        )

    def decode(
        self,
        outputs: Any,
        widths: torch.Tensor | Sequence[int] | None = None,
        *,
        decoder: str = "greedy",
        beam_width: int = 5,
        k: int = 5,
        grammar: Grammar | None = None,
    ) -> list[Prediction]:
        """Decode logits ``N, S, C + 1``.

        ``greedy``: best class per step until the terminal symbol, which ends the text at the
        last step if it did not come before (a reading has at most ``max_len`` characters, as
        the labels it learned); ``confidence`` is the product of the chosen probabilities up to
        and including it;
        ``top_k`` holds it alone, as greedy CTC's does. ``beam``: the reader does not feed
        its own characters back, so the steps are independent given the image and the ``k``
        most likely texts are exact (`attention_nbest`): ``text`` is the most likely,
        ``confidence`` its probability, ``top_k`` the ``k`` in order of probability (an exact tie
        keeps the greedy reading first). The greedy reading need not be the most likely: its
        first character can beat the terminal symbol at the first step while ``""`` is still
        more likely than that character followed by anything.
        """
        _check_decoder(decoder, self.kind)
        log_probs = self.readable_logits(outputs).log_softmax(-1).cpu().numpy()
        preds = []
        for lp in log_probs:
            greedy, greedy_logp = attention_greedy_decode(lp)
            if decoder == "greedy":
                text, p = self.reading_of(greedy), math.exp(greedy_logp)
                preds.append(Prediction(text, p, [(text, p)]))
                continue
            # in an exact tie the greedy reading comes first: beam and greedy agree where they can
            nbest = sorted(attention_nbest(lp, k), key=lambda x: (-x[1], x[0] != tuple(greedy)))
            top = self.readings_of(nbest, k)
            preds.append(Prediction(top[0][0], top[0][1], top))
        return preds


def attention_greedy_decode(log_probs: np.ndarray, eos: int = EOS) -> tuple[list[int], float]:
    """Best class per step until the terminal symbol, for one sample; the last step's is the
    terminal symbol (a reader of ``max_len`` runs ``max_len + 1`` steps, and was never taught
    a longer text: it read one more character when the terminal did not come).

    Args:
        log_probs: ``S, C`` log-probabilities.
        eos: The terminal symbol.

    Returns:
        At most ``S - 1`` character classes and the log-probability of the chosen steps
        (terminal included).
    """
    labels: list[int] = []
    logp = 0.0
    last = len(log_probs) - 1
    for step, row in enumerate(log_probs):
        c = eos if step == last else int(row.argmax())
        logp += float(row[c])
        if c == eos:
            break
        labels.append(c)
    return labels, logp


def attention_nbest(
    log_probs: np.ndarray, k: int = 5, eos: int = EOS
) -> list[tuple[tuple[int, ...], float]]:
    """The ``k`` most likely texts of one sample whose steps are independent.

    A text of ``L < S`` characters has probability ``prod_{s<L} p_s(c_s) * p_L(eos)``; none has
    ``S`` (no terminal symbol: the reader's texts have at most ``max_len = S - 1``, as greedy's).
    Keeping the ``k`` best prefixes at each step is exact, because the best texts extend the
    best prefixes.

    Args:
        log_probs: ``S, C`` log-probabilities.
        k: How many texts.
        eos: The terminal symbol.

    Returns:
        Up to ``k`` ``(labels, log_probability)`` pairs, most likely first.
    """
    k = max(1, k)
    chars = np.array([c for c in range(log_probs.shape[1]) if c != eos], dtype=np.int64)
    n_cand = min(k, len(chars))
    finished: list[tuple[tuple[int, ...], float]] = []
    alive: list[tuple[tuple[int, ...], float]] = [((), 0.0)]
    rows = np.asarray(log_probs, dtype=np.float64)
    for step, row in enumerate(rows):
        finished += [(labels, logp + float(row[eos])) for labels, logp in alive]
        if step == len(rows) - 1:
            break  # the last step ends every text
        top = chars[np.argpartition(-row[chars], n_cand - 1)[:n_cand]].tolist()
        grown = [((*labels, c), logp + float(row[c])) for labels, logp in alive for c in top]
        alive = sorted(grown, key=lambda x: -x[1])[:k]
    return sorted(finished, key=lambda x: -x[1])[:k]


def make_family(
    model_name: str, charset: Sequence[str], model_kwargs: Mapping[str, Any] | None = None
) -> Family:
    """The family of model ``model_name`` over ``charset``.

    Args:
        model_name: Registered model name.
        charset: The task's characters (the lines of ``results/charsets/{task}.txt``).
        model_kwargs: The model's keyword arguments (CTC frame counts and the reader's
            ``max_len`` depend on them); defaults when None.
    """
    kind = family_of(model_name)
    kwargs = dict(model_kwargs or {})
    family: Family
    if kind == "classification":
        family = ClassificationFamily(charset)
    elif kind == "ctc":
        family = CTCFamily(charset, model_name, kwargs)
    elif kind == "attention":
        family = AttentionFamily(
            charset, kwargs.get("max_len", get_entry(model_name).kwargs["max_len"])
        )
    else:
        raise ValueError(f"model {model_name!r} has unknown family {kind!r}")
    family.model_name = model_name
    return family
