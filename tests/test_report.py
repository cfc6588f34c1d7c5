"""Report tables, summary and plots, built from fixture metrics.json / predictions.csv files."""

from __future__ import annotations

import csv
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image
from test_evaluate import CASES, make_checkpoint, make_shard

from models import plots, report
from models.evaluate import write_metrics, write_predictions
from models.metrics import wilson_interval


def _record(experiment, model, task, split, **extra):
    base = {
        "experiment": experiment,
        "model": model,
        "backbone": {"crnn_vgg": "vgg", "expr_crnn": "expr"}.get(model, "lstm"),
        "family": "ctc",
        "task": task,
        "split": split,
        "n": 20,
        "seq_acc": 0.5,
        "cer": 0.25,
        "ned": 0.2,
        "per_font": {"Font B": {"n": 12, "seq_acc": 0.25}, "Font A": {"n": 8, "seq_acc": 0.875}},
        "eval_img_per_s": 100.0,
        "device": "cpu",
        "decoder": "greedy",
        "params_m": 1.5,
        "seed": 1,
        "train_shards": 4,
        "budget_steps": 6,
        "train_steps": 6,
        "train_wall_s": 3.25,
    }
    base.update(extra)
    return base


# The per-font tables' columns, written out: the CTC table's (README, "Outputs") with the
# font after the split and without backbone; the classifier's top-1/top-5 in place of the
# text scores and value_acc, and no decoder (its argmax has no other).
_HEADER_BACK = [
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
]
HANZI_HEADER = [
    *["experiment", "model", "seed", "task", "split", "font", "n"],
    *["top1", "interval_95", "top5", *_HEADER_BACK],
]
READER_HEADER = [
    *["experiment", "model", "seed", "decoder", "task", "split", "font", "n"],
    *["seq_acc", "interval_95", "cer", "ned", *_HEADER_BACK],
]


@pytest.fixture
def metrics_files(tmp_path):
    """Fixture metrics.json files as evaluation and the tesseract rule write them."""
    records = {
        "crnn": [
            _record(
                "line_crnn_vgg",
                "crnn_vgg",
                "line",
                "test_heldout",
                seq_acc=0.4,
                model_kwargs={"width": 0.25, "hidden": 96},
                train_settings={"schedule": "wsd", "lr": 0.002},
            ),
            _record("line_crnn_vgg", "crnn_vgg", "line", "test_seen"),
            *(
                _record(
                    "expr_crnn",
                    "expr_crnn",
                    "expr",
                    split,
                    value_acc=acc,
                    init_from="a.pt",
                    seed=3,
                    decoder="grammar",
                )
                for split, acc in (("test_seen", 0.75), ("test_heldout", 0.5))
            ),
            _record(
                "tesseract",
                "tesseract 5.3.0",
                "expr",
                "test_seen",
                value_acc=0.6,
                seed=None,
                decoder=None,
                params_m=None,
                train_shards=None,
                budget_steps=None,
                train_steps=None,
                train_wall_s=None,
            ),
            {
                "experiment": "tesseract",
                "model": "tesseract (not installed)",
                "backbone": "lstm",
                "task": "line",
                "split": "test_seen",
                "status": "not installed ('tesseract' is not on PATH)",
                "n": 0,
                "device": "cpu",
                "eval_img_per_s": None,
                "per_font": {},
            },
        ],
        "hanzi": [
            _record(
                "hanzi_cnn",
                "hanzi_cnn",
                "hanzi",
                "test_seen",
                top1=0.9,
                top5=0.95,
                per_font={
                    "Font A": {"n": 10, "top1": 1.0, "top5": 1.0},
                    "Font B": {"n": 10, "top1": 0.8, "top5": 0.9},
                },
            ),
            _record(
                "tesseract",
                "tesseract 5.3.0",
                "hanzi",
                "test_seen",
                top1=0.3,
                top5=None,
                seed=None,
                decoder=None,
                per_font={"Font A": {"n": 10, "top1": 0.3, "top5": None}},
            ),
        ],
        "reader": [
            _record("short_reader", "reader", "short", "test_heldout", seq_acc=0.125),
            _record("short_reader", "reader", "short", "test_seen", seq_acc=0.875),
            _record(
                "tesseract",
                "tesseract 5.3.0",
                "short",
                "test_heldout",
                seq_acc=0.75,
                seed=None,
                decoder=None,
                params_m=None,
                train_shards=None,
                budget_steps=None,
                train_steps=None,
                train_wall_s=None,
                per_font={"Font C": {"n": 20, "seq_acc": 0.75}},
            ),
        ],
    }
    files = {}
    for kind, recs in records.items():
        files[kind] = []
        for i, rec in enumerate(recs):
            path = tmp_path / "eval" / kind / f"{i}" / "metrics.json"
            write_metrics(path, rec)
            files[kind].append(path)
    return files


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, [dict(zip(header, row, strict=True)) for row in reader]


def test_crnn_report_columns_and_rows(tmp_path, metrics_files):
    out = tmp_path / "crnn_report.csv"
    report.build_table("crnn", metrics_files["crnn"], out)
    header, rows = _read_csv(out)
    assert header == [
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
    ]
    # experiments by name, Tesseract last, test_seen before test_heldout
    assert [(r["experiment"], r["task"], r["split"]) for r in rows] == [
        ("expr_crnn", "expr", "test_seen"),
        ("expr_crnn", "expr", "test_heldout"),
        ("line_crnn_vgg", "line", "test_seen"),
        ("line_crnn_vgg", "line", "test_heldout"),
        ("tesseract", "expr", "test_seen"),
        ("tesseract", "line", "test_seen"),
    ]
    assert rows[0]["value_acc"] == "0.75"
    assert rows[2]["value_acc"] == ""  # lines have no value
    assert rows[3]["seq_acc"] == "0.4"
    # the headline share's 95% Wilson interval over the split's n images
    low, high = wilson_interval(0.4, int(rows[3]["n"]))
    assert rows[3]["interval_95"] == f"{low:.4f}-{high:.4f}"
    assert rows[3]["model_kwargs"] == "hidden=96 width=0.25"  # what tells variants apart
    assert rows[4]["model_kwargs"] == ""  # Tesseract
    # what tells two experiments of one model and kwargs apart: the training settings that
    # differ from their defaults (a learning rate); Tesseract and a record without them, none
    assert rows[3]["train_settings"] == 'lr=0.002 schedule="wsd"'
    assert rows[2]["train_settings"] == rows[4]["train_settings"] == ""
    # what tells seed copies of one experiment apart, and how the readings were decoded;
    # Tesseract has neither (a placeholder row, without the keys, neither)
    assert [(r["seed"], r["decoder"]) for r in rows] == [
        ("3", "grammar"),
        ("3", "grammar"),
        ("1", "greedy"),
        ("1", "greedy"),
        ("", ""),
        ("", ""),
    ]
    assert rows[0]["init_from"] == "a.pt" and rows[2]["init_from"] == ""  # fine-tuned, or not
    assert rows[0]["train_steps"] == "6" and rows[0]["train_wall_s"] == "3.25"
    assert rows[0]["budget_steps"] == "6" and rows[4]["budget_steps"] == ""  # as configured
    assert rows[0]["train_shards"] == "4" and rows[4]["train_shards"] == ""  # the shards read
    assert rows[4]["params_m"] == "" and rows[4]["model"] == "tesseract 5.3.0"
    missing = rows[5]
    assert missing["model"] == "tesseract (not installed)"
    assert missing["n"] == "0" and missing["seq_acc"] == ""


def test_hanzi_report_has_overall_and_per_font_rows(tmp_path, metrics_files):
    out = tmp_path / "hanzi_report.csv"
    report.build_table("hanzi", metrics_files["hanzi"], out)
    header, rows = _read_csv(out)
    assert header == HANZI_HEADER
    # the split's throughput on its overall row alone (measured once, not per font)
    assert [bool(r["eval_img_per_s"]) for r in rows if r["experiment"] == "hanzi_cnn"] == [
        True,
        False,
        False,
    ]
    cells = [(r["experiment"], r["seed"], r["font"], r["n"], r["top1"], r["top5"]) for r in rows]
    assert cells == [
        ("hanzi_cnn", "1", "all", "20", "0.9", "0.95"),
        ("hanzi_cnn", "1", "Font A", "10", "1", "1"),
        ("hanzi_cnn", "1", "Font B", "10", "0.8", "0.9"),
        ("tesseract", "", "all", "20", "0.3", ""),
        ("tesseract", "", "Font A", "10", "0.3", ""),
    ]


def test_reader_report_columns(tmp_path, metrics_files):
    out = tmp_path / "reader_report.csv"
    frame = report.build_table("reader", metrics_files["reader"], out)
    header, rows = _read_csv(out)
    assert header == READER_HEADER
    # the reader's rows, then Tesseract's on the same task
    assert [(r["experiment"], r["split"], r["font"], r["seq_acc"]) for r in rows] == [
        ("short_reader", "test_seen", "all", "0.875"),
        ("short_reader", "test_seen", "Font A", "0.875"),
        ("short_reader", "test_seen", "Font B", "0.25"),
        ("short_reader", "test_heldout", "all", "0.125"),
        ("short_reader", "test_heldout", "Font A", "0.875"),
        ("short_reader", "test_heldout", "Font B", "0.25"),
        ("tesseract", "test_heldout", "all", "0.75"),
        ("tesseract", "test_heldout", "Font C", "0.75"),
    ]
    assert rows[-1]["model"] == "tesseract 5.3.0" and rows[-1]["params_m"] == ""
    # every row of the reader names its seed and decoder, its per-font rows too
    assert {(r["seed"], r["decoder"]) for r in rows[:-2]} == {("1", "greedy")}
    assert rows[-1]["seed"] == rows[-1]["decoder"] == ""
    assert len(frame) == 8


@pytest.mark.parametrize("kind", ["hanzi", "reader"])
def test_a_tables_caption_names_the_ctc_columns_it_lacks(kind):
    """The hanzi and reader captions describe their columns as the CTC table's, less some:
    each CTC column the table lacks is named in its caption (the hanzi one named backbone and
    decoder alone, not its missing text scores; the reader's named none)."""
    columns = {"hanzi": report.HANZI_COLUMNS, "reader": report.READER_COLUMNS}[kind]
    caption = Path(__file__).resolve().parents[1] / f"workflow/report/{kind}_report.rst"
    text = caption.read_text(encoding="utf-8")
    lacking = [c for c in report.CRNN_COLUMNS if c not in columns]
    assert lacking, kind
    assert [c for c in lacking if f"``{c}``" not in text] == []


