"""Report tables and the summary, built only from the ``metrics.json`` files evaluation writes.

- `crnn_table`: ``results/crnn_report.csv``, one row per CTC experiment (and Tesseract) and split.
- `hanzi_table`: ``results/hanzi_report.csv``, top-1/top-5 per split, overall (``font = all``)
  and per font, Tesseract (single-character page segmentation) beside ours.
- `reader_table`: ``results/reader_report.csv``, the attention reader per split and font,
  Tesseract (one line, the image scaled up) beside it.
- `summary_markdown`: ``results/summary.md``, the three tables and the published figures of the
  reference systems beside ours (config ``report.references``), and, where the config has seed
  copies of an experiment, the spread of their headline figure over the seeds (`seed_table`).

Rows are ordered experiments first (by name), Tesseract last, then by split (``test_seen``,
``test_heldout``). Beside each row's experiment and model stand its training ``seed`` (seed
copies of an experiment differ by it alone) and, but in the hanzi table (a classifier reads its
most likely class), its ``decoder``; after its ``model_kwargs``, its ``train_settings`` (the
training settings that differ from their defaults: what tells apart two experiments of one
model that differ in their learning rate alone); Tesseract's are empty. Undefined values (a
metric that does not apply, a time not recorded, Tesseract not installed) are empty cells.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from models.evaluate import read_metrics
from models.metrics import LOWER_IS_BETTER, SHARE_METRICS, share_interval
from synth.atomic import write_text_atomic
from synth.specs import TEST_SPLITS

TESSERACT = "tesseract"

CRNN_COLUMNS = (
    "experiment",
    "model",
    "backbone",
    "seed",
    "decoder",
    "task",
    "split",
    "n",
    "seq_acc",
    "interval_95",
    "cer",
    "ned",
    "value_acc",
    "params_m",
    "train_shards",
    "budget_steps",
    "train_steps",
    "train_wall_s",
    "eval_img_per_s",
    "device",
    "model_kwargs",
    "train_settings",
    "init_from",
)
HANZI_COLUMNS = (
    "experiment",
    "model",
    "seed",
    "task",
    "split",
    "font",
    "n",
    "top1",
    "interval_95",
    "top5",
    "params_m",
    "train_shards",
    "budget_steps",
    "train_steps",
    "train_wall_s",
    "eval_img_per_s",
    "device",
    "model_kwargs",
    "train_settings",
    "init_from",
)
READER_COLUMNS = (
    "experiment",
    "model",
    "seed",
    "decoder",
    "task",
    "split",
    "font",
    "n",
    "seq_acc",
    "interval_95",
    "cer",
    "ned",
    "params_m",
    "train_shards",
    "budget_steps",
    "train_steps",
    "train_wall_s",
    "eval_img_per_s",
    "device",
    "model_kwargs",
    "train_settings",
    "init_from",
)
ALL_FONTS = "all"


def load_records(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Read ``metrics.json`` files (their order does not matter: tables sort their rows)."""
    return [read_metrics(p) for p in paths]


def _split_rank(split: str) -> tuple[int, str]:
    """A split's place: the synthetic test splits in `TEST_SPLITS` order, then own tests by name."""
    return (TEST_SPLITS.index(split) if split in TEST_SPLITS else len(TEST_SPLITS), split)


def _cell(value: Any) -> Any:
    """A table cell's value, None where it is undefined (None, or NaN as a CSV reads back)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _order(record: Mapping[str, Any]) -> tuple:
    split_rank = _split_rank(record.get("split", ""))[0]
    return (record["experiment"] == TESSERACT, record["experiment"], record["task"], split_rank)


def interval_text(share: Any, n: Any) -> str | None:
    """The 95% Wilson interval of a share of ``n`` images as ``"low-high"`` (4 places), None
    without a figure or images: what a row's headline figure could be by the images alone."""
    bounds = share_interval(share, n)
    return None if bounds is None else f"{bounds[0]:.4f}-{bounds[1]:.4f}"


