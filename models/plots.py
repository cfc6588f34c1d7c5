"""Report plots (matplotlib, Agg backend, PNG; the reader's attention as animated GIFs).

Every plot is drawn from the structured files the workflow writes (``history.csv``,
``predictions.csv``, ``metrics.json``, the test shards), never from logs. CJK text is drawn with
a CJK font found on the system (`cjk_font`), so hanzi labels never show as boxes.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import matplotlib

from synth.atomic import atomic_write

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import font_manager
from matplotlib.lines import Line2D
from matplotlib.ticker import LogFormatter, MaxNLocator
from PIL import Image

from models import metrics
from models.evaluate import iter_samples, read_metrics, read_predictions
from synth.specs import TEST_SPLITS

log = logging.getLogger(__name__)

# Simplified-Chinese faces first: a JP/KR default face of a collection draws some hanzi differently.
CJK_FONT_FILES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)
OK_COLOR = "#1a7f37"
ERROR_COLOR = "#cf222e"
DPI = 110


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The family name of a CJK font registered with matplotlib, or None (with a warning).

    Tries `CJK_FONT_FILES`, then any font matplotlib already knows whose name says CJK SC.
    """
    for path in CJK_FONT_FILES:
        if os.path.exists(path):
            font_manager.fontManager.addfont(path)
            return font_manager.FontProperties(fname=path).get_name()
    for entry in font_manager.fontManager.ttflist:
        if "CJK SC" in entry.name or "WenQuanYi" in entry.name:
            return entry.name
    log.warning("no CJK font found: hanzi in plots will show as boxes")
    return None


@contextmanager
def _style() -> Iterator[None]:
    family = [f for f in (cjk_font(), "DejaVu Sans") if f]
    with plt.rc_context(
        {
            "font.family": "sans-serif",
            "font.sans-serif": family,
            "axes.unicode_minus": False,
            "figure.dpi": DPI,
            "axes.grid": True,
            "grid.alpha": 0.3,
        }
    ):
        yield


def _save(fig: plt.Figure, path: str | os.PathLike) -> None:
    """Save a figure as PNG atomically and close it."""
    try:
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)


def _empty(ax: plt.Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


# ----------------------------------------------------------------------------- training curves


class _PlainLogFormatter(LogFormatter):
    """A log axis's tick labels as plain numbers (0.3, 13.5, 0.01), not 3e-01 or 1.35x10^1: the
    ticks `LogFormatter` labels (minor ones too when the axis spans little more than a decade,
    as a short run's losses do), each to 3 significant digits, or as many more as tell apart
    ticks a tenth of the axis apart (2.288 and 2.286 on an axis from 2.281 to 2.292)."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        if not super().__call__(x, pos):
            return ""
        low, high = self.axis.get_view_interval()
        digits = 3
        if x > 0 and high > low:
            digits = max(digits, math.ceil(math.log10(x / ((high - low) / 10))) + 1)
        return f"{x:.{digits}g}"


def read_history(path: str | os.PathLike) -> pd.DataFrame:
    """A training's ``history.csv``, its columns of numbers read as numbers even without rows
    (a header alone reads as text columns otherwise).

    Raises:
        ValueError: An empty file, one that is not CSV, or one without a ``step`` column,
            naming it.
    """
    try:
        history = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a training history (history.csv): {e}") from None
    if "step" not in history.columns:
        raise ValueError(f"{path}: no 'step' column (columns: {list(history.columns)})")
    if history.empty:
        history = history.astype(float)
    return history


def _plain_log_scale(ax: plt.Axes) -> None:
    """A log y axis labelled in plain numbers (`_PlainLogFormatter`), its minor ticks too."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_PlainLogFormatter())
    ax.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False))