def test_empty_report_has_header_only(tmp_path):
    out = tmp_path / "reader_report.csv"
    report.build_table("reader", [], out)
    assert out.read_text() == ",".join(READER_HEADER) + "\n"
    with pytest.raises(ValueError, match="valid: crnn, hanzi, reader"):
        report.build_table("ocr", [], out)


def test_summary_puts_references_beside_ours(tmp_path, metrics_files):
    references = [
        {"experiment": "expr_crnn", "metric": "value_acc", "value": 0.999925, "source": "Baidu"},
        {"experiment": "hanzi_cnn", "metric": "top5", "value": 0.99989, "source": "CPS"},
        {"experiment": "line_crnn_grcnn", "metric": "seq_acc", "value": 0.9, "source": "absent"},
    ]
    refs = report.references_table(
        references, report.load_records([p for v in metrics_files.values() for p in v])
    )
    assert list(refs.columns) == [
        "experiment",
        "metric",
        "published",
        "source",
        "test_seen",
        "test_heldout",
    ]
    assert refs.iloc[0].to_dict() == {
        "experiment": "expr_crnn",
        "metric": "value_acc",
        "published": 0.999925,
        "source": "Baidu",
        "test_seen": 0.75,
        "test_heldout": 0.5,
    }
    assert refs.iloc[1]["test_seen"] == 0.95 and refs.iloc[1]["test_heldout"] is None
    assert refs.iloc[2]["test_seen"] is None  # experiment not in the config: empty, no failure

    out = tmp_path / "results" / "summary.md"
    plot = tmp_path / "results" / "plots" / "expr_crnn" / "curves.png"
    text = report.build_reports(
        metrics_files["crnn"],
        metrics_files["hanzi"],
        metrics_files["reader"],
        references,
        out,
        plots=[str(plot)],
    )
    assert out.read_text(encoding="utf-8") == text
    assert "| expr_crnn | value_acc | 0.999925 | Baidu | 0.7500 | 0.5000 |" in text
    assert "Tesseract is not installed here" in text
    assert "Tesseract is disabled in the config" not in text
    assert "settings of `tesseract.<task>`" in text
    assert "`eval_img_per_s` is a model's inference alone" in text  # not a fair speed race
    # a config that turns Tesseract off says so, as one without it installed does
    disabled = report.crnn_table(
        [
            {
                "experiment": "tesseract",
                "model": "tesseract (disabled)",
                "task": "line",
                "split": "test_seen",
            }
        ]
    )
    off = report.summary_markdown(disabled, report.hanzi_table([]), report.reader_table([]), refs)
    assert "**Tesseract is disabled in the config (`tesseract.enabled`)" in off
    assert "not installed here" not in off
    assert "(plots/expr_crnn/curves.png)" in text
    assert "## CTC recognizers" in text and "| line_crnn_vgg | crnn_vgg | vgg |" in text
    # what was fine-tuned, from what: its steps and time are its own only
    assert "column names the source): `expr_crnn`. Their `train_steps`" in text


def test_markdown_table_escapes_pipes():
    import pandas as pd

    text = report.markdown_table(pd.DataFrame([{"a": "x|y", "b": 0.5, "c": None}]))
    assert text.splitlines() == ["| a | b | c |", "|---|---|---|", "| x\\|y | 0.5000 |  |"]


def test_markdown_table_shows_each_column_at_its_own_precision():
    import pandas as pd

    row = {
        "seq_acc": 0.99326,
        "eval_img_per_s": 267.0227,
        "train_wall_s": 6616.46,
        "params_m": 0.957201,
        "published": 0.999925,
        "gap": -0.00002,
    }
    text = report.markdown_table(pd.DataFrame([row]))
    assert text.splitlines()[2] == "| 0.9933 | 267.0 | 6616.5 | 0.957 | 0.999925 | -2.0e-05 |"


# ----------------------------------------------------------------------------- plots


def _is_png(path):
    with Image.open(path) as im:
        return im.format == "PNG" and im.width > 50 and im.height > 50


def test_cjk_font_is_found():
    from matplotlib import font_manager
    from PIL import ImageFont

    name = plots.cjk_font()
    path = font_manager.findfont(
        font_manager.FontProperties(family=name), fallback_to_default=False
    )
    assert ImageFont.truetype(path, 24).getmask("中").getbbox() is not None, (name, path)


def test_plot_curves(tmp_path, monkeypatch):
    history = tmp_path / "history.csv"
    history.write_text(
        "step,lr,train_loss,val_loss,val_acc,grad_norm,images_per_s,elapsed_s\n"
        "1,0.001,3.2,,,1.0,50,0.1\n"
        "2,0.002,2.9,,,1.0,55,0.2\n"
        "3,0.002,2.5,2.7,0.1,1.0,55,0.3\n"
        "4,0.001,2.1,,,1.0,55,0.4\n"
        "6,0.0001,1.8,2.2,0.3,1.0,60,0.6\n"
    )
    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, out: (figures.append(fig), save(fig, out)))
    out = tmp_path / "plots" / "curves.png"
    plots.plot_curves(history, out, title="line_crnn_vgg")
    assert _is_png(out)

    # What is drawn: each loss over the steps it has a value on, left; the scores right; the
    # learning rate, gradient norm, throughput and times nowhere.
    [fig] = figures
    assert fig._suptitle.get_text() == "line_crnn_vgg"
    drawn = [
        [(ln.get_label(), ln.get_xdata().tolist(), ln.get_ydata().tolist()) for ln in ax.lines]
        for ax in fig.axes
    ]
    assert drawn == [
        [
            ("train_loss", [1, 2, 3, 4, 6], [3.2, 2.9, 2.5, 2.1, 1.8]),
            ("val_loss", [3, 6], [2.7, 2.2]),
        ],
        [("val_acc", [3, 6], [0.1, 0.3])],
    ]
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "score"]
    assert fig.axes[1].get_ylim()[0] == 0  # a share never below 0 (all-zero scores went -0.04)
    # steps are whole: a short run's axis had ticks at 3.5 and 4.5
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    # scores all 0 (a smoke run's first validations) on 0..1, not on 0..0.055
    history.write_text("step,train_loss,val_acc\n1,3.2,0\n2,2.9,0\n")
    plots.plot_curves(history, tmp_path / "zero.png")
    assert figures[-1].axes[1].get_ylim() == (0, 1)


def test_plot_curves_draws_positive_losses_on_a_log_scale(tmp_path, monkeypatch):
    """As the caption says, though the validation loss is empty on the training rows."""
    scales = []
    save = plots._save
    monkeypatch.setattr(
        plots, "_save", lambda fig, out: (scales.append(fig.axes[0].get_yscale()), save(fig, out))
    )
    history = tmp_path / "history.csv"
    rows = "step,train_loss,val_loss,val_acc\n1,3.2,,\n2,2.9,2.7,0.1\n3,2.5,,\n"
    history.write_text(rows)
    plots.plot_curves(history, tmp_path / "a.png")
    history.write_text(rows + "4,0.0,,\n")  # a loss of 0 cannot be drawn on a log scale
    plots.plot_curves(history, tmp_path / "b.png")
    assert scales == ["log", "linear"]


def test_plot_curves_labels_its_log_axis_plainly_on_the_steps_of_both_panels(tmp_path, monkeypatch):
    """A smoke run's losses, a hundredth apart, on the log axis: plain numbers, each its own
    (they read 2.29, 2.29, 2.28, or 10^0 for 1); the scores, validated from step 3, on the
    losses' step axis (it began at 3, so the two panels' ticks did not line up)."""
    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, out: (figures.append(fig), save(fig, out)))
    history = tmp_path / "history.csv"
    history.write_text(
        "step,train_loss,val_loss,val_acc\n1,2.2921,,\n2,2.2905,,\n3,2.2893,2.2915,0.125\n"
        "4,2.2874,,\n5,2.2851,,\n6,2.2838,2.2817,0.125\n"
    )
    plots.plot_curves(history, tmp_path / "curves.png")
    [fig] = figures
    FigureCanvasAgg(fig).draw()
    shown = _tick_labels(fig.axes[0])
    assert fig.axes[0].get_yscale() == "log"
    assert len(shown) >= 3 and len(set(shown)) == len(shown), shown
    assert all(float(t) > 0 for t in shown), shown  # no mathtext such as $10^{0}$
    assert fig.axes[0].get_xlim() == fig.axes[1].get_xlim()


def test_a_history_without_rows_or_without_anything_is_named(tmp_path):
    """A history.csv holding its header alone is drawn as one without validation rows (its
    columns read as text said "not numbers"); an empty one (cut short) is an error naming it
    (it was pandas' "No columns to parse from file")."""
    header = tmp_path / "header" / "history.csv"
    header.parent.mkdir()
    header.write_text("step,train_loss,val_loss,val_acc\n")
    table = plots.plot_compare_curves({"e": ("line", header)}, tmp_path / "c.png")
    assert table.empty and _is_png(tmp_path / "c.png")
    plots.plot_curves(header, tmp_path / "h.png")
    assert _is_png(tmp_path / "h.png")
    empty = tmp_path / "empty" / "history.csv"
    empty.parent.mkdir()
    empty.write_text("")
    for draw in (
        lambda: plots.plot_curves(empty, tmp_path / "x.png"),
        lambda: plots.plot_compare_curves({"e": ("line", empty)}, tmp_path / "y.png"),
    ):
        with pytest.raises(ValueError, match=f"{re.escape(str(empty))}: not a training history"):
            draw()


def _history_csv(path, steps, validated, columns=None):
    """A history.csv as training writes it (models.train._write_history): a row per step up to
    ``steps``, ``validated`` step -> (val_loss, val_acc) on its validation rows; ``columns``
    keeps only those (a file without a column)."""
    from models import train

    rows = [
        {
            "step": s,
            "lr": 0.001,
            "train_loss": 3.0 / s,
            "grad_norm": 1.0,
            "images_per_s": 50.0,
            "elapsed_s": 0.1 * s,
            **dict(zip(("val_loss", "val_acc"), validated.get(s, (None, None)), strict=True)),
        }
        for s in range(1, steps + 1)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    train._write_history(path, rows)
    if columns is not None:
        with open(path, newline="") as f:
            kept = [{k: r[k] for k in columns} for r in csv.DictReader(f)]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(kept)
    return path


def _lines(ax):
    return [(ln.get_label(), ln.get_xdata().tolist(), ln.get_ydata().tolist()) for ln in ax.lines]


def _compare_figure(monkeypatch, histories, out):
    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, out: (figures.append(fig), save(fig, out)))
    table = plots.plot_compare_curves(histories, out)
    [fig] = figures
    return fig, table


