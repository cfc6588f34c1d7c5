"""Recognition metrics: accuracy, top-k, character error rate, normalised edit distance, the value
accuracy of arithmetic readings, and per-group (per-font) breakdowns.

Every function takes plain strings (already NFKC-normalised, as labels and decoded readings are)
and returns plain floats, so reports and tests use them without a model. Edit distances come from
``rapidfuzz`` (unit-cost Levenshtein).

Definitions (``d`` is the edit distance between a reading and its reference):

- ``seq_acc``: share of readings exactly equal to their reference (whole-word accuracy).
- ``cer``: ``sum(d) / sum(len(reference))`` over the whole split (a corpus-level rate, so long
  lines weigh more; it can exceed 1 when readings are longer than references).
- ``ned``: mean over samples of ``d / max(len(reading), len(reference))`` (0 when both are empty),
  the normalised edit distance of the ICDAR 2019 reading challenges; always in [0, 1].
- ``top1`` / ``top5``: share of samples whose reference is among the first 1 / 5 candidates.
- ``value_acc``: share of expression readings that parse (`synth.text.evaluate`) and
  evaluate to the reference's value; an unparsable reading counts as wrong.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from rapidfuzz.distance import Levenshtein

from synth.text import Value, expression_value


def _check_lengths(a: Sequence[Any], b: Sequence[Any], what: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{what}: {len(a)} readings but {len(b)} references")


def edit_distance(reading: str, reference: str) -> int:
    """Unit-cost Levenshtein distance between two strings."""
    return Levenshtein.distance(reading, reference)


def sequence_accuracy(readings: Sequence[str], references: Sequence[str]) -> float:
    """Share of readings exactly equal to their reference (NaN for no samples)."""
    _check_lengths(readings, references, "sequence_accuracy")
    if not references:
        return math.nan
    return sum(r == t for r, t in zip(readings, references, strict=True)) / len(references)


def character_error_rate(readings: Sequence[str], references: Sequence[str]) -> float:
    """Total edit distance over total reference length (NaN for no samples).

    Raises:
        ValueError: The references are all empty (the rate is undefined).
    """
    _check_lengths(readings, references, "character_error_rate")
    if not references:
        return math.nan
    total = sum(len(t) for t in references)
    if total == 0:
        raise ValueError("character_error_rate: every reference is empty")
    errors = sum(edit_distance(r, t) for r, t in zip(readings, references, strict=True))
    return errors / total


def normalized_edit_distance(readings: Sequence[str], references: Sequence[str]) -> float:
    """Mean of ``d / max(len(reading), len(reference))`` over samples (NaN for no samples)."""
    _check_lengths(readings, references, "normalized_edit_distance")
    if not references:
        return math.nan
    return sum(
        Levenshtein.normalized_distance(r, t) for r, t in zip(readings, references, strict=True)
    ) / len(references)


def topk_accuracy(candidates: Sequence[Sequence[str]], references: Sequence[str], k: int) -> float:
    """Share of samples whose reference is among their first ``k`` candidates.

    Args:
        candidates: Per sample, the model's candidates, best first (at least one each).
        references: The true labels.
        k: How many candidates count (``k >= 1``).
    """
    if k < 1:
        raise ValueError(f"topk_accuracy: k must be >= 1, got {k}")
    _check_lengths(candidates, references, "topk_accuracy")
    if not references:
        return math.nan
    return sum(t in list(c)[:k] for c, t in zip(candidates, references, strict=True)) / len(
        references
    )


def value_accuracy(readings: Sequence[str | None], values: Sequence[Value]) -> float:
    """Share of expression readings that parse and evaluate to the reference value.

    Args:
        readings: Recognised expressions (``"3+4*2"``); None for one given no value (a
            grammar decoder's fallback prefix, which its grammar rejects).
        values: The labels' values (``11``).
    """
    _check_lengths(readings, values, "value_accuracy")
    if not values:
        return math.nan
    hits = 0
    for reading, value in zip(readings, values, strict=True):
        got = expression_value(reading) if reading is not None else None
        hits += got is not None and got == value
    return hits / len(values)


# The figures `text_metrics` gives: always, with candidates (classification), with values
# (expressions); and those where less is better.
TEXT_METRICS = ("seq_acc", "cer", "ned")
TOPK_METRICS = ("top1", "top5")
VALUE_METRICS = ("value_acc",)
LOWER_IS_BETTER = ("cer", "ned")
# The shares of samples read right (each sample a hit or a miss), which `wilson_interval` bounds.
SHARE_METRICS = ("seq_acc", *TOPK_METRICS, *VALUE_METRICS)


def wilson_interval(share: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a share of ``n`` samples (95% for the default ``z``): the
    true rates that the split's ``n`` images leave plausible. It says nothing of what another
    choice of fonts or another training run (seed) would give, which often moves a figure more.

    Raises:
        ValueError: ``n`` is below 1 or ``share`` is outside [0, 1].
    """
    if n < 1 or not 0.0 <= share <= 1.0:
        raise ValueError(f"wilson_interval: a share in [0, 1] of n >= 1 samples, not {share}/{n}")
    z2 = z * z
    centre = (share + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(share * (1 - share) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def share_interval(share: Any, n: Any) -> tuple[float, float] | None:
    """`wilson_interval` of a table's or plot's cell, None for a cell without a figure or
    images (None, NaN, n of 0)."""
    try:
        return wilson_interval(float(share), int(n))
    except (TypeError, ValueError):
        return None


def metric_names(with_topk: bool, with_values: bool) -> list[str]:
    """The figures `text_metrics` gives (and an evaluation's ``metrics.json`` holds) with
    candidates (``with_topk``: a classifier) and reference values (``with_values``: the expr
    task), ``n`` left out."""
    return [
        *TEXT_METRICS,
        *(TOPK_METRICS if with_topk else ()),
        *(VALUE_METRICS if with_values else ()),
    ]


def text_metrics(
    readings: Sequence[str],
    references: Sequence[str],
    candidates: Sequence[Sequence[str]] | None = None,
    values: Sequence[Value] | None = None,
    value_readings: Sequence[str | None] | None = None,
) -> dict[str, float]:
    """All metrics that apply to one set of readings.

    Args:
        readings: Best readings.
        references: True labels.
        candidates: Top-k candidates per sample (classification): adds ``top1`` and ``top5``.
        values: Reference values (expressions): adds ``value_acc``.
        value_readings: The readings ``value_acc`` evaluates (`value_accuracy`: None for
            one given no value); ``readings`` when None.

    Returns:
        ``{"n", "seq_acc", "cer", "ned"[, "top1", "top5"][, "value_acc"]}``; ``n`` is an int.
    """
    out: dict[str, Any] = {"n": len(references)}
    out["seq_acc"] = sequence_accuracy(readings, references)
    out["cer"] = character_error_rate(readings, references) if references else math.nan
    out["ned"] = normalized_edit_distance(readings, references)
    if candidates is not None:
        out["top1"] = topk_accuracy(candidates, references, 1)
        out["top5"] = topk_accuracy(candidates, references, 5)
    if values is not None:
        out["value_acc"] = value_accuracy(
            readings if value_readings is None else value_readings, values
        )
    return out


def grouped_metrics(
    groups: Iterable[str],
    compute: Callable[[list[int]], Mapping[str, float]],
) -> dict[str, dict[str, float]]:
    """Metrics per group (e.g. per font), groups sorted by name.

    Args:
        groups: The group of each sample, in sample order.
        compute: Given the indices of a group's samples, its metrics.
    """
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    return {g: dict(compute(idx)) for g, idx in sorted(members.items())}


def confused_pairs(
    readings: Sequence[str], references: Sequence[str], top: int = 20
) -> list[tuple[str, str, int]]:
    """The most frequent (reference, reading) pairs among wrong readings, most frequent first.

    Ties are broken by the pair itself, so the order is deterministic.
    """
    _check_lengths(readings, references, "confused_pairs")
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for r, t in zip(readings, references, strict=True):
        if r != t:
            counts[(t, r)] += 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(t, r, n) for (t, r), n in ranked[:top]]