def plot_curves(history_csv: str | os.PathLike, out: str | os.PathLike, title: str = "") -> None:
    """Training and validation curves from ``history.csv``.

    The x axis is the ``step`` column; columns with ``loss`` in their name share the left panel
    (log scale), score columns (``*acc*``, ``*cer*``, ``*ned*``, ``top1``/``top5``) the right
    one; the learning rate, gradient norm, throughput and times are left out. Validation
    columns are only filled on validation rows: each column is drawn over its own rows.
    """
    history = read_history(history_csv)
    numeric = [c for c in history.columns if pd.api.types.is_numeric_dtype(history[c])]
    losses = [c for c in numeric if "loss" in c]
    scores = [
        c
        for c in numeric
        if c not in losses and any(m in c for m in ("acc", "cer", "ned", "top1", "top5"))
    ]
    with _style():
        # one step axis for both panels (the scores start at the first validation)
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharex=True)
        for ax, cols, ylabel in ((axes[0], losses, "loss"), (axes[1], scores, "score")):
            drawn = False
            for col in cols:
                part = history[["step", col]].dropna()
                if part.empty:
                    continue
                marker = "o" if len(part) < 30 else None
                ax.plot(part["step"], part[col], label=col, marker=marker, markersize=3)
                drawn = True
            if not drawn:
                _empty(ax, f"no {ylabel} columns")
                continue
            # every loss value drawn positive (a validation column's empty cells on the
            # training rows are not values: NaN > 0 is False)
            if ylabel == "loss" and all((history[c].dropna() > 0).all() for c in cols):
                _plain_log_scale(ax)
            if ylabel == "score":
                # shares and rates: none below 0; all 0 (early validation) on 0..1, not 0..0.055
                top = max(history[c].max() for c in cols if history[c].notna().any())
                ax.set_ylim(0, None if top > 0 else 1)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps: no 3.5 on short runs
            ax.set_xlabel("step")
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=8)
        fig.suptitle(title or Path(history_csv).parent.name)
        _save(fig, out)


# ------------------------------------------------------------------ training curves compared

# The validation columns of ``history.csv`` (models.train.HISTORY_COLUMNS), compared across
# experiments: the loss on the left (log scale), the score on the right.
VALIDATION_COLUMNS = ("val_loss", "val_acc")
# An experiment's line: its colour, and past ten experiments its dash too, the same in both of
# its panels.
COMPARE_COLORS = tuple(plt.get_cmap("tab10").colors)
COMPARE_DASHES = ("-", "--", ":", "-.")


def validation_table(histories: Mapping[str, tuple[str, str | os.PathLike]]) -> pd.DataFrame:
    """The validation rows of every experiment's ``history.csv``.

    Args:
        histories: Experiment -> (its task, its ``history.csv``).

    Returns:
        One row per experiment and step at which it was validated: ``experiment``, ``task``,
        ``step``, ``val_loss``, ``val_acc`` (NaN where a row has no value, a column is missing
        or a value is not finite), experiments in panel order (`_panel_order`: task by task,
        each task's by name). An experiment never validated has no rows.

    Raises:
        ValueError: A history without a ``step`` column, or with a validation column that is
            not numbers, naming the file and the column.
    """
    columns = ["experiment", "task", "step", *VALIDATION_COLUMNS]
    parts = []
    for experiment in sorted(histories, key=lambda e: _panel_order(histories[e][0], e)):
        task, path = histories[experiment]
        history = read_history(path)
        for col in VALIDATION_COLUMNS:
            if col not in history.columns:
                history[col] = math.nan
            elif not pd.api.types.is_numeric_dtype(history[col]):
                raise ValueError(f"{path}: column {col!r} holds values that are not numbers")
        rows = history[["step", *VALIDATION_COLUMNS]].astype(float)
        rows = rows.where(np.isfinite(rows))  # an infinite loss is no point on the curve
        rows = rows[rows[list(VALIDATION_COLUMNS)].notna().any(axis=1)]
        if not rows.empty:
            parts.append(rows.assign(experiment=experiment, task=task)[columns])
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True).astype({"step": int})


def _missing_note(drawn: Sequence[str]) -> str:
    """What a legend entry says of an experiment drawn in only some panels, or in none."""
    if not drawn:
        return " (no validation rows)"
    missing = [c for c in VALIDATION_COLUMNS if c not in drawn]
    return f" (no {', '.join(missing)})" if missing else ""