def test_plot_compare_curves_overlays_each_tasks_experiments(tmp_path, monkeypatch):
    """A row per task (by name, as the accuracy plots' panels), validation loss left on a log
    scale, val_acc right; a line per experiment over its own validation steps (runs of
    different lengths), the same colour in both panels, named in a legend right of the
    panels; a task of one experiment drawn too."""
    models = tmp_path / "models"
    histories = {
        "line_crnn_vgg": ("line", {3: (2.5, 0.25), 6: (1.25, 0.5)}, 6),
        "line_crnn_grcnn": ("line", {3: (2.0, 0.125), 6: (1.0, 0.375), 9: (0.5, 0.625)}, 9),
        "expr_crnn": ("expr", {2: (1.5, 0.5), 4: (0.75, 1.0)}, 4),
    }
    written = {
        e: (task, _history_csv(models / e / "history.csv", steps, validated))
        for e, (task, validated, steps) in histories.items()
    }
    out = tmp_path / "plots" / "compare_curves.png"
    fig, table = _compare_figure(monkeypatch, written, out)

    assert _is_png(out)
    with Image.open(out) as im:
        lo, hi = im.convert("L").getextrema()
    assert hi - lo > 100, "the figure is blank"
    expected = [
        (e, histories[e][0], step, loss, acc)
        for e in ("expr_crnn", "line_crnn_grcnn", "line_crnn_vgg")
        for step, (loss, acc) in histories[e][1].items()
    ]
    assert list(table.itertuples(index=False, name=None)) == expected
    assert [ax.get_title() for ax in fig.axes] == [
        "expr: val_loss",
        "expr: val_acc",
        "line: val_loss",
        "line: val_acc",
    ]
    assert [ax.get_ylabel() for ax in fig.axes] == ["val_loss", "val_acc"] * 2
    for i, (task, experiments) in enumerate(
        [("expr", ["expr_crnn"]), ("line", ["line_crnn_grcnn", "line_crnn_vgg"])]
    ):
        for column, ax in enumerate(fig.axes[2 * i : 2 * i + 2]):
            assert _lines(ax) == [
                (
                    e,
                    list(histories[e][1]),
                    [v[column] for v in histories[e][1].values()],
                )
                for e in experiments
            ], (task, ax.get_title())
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "linear", "log", "linear"]
    assert all(ax.get_ylim()[0] == 0 for ax in fig.axes[1::2])  # a share never below 0
    # a score of 0 (early validations) drawn over the bottom edge, not hidden under it
    assert all(not ln.get_clip_on() for ax in fig.axes[1::2] for ln in ax.lines)

    # one colour per experiment, the same in its two panels, another for each of its task's
    colors = {}
    for ax in fig.axes:
        for ln in ax.lines:
            colors.setdefault(ln.get_label(), set()).add(ln.get_color())
    assert all(len(c) == 1 for c in colors.values()), colors
    assert colors["line_crnn_grcnn"] != colors["line_crnn_vgg"]

    # a legend per task, right of its panels, over no panel
    legends = [ax.get_legend() for ax in fig.axes]
    assert legends[0] is None and legends[2] is None
    assert [[t.get_text() for t in lg.get_texts()] for lg in legends[1::2]] == [
        ["expr_crnn"],
        ["line_crnn_grcnn", "line_crnn_vgg"],
    ]
    for legend in legends[1::2]:
        handles = legend.legend_handles
        assert [h.get_color() for h in handles] == [
            colors[t.get_text()].copy().pop() for t in legend.get_texts()
        ]
    canvas = FigureCanvasAgg(fig)  # closed: its own canvas draws no more
    canvas.draw()
    renderer = canvas.get_renderer()
    for legend in legends[1::2]:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), ax.get_title()
    # losses within a decade: labelled ticks between the powers of ten, as plain numbers
    for ax in fig.axes[::2]:
        shown = _tick_labels(ax)
        assert len(shown) >= 2 and all(float(t) > 0 for t in shown), (ax.get_title(), shown)


def _tick_labels(ax):
    """The y tick labels an axis shows (its figure drawn), major and minor, bottom to top."""
    low, high = ax.get_ylim()
    ticks = zip(
        ax.get_yticklabels() + ax.get_yticklabels(minor=True),
        [*ax.get_yticks(), *ax.get_yticks(minor=True)],
        strict=True,
    )
    return [
        t.get_text()
        for t, y in sorted(ticks, key=lambda p: p[1])
        if low <= y <= high and t.get_text()
    ]


def test_plot_compare_curves_tells_close_losses_apart(tmp_path, monkeypatch):
    """A few steps' losses a hundredth apart (the smoke run's hanzi classifier): each labelled
    tick of the log axis says a number of its own; at 3 digits they read 2.29, 2.29, 2.28."""
    history = _history_csv(tmp_path / "history.csv", 6, {3: (2.2915, 0.125), 6: (2.2817, 0.125)})
    fig, _ = _compare_figure(monkeypatch, {"hanzi_cnn": ("hanzi", history)}, tmp_path / "c.png")
    FigureCanvasAgg(fig).draw()
    shown = _tick_labels(fig.axes[0])
    assert fig.axes[0].get_yscale() == "log"
    assert len(shown) >= 3 and len(set(shown)) == len(shown), shown
    values = [float(t) for t in shown]
    assert values == sorted(values) and values[0] >= 2.28 and values[-1] <= 2.2925, shown


def test_plot_compare_curves_says_which_experiment_has_no_validation(tmp_path, monkeypatch):
    """An experiment never validated (train.val_every past its steps) has no line and its
    legend entry says so; one whose history has no val_acc column is drawn on the loss panel
    alone, and says that; a NaN or infinite value is no point; a task none of whose experiments
    has a value in a panel says so in the panel."""
    models = tmp_path / "models"
    histories = {
        "line_a": ("line", _history_csv(models / "a.csv", 6, {3: (2.0, 0.25), 6: (1.0, 0.5)})),
        "line_b": ("line", _history_csv(models / "b.csv", 4, {})),
        "line_c": (
            "line",
            _history_csv(
                models / "c.csv",
                6,
                {2: (math.nan, 0.1), 4: (4.0, 0.2), 6: (math.inf, 0.3)},
                columns=["step", "lr", "train_loss", "val_loss"],
            ),
        ),
        "short_reader": ("short", _history_csv(models / "d.csv", 4, {})),
    }
    fig, table = _compare_figure(monkeypatch, histories, tmp_path / "compare_curves.png")

    assert sorted(set(table["experiment"])) == ["line_a", "line_c"]
    line_loss, line_acc, short_loss, short_acc = fig.axes
    assert _lines(line_loss) == [("line_a", [3, 6], [2.0, 1.0]), ("line_c", [4], [4.0])]
    assert _lines(line_acc) == [("line_a", [3, 6], [0.25, 0.5])]
    assert [t.get_text() for t in line_acc.get_legend().get_texts()] == [
        "line_a",
        "line_b (no validation rows)",
        "line_c (no val_acc)",
    ]
    for ax, column in ((short_loss, "val_loss"), (short_acc, "val_acc")):
        assert not ax.lines
        assert [t.get_text() for t in ax.texts] == [f"short: no {column} values"]
    assert [t.get_text() for t in short_acc.get_legend().get_texts()] == [
        "short_reader (no validation rows)"
    ]


def test_plot_compare_curves_names_the_history_at_fault(tmp_path):
    no_step = tmp_path / "no_step.csv"
    no_step.write_text("lr,val_loss\n0.1,2.0\n")
    with pytest.raises(ValueError, match=rf"{no_step}: no 'step' column"):
        plots.plot_compare_curves({"a": ("line", no_step)}, tmp_path / "x.png")
    words = tmp_path / "words.csv"
    words.write_text("step,val_loss,val_acc\n1,high,0.5\n")
    with pytest.raises(ValueError, match=rf"{words}: column 'val_loss' holds values that are"):
        plots.plot_compare_curves({"a": ("line", words)}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_prediction_grid_and_confusions(tmp_path, cjk_font, monkeypatch):
    from models.evaluate import EvalSpec, evaluate, iter_samples

    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, out: (figures.append(fig), save(fig, out)))
    _, _, _, task, size, texts = CASES["hanzi"]
    assert texts == ["一", "二", "三", "四", "五"]
    shard = make_shard(tmp_path / "test_seen-000000.tar", task, "test_seen", texts, cjk_font, size)
    keys = [s.key for s in iter_samples([shard])]
    # Known readings of the shard's samples: three wrong, one of them empty.
    readings = ["二", "二", "一", "四", ""]
    rows = [
        {"index": i, "key": k, "font": "F", "label": t, "reading": r}
        for i, (k, t, r) in enumerate(zip(keys, texts, readings, strict=True))
    ]
    preds = tmp_path / "predictions.csv"
    write_predictions(preds, rows, "hanzi")
    # another split's: 一 read as 二 once more, 三 as 二 once, and a right reading
    other = tmp_path / "other.csv"
    write_predictions(
        other,
        [
            {"index": i, "key": f"o{i}", "font": "F", "label": t, "reading": r}
            for i, (t, r) in enumerate([("一", "二"), ("三", "二"), ("七", "七")])
        ],
        "hanzi",
    )

    out = tmp_path / "grid.png"
    plots.plot_prediction_grid([shard], preds, out, n=5, title="hanzi_cnn on test_seen")
    assert _is_png(out)
    [grid] = figures
    assert grid._suptitle.get_text() == "hanzi_cnn on test_seen  (3 of 5 wrong, in red)"
    cells = [ax for ax in grid.axes if ax.get_title()]
    assert [ax.get_title() for ax in cells] == [
        "一\n→ 二",
        "二\n→ 二",
        "三\n→ 一",
        "四\n→ 四",
        "五\n→ ∅",
    ]
    wrong = [ax.title.get_color() == plots.ERROR_COLOR for ax in cells]
    assert wrong == [True, False, True, False, True]
    assert [ax.title.get_color() == plots.OK_COLOR for ax in cells] == [not w for w in wrong]

    # Summed over the files given (this split's twice): 一→二 3 times, 三→一 and 五→∅ twice
    # each (ties by the pair), 三→二 once, beyond the top 3.
    pairs = plots.plot_confusions([preds, preds, other], tmp_path / "conf.png", top=3)
    assert _is_png(tmp_path / "conf.png")
    assert pairs == [("一", "二", 3), ("三", "一", 2), ("五", "", 2)]
    [ax] = figures[1].axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["一 → 二", "三 → 一", "五 → ∅"]
    assert [bar.get_width() for bar in ax.patches] == [3, 2, 2]
    assert all(float(t).is_integer() for t in ax.get_xticks())  # counts, not 0.25, 0.5
    assert plots.plot_confusions([other], tmp_path / "one.png", top=3) == [
        ("一", "二", 1),
        ("三", "二", 1),
    ]

    ckpt = make_checkpoint(tmp_path / "model.pt", "hanzi")
    spec = EvalSpec("h", "test_seen")
    evaluate(ckpt, [shard], tmp_path / "metrics.json", tmp_path / "eval.csv", spec)
    plots.plot_accuracy_by_font([tmp_path / "metrics.json"], tmp_path / "fonts.png")
    assert _is_png(tmp_path / "fonts.png")


