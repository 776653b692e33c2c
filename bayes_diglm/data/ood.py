"""Out-of-distribution image sets in MNIST format: rendered letters A-J, sklearn digits, uniform noise."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

__all__ = ["LETTERS", "letter_fonts", "notmnist_letters", "sklearn_digits_28", "uniform_noise"]

#: The notMNIST classes: letter ``LETTERS[i]`` has label ``i``.
LETTERS = "ABCDEFGHIJ"

# Fonts shipped in matplotlib's mpl-data/fonts/ttf, in several families and weights.
_FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmti10.ttf",
)
_SIDE = 28
_SUPERSAMPLE = 4  # render at 4x and average 4x4 blocks: anti-aliased edges


def letter_fonts() -> tuple[Path, ...]:
    """The font files used by :func:`notmnist_letters` (those of the list that this matplotlib ships)."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    fonts = tuple(folder / name for name in _FONT_FILES if (folder / name).is_file())
    if not fonts:
        raise FileNotFoundError(f"no fonts found in {folder}; is matplotlib installed completely?")
    return fonts


@functools.cache
def _glyphs() -> tuple[tuple[tuple[np.ndarray, ...], ...], ...]:
    """Outline polygons of every (font, letter), centred on the origin with the larger side scaled to 1."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath

    table = []
    for font in letter_fonts():
        prop = FontProperties(fname=str(font))
        row = []
        for letter in LETTERS:
            polygons = TextPath((0, 0), letter, size=1.0, prop=prop).to_polygons()
            points = np.concatenate(polygons)
            lo, hi = points.min(axis=0), points.max(axis=0)
            centre, extent = (lo + hi) / 2, float((hi - lo).max())
            # flip y: font units point up, image rows point down
            row.append(tuple((p - centre) / extent * np.array([1.0, -1.0]) for p in polygons))
        table.append(tuple(row))
    return tuple(table)


def _render(polygons, scale: float, angle: float, shift: np.ndarray) -> np.ndarray:
    """Fill glyph outlines by the even-odd rule (holes in A, B, D ...); return a float image in 0..1."""
    from PIL import Image, ImageChops, ImageDraw

    big = _SIDE * _SUPERSAMPLE
    c, s = np.cos(angle), np.sin(angle)
    matrix = np.array([[c, -s], [s, c]]) * scale * big
    origin = (big / 2) + shift * _SUPERSAMPLE
    canvas = Image.new("1", (big, big), 0)
    for polygon in polygons:
        layer = Image.new("1", (big, big), 0)
        ImageDraw.Draw(layer).polygon([tuple(p) for p in polygon @ matrix.T + origin], fill=1)
        canvas = ImageChops.logical_xor(canvas, layer)
    pixels = np.asarray(canvas, dtype=np.float64)
    return pixels.reshape(_SIDE, _SUPERSAMPLE, _SIDE, _SUPERSAMPLE).mean(axis=(1, 3))


def notmnist_letters(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Render ``n`` notMNIST-style images of the letters A-J, as white glyphs on black, 28x28 ``uint8``.

    notMNIST was made from glyphs of many fonts; here each image takes a font of :func:`letter_fonts`
    (DejaVu Sans / Serif / Mono, STIX and Computer Modern in several weights), a size of 50-80% of the
    image for the glyph's larger side, a rotation of up to 15 degrees either way and a shift of up to
    3 pixels, all drawn from ``numpy.random.default_rng(seed)``. Labels are balanced (``i % 10``
    shuffled) and letter ``LETTERS[i]`` has label ``i`` (A = 0 ... J = 9). Glyph outlines are cached, and
    each image is filled at 4x resolution and averaged down (anti-aliased): 2,000 images take about 0.2 s.

    Examples
    --------
    >>> images, labels = notmnist_letters(20, seed=0)
    >>> images.shape, images.dtype, labels.dtype, sorted(set(labels.tolist())) == list(range(10))
    ((20, 28, 28), dtype('uint8'), dtype('int64'), True)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    glyphs = _glyphs()
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(LETTERS)).astype(np.int64)
    fonts = rng.integers(0, len(glyphs), n)
    scales = rng.uniform(0.5, 0.8, n)
    angles = np.deg2rad(rng.uniform(-15.0, 15.0, n))
    shifts = rng.uniform(-3.0, 3.0, (n, 2))
    images = np.empty((n, _SIDE, _SIDE), dtype=np.uint8)
    for i in range(n):
        image = _render(glyphs[fonts[i]][labels[i]], scales[i], angles[i], shifts[i])
        images[i] = np.round(255.0 * image).astype(np.uint8)
    return images, labels


def sklearn_digits_28(n: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits (8x8, values 0..16) as MNIST-like 28x28 ``uint8`` images.

    Each digit is upsampled bilinearly by 2.5 to 20x20, rescaled from 0..16 to 0..255 and centred in a
    28x28 black frame (4-pixel border), as MNIST's digits sit in a 20x20 box inside 28x28.
    With ``n`` given, a seeded subset of ``n`` of the 1,797 digits (without replacement) is returned.

    Examples
    --------
    >>> images, labels = sklearn_digits_28(5)
    >>> images.shape, images.dtype, int(images[:, :4].max())
    ((5, 28, 28), dtype('uint8'), 0)
    """
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = digits.images, digits.target.astype(np.int64)
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= len(labels):
            raise ValueError(f"n must be an integer in 1..{len(labels)} or None, got {n!r}")
        rows = np.random.default_rng(seed).choice(len(labels), size=int(n), replace=False)
        images, labels = images[rows], labels[rows]
    big = zoom(images, (1, 2.5, 2.5), order=1, grid_mode=True, mode="grid-constant")
    out = np.zeros((len(labels), _SIDE, _SIDE), dtype=np.uint8)
    out[:, 4:24, 4:24] = np.clip(np.round(big * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return out, labels


def uniform_noise(n: int, seed: int = 0, shape: tuple[int, ...] = (_SIDE, _SIDE)) -> np.ndarray:
    """``n`` images of independent uniform pixels in 0..255 (``uint8``), the simplest OOD set.

    Examples
    --------
    >>> uniform_noise(3, seed=0).shape
    (3, 28, 28)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)