def plot_compare_curves(
    histories: Mapping[str, tuple[str, str | os.PathLike]],
    out: str | os.PathLike,
    title: str = "Validation curves, every experiment",
) -> pd.DataFrame:
    """The validation curves of every experiment of a task overlaid, a row of panels per task:
    ``val_loss`` left (log scale when every value is positive), ``val_acc`` right, against
    the step.

    Tasks go by name (as `plot_accuracy_by_experiment`'s panels), each task's experiments by
    name; each experiment keeps its colour in both panels and is named in its row's legend,
    right of the panels. Each line is drawn over its own validation steps, so runs of
    different lengths share an axis. An experiment without validation rows (or without one of
    the columns) has no line there, and its legend entry says so; a task with one experiment
    is drawn too.

    Args:
        histories: Experiment -> (its task, its ``history.csv``).
        out: The PNG.
        title: Figure title.

    Returns:
        The points drawn (`validation_table`).
    """
    table = validation_table(histories)
    order = sorted(histories, key=lambda e: _panel_order(histories[e][0], e))
    tasks = list(dict.fromkeys(histories[e][0] for e in order))
    with _style():
        if not tasks:
            fig, ax = plt.subplots(figsize=(6, 2))
            _empty(ax, "no experiments")
            _save(fig, out)
            return table
        fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 3.4 * len(tasks)), squeeze=False)
        for (loss_ax, score_ax), task in zip(axes, tasks, strict=True):
            experiments = [e for e in order if histories[e][0] == task]
            drawn: dict[str, list[str]] = {e: [] for e in experiments}
            handles = []
            for experiment in experiments:
                i = order.index(experiment)
                style = {
                    "color": COMPARE_COLORS[i % len(COMPARE_COLORS)],
                    "linestyle": COMPARE_DASHES[i // len(COMPARE_COLORS) % len(COMPARE_DASHES)],
                }
                rows = table[table["experiment"] == experiment]
                style["marker"] = "o" if len(rows) < 30 else None  # a point per validation
                for ax, col in ((loss_ax, "val_loss"), (score_ax, "val_acc")):
                    part = rows[["step", col]].dropna()
                    if part.empty:
                        continue
                    # unclipped, over the frame: a score of 0 (early validations) is drawn on
                    # the bottom edge, not hidden under it
                    ax.plot(
                        part["step"],
                        part[col],
                        label=experiment,
                        markersize=3,
                        clip_on=col != "val_acc",
                        zorder=3,
                        **style,
                    )
                    drawn[experiment].append(col)
                handles.append(Line2D([], [], markersize=3, **style))
                if not drawn[experiment]:
                    log.warning(
                        "%s: no validation rows in %s", experiment, histories[experiment][1]
                    )
            for ax, col in ((loss_ax, "val_loss"), (score_ax, "val_acc")):
                values = [ln.get_ydata() for ln in ax.lines]
                if not values:
                    _empty(ax, f"{task}: no {col} values")
                    continue
                if col == "val_loss" and all((np.asarray(v) > 0).all() for v in values):
                    _plain_log_scale(ax)
                if col == "val_acc":
                    top = max(np.max(v) for v in values)
                    ax.set_ylim(0, None if top > 0 else 1)  # all 0 on 0..1, not 0..0.055
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_xlabel("step")
                ax.set_ylabel(col)
                ax.set_title(f"{task}: {col}", fontsize=10)
            score_ax.legend(
                handles,
                [e + _missing_note(drawn[e]) for e in experiments],
                loc="upper left",
                bbox_to_anchor=(1.02, 1),
                borderaxespad=0,
                fontsize=8,
                title=task,
                title_fontsize=8,
            )
        fig.suptitle(title)
        fig.tight_layout()
        _save(fig, out)
    return table


# ----------------------------------------------------------------------------- prediction grid


def plot_prediction_grid(
    shards: Sequence[str | os.PathLike],
    predictions_csv: str | os.PathLike,
    out: str | os.PathLike,
    n: int = 32,
    title: str = "",
    columns: int | None = None,
) -> None:
    """A grid of the first ``n`` test samples with their label and reading; errors in red.

    Args:
        shards: The split's shards (the same order evaluation read them in).
        predictions_csv: The split's ``predictions.csv`` (ours or Tesseract's).
        out: The PNG.
        n: Samples shown.
        title: Figure title.
        columns: Grid columns (default: 4 for wide images, 8 for square ones).
    """
    rows = read_predictions(predictions_csv)[:n]
    samples = list(iter_samples(shards, limit=len(rows)))
    for r, s in zip(rows, samples, strict=False):
        if r["key"] != s.key:
            raise ValueError(
                f"{predictions_csv} row {r['index']} is sample {r['key']!r} but the shards "
                f"give {s.key!r}: predictions and shards do not match"
            )
    with _style():
        if not samples:
            fig, ax = plt.subplots(figsize=(6, 2))
            _empty(ax, "no predictions")
            _save(fig, out)
            return
        # Each cell: a typical image (the median's shape; another is drawn smaller) at the
        # column's width, within 1:20 and 2:1, and the two lines of its title above it.
        aspect = float(np.median([s.image.height / s.image.width for s in samples]))
        aspect = min(max(aspect, 0.05), 2.0)
        wide = aspect < 1 / 1.5
        cols = columns or (4 if wide else 8)
        nrows = math.ceil(len(samples) / cols)
        width = 3.0 if wide else 1.5
        cell = (width, width * aspect + 0.6)
        # constrained: it spaces the rows after the images take their aspect, titles and the
        # suptitle included; tight_layout spaced them before, and drew a row's titles over the
        # images of the row above.
        fig, axes = plt.subplots(
            nrows,
            cols,
            figsize=(cell[0] * cols, cell[1] * nrows + 0.35),
            squeeze=False,
            layout="constrained",
        )
        errors = 0
        for ax, row, sample in zip(axes.flat, rows, samples, strict=False):
            ax.imshow(np.asarray(sample.image), cmap="gray", vmin=0, vmax=255)
            ok = row["reading"] == row["label"]
            errors += not ok
            ax.set_title(
                f"{row['label']}\n→ {row['reading'] or '∅'}",
                color=OK_COLOR if ok else ERROR_COLOR,
                fontsize=9,
            )
            for spine in ax.spines.values():
                spine.set_edgecolor(OK_COLOR if ok else ERROR_COLOR)
                spine.set_linewidth(0 if ok else 2)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
        for ax in list(axes.flat)[len(samples) :]:
            ax.set_axis_off()
        fig.suptitle(f"{title}  ({errors} of {len(samples)} wrong, in red)".strip())
        _save(fig, out)


# ----------------------------------------------------------------------------- confusions


def plot_confusions(
    predictions_csvs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    top: int = 20,
    title: str = "",
) -> list[tuple[str, str, int]]:
    """The most confused (true, read) character pairs over the given splits, as bars.

    Returns:
        The pairs drawn, ``(true, read, count)``, most frequent first.
    """
    readings: list[str] = []
    references: list[str] = []
    for path in predictions_csvs:
        for row in read_predictions(path):
            readings.append(row["reading"])
            references.append(row["label"])
    pairs = metrics.confused_pairs(readings, references, top=top)
    with _style():
        fig, ax = plt.subplots(figsize=(6, 0.32 * max(len(pairs), 4) + 1.2))
        if not pairs:
            _empty(ax, "no errors")
        else:
            labels = [f"{t} → {r or '∅'}" for t, r, _ in pairs]
            counts = [c for _, _, c in pairs]
            y = np.arange(len(pairs))
            ax.barh(y, counts, color=ERROR_COLOR)
            ax.set_yticks(y, labels, fontsize=11)
            ax.invert_yaxis()
            ax.set_xlabel("count (true → read)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.5 ticks
        ax.set_title(title or "most confused pairs")
        fig.tight_layout()
        _save(fig, out)
    return pairs


# ----------------------------------------------------------------------------- accuracy by font


def _headline(record: Mapping[str, Any]) -> tuple[str, float | None]:
    """The metric a record is compared on: top-1 for classification, sequence accuracy else."""
    if record.get("top1") is not None:
        return "top1", record["top1"]
    return "seq_acc", record.get("seq_acc")


def _panel_order(task: str, experiment: str) -> tuple:
    """Panels by task, each task's models (by name) and then Tesseract on the same images."""
    return (task, experiment == "tesseract", experiment)


def _share_interval(value: Any, n: Any) -> tuple[float, float]:
    """The 95% Wilson interval of a per-font share, NaN for a cell without a figure or samples."""
    return metrics.share_interval(value, n) or (math.nan, math.nan)


def font_accuracy_table(metrics_files: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One row per (experiment, task, split, font): ``n``, the headline metric and its 95%
    Wilson interval (``low``, ``high``: a font's figure rests on its own few samples, so two
    fonts' bars can differ by chance alone), in the panels' order (`_panel_order`), files in the
    order given within a panel."""
    rows = []
    for path in metrics_files:
        record = read_metrics(path)
        for font, scores in (record.get("per_font") or {}).items():
            name, value = _headline(scores)
            low, high = _share_interval(value, scores.get("n"))
            rows.append(
                {
                    "experiment": record["experiment"],
                    "task": record["task"],
                    "split": record["split"],
                    "font": font,
                    "n": scores.get("n"),
                    "metric": name,
                    "value": value,
                    "low": low,
                    "high": high,
                }
            )
    rows.sort(key=lambda r: _panel_order(r["task"], r["experiment"]))  # stable: files' order
    return pd.DataFrame(
        rows, columns=["experiment", "task", "split", "font", "n", "metric", "value", "low", "high"]
    )


OWN_COLOR = "gray"  # the bars of own_tests' splits


def _panel_column(heights: Sequence[float]) -> tuple[plt.Figure, np.ndarray]:
    """A figure 9 inches wide of one column of panels, panel ``i`` ``heights[i]`` inches tall
    (a panel per experiment or task, its height by its bars), under ``HEAD_IN`` inches for the
    title and legend (`_title_and_legend`); returns it and its axes."""
    fig, axes = plt.subplots(
        len(heights),
        1,
        figsize=(9, sum(heights) + HEAD_IN),
        squeeze=False,
        gridspec_kw={"height_ratios": list(heights)},
    )
    return fig, axes[:, 0]


def _share_bars(
    ax: plt.Axes,
    y: np.ndarray,
    values: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    colors: Sequence[str],
    height: float | np.ndarray = 0.8,
) -> None:
    """Horizontal bars of shares at ``y``, each with its interval (``low``, ``high``) as a
    whisker, on a 0-1 axis with room right of a bar at 1 for its label. A share or bound that
    is NaN (no figure, no interval) gets no bar or no whisker."""
    # Clipped at 0: at a share of 0 or 1 rounding can put the bound a hair past the figure.
    xerr = np.clip(np.nan_to_num(np.stack([values - low, high - values]), nan=0.0), 0, None)
    ax.barh(
        y,
        np.nan_to_num(values),
        height=height,
        color=list(colors),
        xerr=xerr,
        error_kw={"ecolor": "#444444", "elinewidth": 0.8, "capsize": 2},
    )
    ax.set_xlim(0, 1.25)  # room for the labels right of a bar at 1
    ax.set_xticks(np.linspace(0, 1, 6))  # a share: no tick past 1


def _split_colors(splits: Iterable[str]) -> dict[str, str]:
    """The per-font and per-experiment plots' legend, name to colour: the two synthetic test
    splits, and own test sets (drawn grey) when ``splits`` holds one."""
    colors = {"test_seen": "#0969da", "test_heldout": "#bf8700"}
    if not set(splits) <= set(colors):
        colors["own test sets"] = OWN_COLOR
    return colors


# What the legend says of each split: the fonts it was drawn with.
SPLIT_LEGEND = {
    "test_seen": "test_seen (training fonts)",
    "test_heldout": "test_heldout (fonts training never saw)",
}
HEAD_IN = 0.45  # inches above the panels for the figure's title and its legend


def _compared(what: str, experiments: Iterable[str]) -> str:
    """A comparison plot's title: ``what``, and that Tesseract read the same images when one of
    its panels or bars is Tesseract's (``tesseract.enabled: false`` draws none)."""
    return f"{what}, Tesseract on the same images" if "tesseract" in set(experiments) else what


def _title_and_legend(fig: plt.Figure, title: str, colors: Mapping[str, str]) -> None:
    """Lay out a column of panels (`_panel_column`) under the figure's title and a legend of
    its splits' colours (`SPLIT_LEGEND`), in a band of their own above the panels: a legend in
    the figure's corner was drawn over the first panel's frame and its right-hand labels."""
    height = fig.get_figheight()
    # first: tight_layout makes room for a suptitle it finds, which HEAD_IN holds already
    fig.tight_layout(rect=(0, 0, 1, 1 - HEAD_IN / height))
    fig.suptitle(title, fontsize=11, y=1 - 0.04 / height, va="top")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
    fig.legend(
        handles,
        [SPLIT_LEGEND.get(s, s) for s in colors],
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - 0.28 / height),
        ncol=len(colors),
        fontsize=8,
        frameon=False,
    )


def _bar_label(value: float, n: Any, y: float, high: float = math.nan) -> tuple[float, float, str]:
    """Where a per-font bar's label goes and what it says: the figure and its sample count,
    right of the bar's interval (``high``, when it has one), or "no figure" for a font without
    one (drawn as no bar, not as a bar at 0)."""
    if not np.isfinite(value):
        return 0.01, y, f"no figure (n={n})"
    end = max(value, high) if np.isfinite(high) else value
    return end + 0.01, y, f"{value:.3f} (n={n})"  # 3 places: 0.985 and 0.994 apart


def _font_tick(font: str, split: str) -> str:
    """A per-font row's label: the font, and the split unless it is test_seen (a bar at 0 has
    no colour to tell the held-out fonts by)."""
    if split == "test_seen":
        return font
    return f"{font} [{'held out' if split == 'test_heldout' else split}]"


def plot_accuracy_by_font(
    metrics_files: Sequence[str | os.PathLike], out: str | os.PathLike
) -> pd.DataFrame:
    """Accuracy per font (top-1 for hanzi, sequence accuracy otherwise), one panel per
    experiment and task, bars coloured by split (held-out fonts are only in ``test_heldout``),
    each with its 95% Wilson interval drawn as an error bar. Panels go task by task,
    Tesseract's right after the models it is compared with.

    Returns:
        The table drawn (`font_accuracy_table`).
    """
    table = font_accuracy_table(metrics_files)
    with _style():
        if table.empty:
            fig, ax = plt.subplots(figsize=(6, 2))
            _empty(ax, "no per-font metrics")
            _save(fig, out)
            return table
        groups = sorted(
            table.groupby(["experiment", "task"], sort=False),
            key=lambda g: _panel_order(g[0][1], g[0][0]),
        )
        # Horizontal bars, a row per font and split: readable with 80 fonts in a panel too.
        fig, axes = _panel_column([0.8 + 0.2 * len(part) for _, part in groups])
        colors = _split_colors(table["split"])
        for ax, ((experiment, task), part) in zip(axes, groups, strict=True):
            part = part.sort_values(["split", "font"], ascending=[False, True])
            labels = [_font_tick(f, s) for f, s in zip(part["font"], part["split"], strict=True)]
            values = part["value"].astype(float).to_numpy()  # NaN: no figure, no bar
            low = part["low"].astype(float).to_numpy()
            high = part["high"].astype(float).to_numpy()
            y = np.arange(len(part))
            _share_bars(ax, y, values, low, high, [colors.get(s, OWN_COLOR) for s in part["split"]])
            ax.set_yticks(y, labels, fontsize=7)
            ax.set_ylim(len(part) - 0.5, -0.5)  # first font on top, no margins
            ax.set_xlabel(part["metric"].iloc[0])
            ax.set_title(f"{experiment} ({task})", fontsize=10)
            for yi, v, n, hi in zip(y, values, part["n"], high, strict=True):
                ax.text(*_bar_label(v, n, yi, hi), va="center", fontsize=6)
        title = _compared("Accuracy per test font", table["experiment"])
        _title_and_legend(fig, title, colors)
        _save(fig, out)
    return table


# ----------------------------------------------------------------------- accuracy by experiment


def experiment_accuracy_table(metrics_files: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One row per ``metrics.json``: the experiment's headline share on the split (top-1 for
    the classifier, sequence accuracy otherwise; `_headline`), ``n`` and its 95% Wilson
    interval (``low``, ``high``; NaN without a figure, as for Tesseract not installed).

    Rows go panel by panel (`_panel_order`: task by task, each task's models by name, then
    Tesseract), and within an experiment ``test_seen``, ``test_heldout``, then other splits by
    name: the order `plot_accuracy_by_experiment` draws them in.
    """
    rows = []
    for path in metrics_files:
        record = read_metrics(path)
        name, value = _headline(record)
        low, high = _share_interval(value, record.get("n"))
        rows.append(
            {
                "experiment": record["experiment"],
                "task": record["task"],
                "split": record["split"],
                "n": record.get("n"),
                "metric": name,
                "value": math.nan if value is None else float(value),
                "low": low,
                "high": high,
            }
        )
    rows.sort(
        key=lambda r: (
            *_panel_order(r["task"], r["experiment"]),
            TEST_SPLITS.index(r["split"]) if r["split"] in TEST_SPLITS else len(TEST_SPLITS),
            r["split"],
        )
    )
    return pd.DataFrame(
        rows, columns=["experiment", "task", "split", "n", "metric", "value", "low", "high"]
    )


def experiment_bars(table: pd.DataFrame) -> pd.DataFrame:
    """Where `plot_accuracy_by_experiment` draws each row of `experiment_accuracy_table`: its
    ``panel`` (the task's index), ``y`` (the experiment's row in the panel, offset by its
    split's place among the panel's splits, so a model's seen and held-out bars stand side by
    side) and ``height``; the table's columns besides."""
    out = table.copy()
    out["panel"] = 0
    out["y"] = 0.0
    out["height"] = 0.0
    for panel, (_, part) in enumerate(table.groupby("task", sort=False)):
        experiments = list(dict.fromkeys(part["experiment"]))
        splits = list(dict.fromkeys(part["split"]))  # in the table's order: seen first
        height = 0.8 / len(splits)
        for i, row in part.iterrows():
            slot = splits.index(row["split"])
            out.loc[i, "panel"] = panel
            out.loc[i, "y"] = experiments.index(row["experiment"]) - 0.4 + (slot + 0.5) * height
            out.loc[i, "height"] = height
    return out


def plot_accuracy_by_experiment(
    metrics_files: Sequence[str | os.PathLike], out: str | os.PathLike
) -> pd.DataFrame:
    """Every experiment's headline share on each test split, a panel per task (top-1 for hanzi,
    sequence accuracy otherwise), a bar per split side by side (``test_seen`` above
    ``test_heldout``) with its 95% Wilson interval as a whisker, Tesseract's bars below the
    models it is compared with. A split without a figure (Tesseract not installed) is said to
    have none, not drawn at 0.

    Returns:
        The bars drawn (`experiment_bars` of `experiment_accuracy_table`).
    """
    bars = experiment_bars(experiment_accuracy_table(metrics_files))
    with _style():
        if bars.empty:
            fig, ax = plt.subplots(figsize=(6, 2))
            _empty(ax, "no metrics")
            _save(fig, out)
            return bars
        panels = [part for _, part in bars.groupby("panel", sort=True)]
        sizes = [part["experiment"].nunique() for part in panels]
        fig, axes = _panel_column([0.9 + 0.55 * n for n in sizes])
        colors = _split_colors(bars["split"])
        for ax, part, size in zip(axes, panels, sizes, strict=True):
            values = part["value"].astype(float).to_numpy()
            low = part["low"].astype(float).to_numpy()
            high = part["high"].astype(float).to_numpy()
            _share_bars(
                ax,
                part["y"].to_numpy(float),
                values,
                low,
                high,
                [colors.get(s, OWN_COLOR) for s in part["split"]],
                height=part["height"].to_numpy(float),
            )
            ax.set_yticks(range(size), list(dict.fromkeys(part["experiment"])), fontsize=8)
            ax.set_ylim(size - 0.5, -0.5)  # first experiment on top
            metric = "top1" if "top1" in set(part["metric"]) else part["metric"].iloc[0]
            ax.set_xlabel(metric)
            ax.set_title(part["task"].iloc[0], fontsize=10)
            for y, v, n, hi in zip(part["y"], values, part["n"], high, strict=True):
                ax.text(*_bar_label(v, n, y, hi), va="center", fontsize=7)
        title = _compared("Accuracy per experiment and test split", bars["experiment"])
        _title_and_legend(fig, title, colors)
        _save(fig, out)
    return bars


# ----------------------------------------------------------------------------- reader attention


def _frame(fig: plt.Figure) -> Image.Image:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def reader_attention_gifs(
    model_path: str | os.PathLike,
    shards: Sequence[str | os.PathLike],
    outs: Sequence[str | os.PathLike],
    frame_ms: int = 700,
) -> list[str]:
    """Animated GIFs of the reader's attention: one per sample, one frame per step.

    Each frame shows the sample, the mask the reader multiplied it with at that step (the first
    is all ones) and the character it emitted (``end`` for the terminal symbol), like
    deep_reader's visualisations.

    Args:
        model_path: The reader's ``model.pt`` (an attention-family model).
        shards: Test shards; the first ``len(outs)`` samples are drawn.
        outs: The GIF paths.
        frame_ms: Duration of each frame.

    Returns:
        The reading of each sample.
    """
    import torch

    from models.checkpoint import load_model
    from models.families import EOS, make_family
    from models.preprocess import to_tensor_batch

    model, meta = load_model(model_path, device="cpu")
    family = make_family(meta.model, meta.charset, meta.model_kwargs)
    if family.kind != "attention":
        raise ValueError(f"{model_path}: model {meta.model!r} has no attention masks")
    samples = list(iter_samples(shards, limit=len(outs)))
    if len(samples) < len(outs):
        raise ValueError(f"{len(outs)} GIFs asked for but the shards hold {len(samples)} samples")
    if not samples:
        return []
    batch, _ = to_tensor_batch([s.image for s in samples], meta.input)
    with torch.inference_mode():
        logits, masks = model(batch)
    probs = logits.float().softmax(-1)
    best_p, best = probs.max(-1)
    readings = [p.text for p in family.decode((logits, masks))]
    inputs = batch[:, 0].numpy()
    with _style():
        for i, (sample, out) in enumerate(zip(samples, outs, strict=True)):
            frames = []
            for step in range(masks.shape[1]):
                cls, p = int(best[i, step]), float(best_p[i, step])
                if step == masks.shape[1] - 1:  # the last step ends the text, as decoding takes it
                    cls, p = EOS, float(probs[i, step, EOS])
                # the terminal symbol in words: no font the plots use draws a stop sign (U+23F9)
                char = "end" if cls == EOS else repr(family.text_of([cls]))
                fig, axes = plt.subplots(1, 2, figsize=(4.4, 2.6))
                axes[0].imshow(inputs[i], cmap="gray")
                axes[0].imshow(masks[i, step].numpy(), cmap="magma", alpha=0.55, vmin=0, vmax=1)
                axes[0].set_title(f"step {step + 1}: {char}  p={p:.2f}")
                axes[1].imshow(masks[i, step].numpy(), cmap="magma", vmin=0, vmax=1)
                axes[1].set_title("mask")
                for ax in axes:
                    ax.set_xticks([])
                    ax.set_yticks([])
                    ax.grid(False)
                read = repr(readings[i]) if readings[i] else "∅"  # empty, as the grids show it
                fig.suptitle(
                    f"label {sample.label!r}  read {read}",
                    color=OK_COLOR if readings[i] == sample.label else ERROR_COLOR,
                    fontsize=10,
                )
                fig.tight_layout()
                frames.append(_frame(fig))
                if cls == EOS:
                    break  # the steps after the terminal symbol are ignored
            _save_gif(frames, out, frame_ms)
    return readings


def _save_gif(frames: Sequence[Image.Image], out: str | os.PathLike, frame_ms: int) -> None:
    with atomic_write(out, "wb") as f:
        frames[0].save(
            f,
            format="GIF",
            save_all=True,
            append_images=list(frames[1:]),
            duration=frame_ms,
            loop=0,
        )