def _headline_column(columns: Sequence[str]) -> str:
    """The share a table's rows are compared on: top-1 for the classifier, seq_acc else."""
    return "top1" if "top1" in columns else "seq_acc"


def _with_per_file(columns: Sequence[str]) -> tuple[str, ...]:
    """A table's columns with ``per_file`` after the headline's ``interval_95``."""
    at = list(columns).index("interval_95") + 1
    return (*columns[:at], "per_file", *columns[at:])


def _row(record: Mapping[str, Any], columns: Sequence[str], **override: Any) -> dict[str, Any]:
    row = {c: record.get(c) for c in columns}
    headline = _headline_column(columns)
    if "interval_95" in columns:  # of the headline share: top-1 for the classifier
        row["interval_95"] = interval_text(record.get(headline), record.get("n"))
    if "per_file" in columns:
        row["per_file"] = font_file_mean(record, headline)
    for column in ("model_kwargs", "train_settings"):
        if isinstance(row.get(column), Mapping):
            # one cell, what tells two experiments of one model apart: "hidden=96 width=0.25",
            # "lr=0.002 warmup_steps=200"
            row[column] = " ".join(
                f"{k}={json.dumps(v, separators=(',', ':'))}"
                for k, v in sorted(row[column].items())
            )
    row.update(override)
    return row


