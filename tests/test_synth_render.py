"""Renderers and degradations: geometry, dtype, determinism, every degradation runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synth.augment import (
    DEFAULTS,
    affine,
    degrade,
    degrade_line,
    perspective,
    resolve,
    stroke_weight,
)
from synth.render import (
    DoesNotFit,
    FontFace,
    draw_line,
    has_oldstyle_digits,
    render_expr,
    render_hanzi,
    render_line,
    render_short,
)


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


def _ink_columns(img: np.ndarray) -> np.ndarray:
    return (img < 128).any(axis=0)


def _runs(ink: np.ndarray) -> list[tuple[int, int]]:
    """The ``[start, end)`` column runs of ink."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], ink.astype(int), [0]])))
    return list(zip(edges[::2], edges[1::2], strict=True))


def test_line_centers_fall_on_each_characters_ink(face):
    """`draw_line` says where each label character is drawn: one centre per character, in
    order, each inside the ink of its own glyph (hanzi are drawn apart, so each is one run of
    ink columns, and the i-th centre falls in the i-th run); the image is render_line's."""
    text = "因国回四田目"  # enclosed: each glyph is one run of ink columns
    for seed in range(10):
        line = draw_line(text, face, 32, _rng(seed), min_char_width=16)
        assert np.array_equal(line.image, render_line(text, face, 32, _rng(seed)))
        runs = _runs(_ink_columns(line.image))
        assert len(line.centers) == len(text) == len(runs), seed
        for x, (start, end) in zip(line.centers, runs, strict=True):
            assert start <= x < end, (seed, x, start, end)


def test_a_drawn_form_labelled_as_several_characters_gets_a_centre_each(face):
    """A ``…`` labelled ``...`` (`chars` 4 for ``好…``): three centres spread over its advance,
    after the one of ``好``; a label of another length is spread over the whole text."""
    line = draw_line("好…", face, 32, _rng(2), min_char_width=16, chars=4)
    first, *dots = line.centers
    assert len(dots) == 3 and first < dots[0] < dots[1] < dots[2]
    assert dots[1] - dots[0] == pytest.approx(dots[2] - dots[1], abs=0.11)
    odd = draw_line("好…", face, 32, _rng(2), min_char_width=16, chars=5)
    assert len(odd.centers) == 5 and list(odd.centers) == sorted(odd.centers)


def test_warps_move_the_centres_with_the_ink():
    """`degrade_line` moves the centres as its affine and perspective warps move the pixels
    (at mid-height), and gives `degrade`'s image: the same draws from the generator."""
    img = np.full((32, 200), 240, np.uint8)
    xs = (20.5, 100.5, 170.5)
    for x in xs:
        img[:, int(x) - 1 : int(x) + 2] = 10  # a dark bar 3 px wide centred on x
    for name, params in {
        "affine": {"p": 1.0, "shear": 0.0, "scale": [0.9, 0.9]},
        "perspective": {"p": 1.0, "strength": 0.05},
    }.items():
        cfg = resolve({name: params})
        for seed in range(5):
            out, moved = degrade_line(img, xs, cfg, _rng(seed))
            assert np.array_equal(out, degrade(img, cfg, _rng(seed))), name
            row = out[16].astype(float)
            assert moved != xs, name
            for x in moved:
                lo, hi = int(x) - 3, int(x) + 4
                darkest = lo + int(np.argmin(row[lo:hi]))
                assert abs(darkest + 0.5 - x) <= 1.5, (name, seed, x, darkest)
    # no warp: the centres are as drawn
    assert degrade_line(img, xs, resolve({"blur": {"p": 1.0}}), _rng())[1] == xs


