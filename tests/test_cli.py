"""What every ``models.*`` command shares: Ctrl-C ends it with one line saying what it keeps and
exit status 130 (README, "Reading your own images"), not a traceback. The training command's own
test (tests/test_train.py) also sends a real SIGINT; here each other command is interrupted in
the middle of its work, in this process."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from models.cli import INTERRUPTED

KEEPS_WHAT_IT_WROTE = "every file it wrote is whole (each is written atomically)"

# module, the function of it that main calls to do its work, main's arguments (files made under
# tmp_path) and the line it prints
COMMANDS = [
    (
        "models.recognize",
        "run",
        ["model.pt", "image.png"],
        "interrupted; the readings printed so far stand",
    ),
    (
        "models.evaluate",
        "evaluate",
        ["model.pt", "test_seen-000000.tar", "--out", "eval"],
        f"interrupted; {KEEPS_WHAT_IT_WROTE}",
    ),
    (
        "models.export",
        "export_onnx",
        ["model.pt", "out.onnx"],
        f"interrupted; {KEEPS_WHAT_IT_WROTE}",
    ),
    (
        "models.pack",
        "pack",
        ["labels.tsv", "packed"],
        "interrupted; the output folder is as the last finished packing left it",
    ),
    (
        "models.tesseract",
        "evaluate_tesseract",
        ["test_seen-000000.tar", "--out", "eval", "--task", "expr", "--no-whitelist"],
        f"interrupted; {KEEPS_WHAT_IT_WROTE}",
    ),
    (
        "models.conformance",
        "check_model",
        ["crnn_vgg"],
        "interrupted; it writes no file (its checks write only to a temporary folder)",
    ),
]


@pytest.mark.parametrize(
    ("module_name", "work", "argv", "line"), COMMANDS, ids=[c[0] for c in COMMANDS]
)
def test_ctrl_c_ends_every_command_with_one_line_and_status_130(
    module_name, work, argv, line, tmp_path, monkeypatch, capsys
):
    module = importlib.import_module(module_name)
    for name in ("model.pt", "image.png", "test_seen-000000.tar", "labels.tsv"):
        (tmp_path / name).write_bytes(b"")  # only their existence is checked before the work
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [f"{Path(module.__file__).name}"])  # not synthocr-*
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(work)
        raise KeyboardInterrupt

    monkeypatch.setattr(module, work, interrupted)
    try:
        code = module.main(argv)
    except KeyboardInterrupt:
        pytest.fail(f"{module_name}.main let Ctrl-C through (a traceback for the user)")
    out, err = capsys.readouterr()
    assert calls == [work]  # interrupted in its work, not stopped before it
    assert code == INTERRUPTED == 130
    assert err == f"python -m {module_name}: {line}\n"
    assert out == ""


def test_an_installed_script_names_itself(tmp_path, monkeypatch, capsys):
    from models import export

    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/synthocr-export"])

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "export_onnx", interrupted)
    assert export.main([str(tmp_path / "model.pt"), str(tmp_path / "out.onnx")]) == 130
    assert capsys.readouterr().err == f"synthocr-export: interrupted; {KEEPS_WHAT_IT_WROTE}\n"