def _frame(rows: list[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    # object dtype: integers stay integers and missing values stay None (no NaN upcasting)
    return pd.DataFrame(rows, columns=list(columns), dtype=object)


def crnn_table(records: Iterable[Mapping[str, Any]], per_file: bool = False) -> pd.DataFrame:
    """The CTC report: one row per record, columns `CRNN_COLUMNS` (``value_acc`` empty but for
    expressions).

    Args:
        records: ``metrics.json`` records.
        per_file: Add ``per_file`` after ``interval_95``: the headline share with each font
            file weighted alike (`font_file_mean`), as summary.md shows it.
    """
    columns = _with_per_file(CRNN_COLUMNS) if per_file else CRNN_COLUMNS
    return _frame([_row(r, columns) for r in sorted(records, key=_order)], columns)


def _with_fonts(
    records: Iterable[Mapping[str, Any]], columns: Sequence[str]
) -> list[dict[str, Any]]:
    """Per record, an overall row (``font = all``) then one row per font (its throughput left
    empty: it is the whole split's, measured once; so is ``per_file``, the split's)."""
    split_wide = {"eval_img_per_s": None, **({"per_file": None} if "per_file" in columns else {})}
    rows = []
    for record in sorted(records, key=_order):
        rows.append(_row(record, columns, font=ALL_FONTS))
        for font, scores in sorted((record.get("per_font") or {}).items()):
            rows.append(_row({**record, **scores}, columns, font=font, **split_wide))
    return rows


def hanzi_table(records: Iterable[Mapping[str, Any]], per_file: bool = False) -> pd.DataFrame:
    """The hanzi report: top-1/top-5 per split, overall and per font (`HANZI_COLUMNS`;
    ``per_file`` as in `crnn_table`, of top-1, on the overall rows)."""
    columns = _with_per_file(HANZI_COLUMNS) if per_file else HANZI_COLUMNS
    return _frame(_with_fonts(records, columns), columns)


def reader_table(records: Iterable[Mapping[str, Any]], per_file: bool = False) -> pd.DataFrame:
    """The reader report: whole-word accuracy, CER and NED per split, overall and per font
    (``per_file`` as in `crnn_table`, on the overall rows)."""
    columns = _with_per_file(READER_COLUMNS) if per_file else READER_COLUMNS
    return _frame(_with_fonts(records, columns), columns)


# How summary.md shows a column's numbers (others: `digits` decimals): times and rates to a tenth,
# parameters in millions to thousands, the config's own figures (targets, published ones) as typed.
COLUMN_FORMATS = {
    "eval_img_per_s": ".1f",
    "train_wall_s": ".1f",
    "params_m": ".3f",
    "target": "g",
    "published": "g",
}


def _format(value: Any, digits: int = 4, column: str = "") -> str:
    if _cell(value) is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if column in COLUMN_FORMATS:
            return format(value, COLUMN_FORMATS[column])
        if column == "gap" and 0 < abs(value) < 0.5 * 10**-digits:  # a miss "-0.0000" hides
            return f"{value:+.1e}"
        return f"{value:.{digits}f}"
    return str(value)


def _csv_cell(value: Any) -> str:
    if _cell(value) is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_table(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a report table as CSV atomically (empty cells for undefined values, floats to six
    significant digits)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(frame.columns)
    for row in frame.itertuples(index=False):
        writer.writerow([_csv_cell(v) for v in row])
    write_text_atomic(path, buf.getvalue())


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured markdown table (``|`` in cells escaped)."""
    if frame.empty:
        return "_no rows_\n"
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        cells = [_format(row[c], digits, c).replace("|", "\\|") for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def references_table(
    references: Sequence[Mapping[str, Any]], records: Iterable[Mapping[str, Any]]
) -> pd.DataFrame:
    """The reference systems' published figures beside ours.

    Args:
        references: Config ``report.references``: ``{experiment, metric, value, source}``.
        records: All ``metrics.json`` records.

    Returns:
        Columns ``experiment, metric, published, source, test_seen, test_heldout``; ours are empty
        when the experiment did not run or lacks the metric (the workflow refuses such an entry
        when it starts: `models.configcheck.report_problems`).
    """
    ours: dict[tuple[str, str], Mapping[str, Any]] = {
        (r["experiment"], r["split"]): r for r in records
    }
    rows = []
    for ref in references:
        row = {
            "experiment": ref["experiment"],
            "metric": ref["metric"],
            "published": ref["value"],
            "source": ref["source"],
        }
        for split in TEST_SPLITS:
            record = ours.get((ref["experiment"], split))
            row[split] = None if record is None else record.get(ref["metric"])
        rows.append(row)
    columns = ["experiment", "metric", "published", "source", *TEST_SPLITS]
    return _frame(rows, columns)


TARGET_COLUMNS = (
    "experiment",
    "metric",
    "split",
    "target",
    "reached",
    "interval_95",
    "per_file",
    "gap",
    "met",
)


def font_file_mean(record: Mapping[str, Any], metric: str) -> float | None:
    """A record's ``metric`` with each font file of the split weighted alike: the mean over its
    ``per_font_file`` figures. A split draws its faces alike, so a file of three faces (WenQuanYi
    Zen Hei: Regular, Mono and Sharp, one design) weighs three times a file of one in the
    split's own figure. None when the record has no per-file figures (an own test, a
    ``metrics.json`` written before they were) or a file lacks the metric."""
    per_file = record.get("per_font_file") or {}
    values = [scores.get(metric) for scores in per_file.values()]
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)


def targets_table(
    targets: Sequence[Mapping[str, Any]], records: Iterable[Mapping[str, Any]]
) -> pd.DataFrame:
    """The project's accuracy targets for this config, what was reached, and by how much.

    Args:
        targets: Config ``report.targets``: ``{experiment, metric, split, value}``.
        records: All ``metrics.json`` records.

    Returns:
        Columns ``experiment, metric, split, target, reached, interval_95, gap, met``; ``gap``
        is how far past the target it was reached: reached minus target, or target minus
        reached for the error rates (`LOWER_IS_BETTER`), negative when missed;
        ``interval_95`` is the Wilson interval of a share (`SHARE_METRICS`) over the split's
        ``n`` samples, and ``met`` says "within noise" when the target lies inside it;
        ``per_file`` is the figure with each font file weighted alike (`font_file_mean`);
        ``reached``, ``gap`` and ``met`` are empty when the experiment did not run or lacks the
        metric.
    """
    ours = {(r["experiment"], r["split"]): r for r in records if r["experiment"] != TESSERACT}
    rows = []
    for t in targets:
        record = ours.get((t["experiment"], t["split"]))
        reached = None if record is None else record.get(t["metric"])
        sign = -1 if t["metric"] in LOWER_IS_BETTER else 1
        gap = None if reached is None else sign * (reached - t["value"])
        met = None if gap is None else ("yes" if gap >= 0 else "no")
        interval = None
        n = None if record is None else record.get("n")
        if reached is not None and t["metric"] in SHARE_METRICS and n:
            bounds = share_interval(reached, n)
            interval = interval_text(reached, n)
            if bounds is not None and bounds[0] <= t["value"] <= bounds[1]:
                met += ", within noise"
        rows.append(
            {
                "experiment": t["experiment"],
                "metric": t["metric"],
                "split": t["split"],
                "target": t["value"],
                "reached": reached,
                "interval_95": interval,
                "per_file": None if record is None else font_file_mean(record, t["metric"]),
                "gap": gap,
                "met": met,
            }
        )
    return _frame(rows, TARGET_COLUMNS)


SEED_COLUMNS = (
    "experiments",
    "model",
    "task",
    "decoder",
    "split",
    "metric",
    "seeds",
    "mean",
    "sd",
    "min",
    "max",
    "model_kwargs",
    "train_settings",
    "train_shards",
    "budget_steps",
    "train_steps",
    "init_from",
)
# What seed copies share: all a table row says of its experiment's configured run but its name and
# seed. The shards read (train_shards), which the settings leave out (train.shards picks the job's
# inputs): runs of one model on 4, 8 and 16 shards are a data-scaling study, not seed copies. The
# steps configured (budget_steps), not those run (train_steps): early stopping ends two copies of
# one configuration at different steps, and their spread is the very one sought.
_SEED_COPY_KEY = (
    "task",
    "model",
    "decoder",
    "model_kwargs",
    "train_settings",
    "train_shards",
    "budget_steps",
    "init_from",
)


def _weight_settings(cell: Any) -> str | None:
    """A ``train_settings`` cell as seed copies compare it: without the settings that cannot
    change the weights (`models.specs.WEIGHT_NEUTRAL`: ``log_every``), None where none is left
    (as an empty cell reads back from a CSV)."""
    # here, not at the top: models.specs reads the config schema, which the reports need not
    from models.specs import WEIGHT_NEUTRAL

    text = _cell(cell)
    if text is None:
        return None
    # "k=v k=v", each value compact JSON (`_row`): a setting's name is what precedes its "="
    kept = [part for part in str(text).split(" ") if part.split("=", 1)[0] not in WEIGHT_NEUTRAL]
    return " ".join(kept) or None


def _count(value: Any) -> int | None:
    """A count of steps or shards of a table cell as an integer (a CSV read back holds 3000.0 in
    a column with empty cells), None where it is undefined."""
    value = _cell(value)
    return None if value is None else int(value)


def _steps_run(steps: Iterable[int | None]) -> int | str | None:
    """The steps a group's runs ran: the number when they agree, ``"min-max"`` when early
    stopping ended them at different steps, None when none is recorded."""
    known = sorted({s for s in steps if s is not None})
    if not known:
        return None
    return known[0] if len(known) == 1 else f"{known[0]}-{known[-1]}"


def seed_table(*tables: pd.DataFrame) -> pd.DataFrame:
    """The spread over seed copies: experiments that differ in their ``seed`` (and name) alone.

    Args:
        tables: Report tables (`crnn_table`, `hanzi_table`, `reader_table`, or their CSVs
            read back with ``pandas.read_csv``); only their overall rows are read
            (``font = all``) and Tesseract's are left out.

    Returns:
        Columns `SEED_COLUMNS`: a row per group of two or more experiments of one task, model,
        decoder (the hanzi table has none: its classifier's argmax has no other),
        ``model_kwargs``, ``train_settings`` (less those that cannot change the weights,
        `_weight_settings`), ``train_shards`` (the training shards read: copies of an
        evaluation made before it was recorded, whose cell is empty, group as they did then),
        ``budget_steps`` (the steps configured, however many early stopping let each run) and
        ``init_from``, and per split, with ``seeds`` (how many experiments: one per seed), the
        ``mean``, sample standard deviation ``sd`` (ddof 1), ``min`` and ``max`` of the table's
        headline figure (``metric``: ``top1`` for the classifier, ``seq_acc`` else), the
        ``experiments`` (by name) and the ``train_steps`` they ran (`_steps_run`:
        ``"min-max"`` where they differ). A row without ``budget_steps`` (an evaluation made
        before it was recorded) is grouped by the steps it ran instead, as it was then. Rows
        are ordered by the group's first experiment, then by split (`TEST_SPLITS`, then own
        tests by name). An experiment without the headline figure on a split is left out of
        it, and so is one whose ``seed`` another experiment of its group (the first by name)
        has, or whose seed is not recorded as another's is not: the same run under two names,
        not two seeds.
    """
    groups: dict[tuple, list[tuple[str, Any, float, int | None]]] = {}
    for table in tables:
        if not len(table):
            continue
        metric = _headline_column(table.columns)
        for _, row in table.iterrows():
            if row["experiment"] == TESSERACT or _cell(row.get("font", ALL_FONTS)) != ALL_FONTS:
                continue
            value = _cell(row.get(metric))
            if value is None:
                continue
            shared = {c: _cell(row.get(c)) for c in _SEED_COPY_KEY}
            shared["train_settings"] = _weight_settings(shared["train_settings"])
            shared["train_shards"] = _count(shared["train_shards"])
            shared["budget_steps"] = _count(shared["budget_steps"])
            ran = _count(row.get("train_steps"))
            # without a recorded budget, the steps run are all that tells two budgets apart
            unbudgeted = ran if shared["budget_steps"] is None else None
            key = (metric, row["split"], unbudgeted, *shared.values())
            seed = _cell(row.get("seed"))
            groups.setdefault(key, []).append((str(row["experiment"]), seed, float(value), ran))
    rows = []
    for (metric, split, _, *shared), found in groups.items():
        # one experiment per seed: two of one seed (or of none recorded) are one run named twice
        # (experiments that differ in their evaluation alone), whose spread is no seed's
        per_seed: dict[Any, tuple[str, float, int | None]] = {}
        for name, seed, value, ran in sorted(found, key=lambda m: m[0]):
            per_seed.setdefault(seed, (name, value, ran))
        members = list(per_seed.values())
        if len(members) < 2:
            continue
        names = sorted(name for name, _, _ in members)
        values = [value for _, value, _ in members]
        row = {
            **dict(zip(_SEED_COPY_KEY, shared, strict=True)),
            "train_steps": _steps_run(ran for _, _, ran in members),
            "experiments": ", ".join(names),
            "split": split,
            "metric": metric,
            "seeds": len(members),
            "mean": statistics.mean(values),
            "sd": statistics.stdev(values),
            "min": min(values),
            "max": max(values),
        }
        rows.append(((names, _split_rank(split)), row))
    return _frame([row for _, row in sorted(rows, key=lambda r: r[0])], SEED_COLUMNS)


def summary_markdown(
    crnn: pd.DataFrame,
    hanzi: pd.DataFrame,
    reader: pd.DataFrame,
    references: pd.DataFrame,
    plots: Sequence[str] = (),
    base: str | os.PathLike | None = None,
    targets: pd.DataFrame | None = None,
    fine_tuned: Mapping[str, str] | None = None,
) -> str:
    """``results/summary.md``: the reference comparison, the three reports and links to plots.

    Args:
        crnn: `crnn_table` (``per_file=True`` in the workflow's summary).
        hanzi: `hanzi_table` (only the overall rows are shown; per-font rows are in the CSV).
        reader: `reader_table` (likewise).
        references: `references_table`.
        plots: Plot files to link.
        base: Folder the links are relative to (the summary's folder).
        targets: `targets_table` (the section is left out when it is None or empty).
            The seed copies' section (`seed_table` of the three tables) is left out likewise
            when the config has none.
        fine_tuned: `fine_tuned`: experiments that started from another checkpoint, whose
            ``train_steps`` and ``train_wall_s`` count only their own training.
    """
    hanzi_all = hanzi[hanzi["font"] == ALL_FONTS].drop(columns="font") if len(hanzi) else hanzi
    reader_all = reader[reader["font"] == ALL_FONTS].drop(columns="font") if len(reader) else reader
    tesseract_notes = sorted(
        {
            str(m)
            for frame in (crnn, hanzi, reader)
            for e, m in zip(frame.get("experiment", []), frame.get("model", []), strict=True)
            if e == TESSERACT and m and ("not installed" in str(m) or "disabled" in str(m))
        }
    )
    parts = [
        "# synthocr results\n",
        "Built from the `metrics.json` files of `results/eval/`. Splits: `test_seen` uses the "
        "training fonts (unseen samples), `test_heldout` only fonts training never saw; any "
        "other `test_` split is one of the config's `own_tests`, labelled images of the user's. "
        "Tesseract reads the same samples as the models (only the first "
        "`tesseract.max_samples` when the config sets it: its `n`), with the "
        "settings of `tesseract.<task>` (language, page segmentation, whitelist, scale), which "
        "its `metrics.json` records. `eval_img_per_s` is a model's inference alone (batches on "
        "its device, warm-up left out) beside Tesseract's whole calls (its images written, its "
        "processes started), each measured beside the workflow's other jobs: `bench/` compares "
        "speeds on one machine at a time (`BENCHMARKS.md`).\n",
        "In the three tables below, beside each row's headline figure (`seq_acc`; `top1` for "
        "hanzi), `interval_95` is its 95% Wilson interval over the row's `n` images and "
        "`per_file` the figure with each font file of the split weighted alike: a split draws "
        "its faces alike, so a file of several faces of one design (a `.ttc` collection) "
        "weighs as many times a file of one in the split's own figure (`per_file` is empty for "
        "a split of your own images, which come from no font file). `seed` is the training "
        "seed: seed copies of an experiment differ by it alone; `train_shards` how many "
        "training shards the run read (`train.shards`, or all of the split's); `budget_steps` "
        "the steps the run was configured for (`train.steps`), `train_steps` those it ran "
        "(fewer when early stopping ended it); `train_settings` the run's other training "
        "settings that differ from their defaults (`lr`, `batch_size`, ...).\n",
    ]
    if any("not installed" in note for note in tesseract_notes):
        parts.append("**Tesseract is not installed here: its rows are empty.**\n")
    if any("disabled" in note for note in tesseract_notes):
        parts.append(
            "**Tesseract is disabled in the config (`tesseract.enabled`): its rows are empty.**\n"
        )
    if fine_tuned:
        listed = ", ".join(f"`{e}`" for e in sorted(fine_tuned))
        parts.append(
            f"Fine-tuned (`train.init_from`; their `init_from` column names the source): "
            f"{listed}. Their `train_steps` and `train_wall_s` count only their own training, "
            "not their source's.\n"
        )
    if targets is not None and len(targets):
        parts += [
            "## Targets for this configuration\n",
            "From `report.targets` in the config; `gap` is how far past the target it was "
            "reached (reached minus target; target minus reached for the error rates `cer` and "
            "`ned`), negative when missed. `interval_95` and `per_file` are as in the tables "
            "(above): a target inside the interval is met or missed *within noise*, as another "
            "draw of as many images could tip it. It does not cover another choice of held-out "
            "fonts or another training run, which can move a figure further.\n",
            markdown_table(targets),
        ]
    parts += [
        "## Published figures of the reference systems beside ours\n",
        "The published figures were measured on the reference systems' own data and fonts; "
        "ours on synthocr's test splits.\n",
        markdown_table(references),
        "## CTC recognizers (`crnn_report.csv`)\n",
        markdown_table(crnn),
        "## Printed hanzi (`hanzi_report.csv`, per-font rows in the CSV)\n",
        markdown_table(hanzi_all),
        "## Attention reader (`reader_report.csv`, per-font rows in the CSV)\n",
        markdown_table(reader_all),
    ]
    seeds = seed_table(crnn, hanzi_all, reader_all)
    if len(seeds):
        parts += [
            "## Seed copies\n",
            "Experiments that differ in their training `seed` alone (one task, model, "
            "`decoder`, `model_kwargs`, `train_settings`, `train_shards`, `budget_steps` and "
            "`init_from`; `log_every`, which changes the logged curves and not the weights, is "
            "left out of `train_settings` here), per split: how many (`seeds`), and the `mean`, "
            "sample standard deviation (`sd`), `min` and `max` of their headline figure "
            "(`metric`). Runs on other numbers of training shards (`train_shards`) are a "
            "data-scaling study, not seed copies. `budget_steps` are the steps configured and "
            "`train_steps` those run (`min-max` where early stopping ended the copies at "
            "different steps: a spread of when they stop is the seed's too). A gap between two "
            "models that is within a group's `min`-`max` can be the seed's alone: the tables' "
            "`interval_95` covers the images only, not this spread.\n",
            markdown_table(seeds),
        ]
    if plots:
        parts.append("## Plots\n")
        for p in plots:
            rel = os.path.relpath(p, base) if base is not None else str(p)
            folder = Path(p).parent.name  # the experiment's, or plots/ for those of every one
            about = "every experiment" if folder == "plots" else folder
            parts.append(f"- [{Path(p).name}]({rel}) ({about})")
        parts.append("")
    return "\n".join(parts)


def fine_tuned(records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Experiment -> the checkpoint it was fine-tuned from (``train.init_from``), for those that
    were."""
    return {
        str(r["experiment"]): str(r["init_from"])
        for r in records
        if r.get("init_from") and r.get("experiment") != TESSERACT
    }


def build_reports(
    crnn_metrics: Sequence[str | os.PathLike],
    hanzi_metrics: Sequence[str | os.PathLike],
    reader_metrics: Sequence[str | os.PathLike],
    references: Sequence[Mapping[str, Any]],
    out_summary: str | os.PathLike,
    plots: Sequence[str] = (),
    targets: Sequence[Mapping[str, Any]] = (),
) -> str:
    """Write ``summary.md`` from the three groups of metrics files (the tables are rebuilt
    from the same files, so the summary never disagrees with the CSVs; it adds their
    ``per_file`` column beside each headline figure)."""
    crnn_records = load_records(crnn_metrics)
    hanzi_records = load_records(hanzi_metrics)
    reader_records = load_records(reader_metrics)
    everything = crnn_records + hanzi_records + reader_records
    text = summary_markdown(
        crnn_table(crnn_records, per_file=True),
        hanzi_table(hanzi_records, per_file=True),
        reader_table(reader_records, per_file=True),
        references_table(references, everything),
        plots=plots,
        base=Path(out_summary).parent,
        targets=targets_table(targets, everything),
        fine_tuned=fine_tuned(everything),
    )
    write_text_atomic(out_summary, text)
    return text


TABLES = {"crnn": crnn_table, "hanzi": hanzi_table, "reader": reader_table}


def build_table(kind: str, metrics_files: Sequence[str | os.PathLike], out: str | os.PathLike):
    """Build and write one report table (``kind``: crnn, hanzi or reader).

    Returns:
        The table.
    """
    try:
        builder = TABLES[kind]
    except KeyError:
        raise ValueError(f"unknown report {kind!r}; valid: {', '.join(TABLES)}") from None
    frame = builder(load_records(metrics_files))
    write_table(frame, out)
    return frame
