"""Degradations after rendering, each with its own probability, from an explicit generator.

Implemented with numpy and PIL only. augraphy was considered and not used: it depends on OpenCV,
scikit-image, numba and friends (hundreds of MB for a 2-core laptop install), draws from the global
``random``/``numpy.random`` state (so shards would not be reproducible from our per-shard
generators), and its document-scan effects (ink bleed, folds, bad photocopies) are not the
degradations the reference systems used. What we need (noise of four kinds, blur, affine and
perspective warps, brightness/contrast, gradient and texture backgrounds, JPEG, inversion) is a few
lines each here.

The warps (affine, perspective) keep the ink in the image: one that would carry a line's end or a
tall glyph past the edge is eased back until every ink pixel stays in (:func:`affine`), so a label
never names ink the image lost; in the default config that redraws about 2% of the line renders
and 0.15% of the expressions.

The order is fixed: stroke weight, warps, background, blur, brightness/contrast, noises, JPEG,
inversion. Each degradation draws one uniform number for its gate whether or not it applies, so the
random stream stays aligned when one probability changes, and each draws as many numbers whatever
the image's pixels (Poisson noise, whose sampler takes as many as the pixels' values ask, from a
generator of its own seeded from the stream), so an image drawn otherwise (a warp eased) changes
no later sample. Stroke weight, added after the others, draws its gate only when its ``p`` is
above 0, so the shards of configs that do not set it stay the same bytes.

Stroke weight (``weight``) makes the strokes of the clean render bolder or thinner by up to a pixel
on each side (:func:`stroke_weight`), as bold and light cuts of a face, ink spread and faded print
do: fonts differ in weight more than any one face's renderings do, and a model trained without it
reads the default's held-out expressions made a pixel bolder far worse than as drawn (BENCHMARKS.md,
session 42).

The degradations combine freely, so a thin face at a small size, blurred, at low contrast and under
strong noise can come out with little or no text left to read: in the default config's held-out
expr test split, 43 images in 2000 had their ink within 64 grey levels of the paper or within 3
noise standard deviations, and they made 19 of the recognizer's 47 errors (BENCHMARKS.md, session
11). Such a sample tests the generator more than the recognizer, so
:func:`legible` (``degrade.legible``, on by default) holds every image to a floor before JPEG and
inversion: the ink at least ``min_contrast`` grey levels from the paper, and ``min_snr`` noise
standard deviations. It draws nothing from the generator, and an image above both floors comes out
byte for byte as without it.

Where the ink is measured matters for thin faces. By default (``ink: darkest``) it is the image's
darkest 0.5% of pixels; a light face drawn small has a few dark pixels where its strokes cross and
the rest of each stroke a pale grey, so an image can pass both floors with strokes 20 grey levels
from the paper and 1.5 noise deviations: in session 12's held-out expr split, the 38 images whose
strokes stood under 48 grey levels from the paper (2% of the split) made 8 of the recognizer's 22
errors. ``ink: stroke`` measures the strokes themselves: the median of the pixels nearer the
darkest level than the paper. The default config holds expr's test splits to it
(``tasks.expr.splits.<split>.degrade``) and trains on the laxer floor, which read better.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from PIL import Image, ImageFilter

# Defaults of each degradation's parameters (mirrors definitions.degrade in the config schema).
DEFAULTS: dict[str, dict] = {
    "weight": {"p": 0.0, "amount": (-0.5, 1.0)},
    "affine": {"p": 0.0, "shear": 0.15, "scale": (0.9, 1.05)},
    "perspective": {"p": 0.0, "strength": 0.05},
    "background": {"p": 0.0, "strength": (0.1, 0.4)},
    "blur": {"p": 0.0, "radius": (0.3, 1.2)},
    "brightness_contrast": {"p": 0.0, "brightness": 0.3, "contrast": (0.8, 1.2)},
    "gaussian_noise": {"p": 0.0, "sigma": (3, 15)},
    "poisson_noise": {"p": 0.0, "photons": (20, 120)},
    "gamma_noise": {"p": 0.0, "shape": (20, 80)},
    "uniform_noise": {"p": 0.0, "amplitude": (5, 25)},
    "jpeg": {"p": 0.0, "quality": (30, 90)},
    "invert": {"p": 0.0},
}
ORDER = tuple(DEFAULTS)
# Floors every image is held to (see :func:`legible`); 0 turns one off.
LEGIBLE = {"min_contrast": 64.0, "min_snr": 3.0, "ink": "darkest"}
INK_LEVELS = ("darkest", "stroke")  # where legible() measures the ink (see the module docstring)
PAPER_PERCENTILE = 80  # grey level of the paper: text covers less than a fifth of any task's image
INK_PERCENTILE = 0.5  # grey level of the ink: its darkest 0.5% of pixels (8 of a 40x40 image)
_RESOLVED = {*DEFAULTS, "legible"}  # the keys of a resolved config


def resolve(cfg: Mapping[str, Mapping] | None) -> dict[str, dict]:
    """Fill defaults; reject unknown degradations or parameters, naming them."""
    cfg = cfg or {}
    unknown = set(cfg) - _RESOLVED
    if unknown:
        raise ValueError(
            f"unknown degradation(s) {sorted(unknown)}; valid: {', '.join(ORDER)}, legible"
        )
    out = {}
    for name, defaults in {**DEFAULTS, "legible": LEGIBLE}.items():
        given = dict(cfg.get(name) or {})
        bad = set(given) - set(defaults)
        if bad:
            raise ValueError(f"degrade.{name}: unknown parameter(s) {sorted(bad)}")
        out[name] = {**defaults, **given}
    for key, v in out["legible"].items():
        if key == "ink":
            if v not in INK_LEVELS:
                raise ValueError(
                    f"degrade.legible.ink: {v!r}; valid: {', '.join(map(repr, INK_LEVELS))}"
                )
        elif not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
            raise ValueError(f"degrade.legible.{key}: must be a number >= 0, got {v!r}")
    return out


def legible(
    clean: np.ndarray,
    noisy: np.ndarray | None,
    min_contrast: float,
    min_snr: float,
    ink: str = "darkest",
) -> np.ndarray | None:
    """Hold an image to a contrast floor and a signal-to-noise floor.

    The paper's grey level is the image's 80th percentile, the ink's its 0.5th (text is dark on
    light before inversion), or with ``ink="stroke"`` the median of the pixels nearer that
    darkest level than the paper: the strokes' own grey, not where they cross. Ink closer than
    ``min_contrast`` grey levels to the paper is stretched away from it (the image moves up if
    the ink would go below 0), after moving an image whose paper is past white down until it is
    white (a brightness shift clips a pale face's ink to white with it, or leaves the image blank);
    noise whose standard deviation (as it shows, clipped to 0..255)
    is above the contrast / ``min_snr`` is scaled down to that or a little below. The noise
    keeps its pattern and kind.

    Args:
        clean: the noise-free image (``uint8``, or ``float32`` that may leave 0..255).
        noisy: the same image with noise added, or None when no noise was drawn.
        min_contrast: grey levels between paper and ink (0 = no floor).
        min_snr: contrast over the noise's standard deviation (0 = no floor).
        ink: ``"darkest"`` or ``"stroke"``: where the ink's grey level is measured.

    Returns:
        The corrected ``float32`` image, or None when the image is above both floors (so the
        caller keeps what it had, byte for byte).
    """
    base = original = clean.astype(np.float32)
    levels = np.clip(original, 0, 255)
    paper, contrast = _shown_contrast(levels, ink)
    changed = False
    moved = 0.0  # how far the image was moved down (below)
    past = _percentiles(original, (PAPER_PERCENTILE,))[0] - 255 if contrast < min_contrast else 0
    if past > 0:
        # A brightness shift can take the paper past white, and a pale face's ink (a hairline's
        # strokes are a light grey) with it: clipped, the image shows less contrast than it has,
        # none at all when the ink is past white too (a blank image under its label). Moved
        # down until its paper is white, it shows what it has.
        base, moved = original - past, past
        levels = np.clip(base, 0, 255)
        paper, contrast = _shown_contrast(levels, ink)
        changed = True
    if 0 < contrast < min_contrast:  # (0: a blank image, nothing to stretch)
        base = paper + (base - paper) * (min_contrast / contrast)
        base -= min(0.0, paper - min_contrast)  # ink below black: move the whole image up
        contrast, changed = min_contrast, True
    if noisy is None:
        return base if changed else None
    noise = noisy - original
    shown = noisy - moved if moved else noisy  # moved down with the image
    sigma = float((np.clip(shown, 0, 255) - levels).std())  # the noise as it shows (clipped)
    if min_snr and sigma > 0 and 0 < contrast < min_snr * sigma:
        # Scaled so the unclipped noise has the floor's deviation: clipped, it shows no more.
        noise *= contrast / (min_snr * float(noise.std()))
        changed = True
    return base + noise if changed else None


def _shown_contrast(levels: np.ndarray, ink: str) -> tuple[float, float]:
    """The paper's grey level and the ink's contrast to it in an image clipped to 0..255
    (`legible`'s measure: the darkest pixels, or with ``ink="stroke"`` the strokes)."""
    darkest, paper = _percentiles(levels, (INK_PERCENTILE, PAPER_PERCENTILE))
    contrast = paper - darkest
    if ink == "stroke" and contrast > 0:
        contrast = paper - float(np.median(levels[levels < paper - contrast / 2]))
    return paper, contrast


def _percentiles(values: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """``float(np.percentile(values, q))`` for each q, bit for bit, from one partition.

    NumPy's default ("linear") method, written out: most of ``np.percentile``'s time on an image
    this small is its generality, and :func:`legible` runs on every image (a test compares the two).
    """
    flat = values.ravel()
    n = flat.size
    picks = []
    for q in qs:
        at = (n - 1) * (q / 100)  # the virtual index, in float64 as NumPy computes it
        lo = min(math.floor(at), n - 1)
        picks.append((lo, min(lo + 1, n - 1), at - math.floor(at)))
    part = np.partition(flat, sorted({i for lo, hi, _ in picks for i in (lo, hi)}))
    out = []
    for lo, hi, gamma in picks:
        a, b = part[lo], part[hi]
        d = b - a  # NumPy's _lerp, in the array's dtype (gamma is a Python float: weak promotion)
        out.append(float(b - d * (1 - gamma) if gamma >= 0.5 else a + d * gamma))
    return out


def _border_level(img: np.ndarray) -> int:
    """Background grey level estimated from the border pixels (fill for warps)."""
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    return int(np.median(border))


def stroke_weight(img: np.ndarray, amount: float) -> np.ndarray:
    """Dark strokes on light paper made bolder (``amount`` > 0) or thinner (< 0).

    The image moves a share ``|amount|`` (at most 1) of the way to its 3x3 minimum (every stroke
    grown by a pixel on each side) or maximum (shrunk by one), so ``amount`` 0.5 grows an edge by
    about half a pixel; strokes a pixel or two wide vanish at -1. Renders are dark on light before
    every other degradation, which is why this one comes first.
    """
    if amount == 0:
        return img
    size_filter = ImageFilter.MinFilter(3) if amount > 0 else ImageFilter.MaxFilter(3)
    moved = np.asarray(Image.fromarray(img).filter(size_filter), dtype=np.float32)
    f = img.astype(np.float32)
    return _u8(f + min(abs(amount), 1.0) * (moved - f))


def affine(
    img: np.ndarray, rng: np.random.Generator, shear: float, scale
) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal shear and isotropic scale about the image centre, eased back toward none as
    far as keeps the ink in the image (`_inside`).

    Returns:
        The image, and the ``3 x 3`` matrix mapping its points to the input's (`moved_x`).
    """
    h, w = img.shape
    s = float(rng.uniform(-shear, shear))
    k = float(rng.uniform(scale[0], scale[1]))
    cx, cy = w / 2, h / 2

    def to_input(t: float) -> np.ndarray:
        # PIL maps output (x, y) to input (a x + b y + c, d x + e y + f).
        kt = k if t == 1 else 1 + t * (k - 1)  # k itself at 1: the bytes of an unclipped warp
        a, b, d, e = 1 / kt, t * s / kt, 0.0, 1 / kt
        return np.array([[a, b, cx - a * cx - b * cy], [d, e, cy - d * cx - e * cy], [0, 0, 1.0]])

    m = _inside(img, to_input)
    out = Image.fromarray(img).transform(
        (w, h),
        Image.Transform.AFFINE,
        tuple(float(v) for v in m[:2].ravel()),
        resample=Image.Resampling.BILINEAR,
        fillcolor=_border_level(img),
    )
    return np.asarray(out), m


def perspective(
    img: np.ndarray, rng: np.random.Generator, strength: float
) -> tuple[np.ndarray, np.ndarray]:
    """Move the four corners independently by up to ``strength`` x the image size, eased back
    toward none as far as keeps the ink in the image (`_inside`).

    Returns:
        The image, and the ``3 x 3`` matrix mapping its points to the input's (`moved_x`).
    """
    h, w = img.shape
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    moves = rng.uniform(-strength, strength, size=(4, 2)) * np.array([w, h])

    def to_input(t: float) -> np.ndarray:
        # Coefficients mapping output (dst) to input (src) points.
        rows, rhs = [], []
        for (x, y), (u, v) in zip(src + t * moves, src, strict=True):
            rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
            rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
            rhs += [u, v]
        return np.append(np.linalg.solve(np.asarray(rows), np.asarray(rhs)), 1.0).reshape(3, 3)

    m = _inside(img, to_input)
    out = Image.fromarray(img).transform(
        (w, h),
        Image.Transform.PERSPECTIVE,
        tuple(float(c) for c in m.ravel()[:8]),
        resample=Image.Resampling.BILINEAR,
        fillcolor=_border_level(img),
    )
    return np.asarray(out), m


# How many halvings `_inside` narrows a warp's strength down by (to 1/4096 of it).
_HALVINGS = 12


def _inside(img: np.ndarray, to_input: Callable[[float], np.ndarray]) -> np.ndarray:
    """The warp ``to_input(1)`` (output points to input ones, homogeneous ``3 x 3``), or, when
    it would carry ink out of the image, ``to_input(t)`` at the largest ``t`` below 1 found (by
    halving; ``to_input(0)`` is no warp) that keeps every ink pixel's centre within it. A line's
    end or a tall glyph scaled up or sheared past the edge would lose ink its label still names.
    Nothing is drawn from the generator: an image whose ink stays in is warped as before.
    """
    full = to_input(1.0)
    ink = img < _border_level(img)  # darker than the paper
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if not len(rows):
        return full
    h, w = img.shape

    def fits(m: np.ndarray, pts: np.ndarray) -> bool:
        out = np.linalg.solve(m, pts)
        if not (out[2] > 0).all():  # a point sent past the horizon: no warp of ours does that
            return False
        x, y = out[0] / out[2], out[1] / out[2]
        return bool((x >= 0).all() and (x <= w).all() and (y >= 0).all() and (y <= h).all())

    # The ink's box first: a warp this mild keeps a box convex, so when its corners stay in, so
    # does every ink pixel in it (most images; the pixels themselves are many more points).
    (x0, x1), (y0, y1) = cols[[0, -1]] + 0.5, rows[[0, -1]] + 0.5
    if fits(full, np.array([[x0, x1, x1, x0], [y0, y0, y1, y1], [1.0, 1.0, 1.0, 1.0]])):
        return full
    ys, xs = np.nonzero(ink)
    pts = np.stack([xs + 0.5, ys + 0.5, np.ones(len(xs))])
    if fits(full, pts):
        return full
    lo, hi = 0.0, 1.0  # lo fits (no warp), hi does not
    for _ in range(_HALVINGS):
        mid = (lo + hi) / 2
        if fits(to_input(mid), pts):
            lo = mid
        else:
            hi = mid
    return to_input(lo)


def moved_x(xs: Sequence[float], to_input: np.ndarray, y: float) -> tuple[float, ...]:
    """Where the points ``(x, y)`` of a warp's input lie in its output, x only (rounded to 0.1
    px): ``to_input`` maps output points to input ones (homogeneous ``3 x 3``), as PIL's
    transforms take them, so its inverse maps them back."""
    if not len(xs):
        return ()
    pts = np.stack([np.asarray(xs, dtype=np.float64), np.full(len(xs), y), np.ones(len(xs))])
    out = np.linalg.solve(to_input, pts)
    return tuple(round(float(v), 1) for v in out[0] / out[2])


def background(img: np.ndarray, rng: np.random.Generator, strength) -> np.ndarray:
    """Darken the page with a linear gradient or a smooth blotchy texture (text stays dark)."""
    h, w = img.shape
    s = float(rng.uniform(strength[0], strength[1]))
    if rng.random() < 0.5:
        theta = float(rng.uniform(0, 2 * np.pi))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = xx * np.cos(theta) / max(w, 1) + yy * np.sin(theta) / max(h, 1)
        field = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    else:
        gh, gw = (int(v) for v in rng.integers(2, 7, size=2))
        coarse = (rng.random((gh, gw)) * 255).astype(np.uint8)
        field = np.asarray(
            Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32
        )
        field /= 255.0
    return img.astype(np.float32) * (1.0 - s * field)


def degrade(img: np.ndarray, cfg: Mapping[str, Mapping], rng: np.random.Generator) -> np.ndarray:
    """Apply the configured degradations to a grayscale image.

    Args:
        img: ``uint8`` array ``(H, W)``.
        cfg: degradation name -> parameters with ``p``; missing ones are off (see :data:`DEFAULTS`),
            and ``legible`` -> the floors of :func:`legible` (default :data:`LEGIBLE`). Pass the
            result of :func:`resolve` to skip re-validation in a loop.
        rng: the shard's generator.

    Returns:
        ``uint8`` array of the same shape.
    """
    return degrade_line(img, (), cfg, rng)[0]


def degrade_line(
    img: np.ndarray,
    centers: Sequence[float],
    cfg: Mapping[str, Mapping],
    rng: np.random.Generator,
    applied: list[str] | None = None,
) -> tuple[np.ndarray, tuple[float, ...]]:
    """`degrade`, and where the x positions ``centers`` (a line's characters, at mid-height) lie
    after its warps (affine, perspective); the same draws from ``rng`` and the same pixels.

    Args:
        applied: a list to which the name of each degradation the image gets is appended, in
            the order applied (``legible`` when its floors changed the image): a sample's
            ``degrade`` (`synth.shards`). Nothing is drawn for it.

    Returns:
        The degraded image and the moved positions.
    """
    done = applied if applied is not None else []
    c = cfg if cfg.keys() == _RESOLVED else resolve(cfg)
    shape = img.shape
    out: np.ndarray = img
    xs = tuple(centers)
    if c["weight"]["p"] > 0 and rng.random() < c["weight"]["p"]:
        out = stroke_weight(out, float(rng.uniform(*c["weight"]["amount"])))
        done.append("weight")
    if rng.random() < c["affine"]["p"]:
        out, to_input = affine(out, rng, c["affine"]["shear"], c["affine"]["scale"])
        xs = moved_x(xs, to_input, shape[0] / 2)
        done.append("affine")
    if rng.random() < c["perspective"]["p"]:
        out, to_input = perspective(out, rng, c["perspective"]["strength"])
        xs = moved_x(xs, to_input, shape[0] / 2)
        done.append("perspective")
    if rng.random() < c["background"]["p"]:
        out = _u8(background(out, rng, c["background"]["strength"]))
        done.append("background")
    if rng.random() < c["blur"]["p"]:
        r = float(rng.uniform(*c["blur"]["radius"]))
        out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(r)))
        done.append("blur")
    f = None  # float32 working copy for the pixel-wise steps
    if rng.random() < c["brightness_contrast"]["p"]:
        p = c["brightness_contrast"]
        shift = float(rng.uniform(-p["brightness"], p["brightness"])) * 255
        gain = float(rng.uniform(*p["contrast"]))
        f = out.astype(np.float32)
        f = (f - float(f.mean())) * gain + float(f.mean()) + shift
        done.append("brightness_contrast")
    clean = out if f is None else f  # the image before noise, for the legibility floors
    if rng.random() < c["gaussian_noise"]["p"]:
        sigma = float(rng.uniform(*c["gaussian_noise"]["sigma"]))
        f = (out.astype(np.float32) if f is None else f) + sigma * rng.standard_normal(
            shape, dtype=np.float32
        )
        done.append("gaussian_noise")
    if rng.random() < c["poisson_noise"]["p"]:
        lam = float(rng.uniform(*c["poisson_noise"]["photons"]))
        base = np.clip(out.astype(np.float32) if f is None else f, 0, 255)
        # Poisson draws take as many numbers as the pixels' values ask (rejection sampling): they
        # come from a generator of their own, seeded from this one, which then goes on the same
        # whatever the image, so an image drawn otherwise redraws no later sample of its shard
        photons = np.random.default_rng(int(rng.integers(0, 2**63)))
        f = photons.poisson(base * (lam / 255.0)).astype(np.float32) * (255.0 / lam)
        done.append("poisson_noise")
    if rng.random() < c["gamma_noise"]["p"]:
        k = float(rng.uniform(*c["gamma_noise"]["shape"]))
        f = (out.astype(np.float32) if f is None else f) * rng.gamma(k, 1.0 / k, shape).astype(
            np.float32
        )
        done.append("gamma_noise")
    if rng.random() < c["uniform_noise"]["p"]:
        a = float(rng.uniform(*c["uniform_noise"]["amplitude"]))
        f = (out.astype(np.float32) if f is None else f) + rng.uniform(-a, a, shape).astype(
            np.float32
        )
        done.append("uniform_noise")
    floors = c["legible"]
    if floors["min_contrast"] or floors["min_snr"]:
        fixed = legible(clean, f, floors["min_contrast"], floors["min_snr"], floors["ink"])
        if fixed is not None:
            f = fixed
            done.append("legible")
    if f is not None:
        out = _u8(f)
    if rng.random() < c["jpeg"]["p"]:
        q = int(rng.integers(int(c["jpeg"]["quality"][0]), int(c["jpeg"]["quality"][1]) + 1))
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=q)
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))
        done.append("jpeg")
    if rng.random() < c["invert"]["p"]:
        out = 255 - out
        done.append("invert")
    return np.ascontiguousarray(out, dtype=np.uint8), xs


def _u8(f: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)