@pytest.mark.parametrize(("case", "n"), [("expr", 8), ("hanzi", 12)])
def test_prediction_grid_titles_stay_out_of_the_row_above(tmp_path, cjk_font, monkeypatch, case, n):
    """A cell's two-line title (label, reading) never covers an image of the row above: the
    smoke config's two rows of expressions had each second-row title drawn over the first row's
    images (tight_layout spaced the rows before the images took their aspect)."""
    import matplotlib.pyplot as plt

    from models.evaluate import iter_samples

    overlaps = []

    def save(fig, out):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        cells = [ax for ax in fig.axes if ax.get_title()]
        for ax in cells:
            title = ax.title.get_window_extent(renderer)
            overlaps.extend(
                (ax.get_title(), other.get_title())
                for other in cells
                if other is not ax and title.overlaps(other.get_window_extent(renderer))
            )
        plt.close(fig)

    monkeypatch.setattr(plots, "_save", save)
    _, _, _, task, size, texts = CASES[case]
    texts = (texts * n)[:n]
    shard = make_shard(tmp_path / "test_seen-000000.tar", task, "test_seen", texts, cjk_font, size)
    rows = [
        {"index": i, "key": s.key, "font": "F", "label": s.label, "reading": ""}
        for i, s in enumerate(iter_samples([shard]))
    ]
    preds = tmp_path / "predictions.csv"
    write_predictions(preds, rows, task)
    plots.plot_prediction_grid([shard], preds, tmp_path / "grid.png", n=n, title=case)
    assert overlaps == []


def test_prediction_grid_refuses_mismatched_shards(tmp_path, cjk_font):
    _, _, _, task, size, texts = CASES["line"]
    shard = make_shard(tmp_path / "a.tar", task, "test_seen", texts, cjk_font, size)
    preds = tmp_path / "predictions.csv"
    preds.write_text("index,key,font,label,reading\n0,other_key,F,中国,中国\n", encoding="utf-8")
    with pytest.raises(ValueError, match="do not match"):
        plots.plot_prediction_grid([shard], preds, tmp_path / "grid.png")


def test_accuracy_by_font_from_fixture_metrics(tmp_path, metrics_files):
    files = [p for v in metrics_files.values() for p in v]
    table = plots.plot_accuracy_by_font(files, tmp_path / "fonts.png")
    assert _is_png(tmp_path / "fonts.png")
    hanzi = table[(table["experiment"] == "hanzi_cnn") & (table["font"] == "Font B")]
    assert hanzi[["metric", "value"]].values.tolist() == [["top1", 0.8]]
    # panels task by task, Tesseract right after the models it is compared with
    panels = list(dict.fromkeys(zip(table["task"], table["experiment"], strict=True)))
    assert panels == [
        ("expr", "expr_crnn"),
        ("expr", "tesseract"),
        ("hanzi", "hanzi_cnn"),
        ("hanzi", "tesseract"),
        ("line", "line_crnn_vgg"),
        ("short", "short_reader"),
        ("short", "tesseract"),
    ]


def _bar_starts(path, min_px=60):
    """The image height and the first pixel row of each horizontal bar in a PNG plot.

    Bar pixels are the saturated ones (text, grid and axes are grey; a grid line crossing a bar
    stays saturated); a row belongs to a bar when at least ``min_px`` of its pixels are, so the
    legend's small patches (two side by side, 48 px together) do not count.
    """
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    rows = ((rgb.max(axis=-1) - rgb.min(axis=-1)) > 80).sum(axis=1) >= min_px
    starts = [int(i) for i in np.flatnonzero(rows) if i == 0 or not rows[i - 1]]
    return rgb.shape[0], starts


def _label_px(points):
    """The height in pixels of a label of ``points`` at the plots' resolution."""
    return points / 72 * plots.DPI