def _ink_moved(img: np.ndarray, to_input: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where a warp (output points to input ones) puts the centres of the image's ink pixels."""
    ys, xs = np.nonzero(img < 240)
    out = np.linalg.solve(to_input, np.stack([xs + 0.5, ys + 0.5, np.ones(len(xs))]))
    return out[0] / out[2], out[1] / out[2]


def test_warps_keep_the_ink_in_the_image():
    """A warp that would carry ink past the image's edge (a line's end scaled up, a tall glyph
    sheared or a corner pulled in) is eased back until every ink pixel stays in, but not to no
    warp at all; one whose ink stays in is the warp drawn, as before."""
    img = np.full((32, 120), 240, np.uint8)
    img[1:31, 1:4] = 10  # ink a pixel from the left, top and bottom edges
    img[1:31, 116:119] = 10  # and from the right
    h, w = img.shape
    for seed in range(6):
        for warp, args in ((affine, (0.15, (1.1, 1.1))), (perspective, (0.08,))):
            out, m = warp(img, _rng(seed), *args)
            x, y = _ink_moved(img, m)
            assert (x >= 0).all() and (x <= w).all() and (y >= 0).all() and (y <= h).all()
            assert not np.allclose(m, np.eye(3)), (warp.__name__, seed)  # eased, not undone
            assert out.min() < 60 and (out[:, :8] < 60).any() and (out[:, -8:] < 60).any()
    # Ink in the middle, far from the edges: the warp is the one drawn from the generator.
    middle = np.full((32, 120), 240, np.uint8)
    middle[12:20, 50:70] = 10
    for seed in range(4):
        rng = _rng(seed)
        s, k = rng.uniform(-0.15, 0.15), rng.uniform(0.9, 1.1)
        _, m = affine(middle, _rng(seed), 0.15, (0.9, 1.1))
        expected = [[1 / k, s / k, 60 - 60 / k - 16 * s / k], [0, 1 / k, 16 - 16 / k], [0, 0, 1]]
        assert np.allclose(m, expected), seed


def test_expr_and_short_geometry(face):
    img = render_expr("(7+5)*4-12", face, (60, 180), _rng())
    assert img.shape == (60, 180) and img.dtype == np.uint8 and img.min() < 80
    long = render_expr("12*(34+56)-78+90*12", face, (60, 180), _rng(), font_size=(40, 40))
    border = np.concatenate([long[:, 0], long[:, -1]])
    assert border.min() >= 200  # scaled down to fit, not clipped
    img = render_short("Ab3Z", face, 40, _rng())
    assert img.shape == (40, 40) and img.dtype == np.uint8 and img.min() < 80


def test_every_renderer_keeps_background_around_its_ink(face):
    """A hanzi scaled down to fit its square, a line with room above and below its ink and a
    few characters at a random place keep a pixel of background at every edge; an expression
    keeps two, by its ink: where it stands taller than the image allows at the size drawn, and
    where a glyph reaches left of its pen (EB Garamond's italic 3 and 5)."""
    italic = FontFace(EB_GARAMOND.with_name("EBGaramond08-Italic.otf"))

    def edges(img: np.ndarray, k: int) -> np.ndarray:
        return np.concatenate([img[:k], img[-k:], img[:, :k].T, img[:, -k:].T], axis=None)

    for seed in range(30):
        assert edges(render_hanzi("啊", face, 40, _rng(seed), font_size=(80, 80)), 1).min() >= 200
        assert edges(render_line("因为", face, 32, _rng(seed)), 1).min() >= 200
        assert edges(render_short("Ab3Z", face, 40, _rng(seed)), 1).min() >= 200
        tall = render_expr("(7+5)*4", face, (24, 400), _rng(seed), font_size=(40, 40))
        assert edges(tall, 2).min() >= 200, seed
        assert edges(render_expr("35*53-35+53*35", italic, (32, 128), _rng(seed)), 2).min() >= 200
    # too long to fit even at the smallest size: an error, not a clipped text under its label
    with pytest.raises(DoesNotFit, match="the smallest size, in an image of 16 px"):
        render_short("W" * 25, face, 16, _rng())


def test_aliased_text_is_measured_as_drawn(heldout_font):
    """Drawn without anti-aliasing, AR PL UKai's embedded bitmap strikes reach a pixel past the
    anti-aliased ink box: measured in the mode it is drawn in, a short text at a random place
    (and a line) keeps its pixel of background at every edge."""
    ukai = FontFace(heldout_font, 0)
    for seed in range(60):
        short = render_short("MMMM", ukai, 24, _rng(seed), font_size=(10, 10), aliased=True)
        assert np.concatenate([short[:, 0], short[:, -1], short[0], short[-1]]).min() >= 200, seed
        line = render_line("MMMM", ukai, 12, _rng(seed), font_size=(0.85, 0.85), aliased=True)
        assert np.concatenate([line[:, 0], line[:, -1]]).min() >= 200, seed


def test_renderers_say_the_font_size_they_drew_at(face):
    # a sample's font_size: the size drawn from the range, or the smaller one a shrink to fit took
    sizes = {}
    for name, draw in {
        "expr": lambda r, used: render_expr(
            "1+2", face, (60, 180), r, font_size=(30, 30), used=used
        ),
        "expr-shrunk": lambda r, used: render_expr(
            "12*(34+56)-78+90*12", face, (60, 180), r, font_size=(40, 40), used=used
        ),
        "short": lambda r, used: render_short("AB", face, 40, r, font_size=(12, 12), used=used),
        "short-shrunk": lambda r, used: render_short(
            "ABCD", face, 20, r, font_size=(14, 14), used=used
        ),
        "line": lambda r, used: render_line("你好", face, 32, r, font_size=(0.75, 0.75), used=used),
        "hanzi": lambda r, used: render_hanzi("好", face, 64, r, font_size=(44, 44), used=used),
    }.items():
        used = {}
        a, b = _rng(3), _rng(3)
        image = draw(a, used)
        assert np.array_equal(image, draw(b, None)), name  # nothing drawn for it
        assert a.random() == b.random(), name
        sizes[name] = used["font_size"]
    assert (sizes["expr"], sizes["short"], sizes["line"], sizes["hanzi"]) == (30, 12, 24, 44)
    assert 6 <= sizes["expr-shrunk"] < 40 and 4 <= sizes["short-shrunk"] < 14, sizes


def test_expr_keeps_an_italic_glyphs_overhang_inside():
    """An italic 7 reaches past its advance: the line is fitted by its ink, not its advances,
    so the last glyph keeps its 2-px margin rather than losing its right edge."""
    italic = Path("/usr/share/fonts/opentype/urw-base35/NimbusSans-BoldItalic.otf")
    if not italic.exists():
        pytest.fail(f"test font {italic} is missing: run `make test` (fonts-urw-base35)")
    for text in ("999-777", "326*16", "12*(34+56)-78+97"):
        for seed in range(20):
            img = render_expr(text, FontFace(italic), (32, 128), _rng(seed))
            border = np.concatenate([img[:, :2], img[:, -2:]], axis=1)
            assert border.min() >= 200, (text, seed)  # background: no glyph cut at either side


LATO = Path("/usr/share/fonts/truetype/lato/Lato-Regular.ttf")
EB_GARAMOND = Path("/usr/share/fonts/opentype/ebgaramond/EBGaramond12-Regular.otf")


def _ink_rows(img: np.ndarray) -> int:
    return int(np.count_nonzero((img < 128).any(axis=1)))


def test_oldstyle_draws_a_faces_old_style_digits_and_nothing_else_changes(latin_font, cjk_font):
    """Lato's lining 0 stands as tall as its capitals; its old-style 0 (OpenType onum) is as
    high as its x-height. A face whose digits onum does not change (DejaVu Sans has no onum;
    EB Garamond's digits are old-style already) is not offered as one."""
    for font in (LATO, EB_GARAMOND):
        if not font.exists():
            pytest.fail(f"test font {font} is missing: run `make test` (workflow/setup)")
    assert has_oldstyle_digits(str(LATO))
    assert not has_oldstyle_digits(str(latin_font))
    assert not has_oldstyle_digits(str(EB_GARAMOND))
    assert not has_oldstyle_digits(str(cjk_font))
    lato = FontFace(LATO)
    size = dict(font_size=(26, 26), spacing=(0, 0))
    lining = render_expr("0", lato, (32, 128), _rng(), **size)
    oldstyle = render_expr("0", lato, (32, 128), _rng(), oldstyle=True, **size)
    assert _ink_rows(oldstyle) < 0.85 * _ink_rows(lining), (_ink_rows(oldstyle), _ink_rows(lining))
    # Operators and parentheses keep their glyphs (laid out by libraqm, they may move a pixel);
    # the generator is drawn from alike.
    ops = "(+-*)"
    inks = [
        render_expr(ops, lato, (32, 128), _rng(), oldstyle=old, **size) < 128
        for old in (False, True)
    ]
    spans = [np.flatnonzero(ink.any(axis=0))[[0, -1]] for ink in inks]
    assert np.abs(spans[0] - spans[1]).max() <= 1, spans
    assert abs(int(inks[0].sum()) - int(inks[1].sum())) <= 0.1 * inks[0].sum()
    a, b = _rng(3), _rng(3)
    render_expr("12+34", lato, (32, 128), a)
    render_expr("12+34", lato, (32, 128), b, oldstyle=True)
    assert a.random() == b.random()


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


def test_degrade_line_names_the_degradations_it_applies_and_draws_nothing_for_it(face):
    """``applied`` gets each degradation the image gets, in order (a sample's ``degrade``),
    and the pixels and the generator's state are those of a call without it."""
    img = render_line("因为天监", face, 32, _rng())
    for name in DEFAULTS:
        applied: list[str] = []
        rng = _rng(1)
        out, _ = degrade_line(img, (), resolve({name: {"p": 1.0}}), rng, applied)
        assert applied == [name], (name, applied)
        plain = _rng(1)
        assert np.array_equal(out, degrade(img, resolve({name: {"p": 1.0}}), plain)), name
        assert rng.random() == plain.random(), name
    applied = []
    degrade_line(
        img, (), resolve({n: {"p": 1.0} for n in ("invert", "blur", "affine")}), _rng(), applied
    )
    assert applied == ["affine", "blur", "invert"]  # the order they are applied in
    applied = []
    degrade_line(img, (), resolve({"blur": {"p": 0.0}}), _rng(), applied)
    assert applied == []
    # the floors, when they change the image: strong noise on faint ink
    faint = (255 - (255 - img.astype(int)) // 8).astype(np.uint8)
    applied = []
    degrade_line(
        faint, (), resolve({"gaussian_noise": {"p": 1.0, "sigma": [40, 40]}}), _rng(), applied
    )
    assert applied == ["gaussian_noise", "legible"]


def test_page_degradations_reach_the_strength_configured():
    """``background.strength`` is how much of its brightness the page loses where the
    gradient is darkest, and ``brightness`` the share of 255 the whole image moves by at most."""
    page = np.full((32, 64), 255, np.uint8)
    off = {"legible": {"min_contrast": 0, "min_snr": 0}}
    bg = {**off, "background": {"p": 1.0, "strength": [0.4, 0.4]}}
    darkest = [int(degrade(page, bg, _rng(seed)).min()) for seed in range(20)]
    assert min(darkest) == 153 and all(d >= 153 for d in darkest)  # 255 * (1 - 0.4)
    grey = np.full((32, 64), 128, np.uint8)
    bc = {**off, "brightness_contrast": {"p": 1.0, "brightness": 0.3, "contrast": [1, 1]}}
    shifts = [abs(float(degrade(grey, bc, _rng(seed)).mean()) - 128) for seed in range(50)]
    assert 65 < max(shifts) <= 0.3 * 255 + 0.5


def test_poisson_noise_takes_an_image_brightness_moved_past_black_and_white(face):
    # brightness can move pixels below 0 or past 255 before the noise: photon counts of those
    # are counts of black and white, not an error of the generator
    img = render_line("因为天监", face, 32, _rng())
    cfg = {
        "brightness_contrast": {"p": 1.0, "brightness": 1.0, "contrast": [2, 2]},
        "poisson_noise": {"p": 1.0},
    }
    for seed in range(10):
        out = degrade(img, cfg, _rng(seed))
        assert out.shape == img.shape and out.dtype == np.uint8


def test_every_degradation_leaves_the_generator_where_any_image_would(face):
    """The draws of every degradation are as many whatever the image's pixels (Poisson noise's
    sampler, which takes as many as the values ask, draws from a generator of its own): two
    different images leave the shard's generator in the same state, so an image drawn otherwise
    (a warp eased, a glyph fixed) redraws no later sample of its shard."""
    light = render_line("因为天监", face, 32, _rng())
    dark = (light // 4).astype(np.uint8)
    everything = {name: {"p": 1.0} for name in DEFAULTS} | {"weight": {"p": 0.0}}
    for cfg in ({"poisson_noise": {"p": 1.0}}, everything):
        for seed in range(5):
            a, b = _rng(seed), _rng(seed)
            degrade(light, cfg, a)
            degrade(dark, cfg, b)
            assert a.bit_generator.state == b.bit_generator.state, (sorted(cfg), seed)


def test_a_jpeg_quality_range_of_one_value_draws_that_quality(face):
    """``quality: [q, q]`` is one quality, inclusive as every range of the config: a lower
    quality leaves more of the JPEG's blocks in the image."""
    img = render_line("因为天监", face, 32, _rng())
    err = {}
    for q in (10, 95):
        out = degrade(img, resolve({"jpeg": {"p": 1.0, "quality": [q, q]}}), _rng(1))
        assert out.shape == img.shape and out.dtype == np.uint8
        err[q] = float(np.abs(out.astype(int) - img.astype(int)).mean())
    assert err[10] > err[95] > 0


def test_stroke_weight_makes_strokes_bolder_or_thinner(face):
    """``weight``: a positive amount grows the ink (a 3x3 minimum blended in), a negative one
    shrinks it, 0 leaves the render as it is; a share of a pixel moves less than a whole one."""
    img = render_expr("12+(3*4)", face, (32, 128), _rng(), font_size=(22, 22), spacing=(0, 1))
    ink = lambda x: int((x < 128).sum())  # noqa: E731
    half_bold, bold = stroke_weight(img, 0.5), stroke_weight(img, 1.0)
    half_thin, thin = stroke_weight(img, -0.5), stroke_weight(img, -1.0)
    assert np.array_equal(stroke_weight(img, 0.0), img)
    assert ink(thin) < ink(half_thin) < ink(img) < ink(half_bold) < ink(bold)
    assert ink(bold) > 1.5 * ink(img)  # a pixel more on each side of strokes about 2 px wide
    for out in (bold, thin):
        assert out.shape == img.shape and out.dtype == np.uint8
    # bolder never lightens a pixel, thinner never darkens one; the paper stays the paper
    assert (bold <= img).all() and (thin >= img).all()
    assert bold[0].max() == img[0].max() and thin.min() >= img.min()
    assert np.array_equal(stroke_weight(img, 3.0), bold)  # at most a pixel per side


def test_stroke_weight_amounts_are_bounded_by_the_schema():
    from synth.schema import check_schema

    amount = lambda a: {"tasks": {"expr": {"degrade": {"weight": {"p": 0.5, "amount": a}}}}}  # noqa: E731
    assert check_schema(amount([-1, 1])).problems == []
    assert check_schema(amount([-2, 1])).problems == [
        "tasks.expr.degrade.weight.amount.0: -2 is less than the minimum of -1"
    ]


def test_stroke_weight_draws_nothing_unless_configured(face):
    """Configs written before ``weight`` existed keep their shards: with p 0 it draws nothing from
    the generator; with p above 0 it draws its gate whether or not it applies, as the others do."""
    img = render_line("因为天监", face, 32, _rng())
    cfg = {"blur": {"p": 0.5}, "gaussian_noise": {"p": 0.5}}
    before = [degrade(img, resolve(cfg), _rng(s)) for s in range(8)]
    off = {**cfg, "weight": {"p": 0.0, "amount": [1.0, 1.0]}}
    assert all(np.array_equal(degrade(img, resolve(off), _rng(s)), b) for s, b in enumerate(before))
    # p 1e-9 never applies it, but draws its gate: the other degradations' draws move on
    tiny = {**cfg, "weight": {"p": 1e-9}}
    moved = [degrade(img, resolve(tiny), _rng(s)) for s in range(8)]
    assert any(not np.array_equal(m, b) for m, b in zip(moved, before, strict=True))
    r1, r2 = _rng(5), _rng(5)
    degrade(img, resolve(tiny), r1)
    r2.random()  # the weight's gate
    degrade(img, resolve(cfg), r2)
    assert r1.random() == r2.random()
    bold = resolve({"weight": {"p": 1.0, "amount": [1.0, 1.0]}})
    assert (degrade(img, bold, _rng()) < 128).sum() > (img < 128).sum()


def test_unknown_degradation_is_named():
    with pytest.raises(ValueError, match="sparkle"):
        resolve({"sparkle": {"p": 1}})
    with pytest.raises(ValueError, match="sigm"):
        resolve({"gaussian_noise": {"sigm": [1, 2]}})


def _contrast(img) -> float:
    """Paper minus ink, in grey levels, as :func:`synth.augment.legible` measures it."""
    from synth.augment import INK_PERCENTILE, PAPER_PERCENTILE

    x = np.clip(np.asarray(img, dtype=np.float32), 0, 255)
    return float(np.percentile(x, PAPER_PERCENTILE) - np.percentile(x, INK_PERCENTILE))


def test_legible_stretches_faint_ink_to_the_contrast_floor(face):
    from synth.augment import legible

    img = render_expr("(7+5)*4-12", face, (32, 128), _rng(2)).astype(np.float32)
    faint = 230 - (230 - img) * 0.1  # ink 10% of the way to black
    assert _contrast(faint) < 30
    out = legible(faint, None, 64, 3)
    assert out is not None and abs(_contrast(out) - 64) < 1
    # a stretch about the paper: the same picture, darker ink
    assert np.corrcoef(out.ravel(), faint.ravel())[0, 1] > 0.999
    # ink so close to black that the stretch would go below 0: the image moves up instead
    dark = 50 - (50 - img * 50 / 255) * 0.2
    out = legible(dark, None, 64, 3)
    assert out.min() >= -1e-3 and abs(_contrast(out) - 64) < 1
    # a blank image has no ink to stretch: left as it is
    assert legible(np.full((32, 128), 200, np.float32), None, 64, 3) is None


def test_legible_brings_back_ink_a_brightness_shift_took_past_white(face):
    """A pale face (a hairline's strokes are a light grey) made brighter: its paper and its ink
    past white, clipped to a blank image under its label. The floor moves it down until its
    paper is white, then holds its ink to the contrast floor; its noise is measured there."""
    from synth.augment import legible

    img = render_expr("(7+5)*4-12", face, (32, 128), _rng(2))
    pale = np.rint(240 - (240 - img.astype(np.float32)) * 0.25).astype(np.uint8)
    assert 30 < _contrast(pale) < 64
    bright = pale.astype(np.float32) + 80  # paper 320, the darkest ink past 255 too
    assert _contrast(bright) == 0  # as it shows: blank
    out = legible(bright, None, 64, 3)
    assert out is not None and abs(_contrast(out) - 64) < 1
    assert abs(float(np.percentile(out, 80)) - 255) < 1  # the paper white, not past it
    noise = 40 * _rng(5).standard_normal(img.shape).astype(np.float32)
    out = legible(bright, bright + noise, 64, 3)
    shown = np.clip(out, 0, 255) - np.clip(legible(bright, None, 64, 3), 0, 255)
    assert 5 < shown.std() <= 64 / 2.9  # the noise scaled to the ink it now shows, not gone
    # through degrade: every brightness shift of the range leaves the ink on the page
    cfg = {"brightness_contrast": {"p": 1.0, "brightness": 0.35, "contrast": [1.0, 1.0]}}
    off = {**cfg, "legible": {"min_contrast": 0, "min_snr": 0}}
    assert any(_contrast(degrade(pale, off, _rng(s))) == 0 for s in range(40))  # blank ones
    for seed in range(40):
        assert _contrast(degrade(pale, cfg, _rng(seed))) >= 63, seed


def test_legible_can_measure_the_strokes_rather_than_their_darkest_pixels(face):
    """A thin face drawn small: pale strokes, darker where they cross. Measured at its darkest
    pixels it passes both floors; measured at its strokes it is stretched until they pass."""
    from synth.augment import legible

    img = render_expr("(7+5)*4-12", face, (32, 128), _rng(2))
    strokes = img < np.percentile(img, 80) - 64
    pale = np.where(strokes, 230 - 45, 230).astype(np.float32)  # strokes 45 levels from the paper
    crossings = np.flatnonzero(strokes.ravel())[::10]
    pale.ravel()[crossings] = 230 - 80  # where they cross: darker
    strokes.ravel()[crossings] = False
    noisy = pale + 18 * _rng(3).standard_normal(pale.shape).astype(np.float32)

    def stroke_contrast(x):
        x = np.clip(x, 0, 255)
        return float(np.percentile(x, 80) - np.median(x[strokes]))

    assert _contrast(pale) > 64 and stroke_contrast(pale) < 50
    assert legible(pale, noisy, 64, 3) is None  # its darkest pixels pass both floors
    out = legible(pale, noisy, 64, 3, ink="stroke")
    clean_out = legible(pale, None, 64, 3, ink="stroke")
    assert out is not None and clean_out is not None
    assert 62 < stroke_contrast(clean_out) < 70  # the strokes stretched to the floor
    shown = np.clip(out, 0, 255) - np.clip(clean_out, 0, 255)
    assert stroke_contrast(clean_out) / shown.std() >= 2.9  # the noise scaled to the strokes


def test_legible_scales_strong_noise_down_to_the_snr_floor(face):
    from synth.augment import legible

    clean = render_expr("(7+5)*4-12", face, (32, 128), _rng(2)).astype(np.float32)
    clean = 200 - (200 - clean) * 0.5  # paper 200, ink about 100 levels darker
    noise = 60 * _rng(5).standard_normal(clean.shape).astype(np.float32)
    out = legible(clean, clean + noise, 64, 3)
    assert out is not None
    shown = np.clip(out, 0, 255) - np.clip(clean, 0, 255)
    assert 3 <= _contrast(clean) / shown.std() < 3.5
    assert np.corrcoef((out - clean).ravel(), noise.ravel())[0, 1] > 0.999  # same noise, weaker


def test_legible_leaves_readable_images_byte_for_byte(face):
    from synth.augment import legible

    img = render_expr("(7+5)*4-12", face, (32, 128), _rng(2))
    noisy = img.astype(np.float32) + 5 * _rng(1).standard_normal(img.shape).astype(np.float32)
    assert legible(img, None, 64, 3) is None and legible(img, noisy, 64, 3) is None
    cfg = {"gaussian_noise": {"p": 1.0, "sigma": [3, 8]}, "blur": {"p": 0.5}}
    off = {**cfg, "legible": {"min_contrast": 0, "min_snr": 0}}
    for seed in range(10):
        assert np.array_equal(degrade(img, cfg, _rng(seed)), degrade(img, off, _rng(seed)))


def test_degrade_holds_every_image_to_the_floors(face):
    """Faint, blurred, noisy: without the floors text drowns; with them every image keeps both."""
    img = render_expr("(7+5)*4-12", face, (32, 128), _rng(2))
    harsh = {
        "brightness_contrast": {"p": 1.0, "brightness": 0.0, "contrast": [0.1, 0.3]},
        "gaussian_noise": {"p": 1.0, "sigma": [30, 60]},
    }
    off = {**harsh, "legible": {"min_contrast": 0, "min_snr": 0}}
    on = {**harsh, "legible": {"min_contrast": 64, "min_snr": 3}}

    def snr(cfg, seed):
        # the same draws as degrade makes: contrast from the noise-free image, noise as it shows
        noisy = degrade(img, cfg, _rng(seed)).astype(np.float32)
        clean = degrade(img, {**cfg, "gaussian_noise": {"p": 1.0, "sigma": [0, 0]}}, _rng(seed))
        return _contrast(clean), _contrast(clean) / max(float((noisy - clean).std()), 1e-6)

    drowned = [snr(off, s) for s in range(8)]
    held = [snr(on, s) for s in range(8)]
    assert max(c for c, _ in drowned) < 64 and max(r for _, r in drowned) < 3
    assert all(c >= 63 and r >= 2.8 for c, r in held), held
    # either floor alone still holds: min_snr 0 turns off the noise's, not the contrast's
    contrast_only = {**harsh, "legible": {"min_contrast": 64, "min_snr": 0}}
    assert all(snr(contrast_only, s)[0] >= 63 for s in range(8))


def test_legible_settings_are_checked_and_named():
    assert resolve({})["legible"] == {"min_contrast": 64.0, "min_snr": 3.0, "ink": "darkest"}
    with pytest.raises(ValueError, match=r"degrade\.legible\.min_snr"):
        resolve({"legible": {"min_snr": -1}})
    with pytest.raises(ValueError, match="snr_floor"):
        resolve({"legible": {"snr_floor": 3}})
    assert resolve({"legible": {"ink": "stroke"}})["legible"]["ink"] == "stroke"
    with pytest.raises(ValueError, match=r"degrade\.legible\.ink: 'strokes'; valid: 'darkest'"):
        resolve({"legible": {"ink": "strokes"}})


def test_degradation_defaults_match_the_schema():
    from pathlib import Path

    import yaml

    from synth.augment import LEGIBLE

    schema_path = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"
    props = yaml.safe_load(schema_path.read_text())["definitions"]["degrade"]["properties"]
    ours = {**DEFAULTS, "legible": LEGIBLE}
    assert set(props) == set(ours)
    for name, params in ours.items():
        schema = {k: v["default"] for k, v in props[name]["properties"].items()}
        expected = {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
        assert schema == expected, name


def test_percentiles_are_numpys_bit_for_bit():
    """legible's fast percentiles: what np.percentile gives, so shards are the same bytes."""
    from synth.augment import _percentiles

    rng = _rng(7)
    for i in range(600):
        shape = [(40, 40), (32, 128), (64, 64), (32, 201), (2, 3), (1, 1)][i % 6]
        if i % 3 == 0:
            x = rng.integers(0, 256, shape).astype(np.float32)  # an untouched uint8 image
        elif i % 3 == 1:
            x = np.clip(200 + 40 * rng.standard_normal(shape), 0, 255).astype(np.float32)
        else:
            x = np.clip(rng.random(shape) * 300 - 20, 0, 255).astype(np.float32)
        qs = (0.5, 80, 0, 100, 33.3)
        assert _percentiles(x, qs) == [float(np.percentile(x, q)) for q in qs], (i, shape)


def test_line_width_follows_the_label_when_it_is_longer_than_the_drawn_text(face):
    """``…`` is labelled ``...``: the line is as wide as its label needs (CTC's frames)."""
    for seed in range(5):
        img = render_line("好…", face, 32, _rng(seed), min_char_width=40, chars=4)
        assert img.shape[1] >= 40 * 4
        assert render_line("好…", face, 32, _rng(seed), min_char_width=40).shape[1] < 40 * 4


def _strong_ink(img: np.ndarray) -> int:
    """Pixels at least 60 grey levels from the background (the median of the top and bottom
    rows)."""
    background = np.median(np.concatenate([img[0], img[-1]]))
    return int((np.abs(img.astype(int) - background) > 60).sum())


def test_a_thin_face_is_never_eroded_to_nothing():
    """A 3x3 erosion leaves about 1% of Noto Sans CJK Thin's ink (its strokes are a pixel or
    two wide): nearly every eroded sample of that face (at morph 1.0, 76 of 200 samples; at the
    default 0.2, about one in ten) showed a faint speck under a hanzi label. Erosion is skipped
    where it would leave under MIN_ERODED_INK of the ink."""
    from conftest import _require

    from synth.charset import gb2312_hanzi
    from synth.render import MIN_ERODED_INK, FontFace, render_hanzi

    assert 0 < MIN_ERODED_INK < 0.3
    thin = FontFace(str(_require(Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Thin.ttc"))), 2)
    chars = gb2312_hanzi()
    rng = np.random.default_rng(0)
    inked = [_strong_ink(render_hanzi(chars[i * 7], thin, 64, rng, morph=1.0)) for i in range(80)]
    assert min(inked) >= 40, sorted(inked)[:10]


def test_a_hairline_drawn_between_pixels_is_drawn_again_on_whole_pixels():
    """Lato Hairline's hyphen, drawn at a half-pixel position, left no ink in about a third of
    the hanzi task's samples: blank images under the label '-'."""
    from conftest import _require

    from synth.render import FontFace, render_hanzi

    face = FontFace(str(_require(Path("/usr/share/fonts/truetype/lato/Lato-Hairline.ttf"))), 0)
    rng = np.random.default_rng(0)
    inked = [_strong_ink(render_hanzi("-", face, 64, rng, rotate=0, morph=0)) for _ in range(100)]
    assert min(inked) > 0
