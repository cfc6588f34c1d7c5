"""Renderers and degradations: geometry, dtype, determinism, every degradation runs."""

from __future__ import annotations

import numpy as np
import pytest

from synth.augment import DEFAULTS, degrade, resolve
from synth.render import FontFace, render_expr, render_hanzi, render_line, render_short


@pytest.fixture(scope="module")
def face(cjk_font):
    return FontFace(cjk_font, 0)


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_hanzi_geometry_and_glyph_inside(face):
    for seed in range(20):
        img = render_hanzi("啊", face, 64, _rng(seed), rotate=15, offset=0.08)
        assert img.shape == (64, 64) and img.dtype == np.uint8
        border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        assert border.min() >= 200  # never clipped: the border is background
        assert img.min() < 80  # ink is there


def test_line_geometry(face):
    for seed in range(20):
        text = "因为天监赣江分别有之一航"[: 1 + seed % 12]
        img = render_line(text, face, 32, _rng(seed), min_char_width=16)
        assert img.dtype == np.uint8 and img.shape[0] == 32
        assert img.shape[1] >= 16 * len(text)
        assert img.min() < 80


def test_expr_and_short_geometry(face):
    img = render_expr("(7+5)*4-12", face, (60, 180), _rng())
    assert img.shape == (60, 180) and img.dtype == np.uint8 and img.min() < 80
    long = render_expr("12*(34+56)-78+90*12", face, (60, 180), _rng(), font_size=(40, 40))
    border = np.concatenate([long[:, 0], long[:, -1]])
    assert border.min() >= 200  # scaled down to fit, not clipped
    img = render_short("Ab3Z", face, 40, _rng())
    assert img.shape == (40, 40) and img.dtype == np.uint8 and img.min() < 80


def test_renderers_are_pure_functions_of_the_generator(face):
    a = render_line("中文OCR", face, 32, _rng(5))
    b = render_line("中文OCR", face, 32, _rng(5))
    assert np.array_equal(a, b)


def test_aliased_text_has_two_grey_levels(face):
    """``aliased=True`` draws 1-bit glyphs (ink or background); the default anti-aliases."""
    draws = {
        "hanzi": lambda al: render_hanzi(
            "啊", face, 64, _rng(3), rotate=0, morph=0, stroke=0, aliased=al
        ),
        "line": lambda al: render_line("中文OCR", face, 32, _rng(3), aliased=al),
        "expr": lambda al: render_expr("(7+5)*4-12", face, (32, 128), _rng(3), aliased=al),
        "short": lambda al: render_short("B8Q3", face, 40, _rng(3), aliased=al),
    }
    for task, draw in draws.items():
        smooth, aliased = draw(False), draw(True)
        assert len(np.unique(aliased)) == 2, task
        assert len(np.unique(smooth)) > 2, task
        assert aliased.shape == smooth.shape, task


def test_every_degradation_runs_and_keeps_shape(face):
    img = render_line("因为天监", face, 32, _rng())
    for name in DEFAULTS:
        cfg = resolve({name: {"p": 1.0}})
        out = degrade(img, cfg, _rng(1))
        assert out.shape == img.shape and out.dtype == np.uint8, name
        if name != "jpeg":
            assert not np.array_equal(out, img), name
    inverted = degrade(img, {"invert": {"p": 1.0}}, _rng())
    assert np.array_equal(inverted, 255 - img)


def test_unknown_degradation_is_named():
    with pytest.raises(ValueError, match="sparkle"):
        resolve({"sparkle": {"p": 1}})
    with pytest.raises(ValueError, match="sigm"):
        resolve({"gaussian_noise": {"sigm": [1, 2]}})
