"""Snakemake's HTML report of the smoke run, rendered in headless Chromium.

Slow: it reuses the session's real smoke run (`smoke_run` in conftest.py). Skipped only when
Chromium is absent and the CI environment variable is unset; in CI a missing Chromium fails.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import shutil
import subprocess

import pytest
from conftest import run_snakemake
from PIL import Image

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TABLES = {
    "crnn_report.csv": "experiment,model,backbone,seed,decoder,task,split,n,seq_acc,interval_95,"
    "cer,ned,value_acc,params_m,train_shards,budget_steps,train_steps,train_wall_s,"
    "eval_img_per_s,device,model_kwargs,train_settings,init_from",
    "hanzi_report.csv": "experiment,model,seed,task,split,font,n,top1,interval_95,top5,"
    "params_m,train_shards,budget_steps,train_steps,train_wall_s,eval_img_per_s,device,"
    "model_kwargs,train_settings,init_from",
    "reader_report.csv": "experiment,model,seed,decoder,task,split,font,n,seq_acc,interval_95,"
    "cer,ned,params_m,train_shards,budget_steps,train_steps,train_wall_s,eval_img_per_s,device,"
    "model_kwargs,train_settings,init_from",
}
CATEGORIES = [
    "Tables",
    "Training curves",
    "Test predictions",
    "Accuracy by font",
    "Accuracy by experiment",
]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed (CI must have it: apt-get install chromium)")
    pytest.skip("chromium is not installed")


def _run_chromium(chromium: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )


def _visible_text(dom: str) -> str:
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


@pytest.fixture(scope="module")
def report_html(smoke_run):
    out = smoke_run / "results" / "report.html"
    run_snakemake(smoke_run, "--cores", "1", "--report", str(out))
    return out


@pytest.mark.slow
def test_report_embeds_the_tables(report_html):
    html = report_html.read_text(encoding="utf-8")
    for name, header in TABLES.items():
        m = re.search(
            rf"data:text/csv;charset=utf8;filename={re.escape(name)};base64,([A-Za-z0-9+/=]+)", html
        )
        assert m, f"{name} is not in the report"
        table = base64.b64decode(m.group(1)).decode("utf-8")
        assert table.splitlines()[0] == header
    crnn = base64.b64decode(
        re.search(r"filename=crnn_report\.csv;base64,([A-Za-z0-9+/=]+)", html).group(1)
    ).decode()
    for experiment in ("expr_crnn", "line_crnn_vgg", "line_crnn_grcnn", "tesseract"):
        assert f"\n{experiment}," in crnn
    # the training shards each run read, as its train.json records them (Tesseract: none)
    results = report_html.parent
    for row in csv.DictReader(io.StringIO(crnn)):
        if row["experiment"] == "tesseract":
            assert row["train_shards"] == "", row
            continue
        info = json.loads((results / "models" / row["experiment"] / "train.json").read_text())
        assert row["train_shards"] == str(info["train_shards"]), row
    assert "summary.md" in html
    # every experiment's validation curves in one figure, beside each one's own (Training curves)
    png = re.search(
        r"image/png;charset=utf8;filename=compare_curves\.png;base64,([A-Za-z0-9+/=]+)", html
    )
    assert png, "compare_curves.png is not in the report"
    assert base64.b64decode(png.group(1)).startswith(b"\x89PNG\r\n")


@pytest.mark.slow
def test_report_renders_in_headless_chromium(report_html, tmp_path):
    chromium = _chromium()
    url = report_html.resolve().as_uri()
    proc = _run_chromium(chromium, tmp_path, "--virtual-time-budget=15000", "--dump-dom", url)
    text = _visible_text(proc.stdout)
    # Rendered by the report's JavaScript: the menu of result categories and our captions.
    for category in CATEGORIES:
        assert category in text, f"category {category!r} not rendered: {text[:2000]}"
    assert "synthocr renders synthetic OCR data" in text

    shot = tmp_path / "report.png"
    _run_chromium(
        chromium,
        tmp_path,
        "--virtual-time-budget=15000",
        "--window-size=1280,900",
        f"--screenshot={shot}",
        url,
    )
    with Image.open(shot) as im:
        lo, hi = im.convert("L").getextrema()
    assert hi - lo > 100, "the screenshot is blank"
