"""The digests the workflow keys its jobs by: what the code does, not how it is documented."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from synth.code import (
    DATA_MODULES,
    EVAL_MODULES,
    FIRST_PARTY,
    PACK_MODULES,
    PLOT_MODULES,
    REPORT_MODULES,
    SHEET_MODULES,
    TESSERACT_MODULES,
    code_text,
    job_code,
    module_closure,
    module_file,
    source_digest,
)

SOURCE = '''"""A module's docstring."""

import os  # a comment after code


# a comment on a line of its own
class Thing:
    """A class's docstring,
    on two lines."""

    note = """not a docstring: an assignment"""

    def method(self):  # trailing comment
        'a one-quoted docstring'
        return "# not a comment" + os.sep


async def 函数(): "a docstring after a name outside ASCII"; return 1
'''


def test_code_text_keeps_the_code_and_drops_comments_docstrings_and_blank_lines():
    text = code_text(SOURCE.encode()).decode()
    assert text == (
        "import os\n"
        "class Thing:\n"
        '    note = """not a docstring: an assignment"""\n'
        "    def method(self):\n"
        '        return "# not a comment" + os.sep\n'
        "async def 函数(): ; return 1"
    )


def test_the_digest_is_of_the_code_not_of_its_comments_or_docstrings(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text(SOURCE, encoding="utf-8")
    digest = source_digest([path])
    assert len(digest) == 16
    path.write_text(
        SOURCE.replace("A class's docstring", "Another docstring")
        .replace("# a comment on a line of its own", "# another\n\n\n")
        .replace("os  # a comment after code", "os   ")
        .replace("\n", "\r\n"),
        encoding="utf-8",
    )
    assert source_digest([path]) == digest
    for edit in (
        ("not a docstring", "still not a docstring"),  # a string the code holds
        ('"# not a comment"', '"# not a comment either"'),
        ("return 1", "return 2"),
        ("    note =", "    other =\n    note ="),
    ):
        path.write_text(SOURCE.replace(*edit), encoding="utf-8")
        assert source_digest([path]) != digest, edit
    path.write_text(SOURCE, encoding="utf-8")
    renamed = path.rename(tmp_path / "other.py")
    assert source_digest([renamed]) != digest  # the file's name counts


def test_a_multi_line_strings_blank_lines_and_trailing_spaces_are_code(tmp_path):
    """Inside a string, a blank line or a trailing space (an ideographic one, say) is part of
    the value the program holds: a program that differs there is another program."""
    source = 'def lines():\n    """Doc."""\n    return """一\u3000\n\n二  \n三"""\n'
    path = tmp_path / "mod.py"
    path.write_text(source, encoding="utf-8")
    digest = source_digest([path])
    for edit in (("\u3000\n", "\n"), ("\n\n二", "\n二"), ("二  \n", "二\n")):
        path.write_text(source.replace(*edit), encoding="utf-8")
        assert source_digest([path]) != digest, edit
    for end in ("\r\n", "\r"):  # line ends Python reads as "\n"
        path.write_bytes(source.replace("Doc.", "Other.").replace("\n", end).encode("utf-8"))
        assert source_digest([path]) == digest, end  # the same program, its docstring aside


def test_the_code_is_read_in_the_encoding_python_reads_it_in(tmp_path):
    """A byte order mark and a coding line say how Python reads the bytes: a file saved with a
    BOM is the same program, documented alike; a coding line that reads é's two UTF-8 bytes as
    two Latin-1 characters makes another program (its value differs), though it is a comment."""
    source = '"""Doc."""\nS = "é"\n'
    path = tmp_path / "mod.py"
    path.write_bytes(source.encode("utf-8"))
    digest = source_digest([path])
    path.write_bytes(b"\xef\xbb\xbf" + source.replace("Doc.", "Other.").encode("utf-8"))
    assert source_digest([path]) == digest
    path.write_bytes(b"# -*- coding: latin-1 -*-\n" + source.encode("utf-8"))
    assert source_digest([path]) != digest
    path.write_bytes(b"# -*- coding: utf-8 -*-\n" + source.encode("utf-8"))
    assert source_digest([path]) == digest


def test_what_does_not_read_as_python_is_hashed_as_its_bytes(tmp_path):
    for data in (b"\xff\xfe not text", b"def broken(:\n    # a comment\n", b"\x7fELF\x00\x01"):
        assert code_text(data) == data
    path = tmp_path / "mod.py"
    path.write_bytes(b"def broken(:\n    # a comment\n")
    before = source_digest([path])
    path.write_bytes(b"def broken(:\n    # another comment\n")
    assert source_digest([path]) != before


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package of three modules on the path: a imports b, b imports c (relatively)."""
    root = tmp_path / "codepkg_test"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "a.py").write_text("from codepkg_test import b\nimport os\n")
    (root / "b.py").write_text("from . import c\n")
    (root / "c.py").write_text("X = 1\n")
    (root / "unused.py").write_text("Y = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield root
    for name in [n for n in sys.modules if n.startswith("codepkg_test")]:
        del sys.modules[name]


def test_a_modules_closure_is_every_module_of_its_package_it_imports_in_turn(package):
    files = module_closure(["codepkg_test.a"])
    assert [Path(f).name for f in files] == ["a.py", "b.py", "c.py"]
    before = source_digest(files)
    (package / "c.py").write_text("X = 2\n")  # two imports down
    assert source_digest(module_closure(["codepkg_test.a"])) != before
    changed = source_digest(module_closure(["codepkg_test.a"]))
    (package / "unused.py").write_text("Y = 2\n")  # not imported: not in it
    assert source_digest(module_closure(["codepkg_test.a"])) == changed


def test_the_datas_code_is_of_synths_drawing_modules_alone():
    names = {Path(f).name for f in module_closure(DATA_MODULES)}
    assert {"render.py", "augment.py", "text.py", "shards.py", "fonts.py", "charset.py"} <= names
    assert "joblog.py" not in names  # logging draws nothing
    assert "code.py" not in names
    assert job_code(DATA_MODULES) == source_digest(module_closure(DATA_MODULES))
    assert module_file("synth.render").endswith("render.py")


def test_the_contact_sheets_layout_keys_the_sheets_alone():
    """synth.preview lays out a picture of the shards: an edit of it redraws the contact sheets
    (`SHEET_MODULES`), not every table, charset and shard (`DATA_MODULES`), nor retrains."""
    data = {Path(f).name for f in module_closure(DATA_MODULES)}
    sheet = {Path(f).name for f in module_closure(SHEET_MODULES)}
    assert "preview.py" not in data
    assert sheet == data | {"preview.py"}
    assert job_code(SHEET_MODULES) == source_digest(module_closure(SHEET_MODULES))
    assert job_code(SHEET_MODULES) != job_code(DATA_MODULES)


def test_a_closure_follows_the_packages_it_is_given_as_well(package, tmp_path):
    other = tmp_path / "codepkg_other"
    other.mkdir()
    (other / "__init__.py").write_text("")
    (other / "x.py").write_text("from codepkg_test import c\n")  # and back into the first
    (package / "a.py").write_text("from codepkg_test import b\nfrom codepkg_other import x\n")
    importlib.invalidate_caches()
    try:
        alone = [Path(f).name for f in module_closure(["codepkg_test.a"])]
        both = module_closure(["codepkg_test.a"], ("codepkg_test", "codepkg_other"))
        assert alone == ["a.py", "b.py", "c.py"]  # its own package's modules alone
        assert sorted(Path(f).name for f in both) == ["a.py", "b.py", "c.py", "x.py"]
        before = source_digest(both)
        (other / "x.py").write_text("from codepkg_test import c\nZ = 1\n")
        assert source_digest(module_closure(["codepkg_test.a"], ("codepkg_other",))) != before
    finally:
        for name in [n for n in sys.modules if n.startswith("codepkg_other")]:
            del sys.modules[name]


def test_scoring_and_packing_are_keyed_by_their_code_and_not_the_models_or_the_reports():
    """The evaluate, tesseract and pack jobs hold `job_code`: an edit of how a reading is scored
    (models/metrics.py) or packed scores anew; a model's code retrains that model (and so scores
    it anew) but does not rescore the others, and the reports' code is the report jobs' own."""
    for modules, own in (
        (EVAL_MODULES, "evaluate.py"),
        (TESSERACT_MODULES, "tesseract.py"),
        (PACK_MODULES, "pack.py"),
    ):
        files = module_closure(modules, FIRST_PARTY)
        names = {str(Path(f).relative_to(Path(f).parents[1])) for f in files}
        assert {f"models/{own}", "models/metrics.py", "models/images.py"} <= names
        assert "synth/shards.py" in names
        assert not names & {
            "models/crnn.py",
            "models/backbones.py",
            "models/hanzi_cnn.py",
            "models/reader.py",
            "models/train.py",
            "models/report.py",
            "models/plots.py",
        }
        assert job_code(modules) == source_digest(files)
    # the reports and the plots: their own code, not each other's, nor scoring's the other way
    report = {Path(f).name for f in module_closure(REPORT_MODULES, FIRST_PARTY)}
    plots = {Path(f).name for f in module_closure(PLOT_MODULES, FIRST_PARTY)}
    assert "report.py" in report and "plots.py" not in report
    assert "plots.py" in plots and "report.py" not in plots
    assert job_code(REPORT_MODULES) != job_code(PLOT_MODULES)
    # synth's drawing modules import nothing of models: the data's digest is as it was
    assert module_closure(DATA_MODULES, FIRST_PARTY) == module_closure(DATA_MODULES)
