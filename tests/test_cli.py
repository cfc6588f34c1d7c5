"""What every ``models.*`` command shares: Ctrl-C ends it with one line saying what it keeps and
exit status 130 (README, "Reading your own images"), not a traceback. The training command's own
test (tests/test_train.py) also sends a real SIGINT; here each other command is interrupted in
the middle of its work, in this process."""

from __future__ import annotations

import importlib
import re
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
    (
        "models.configcheck",
        "workflow_config_problems",
        ["config.yaml"],
        "interrupted; it writes nothing",
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
    (tmp_path / "config.yaml").write_text("seed: 1\n")  # configcheck reads it before its work
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


@pytest.mark.parametrize(
    ("module_name", "argv", "error"),
    [
        ("models.recognize", ["m.pt", "a.png", "--threads", "100000"],
         r"--threads: must be at most \d+ \(this machine's CPUs\), got 100000"),
        ("models.evaluate", ["m.pt", "s.tar", "--out", "e", "--threads", "20000"],
         r"--threads: must be at most \d+"),
        ("models.train", ["--spec", "@x.json", "--threads", "20000"],
         r"--threads: must be at most \d+"),
        ("models.tesseract", ["s.tar", "--out", "e", "--task", "expr", "--threads", "20000"],
         r"--threads: must be at most \d+"),
        ("models.recognize", ["m.pt", "a.png", "--top-k", "20000"],
         r"--top-k: must be at most 100 \(the beam search keeps as many readings\), got 20000"),
        ("models.tesseract", ["s.tar", "--out", "e", "--task", "expr", "--scale", "0"],
         r"--scale: must be above 0 and at most 16, got 0"),
        ("models.tesseract", ["s.tar", "--out", "e", "--task", "expr", "--scale", "nan"],
         r"--scale: must be above 0 and at most 16, got nan"),
        ("models.tesseract", ["s.tar", "--out", "e", "--task", "expr", "--scale", "inf"],
         r"--scale: must be above 0 and at most 16, got inf"),
    ],
)  # fmt: skip
def test_counts_and_factors_past_what_the_machine_can_do_are_usage_errors(
    module_name, argv, error, tmp_path, monkeypatch, capsys
):
    """Tens of thousands of threads crashed the OpenMP runtime (a segmentation fault); a scale
    of 0 scored every image as unread, inf and nan ended in tracebacks."""
    module = importlib.import_module(module_name)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        module.main(argv)
    # argparse's usage status, 2; recognize's 1 (its 2 says some images could not be read)
    assert e.value.code == (1 if module_name == "models.recognize" else 2)
    assert re.search(error, capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []  # refused before anything was read or written


def test_the_model_check_names_kwargs_that_are_not_json(capsys):
    """json's own words ("Expecting property name ...") named neither the option nor the text."""
    from models import conformance

    assert conformance.main(["crnn_vgg", "--kwargs", "{hidden: 8}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("synthocr-check-model: --kwargs: a JSON object, got '{hidden: 8}' ("), err
    assert err.count("\n") == 1


def test_the_export_refuses_an_opset_onnxruntime_cannot_run(tmp_path, capsys):
    """Opsets 7 and 8 write ConstantFill, which onnxruntime has no kernel for."""
    from models import export

    assert export.main([str(tmp_path / "m.pt"), str(tmp_path / "o.onnx"), "--opset", "8"]) == 1
    assert "opset 8 is not one this exporter writes (9..20)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "orig_argv", "expected"),
    [
        (["-m"], ["python", "-m", "models.recognize", "a.png"], True),
        (["-m"], ["python", "-X", "importtime", "-u", "-m", "models.train"], True),
        (["-m"], ["python", "-mmodels.export"], True),
        (["/usr/local/bin/synthocr-recognize", "a.png"], ["python", "synthocr-recognize"], True),
        (["-m"], ["python", "-m", "pytest"], False),  # another program that imports models
        (["-m"], ["python", "-m", "modelsx.tool"], False),
        (["/usr/bin/snakemake"], ["python", "/usr/bin/snakemake"], False),
        (["-c"], ["python", "-c", "import models"], False),
        ([], [], False),
    ],
)
def test_the_quiet_start_is_for_commands_alone(argv, orig_argv, expected):
    from models.cli import is_command_process

    assert is_command_process(argv, orig_argv) is expected


def test_ctrl_c_while_a_command_still_imports_is_one_line_not_a_traceback():
    """A real SIGINT while ``python -m models.recognize`` imports torch, before its ``main``
    (and its own answer to Ctrl-C) runs: one line, and the process ends by SIGINT (the
    shell's status 130), as ``python`` does."""
    import os
    import signal
    import subprocess
    import threading

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "models.recognize", "--help"],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C's default action, which a test run started in the background (SIGINT
        # ignored, and so inherited) would otherwise leave out of Python's start-up
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    timer = threading.Timer(120, proc.kill)
    timer.start()
    try:
        lines = []
        for line in proc.stderr:  # -X importtime: a line as each module is imported
            lines.append(line)
            if line.rstrip().endswith("| models"):  # the package, before the command's imports
                proc.send_signal(signal.SIGINT)
                break
        out, rest = proc.communicate(timeout=120)
    finally:
        timer.cancel()
        proc.kill()
    imported = [line.rpartition("|")[2].strip() for line in lines + rest.splitlines()]
    assert "models" in imported, rest
    assert "torch" not in imported  # stopped while importing it: before main
    assert out == ""  # main never ran (it would have printed the usage)
    err = [line for line in rest.splitlines() if not line.startswith("import time:")]
    assert err == ["python -m models.recognize: interrupted while starting; it wrote nothing"]
    assert proc.returncode == -signal.SIGINT  # the shell shows 130