def test_accuracy_by_font_gives_every_font_a_legible_row(tmp_path):
    # The y tick labels (font names) are drawn at fontsize=7: rows closer than that overlap them.
    floor = _label_px(7)
    heights = {}
    for n in (2, 80):
        seen = {f"Font {i:02d}": {"n": 10, "seq_acc": 0.3 + 0.1 * (i % 6)} for i in range(n // 2)}
        held = {f"Held {i:02d}": {"n": 10, "seq_acc": 0.35 + 0.1 * (i % 5)} for i in range(n // 2)}
        files = []
        for split, per_font in (("test_seen", seen), ("test_heldout", held)):
            path = tmp_path / str(n) / split / "metrics.json"
            write_metrics(
                path, _record("line_crnn_vgg", "crnn_vgg", "line", split, per_font=per_font)
            )
            files.append(path)
        out = tmp_path / f"fonts_{n}.png"
        table = plots.plot_accuracy_by_font(files, out)
        assert len(table) == n
        height, starts = _bar_starts(out)
        assert len(starts) == n, f"{n} fonts drawn as {len(starts)} separate bars"
        pitch = int(min(np.diff(starts)))
        assert pitch >= floor, f"{n} fonts: rows {pitch} px apart, the 7 pt labels need {floor:.1f}"
        heights[n] = height
    # Each font adds a row to the figure, not a squeeze of the rows already there.
    assert (heights[80] - heights[2]) / (80 - 2) >= floor, heights


def test_confusions_give_every_pair_a_legible_row(tmp_path):
    # The pair labels (true → read) are drawn at fontsize=11.
    floor = _label_px(11)
    heights = {}
    for n in (2, 40):
        # n distinct wrong readings, one pair each, and a right one that is no pair
        rows = [
            {
                "index": i,
                "key": f"s{i}",
                "font": "F",
                "label": chr(0x4E00 + i),
                "reading": chr(0x4F00 + i),
            }
            for i in range(n)
        ]
        rows.append({"index": n, "key": f"s{n}", "font": "F", "label": "中", "reading": "中"})
        preds = tmp_path / f"predictions_{n}.csv"
        write_predictions(preds, rows, "hanzi")
        out = tmp_path / f"confusions_{n}.png"
        assert len(plots.plot_confusions([preds], out, top=50)) == n
        height, starts = _bar_starts(out)
        assert len(starts) == n, f"{n} pairs drawn as {len(starts)} separate bars"
        pitch = int(min(np.diff(starts)))
        assert pitch >= floor, (
            f"{n} pairs: rows {pitch} px apart, the 11 pt labels need {floor:.1f}"
        )
        heights[n] = height
    assert (heights[40] - heights[2]) / (40 - 2) >= floor, heights


def test_reader_attention_gifs(tmp_path, cjk_font):
    _, _, _, task, size, texts = CASES["short"]
    shard = make_shard(tmp_path / "test_seen-000000.tar", task, "test_seen", texts, cjk_font, size)
    ckpt = make_checkpoint(tmp_path / "model.pt", "short")
    outs = [tmp_path / "gifs" / f"attention_{i}.gif" for i in range(2)]
    readings = plots.reader_attention_gifs(ckpt, [shard], outs, frame_ms=100)
    assert len(readings) == 2
    for out in outs:
        with Image.open(out) as im:
            assert im.format == "GIF"
            assert 1 <= im.n_frames <= 5  # max_len 4: at most 5 steps
            assert im.is_animated == (im.n_frames > 1)


def test_the_terminal_symbol_is_titled_in_words(tmp_path, cjk_font):
    """A reader that ends at once: its one frame's title names the terminal symbol with glyphs
    every font has (matplotlib warns, and draws a box, for a glyph it lacks)."""
    import torch

    from models.checkpoint import ModelMeta, save_model
    from models.registry import build_model

    name, kwargs, charset, task, size, texts = CASES["short"]
    shard = make_shard(tmp_path / "test_seen-000000.tar", task, "test_seen", texts, cjk_font, size)
    model = build_model(name, len(charset), **kwargs)
    with torch.no_grad():
        model.char_head.bias[0] = 50.0  # class 0, the terminal symbol, at the first step
    ckpt = tmp_path / "model.pt"
    save_model(ckpt, model, ModelMeta(name, kwargs, charset, task, train={"steps": 1}, step=1))
    out = tmp_path / "attention_0.gif"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert plots.reader_attention_gifs(ckpt, [shard], [out], frame_ms=100) == [""]
    assert not [w for w in caught if "missing from font" in str(w.message)]
    with Image.open(out) as im:
        assert im.n_frames == 1


def test_a_reader_that_never_ends_is_shown_ending_at_its_last_step(tmp_path, cjk_font, monkeypatch):
    """Decoding takes the last step as the terminal symbol (a reading has at most max_len
    characters): the GIF's last frame says so, with the terminal's probability there, rather
    than a fifth character the reading does not hold."""
    import torch

    from models.checkpoint import ModelMeta, save_model
    from models.registry import build_model

    name, kwargs, charset, task, size, texts = CASES["short"]
    shard = make_shard(tmp_path / "test_seen-000000.tar", task, "test_seen", texts, cjk_font, size)
    model = build_model(name, len(charset), **kwargs)
    with torch.no_grad():
        model.char_head.bias[0] = -50.0  # never the terminal symbol
        model.char_head.bias[1] = 50.0  # always the first character
    ckpt = tmp_path / "model.pt"
    save_model(ckpt, model, ModelMeta(name, kwargs, charset, task, train={"steps": 1}, step=1))
    titles = []
    frame = plots._frame
    monkeypatch.setattr(
        plots, "_frame", lambda fig: titles.append(fig.axes[0].get_title()) or frame(fig)
    )
    [reading] = plots.reader_attention_gifs(ckpt, [shard], [tmp_path / "a.gif"], frame_ms=100)
    assert reading == charset[0] * 4  # max_len 4
    assert len(titles) == 5 and all(repr(charset[0]) in t for t in titles[:4])
    assert titles[-1].startswith("step 5: end  p=0.00"), titles
    with Image.open(tmp_path / "a.gif") as im:  # every step is a frame of the animation
        assert im.is_animated and im.n_frames == 5
        assert im.info["duration"] == 100 and im.info["loop"] == 0


def test_metrics_files_are_plain_json(metrics_files):
    # NaN is not JSON: undefined values must be null.
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    for path in metrics_files["crnn"]:
        json.loads(path.read_text(), parse_constant=refuse)


def test_targets_table_shows_the_gap():
    records = [
        {"experiment": "expr_crnn", "split": "test_heldout", "seq_acc": 0.985, "cer": 0.004},
        {"experiment": "hanzi_cnn", "split": "test_heldout", "top1": 0.975},
        {"experiment": "tesseract", "split": "test_heldout", "seq_acc": 1.0},  # one per task
    ]
    targets = [
        {"experiment": "expr_crnn", "metric": "seq_acc", "split": "test_heldout", "value": 0.99},
        {"experiment": "hanzi_cnn", "metric": "top1", "split": "test_heldout", "value": 0.97},
        {"experiment": "short_reader", "metric": "seq_acc", "split": "test_heldout", "value": 0.9},
        # error rates: met when at or below the target, the gap how far below
        {"experiment": "expr_crnn", "metric": "cer", "split": "test_heldout", "value": 0.005},
        {"experiment": "expr_crnn", "metric": "cer", "split": "test_heldout", "value": 0.003},
        {"experiment": "tesseract", "metric": "seq_acc", "split": "test_heldout", "value": 0.5},
    ]
    table = report.targets_table(targets, records)
    assert list(table["met"][:2]) == ["no", "yes"]
    assert table["gap"][0] == pytest.approx(-0.005)
    assert table["gap"][1] == pytest.approx(0.005)
    assert table["reached"].isna()[2]  # the reader did not run: no figure, no verdict
    assert list(table["met"][3:5]) == ["yes", "no"]
    assert list(table["gap"][3:5]) == pytest.approx([0.001, -0.001])
    assert table["reached"].isna()[5]  # Tesseract's rows are not one experiment's
    text = report.summary_markdown(
        report.crnn_table([]),
        report.hanzi_table([]),
        report.reader_table([]),
        report.references_table([], []),
        targets=table,
    )
    assert "## Targets for this configuration" in text
    assert "-0.0050" in text
    assert table["interval_95"].isna().all()  # no sample count in these records, no interval


def test_a_target_reached_exactly_is_met():
    """The README's own headline: 1980 of 2000 expressions against a 99% target. A figure equal
    to its target meets it, a share and an error rate alike (the gap is 0, not missed)."""
    records = [
        {"experiment": "expr_crnn", "split": "test_heldout", "n": 2000, "seq_acc": 1980 / 2000},
        {"experiment": "line", "split": "test_heldout", "n": 1000, "cer": 0.05},
    ]
    targets = [
        {"experiment": "expr_crnn", "metric": "seq_acc", "split": "test_heldout", "value": 0.99},
        {"experiment": "line", "metric": "cer", "split": "test_heldout", "value": 0.05},
    ]
    table = report.targets_table(targets, records)
    assert list(table["gap"]) == [0.0, 0.0]
    assert list(table["met"]) == ["yes, within noise", "yes"]


def test_targets_table_says_when_a_target_is_within_the_noise_of_the_split():
    """A share (seq_acc, top-k, value_acc) gets its 95% Wilson interval over the split's n
    images; a target inside it is met or missed "within noise". Error rates get none."""
    per_file = {  # three faces in one file, two files of one face
        "wqy-zenhei.ttc": {"n": 1200, "seq_acc": 0.9983},
        "uming.ttc": {"n": 400, "seq_acc": 0.9858},
        "ukai.ttc": {"n": 400, "seq_acc": 0.9847},
    }
    records = [
        {
            "experiment": "expr_crnn",
            "split": "test_heldout",
            "n": 2000,
            "seq_acc": 0.993,
            "per_font_file": per_file,
        },
        {"experiment": "hanzi_cnn", "split": "test_heldout", "n": 3755, "top1": 0.9731},
        {"experiment": "short_reader", "split": "test_heldout", "n": 1000, "seq_acc": 0.905},
        {"experiment": "line", "split": "test_heldout", "n": 1000, "seq_acc": 0.5, "cer": 0.1},
    ]
    targets = [
        {"experiment": "expr_crnn", "metric": "seq_acc", "split": "test_heldout", "value": 0.99},
        {"experiment": "expr_crnn", "metric": "seq_acc", "split": "test_heldout", "value": 0.98},
        {"experiment": "hanzi_cnn", "metric": "top1", "split": "test_heldout", "value": 0.975},
        {"experiment": "short_reader", "metric": "seq_acc", "split": "test_heldout", "value": 0.95},
        {"experiment": "line", "metric": "cer", "split": "test_heldout", "value": 0.2},
    ]
    table = report.targets_table(targets, records)
    assert list(table["met"]) == ["yes, within noise", "yes", "no, within noise", "no", "yes"]
    assert table["interval_95"][0] == "0.9883-0.9958"
    assert table["interval_95"][4] is None
    # each file weighted alike: below the target that the split's own figure meets
    assert table["per_file"][0] == pytest.approx((0.9983 + 0.9858 + 0.9847) / 3)
    assert table["per_file"][0] < 0.99 and table["per_file"][2] is None
    text = report.summary_markdown(
        report.crnn_table([]),
        report.hanzi_table([]),
        report.reader_table([]),
        report.references_table([], []),
        targets=table,
    )
    assert "| 0.9883-0.9958 | 0.9896 |" in text and "95% Wilson interval" in text


def test_a_font_without_a_figure_is_said_to_have_none_not_drawn_at_zero(tmp_path):
    """A per-font cell with no figure (NaN) was drawn as a bar at 0.00, read as a font the
    model reads nothing of; own test sets' grey bars get a legend entry."""
    assert plots._bar_label(float("nan"), 3, 2.0) == (0.01, 2.0, "no figure (n=3)")
    assert plots._bar_label(0.5, 10, 1.0) == (0.51, 1.0, "0.500 (n=10)")
    files = []
    for split in ("test_seen", "test_mine"):
        path = tmp_path / split / "metrics.json"
        per_font = {"A": {"n": 4, "seq_acc": 0.5}, "B": {"n": 0, "seq_acc": None}}
        write_metrics(path, _record("line_crnn_vgg", "crnn_vgg", "line", split, per_font=per_font))
        files.append(path)
    table = plots.plot_accuracy_by_font(files, tmp_path / "fonts.png")
    assert table["value"].isna().sum() == 2 and (tmp_path / "fonts.png").stat().st_size > 0
    assert list(plots._split_colors(table["split"])) == [
        "test_seen",
        "test_heldout",
        "own test sets",
    ]
    assert "own test sets" not in plots._split_colors(["test_seen", "test_heldout"])


def test_per_font_bars_carry_their_wilson_interval(tmp_path, monkeypatch):
    """A font's figure rests on its own few images: each bar gets the 95% Wilson interval of its
    ``n`` as a whisker (and in the table), so two fonts' bars are not read as different when
    chance alone parts them; the label goes right of the whisker."""
    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, out: (figures.append(fig), save(fig, out)))
    path = tmp_path / "metrics.json"
    per_font = {
        "A": {"n": 10, "seq_acc": 0.5},
        "B": {"n": 1000, "seq_acc": 0.5},
        "C": {"n": 0, "seq_acc": None},
    }
    write_metrics(
        path, _record("line_crnn_vgg", "crnn_vgg", "line", "test_seen", per_font=per_font)
    )
    table = plots.plot_accuracy_by_font([path], tmp_path / "fonts.png").set_index("font")
    for font in ("A", "B"):
        n = per_font[font]["n"]
        assert tuple(table.loc[font, ["low", "high"]]) == pytest.approx(wilson_interval(0.5, n))
    width = table["high"] - table["low"]
    assert width["A"] > 5 * width["B"]  # ten images leave far more room than a thousand
    assert table.loc["C", ["low", "high"]].isna().all()
    [fig] = figures
    [ax] = fig.axes
    [bars] = ax.containers[1:]
    # One whisker per bar (fonts A, B, C top to bottom), none drawn for C's missing figure.
    spans = [seg[:, 0] for seg in bars.errorbar.lines[2][0].get_segments()]
    assert [tuple(np.round(s, 4)) for s in spans] == [
        tuple(np.round(table.loc[f, ["low", "high"]].to_numpy(float), 4)) for f in ("A", "B")
    ] + [(0.0, 0.0)]
    x, _, text = plots._bar_label(0.5, 10, 0.0, table.loc["A", "high"])
    assert x == pytest.approx(table.loc["A", "high"] + 0.01) and text == "0.500 (n=10)"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B", "C"]  # test_seen: bare
    assert max(ax.get_xticks()) == 1.0
    assert plots._font_tick("UKai", "test_heldout") == "UKai [held out]"
    assert plots._font_tick("Mine", "test_scans") == "Mine [test_scans]"


def _overall_files(tmp_path):
    """Small metrics.json files of two tasks, in no particular order: a CTC model and
    Tesseract on expressions, the classifier and a Tesseract that did not run on hanzi."""
    records = [
        _record("tesseract", "tesseract 5.3.0", "expr", "test_heldout", n=50, seq_acc=0.4),
        _record("expr_crnn", "expr_crnn", "expr", "test_heldout", n=100, seq_acc=0.8),
        _record("hanzi_cnn", "hanzi_cnn", "hanzi", "test_seen", n=200, seq_acc=0.9, top1=0.95),
        _record("expr_crnn", "expr_crnn", "expr", "test_seen", n=100, seq_acc=0.9),
        _record("tesseract", "tesseract 5.3.0", "expr", "test_seen", n=50, seq_acc=0.5),
        _record("hanzi_cnn", "hanzi_cnn", "hanzi", "test_heldout", n=200, seq_acc=0.8, top1=0.85),
        {
            "experiment": "tesseract",
            "model": "tesseract (not installed)",
            "task": "hanzi",
            "split": "test_seen",
            "n": 0,
            "per_font": {},
        },
    ]
    files = []
    for i, record in enumerate(records):
        path = tmp_path / "eval" / str(i) / "metrics.json"
        write_metrics(path, record)
        files.append(path)
    return files


def test_accuracy_by_experiment_puts_seen_and_held_out_side_by_side(tmp_path, monkeypatch):
    """Each experiment's headline share (top-1 for the classifier) per split, with its 95% Wilson
    interval, a panel per task, Tesseract below the models; a Tesseract that did not run has no
    figure (no bar), not a bar at 0."""
    table = plots.experiment_accuracy_table(_overall_files(tmp_path))
    assert [tuple(r) for r in table[["task", "experiment", "split", "metric"]].values] == [
        ("expr", "expr_crnn", "test_seen", "seq_acc"),
        ("expr", "expr_crnn", "test_heldout", "seq_acc"),
        ("expr", "tesseract", "test_seen", "seq_acc"),
        ("expr", "tesseract", "test_heldout", "seq_acc"),
        ("hanzi", "hanzi_cnn", "test_seen", "top1"),
        ("hanzi", "hanzi_cnn", "test_heldout", "top1"),
        ("hanzi", "tesseract", "test_seen", "seq_acc"),
    ]
    assert table["value"].tolist()[:6] == [0.9, 0.8, 0.5, 0.4, 0.95, 0.85]
    for _, row in table.iloc[:6].iterrows():
        assert (row["low"], row["high"]) == pytest.approx(wilson_interval(row["value"], row["n"]))
    assert table.iloc[6][["value", "low", "high"]].isna().all()

    bars = plots.experiment_bars(table)
    # a model's two splits side by side around its row, the next experiment a row below
    assert bars["panel"].tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert bars["y"].tolist() == pytest.approx([-0.2, 0.2, 0.8, 1.2, -0.2, 0.2, 0.8])
    assert bars["height"].tolist() == pytest.approx([0.4] * 7)

    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, out: (figures.append(fig), save(fig, out)))
    out = tmp_path / "accuracy_by_experiment.png"
    drawn = plots.plot_accuracy_by_experiment(_overall_files(tmp_path / "again"), out)
    assert drawn.equals(bars)
    with Image.open(out) as im:
        assert im.format == "PNG" and 600 <= im.width <= 1400 and 300 <= im.height <= 1400
        im.load()
    [fig] = figures
    expr, hanzi = fig.axes[:2]
    for ax, part in ((expr, bars[bars["panel"] == 0]), (hanzi, bars[bars["panel"] == 1])):
        patches = ax.containers[-1].patches
        assert [p.get_width() for p in patches] == pytest.approx(
            np.nan_to_num(part["value"].to_numpy(float)).tolist()
        )
        centres = [p.get_y() + p.get_height() / 2 for p in patches]
        assert centres == pytest.approx(part["y"].tolist())
        # whiskers from low to high; none (a point at 0) for a split without a figure
        spans = [seg[:, 0] for seg in ax.containers[-1].errorbar.lines[2][0].get_segments()]
        want = np.nan_to_num(part[["low", "high"]].to_numpy(float))
        assert np.asarray(spans) == pytest.approx(want)
    assert [t.get_text() for t in expr.get_yticklabels()] == ["expr_crnn", "tesseract"]
    assert (expr.get_xlabel(), hanzi.get_xlabel()) == ("seq_acc", "top1")
    labels = [t.get_text() for t in hanzi.texts]
    assert labels == ["0.950 (n=200)", "0.850 (n=200)", "no figure (n=0)"]


@pytest.mark.parametrize("plot", ["plot_accuracy_by_font", "plot_accuracy_by_experiment"])
def test_accuracy_plots_say_what_they_compare_above_their_panels(tmp_path, monkeypatch, plot):
    """The figure's title says what is compared, and its legend which fonts each split's colour
    stands for, both above the panels: the legend, in the figure's corner, was drawn over the
    first panel's frame (and would be over its labels right of a bar near 1)."""
    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, out: (figures.append(fig), save(fig, out)))
    getattr(plots, plot)(_overall_files(tmp_path), tmp_path / "plot.png")
    [fig] = figures
    assert "Tesseract on the same images" in fig.get_suptitle()
    [legend] = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "test_seen (training fonts)",
        "test_heldout (fonts training never saw)",
    ]
    renderer = FigureCanvasAgg(fig).get_renderer()  # closed: its canvas draws no more
    box = legend.get_window_extent(renderer)
    title = fig._suptitle.get_window_extent(renderer)
    assert not box.overlaps(title)
    for ax in fig.axes:  # each panel with its title and tick labels
        assert not box.overlaps(ax.get_tightbbox(renderer)), ax.get_title()
        assert not title.overlaps(ax.get_tightbbox(renderer)), ax.get_title()


