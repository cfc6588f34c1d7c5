"""Shared fixtures: real fonts from the Debian packages `make test` installs, the repo root."""

from __future__ import annotations

import io
import itertools
import math
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Real fonts, installed by `make test` (workflow/setup/install_system.sh).
NOTO_SANS = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
WQY_MICROHEI = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
WQY_ZENHEI = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")
UKAI = Path("/usr/share/fonts/truetype/arphic/ukai.ttc")
LXGW = Path("/usr/share/fonts/truetype/lxgw-wenkai/LXGWWenKai-Regular.ttf")
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # Latin only: lacks every hanzi


class Terminal(io.StringIO):
    """Standard error as a terminal shows it (what tqdm writes there: a progress bar), kept to be
    read: ``monkeypatch.setattr(sys, "stderr", Terminal())``."""

    def isatty(self) -> bool:
        return True


def model_task(name: str) -> str:
    """The task a registered model is tested on: expr_crnn's own, a task of its family for the
    others (`models.conformance.TASK`)."""
    from models.conformance import TASK
    from models.registry import get_entry

    return {"expr_crnn": "expr"}.get(name, TASK[get_entry(name).family])


def exact_halves(size: int, count: int) -> list[tuple[int, int]]:
    """``count`` shapes ``(longer, side)`` whose ``side``, scaled so that ``longer`` becomes
    ``size`` px, is exactly ``k + 1/2`` px, and which ``side * (size / longer)`` rounds the other
    way (that ratio rounded to a float first is off by an ulp): where a square model's fit must
    say how a half rounds."""
    found: list[tuple[int, int]] = []
    for longer in itertools.count(size + 1):
        step = longer // math.gcd(longer, 2 * size)  # the sides that make a half or a whole
        for side in range(step, longer, step):
            exact = Fraction(side * size, longer)
            if exact.denominator == 2 and round(side * (size / longer)) != round(exact):
                found.append((longer, side))
                if len(found) == count:
                    return found
                break
    raise AssertionError("unreachable")


def made_locale(folder: Path, source: str, charmap: str) -> dict[str, str]:
    """The environment of a process in a locale of another encoding than UTF-8 (``zh_CN`` in
    ``GB18030``, ``en_US`` in ``ISO-8859-1``), compiled into ``folder`` with glibc's
    ``localedef``, Python's UTF-8 mode off; the test is skipped where it cannot be made."""
    name = f"{source}.{charmap}"
    if shutil.which("localedef") is None or not Path(f"/usr/share/i18n/locales/{source}").is_file():
        pytest.skip(f"localedef and glibc's locale sources are needed to make {name}")
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["localedef", "-i", source, "-f", charmap, str(folder / name)],
        capture_output=True,
        check=False,
        timeout=120,
    )
    if not (folder / name).is_dir():
        pytest.skip(f"localedef made no {name} locale")
    return {"LC_ALL": name, "LOCPATH": str(folder), "PYTHONUTF8": "0"}


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(
            f"test font {path} is missing: run `make test` (it installs the Debian font packages)"
        )
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def cjk_font() -> Path:
    """A CJK font covering GB2312 (WenQuanYi Micro Hei, a single-face-per-family collection)."""
    return _require(WQY_MICROHEI)


@pytest.fixture(scope="session")
def cjk_fonts() -> list[Path]:
    return [_require(p) for p in (WQY_MICROHEI, LXGW, NOTO_SANS)]


@pytest.fixture(scope="session")
def heldout_font() -> Path:
    return _require(UKAI)


@pytest.fixture(scope="session")
def latin_font() -> Path:
    """A font with no hanzi at all, for coverage tests."""
    return _require(DEJAVU)


SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def font_with_damaged_outlines(font_path: Path, chars: str, out: Path) -> Path:
    """A copy of the TrueType font ``font_path`` whose glyphs for ``chars`` keep their header
    and box but hold garbage outlines (FreeType fails to draw them), written to ``out``."""
    from fontTools.ttLib import TTFont

    font = TTFont(str(font_path))
    offset, loca, cmap = font.reader.tables["glyf"].offset, font["loca"], font.getBestCmap()
    data = bytearray(font_path.read_bytes())
    for ch in chars:
        gid = font.getGlyphID(cmap[ord(ch)])
        start, end = offset + loca[gid] + 10, offset + loca[gid + 1]  # past the glyph's box
        data[start:end] = b"\xff" * (end - start)
    out.write_bytes(bytes(data))
    return out


def snakemake_command(workdir: Path, *args: str, config: Path | None = None) -> list[str]:
    """The real Snakemake CLI on this repository's Snakefile in `workdir` (the smoke config)."""
    return [
        str(SNAKEMAKE),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(config or REPO / "configs" / "smoke.yaml"),
        *args,
    ]


def run_snakemake(workdir: Path, *args: str, config: Path | None = None, check: bool = True):
    """Run the real Snakemake CLI on this repository's Snakefile in `workdir`."""
    cmd = snakemake_command(workdir, *args, config=config)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The whole smoke DAG run once for real, in a temporary folder; returns that folder."""
    workdir = tmp_path_factory.mktemp("smoke")
    run_snakemake(workdir, "--cores", "2", "all")
    return workdir


@pytest.fixture(autouse=True)
def pillow_pixel_limit_restored():
    """Pillow's decompression-bomb limit as it was before each test: the recognition command's
    `main` lifts it for its own process (its own limit is checked instead), and a test calling it
    in-process must not leave later tests (a bomb in a shard) without it, whatever their order."""
    from PIL import Image

    before = Image.MAX_IMAGE_PIXELS
    yield
    Image.MAX_IMAGE_PIXELS = before


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """One torch intra-op thread for the whole session: the tests' tiny models gain nothing from
    more, and on a busy 2-core box OpenMP threads waiting at every op's barrier for a descheduled
    sibling make a forward pass of milliseconds take seconds. Subprocesses are not affected."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