@pytest.mark.parametrize("plot", ["plot_accuracy_by_font", "plot_accuracy_by_experiment"])
def test_accuracy_plots_without_tesseract_do_not_name_it_in_their_title(
    tmp_path, monkeypatch, plot
):
    """With no Tesseract row (``tesseract.enabled: false``) the title names no Tesseract: it said
    "Tesseract on the same images" over panels that had none."""
    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, out: (figures.append(fig), save(fig, out)))
    files = [
        f
        for f in _overall_files(tmp_path)
        if json.loads(f.read_text())["experiment"] != "tesseract"
    ]
    drawn = getattr(plots, plot)(files, tmp_path / "plot.png")
    assert "tesseract" not in set(drawn["experiment"])
    [fig] = figures
    assert "Tesseract" not in fig.get_suptitle()
    assert fig.get_suptitle().startswith("Accuracy per")


def test_summary_gives_each_rows_figure_per_font_file_beside_its_headline(tmp_path):
    """summary.md's tables carry ``per_file`` after ``interval_95``: the headline share (top-1
    for the classifier) with each font file weighted alike, on the overall rows; empty for a
    split of one's own images (no font file) and for per-font rows. The CSVs are unchanged."""
    files = {"a.ttc": {"n": 30, "seq_acc": 1.0, "top1": 0.9}, "b.ttf": {"n": 10, "seq_acc": 0.6}}
    crnn = [
        _record("expr_crnn", "expr_crnn", "expr", "test_heldout", n=40, per_font_file=files),
        _record("expr_crnn", "expr_crnn", "expr", "test_scans", n=40),  # own images: no files
    ]
    hanzi_files = {"a.ttc": {"n": 30, "top1": 0.9}, "b.ttf": {"n": 10, "top1": 0.5}}
    hanzi = [
        _record("hanzi_cnn", "hanzi_cnn", "hanzi", "test_seen", top1=0.8, per_font_file=hanzi_files)
    ]
    table = report.crnn_table(crnn, per_file=True)
    at = list(table.columns).index("interval_95")
    assert list(table.columns)[at + 1 : at + 3] == ["per_file", "cer"]
    assert table["per_file"].tolist() == [pytest.approx((1.0 + 0.6) / 2), None]
    by_font = report.hanzi_table(hanzi, per_file=True)
    assert by_font[["font", "per_file"]].values.tolist() == [
        ["all", pytest.approx((0.9 + 0.5) / 2)],  # top-1's, not seq_acc's
        ["Font A", None],
        ["Font B", None],
    ]
    assert "per_file" not in report.crnn_table(crnn).columns  # the CSV's columns stay

    paths = _metrics_files(tmp_path, crnn=crnn, hanzi=hanzi)
    text = report.build_reports(paths["crnn"], paths["hanzi"], [], [], tmp_path / "summary.md")
    low, high = wilson_interval(0.5, 40)
    assert f"| 0.5000 | {low:.4f}-{high:.4f} | 0.8000 | 0.2500 |" in text  # seq_acc, per_file, cer
    low, high = wilson_interval(0.8, 20)
    assert f"| test_seen | 20 | 0.8000 | {low:.4f}-{high:.4f} | 0.7000 |  |" in text  # top-1's
    assert "`per_file` the figure with each font file of the split weighted alike" in text


def _metrics_files(folder, **records):
    """Each kind's records (``crnn=[...]``) written as metrics.json files under ``folder``:
    kind -> their paths, as `models.report.build_reports` takes them."""
    paths = {}
    for kind, kind_records in records.items():
        paths[kind] = []
        for i, record in enumerate(kind_records):
            paths[kind].append(folder / kind / str(i) / "metrics.json")
            write_metrics(paths[kind][-1], record)
    return paths


def _seed_copies():
    """Three seed copies of one CTC model, one more at another learning rate (train_settings),
    one more of other model_kwargs, and a hanzi classifier of two seeds; with Tesseract."""
    kwargs = {"width": 0.25, "hidden": 96}
    settings = {"lr": 0.002, "schedule": "wsd"}
    scores = {  # experiment -> (seed, test_seen, test_heldout)
        "line_vgg": (1, 0.5, 0.4),
        "line_vgg_s3": (3, 0.75, 0.35),
        "line_vgg_s2": (2, 0.625, 0.45),
        "line_vgg_lr4": (1, 0.9, 0.8),
        "line_vgg_wide": (1, 0.3, 0.2),
    }
    crnn = [
        _record(
            name,
            "crnn_vgg",
            "line",
            split,
            seed=seed,
            seq_acc=acc,
            model_kwargs={**kwargs, "width": 0.5} if name == "line_vgg_wide" else kwargs,
            train_settings={**settings, "lr": 0.004} if name == "line_vgg_lr4" else settings,
        )
        for name, (seed, *accs) in scores.items()
        for split, acc in zip(("test_seen", "test_heldout"), accs, strict=True)
    ]
    crnn.append(_record("tesseract", "tesseract 5.3.0", "line", "test_seen", seed=None))
    hanzi = [
        _record("hanzi_a", "hanzi_cnn", "hanzi", "test_seen", seed=1, top1=0.9, top5=0.99),
        _record("hanzi_b", "hanzi_cnn", "hanzi", "test_seen", seed=2, top1=0.8, top5=0.98),
    ]
    return scores, crnn, hanzi


def test_summary_gives_the_spread_over_seed_copies(tmp_path):
    """summary.md groups the experiments that differ in their seed alone and gives, per split,
    how many, the mean, sample standard deviation, min and max of their headline figure;
    an experiment with another learning rate or other model kwargs is not of the group."""
    import statistics

    scores, crnn, hanzi = _seed_copies()
    seeds = report.seed_table(report.crnn_table(crnn), report.hanzi_table(hanzi))
    assert list(seeds.columns) == list(report.SEED_COLUMNS)
    copies = ["line_vgg", "line_vgg_s2", "line_vgg_s3"]
    assert seeds[["experiments", "split", "metric"]].values.tolist() == [
        ["hanzi_a, hanzi_b", "test_seen", "top1"],  # the classifier's headline figure
        [", ".join(copies), "test_seen", "seq_acc"],
        [", ".join(copies), "test_heldout", "seq_acc"],
    ]
    for row, column in ((seeds.iloc[1], 1), (seeds.iloc[2], 2)):
        values = [scores[name][column] for name in copies]
        assert row["seeds"] == 3
        assert row["mean"] == pytest.approx(statistics.mean(values))
        assert row["sd"] == pytest.approx(np.std(values, ddof=1))
        assert (row["min"], row["max"]) == (min(values), max(values))
        assert row["model_kwargs"] == "hidden=96 width=0.25"
        assert row["train_settings"] == 'lr=0.002 schedule="wsd"'
    assert seeds.iloc[0]["mean"] == pytest.approx((0.9 + 0.8) / 2)
    # the same rows whatever the order of the tables and of the records
    again = report.seed_table(report.hanzi_table(hanzi[::-1]), report.crnn_table(crnn[::-1]))
    assert again.values.tolist() == seeds.values.tolist()

    paths = _metrics_files(tmp_path, crnn=crnn, hanzi=hanzi)
    text = report.build_reports(paths["crnn"], paths["hanzi"], [], [], tmp_path / "summary.md")
    section = text.split("## Seed copies\n", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| line_vgg")]
    values = [scores[name][1] for name in copies]
    assert rows[0].startswith(
        f"| {', '.join(copies)} | crnn_vgg | line | greedy | test_seen | seq_acc | 3 | "
        f"{statistics.mean(values):.4f} | {statistics.stdev(values):.4f} | "
        f"{min(values):.4f} | {max(values):.4f} | hidden=96 width=0.25 |"
    )
    assert len(rows) == 2 and "| test_heldout |" in rows[1]
    assert "lr4" not in section and "wide" not in section and "tesseract" not in section


def test_seed_copies_are_grouped_by_the_steps_configured_not_those_run(tmp_path):
    """Early stopping ends seed copies of one configuration at different steps: they are one
    group (their ``budget_steps``), whose ``train_steps`` gives the steps run as min-max; copies
    of another budget are another group, even where one of them stopped at a step the first
    group's ran. The same from the report CSV read back (steps as floats there)."""
    _, crnn, _ = _seed_copies()
    ran = {"line_vgg_s2": 4, "line_vgg_s3": 5}  # budget 6, as line_vgg, which ran all 6
    copies = [
        {**r, "train_steps": ran.get(r["experiment"], r["train_steps"])}
        for r in crnn
        if r["experiment"].startswith("line_vgg") or r["experiment"] == "tesseract"
    ]
    longer = [  # budget 12: seed 1 stopped at 6 (line_vgg's steps), seed 2 ran all 12
        {**r, "experiment": name, "seed": seed, "budget_steps": 12, "train_steps": steps}
        for r in crnn
        if r["experiment"] == "line_vgg"
        for name, seed, steps in (("line_vgg_long", 1, 6), ("line_vgg_long_s2", 2, 12))
    ]
    table = report.crnn_table(copies + longer)
    report.write_table(table, tmp_path / "crnn_report.csv")
    import pandas as pd

    for seeds in (
        report.seed_table(table),
        report.seed_table(pd.read_csv(tmp_path / "crnn_report.csv")),
    ):
        cells = seeds[["experiments", "split", "seeds", "budget_steps", "train_steps"]]
        group, long = "line_vgg, line_vgg_s2, line_vgg_s3", "line_vgg_long, line_vgg_long_s2"
        assert cells.values.tolist() == [
            [group, "test_seen", 3, 6, "4-6"],
            [group, "test_heldout", 3, 6, "4-6"],
            [long, "test_seen", 2, 12, "6-12"],
            [long, "test_heldout", 2, 12, "6-12"],
        ]
    # copies that all ran their budget give it as one number
    full = report.seed_table(
        report.crnn_table([r for r in crnn if r["experiment"] != "line_vgg_lr4"])
    )
    assert full["train_steps"].tolist() == [6, 6]
    # evaluations made before budget_steps was recorded: grouped by the steps run, as then
    unbudgeted = [{k: v for k, v in r.items() if k != "budget_steps"} for r in copies]
    assert report.seed_table(report.crnn_table(unbudgeted)).empty
    ran_alike = [{**r, "train_steps": 6} for r in unbudgeted]
    old = report.seed_table(report.crnn_table(ran_alike))
    assert old["experiments"].tolist() == [group, group]
    assert old["budget_steps"].tolist() == [None, None] and old["train_steps"].tolist() == [6, 6]


def test_seed_copies_that_differ_in_a_setting_the_weights_do_not_depend_on_are_one_group(
    tmp_path,
):
    """log_every chooses the history's rows alone (`models.specs.WEIGHT_NEUTRAL`): copies that
    differ in it, one of them at its default (no cell), are one group, whose train_settings
    leave it out; copies that differ in their validation (val_every: where early stopping can
    end them) are not. From the tables and from their CSVs read back alike."""
    _, crnn, _ = _seed_copies()
    logged = {"line_vgg_s2": 1, "line_vgg_s3": 10}  # line_vgg's log_every: the default
    records = []
    for r in crnn:
        settings = dict(r.get("train_settings") or {})
        if r["experiment"] in logged:
            settings["log_every"] = logged[r["experiment"]]
        if r["experiment"] == "line_vgg_lr4":  # line_vgg_s2 but for its seed and val_every
            settings.update(lr=0.002, val_every=100, log_every=1)
            r = {**r, "seed": 4}
        records.append({**r, "train_settings": settings})
    table = report.crnn_table(records)
    cells = dict(zip(table["experiment"], table["train_settings"], strict=True))
    assert cells["line_vgg_s2"] == 'log_every=1 lr=0.002 schedule="wsd"'  # the tables keep it
    assert cells["line_vgg_lr4"] == 'log_every=1 lr=0.002 schedule="wsd" val_every=100'
    report.write_table(table, tmp_path / "crnn_report.csv")
    import pandas as pd

    copies = "line_vgg, line_vgg_s2, line_vgg_s3"
    for seeds in (
        report.seed_table(table),
        report.seed_table(pd.read_csv(tmp_path / "crnn_report.csv")),
    ):
        assert seeds["experiments"].tolist() == [copies, copies]
        assert seeds["seeds"].tolist() == [3, 3]
        assert seeds["train_settings"].tolist() == ['lr=0.002 schedule="wsd"'] * 2
    # one copy at every default, the other at another log_every alone: one group still
    plain = [
        {**r, "train_settings": {"log_every": 1} if r["experiment"] == "line_vgg_s2" else {}}
        for r in crnn
        if r["experiment"] in ("line_vgg", "line_vgg_s2")
    ]
    both = report.seed_table(report.crnn_table(plain))
    assert both["experiments"].tolist() == ["line_vgg, line_vgg_s2"] * 2


def test_runs_on_other_numbers_of_training_shards_are_not_seed_copies(tmp_path):
    """A data-scaling study: one model, settings and budget trained on 4 and on 16 shards
    (``train.shards``, which ``train_settings`` leave out). Two runs that differ in their
    ``train_shards`` (and seed) alone are no seed copies; each count's copies are a group of
    their own, which gives the count. From the table and its CSV read back alike (counts as
    floats there, beside Tesseract's empty cell); evaluations made before ``train_shards`` was
    recorded (no key) group as they did then."""
    import pandas as pd

    _, crnn, _ = _seed_copies()
    base = [r for r in crnn if r["experiment"] in ("line_vgg", "tesseract")]

    def runs(named: dict[str, tuple[int, int]]) -> list[dict]:
        """``base``'s line_vgg rows as experiment -> (seed, train_shards), and Tesseract's
        (which records no shards: an empty cell in the CSV)."""
        return [{**r, "train_shards": None} for r in base if r["experiment"] == "tesseract"] + [
            {**r, "experiment": name, "seed": seed, "train_shards": n}
            for r in base
            if r["experiment"] == "line_vgg"
            for name, (seed, n) in named.items()
        ]

    scaling = runs({"line_vgg_4": (1, 4), "line_vgg_16": (2, 16)})
    assert report.seed_table(report.crnn_table(scaling)).empty
    copies = runs(
        {
            "line_vgg_4": (1, 4),
            "line_vgg_4_s2": (2, 4),
            "line_vgg_16": (1, 16),
            "line_vgg_16_s2": (2, 16),
        }
    )
    table = report.crnn_table(copies)
    report.write_table(table, tmp_path / "crnn_report.csv")
    for seeds in (
        report.seed_table(table),
        report.seed_table(pd.read_csv(tmp_path / "crnn_report.csv")),
    ):
        sixteen, four = "line_vgg_16, line_vgg_16_s2", "line_vgg_4, line_vgg_4_s2"
        assert seeds[["experiments", "split", "seeds", "train_shards"]].values.tolist() == [
            [sixteen, "test_seen", 2, 16],
            [sixteen, "test_heldout", 2, 16],
            [four, "test_seen", 2, 4],
            [four, "test_heldout", 2, 4],
        ]
        assert {type(n) for n in seeds["train_shards"]} == {int}  # 16, not 16.0
    # metrics.json files that predate train_shards: nothing tells the runs apart, as then
    older = [{k: v for k, v in r.items() if k != "train_shards"} for r in scaling]
    old = report.seed_table(report.crnn_table(older))
    assert old["experiments"].tolist() == ["line_vgg_16, line_vgg_4"] * 2
    assert old["train_shards"].tolist() == [None, None]


def test_a_data_scaling_study_is_told_apart_by_the_shards_each_run_read(tmp_path, cjk_font):
    """Evaluations of the runs of a data-scaling study (two seeds on 4 training shards, one run
    on 16, each as its ``train.json`` records it, and one whose ``train.json`` predates the
    count): each report table's ``train_shards`` column holds the count its run's ``train.json``
    records (`models.evaluate.training_record`), empty for the older run, and only the two
    runs of one count are seed copies."""
    import pandas as pd

    from models.evaluate import EvalSpec, evaluate

    runs = {"scale_4": (1, 4), "scale_4_s2": (2, 4), "scale_16": (3, 16), "scale_old": (4, None)}
    for case, kind in (("line", "crnn"), ("hanzi", "hanzi"), ("short", "reader")):
        _, _, _, task, size, texts = CASES[case]
        folder = tmp_path / case
        shard = make_shard(
            folder / "test_seen-000000.tar", task, "test_seen", texts, cjk_font, size
        )
        ckpt = make_checkpoint(folder / "model.pt", case)
        metrics = []
        for name, (seed, shards) in runs.items():
            info = folder / name / "train.json"
            info.parent.mkdir()
            read = {} if shards is None else {"train_shards": shards}
            info.write_text(json.dumps({"steps": 6, "seed": seed, **read}))
            out = folder / "eval" / name
            spec = EvalSpec(name, "test_seen", batch_size=4, device="cpu")
            evaluate(ckpt, [shard], out / "metrics.json", out / "predictions.csv", spec, info)
            metrics.append(out / "metrics.json")
        csv_path = folder / f"{kind}_report.csv"
        table = report.build_table(kind, metrics, csv_path)
        _, rows = _read_csv(csv_path)
        overall = [r for r in rows if r.get("font", report.ALL_FONTS) == report.ALL_FONTS]
        recorded = {
            name: str(
                json.loads((folder / name / "train.json").read_text()).get("train_shards", "")
            )
            for name in runs
        }
        assert {r["experiment"]: r["train_shards"] for r in overall} == recorded, kind
        assert recorded["scale_16"] == "16" and recorded["scale_old"] == ""
        for seeds in (report.seed_table(table), report.seed_table(pd.read_csv(csv_path))):
            assert seeds["experiments"].tolist() == ["scale_4, scale_4_s2"], kind
            assert seeds["train_shards"].tolist() == [4], kind


def test_experiments_of_one_seed_are_not_seed_copies():
    """Two experiments that differ in their evaluation alone (its threads, say) train the same
    run under two names: of one seed, or of none recorded, they are one seed in a group, not
    two copies whose spread is 0."""
    _, crnn, _ = _seed_copies()
    again = [
        {**r, "experiment": "line_vgg_eval2"}
        for r in crnn
        if r["experiment"] == "line_vgg"  # seed 1, as line_vgg
    ]
    seeds = report.seed_table(report.crnn_table(crnn + again))
    copies = "line_vgg, line_vgg_s2, line_vgg_s3"  # line_vgg_eval2 is line_vgg's seed again
    assert seeds["experiments"].tolist() == [copies, copies]
    assert seeds["seeds"].tolist() == [3, 3]
    one_run = [r for r in crnn + again if r["experiment"] in ("line_vgg", "line_vgg_eval2")]
    assert report.seed_table(report.crnn_table(one_run)).empty
    unknown = [{**r, "seed": None} for r in crnn]  # evaluations made before seed was recorded
    assert report.seed_table(report.crnn_table(unknown)).empty


def test_summary_without_seed_copies_has_no_seed_section(tmp_path, metrics_files):
    """No two experiments differ in their seed alone (line_crnn_vgg and short_reader have one
    each; the fixture's one-seed experiments stay out): no section, and no empty table."""
    records = report.load_records(metrics_files["crnn"])
    assert report.seed_table(report.crnn_table(records)).empty
    text = report.build_reports(
        metrics_files["crnn"],
        metrics_files["hanzi"],
        metrics_files["reader"],
        [],
        tmp_path / "summary.md",
    )
    assert "## Seed copies" not in text
    # the same experiment once more under another seed makes a group of two
    again = {**records[1], "experiment": "line_crnn_vgg_s2", "seed": 2, "seq_acc": 0.25}
    with_copy = report.summary_markdown(
        report.crnn_table([*records, again], per_file=True),
        report.hanzi_table([]),
        report.reader_table([]),
        report.references_table([], []),
    )
    assert "## Seed copies" in with_copy
    assert "| line_crnn_vgg, line_crnn_vgg_s2 | crnn_vgg | line | greedy | test_seen |" in with_copy


def test_tesseracts_rows_go_task_by_task_each_tasks_splits_in_order():
    """Tesseract has a row per task and split, all named ``tesseract``: they go last, task by
    task, each task's test_seen before its test_heldout (not every task's test_seen first)."""
    records = [
        _record("tesseract", "tesseract 5.3.0", task, split, seed=None)
        for split in ("test_heldout", "test_seen")
        for task in ("line", "expr")
    ] + [_record("expr_crnn", "expr_crnn", "expr", "test_seen")]
    table = report.crnn_table(records)
    assert table[["experiment", "task", "split"]].values.tolist() == [
        ["expr_crnn", "expr", "test_seen"],
        ["tesseract", "expr", "test_seen"],
        ["tesseract", "expr", "test_heldout"],
        ["tesseract", "line", "test_seen"],
        ["tesseract", "line", "test_heldout"],
    ]


def test_report_csvs_keep_six_significant_digits(tmp_path):
    """write_table gives floats to six significant digits: 0.9932567 is 0.993257, not rounded
    to the four places summary.md shows."""
    record = _record("expr_crnn", "expr_crnn", "expr", "test_seen", seq_acc=0.9932567, cer=1e-7)
    out = tmp_path / "crnn_report.csv"
    report.write_table(report.crnn_table([record]), out)
    _, rows = _read_csv(out)
    assert (rows[0]["seq_acc"], rows[0]["cer"]) == ("0.993257", "1e-07")


def test_summary_shows_overall_rows_and_says_when_a_table_has_none(tmp_path):
    """summary.md's hanzi and reader tables are their overall rows (the per-font rows are the
    CSVs'), without the font column; a table without experiments says it has no rows rather
    than showing a header over nothing."""
    hanzi = [_record("hanzi_cnn", "hanzi_cnn", "hanzi", "test_seen", top1=0.9, top5=0.95)]
    reader = [_record("short_reader", "reader", "short", "test_seen")]
    text = report.summary_markdown(
        report.crnn_table([]),
        report.hanzi_table(hanzi),
        report.reader_table(reader),
        report.references_table([], []),
    )
    sections = text.split("\n## ")[1:]  # each section's heading and text

    def section(heading):
        (part,) = [p for p in sections if p.startswith(heading)]
        return part

    ctc = section("CTC recognizers")
    assert "_no rows_" in ctc and "| experiment |" not in ctc
    for heading, name in (("Printed hanzi", "hanzi_cnn"), ("Attention reader", "short_reader")):
        part = section(heading)
        rows = [line for line in part.splitlines() if line.startswith(f"| {name} |")]
        assert len(rows) == 1, part  # the overall row, not Font A's and Font B's
        assert "Font A" not in part and "| font |" not in part


def test_build_reports_compares_targets_and_references_over_every_table(tmp_path):
    """build_reports gives summary.md the config's targets and references, reached and
    published beside ours by experiments of every table (a hanzi classifier's top-5, a
    reader's accuracy), and links each plot with what it is of; a config without targets
    has no targets section."""
    paths = _metrics_files(
        tmp_path,
        crnn=[_record("expr_crnn", "expr_crnn", "expr", "test_seen", seq_acc=0.75)],
        hanzi=[_record("hanzi_cnn", "hanzi_cnn", "hanzi", "test_seen", top1=0.9, top5=0.96)],
        reader=[_record("short_reader", "reader", "short", "test_heldout", seq_acc=0.625)],
    )
    targets = [
        {"experiment": "short_reader", "metric": "seq_acc", "split": "test_heldout", "value": 0.5}
    ]
    references = [{"experiment": "hanzi_cnn", "metric": "top5", "value": 0.99, "source": "CPS"}]
    results = tmp_path / "results"
    plots = [results / "plots" / "accuracy_by_font.png", results / "plots" / "x" / "curves.png"]
    args = (paths["crnn"], paths["hanzi"], paths["reader"], references, results / "summary.md")
    text = report.build_reports(*args, plots=[str(p) for p in plots], targets=targets)
    assert "## Targets for this configuration" in text
    assert "| short_reader | seq_acc | test_heldout | 0.5 | 0.6250 |" in text
    assert "| hanzi_cnn | top5 | 0.99 | CPS | 0.9600 |  |" in text
    assert "- [accuracy_by_font.png](plots/accuracy_by_font.png) (every experiment)" in text
    assert "- [curves.png](plots/x/curves.png) (x)" in text
    assert "## Targets" not in report.build_reports(*args)


def test_a_target_on_its_intervals_bound_is_within_noise():
    """The interval's bounds belong to it: a target exactly on one is met or missed within
    noise."""
    from models.metrics import share_interval

    low, high = share_interval(0.99, 2000)
    records = [{"experiment": "e", "split": "test_heldout", "n": 2000, "seq_acc": 0.99}]
    targets = [
        {"experiment": "e", "metric": "seq_acc", "split": "test_heldout", "value": bound}
        for bound in (low, high)
    ]
    table = report.targets_table(targets, records)
    assert list(table["met"]) == ["yes, within noise", "no, within noise"]


def test_a_font_file_without_the_metric_gives_no_per_file_figure():
    """Tesseract's hanzi records have no top-5 (its per-file figures hold None): the mean over
    the files is no figure then, not a failure nor a mean of the files that have one."""
    record = {"per_font_file": {"a.ttc": {"top1": 0.5, "top5": None}, "b.ttf": {"top1": 0.7}}}
    assert report.font_file_mean(record, "top1") == pytest.approx(0.6)
    assert report.font_file_mean(record, "top5") is None
    assert report.font_file_mean({"per_font_file": {}}, "top1") is None


def test_a_seed_copy_without_the_headline_figure_is_left_out_of_the_spread():
    """A seed copy whose evaluation gave no headline figure (an empty cell) is left out of its
    group on that split; the others' spread stands."""
    _, crnn, _ = _seed_copies()
    records = [
        {**r, "seq_acc": None}
        if (r["experiment"], r["split"]) == ("line_vgg_s3", "test_seen")
        else r
        for r in crnn
    ]
    seeds = report.seed_table(report.crnn_table(records))
    assert seeds[["experiments", "split", "seeds"]].values.tolist() == [
        ["line_vgg, line_vgg_s2", "test_seen", 2],
        ["line_vgg, line_vgg_s2, line_vgg_s3", "test_heldout", 3],
    ]
    assert seeds["mean"][0] == pytest.approx((0.5 + 0.625) / 2)


@pytest.mark.parametrize("table", ["font_accuracy_table", "experiment_accuracy_table"])
def test_tesseract_is_drawn_after_every_model_of_its_task(tmp_path, table):
    """Tesseract comes right after the models of its task in the accuracy plots, whatever
    their names: a model named after ``tesseract`` in the alphabet too."""
    records = [
        _record(name, "reader", "short", "test_seen", seed=None if name == "tesseract" else 1)
        for name in ("tesseract", "zh_reader", "a_reader")
    ]
    paths = _metrics_files(tmp_path, reader=records)["reader"]
    rows = getattr(plots, table)(paths)
    assert list(dict.fromkeys(rows["experiment"])) == ["a_reader", "zh_reader", "tesseract"]
