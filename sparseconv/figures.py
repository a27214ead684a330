"""The gallery: every figure in ``figures/``, built from library calls, deterministically.

Used by ``scripts/make_figures.py`` and ``sparseconv figures``. Each entry of :data:`FIGURES`
is a file name and a function returning a matplotlib ``Figure`` (saved as PNG) or an animation
(saved as GIF). Figures are built on ``matplotlib.figure.Figure`` (no pyplot state) under fixed
rcParams, with seeded weights and no date or version in the files, so the bytes depend only on
the library versions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from . import _spectra as spectra
from . import _symbol, plot
from ._composition import compose
from ._geometry import ConvGeometry
from ._matrices import conv_matrix, conv_transpose_matrix
from ._operators import ConvOperator
from ._selection import im2col_matrix
from ._structured import (
    conv1x1_matrix,
    doubly_block_circulant,
    doubly_block_toeplitz,
    toeplitz_matrix,
)

__all__ = ["FIGURES", "make_figures"]

_RC = {"font.size": 8, "axes.titlesize": 9, "figure.dpi": 100, "savefig.dpi": 100,
       "font.family": "DejaVu Sans", "image.interpolation": "nearest"}
_KERNEL = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])  # 9 distinct colors


def _figure(ncols: int = 1, width: float = 4.0, height: float = 3.6):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _spy_values(A, title: str, **kwargs):
    """One panel: the matrix entries colored by value, with a colorbar."""
    rows, cols = A.shape
    fig, (ax,) = _figure(width=2.0 + 3.0 * min(2.0, max(0.75, cols / rows)),
                         height=1.4 + 3.0 * min(1.0, max(0.45, rows / cols)))
    image = plot.spy(A, ax, values=True, **kwargs)
    fig.colorbar(image, ax=ax, shrink=0.8, label="entry")
    ax.set_title(title)
    return fig


def toeplitz_1d():
    A = toeplitz_matrix([-2.0, 1.0, 3.0], 10, mode="full")
    return _spy_values(A, "1-D convolution, kernel [-2, 1, 3], n=10 (full):\n"
                          "a Toeplitz matrix, one diagonal per tap")


def doubly_block_toeplitz_valid():
    A = doubly_block_toeplitz(_KERNEL, (5, 5), mode="valid")
    return _spy_values(A, "3x3 kernel on 5x5, valid: doubly block Toeplitz\n"
                          "(3x3 blocks of 3x5 Toeplitz blocks)", blocks=[(3, 5)])


def doubly_block_circulant_same():
    A = doubly_block_circulant(_KERNEL, (5, 5))
    return _spy_values(A, "3x3 kernel on 5x5, circular padding:\n"
                          "doubly block circulant (5x5 blocks of 5x5)", blocks=[(5, 5)])


def im2col():
    A = im2col_matrix((1, 4, 4), 3)
    fig, (ax,) = _figure(width=3.6, height=5.2)
    plot.spy(A, ax, blocks=[(4, 16)])
    ax.set_title("im2col, 4x4 input, 3x3 kernel:\na 0/1 selection, one 1 per row")
    ax.set_xlabel("input position")
    ax.set_ylabel("tap x 4 output positions")
    return fig


def _single_channel(title: str, input_size, **kwargs):
    weight = _KERNEL[None, None]
    geom = ConvGeometry.from_weight(weight.shape, (1, *input_size), **kwargs)
    A = conv_matrix(weight, (1, *input_size), **kwargs)
    return _spy_values(A, title, geometry=geom, blocks=True)


def stride2():
    return _single_channel("3x3 kernel on 7x7, stride 2, padding 1: 16 of the 49\n"
                           "rows of the stride-1 matrix (every other one per axis)", (7, 7),
                           stride=2, padding=1)


def dilation2():
    return _single_channel("3x3 kernel on 7x7, dilation 2, padding 2:\nthe taps spread "
                           "over a 5x5 window", (7, 7), dilation=2, padding=2)


def multichannel():
    weight = _rng(1).standard_normal((4, 3, 3, 3))
    geom = ConvGeometry.from_weight(weight.shape, (3, 5, 5), padding=1)
    return _spy_values(conv_matrix(weight, (3, 5, 5), padding=1),
                       "3 -> 4 channels, 3x3 on 5x5, padding 1:\na 4x3 block matrix of "
                       "doubly block Toeplitz blocks", geometry=geom, blocks=True)


def conv1x1_kronecker():
    weight = np.arange(1.0, 13.0).reshape(4, 3) * np.where(np.arange(12) % 2, -1, 1).reshape(4, 3)
    geom = ConvGeometry.from_weight((4, 3, 1, 1), (3, 4, 4))
    return _spy_values(conv1x1_matrix(weight, (4, 4)), "1x1 convolution 3 -> 4 on 4x4:\n"
                       "the Kronecker product W (x) I_16", geometry=geom, blocks=True)


def transposed():
    weight = _KERNEL[None, None]
    A = conv_matrix(weight, (1, 5, 5), stride=2, padding=1)
    T = conv_transpose_matrix(weight, (1, 3, 3), stride=2, padding=1)
    geom = ConvGeometry.from_weight(weight.shape, (1, 5, 5), stride=2, padding=1)
    fig, axes = _figure(2, width=3.4)
    for ax, M, title in ((axes[0], A, "convolution 5x5 -> 3x3\n(stride 2, padding 1)"),
                         (axes[1], T, "transposed convolution 3x3 -> 5x5:\nthe transpose")):
        plot.spy(M, ax, values=True, geometry=geom, blocks=True)
        ax.set_title(title)
    return fig


def composition():
    weight = _KERNEL[None, None]
    layer = ConvGeometry.from_weight(weight.shape, (1, 8, 8), padding=1)
    A = conv_matrix(weight, (1, 8, 8), padding=1)
    fig, axes = _figure(2, width=3.6)
    plot.spy(compose(A, A), axes[0], geometry=layer, blocks=True)
    axes[0].set_title("two 3x3 layers on 8x8, padding 1:\nthe product has 5x5-wide bands")
    plot.receptive_field_heatmap([layer, layer], axes[1], position=(3, 4))
    axes[1].set_title("receptive field of output (3, 4):\npaths from each input pixel")
    return fig


def receptive_fields():
    size = (17, 17)
    stacks = {
        "one 3x3 layer": [1],
        "three stacked 3x3 layers": [1, 1, 1],
        "dilated stack (dilation 1, 2, 4)": [1, 2, 4],
    }
    fig, axes = _figure(3, width=3.0, height=3.2)
    for ax, (title, dilations) in zip(axes, stacks.items()):
        layers = [ConvGeometry.from_weight((1, 1, 3, 3), (1, *size), padding=d, dilation=d)
                  for d in dilations]
        image = plot.receptive_field_heatmap(layers, ax)
        fig.colorbar(image, ax=ax, shrink=0.7, label="paths")
        ax.set_title(f"{title}\n{int((image.get_array() > 0).sum())} input pixels")
    return fig


def _layer_spectra(weight, size):
    runs = {
        "circular, stride 1": dict(padding_mode="circular"),
        "zeros, stride 1": dict(padding_mode="zeros", padding=1),
        "circular, stride 2": dict(padding_mode="circular", stride=2),
        "zeros, stride 2": dict(padding_mode="zeros", padding=1, stride=2),
    }
    return {name: spectra.singular_values(weight, (weight.shape[1], *size), **kwargs)
            for name, kwargs in runs.items()}


def spectra_padding():
    weight = _rng(2).standard_normal((4, 4, 3, 3)) / 6.0
    fig, axes = _figure(2, width=3.8)
    values = _layer_spectra(weight, (12, 12))
    plot.spectrum({k: v for k, v in values.items() if "stride 1" in k}, axes[0])
    axes[0].set_title("4 -> 4, 3x3 on 12x12: circular vs zero padding")
    plot.spectrum(values, axes[1], fraction=True)
    axes[1].set_title("stride 1 vs 2 (x axis: fraction of the values)")
    return fig


def frequency_maps():
    kernels = {
        "random 4 -> 4, 3x3": _rng(2).standard_normal((4, 4, 3, 3)) / 6.0,
        "Laplacian 1 -> 1 (a high-pass)": np.array([[[[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]]]),
    }
    fig, axes = _figure(2, width=3.8)
    for ax, (title, weight) in zip(axes, kernels.items()):
        image = plot.frequency_heatmap(_symbol.frequency_map(weight, (32, 32)), ax)
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.set_title(f"{title}\nlargest singular value per frequency, 32x32")
    return fig


def density_large():
    weight = _rng(3).standard_normal((64, 64, 3, 3))
    layer = ConvOperator(weight, (64, 56, 56), padding=1)
    corner = conv_matrix(weight[:1, :1], (1, 56, 56), padding=1)[:168, :168]
    fig, axes = _figure(2, width=4.2, height=4.4)
    image = plot.spy(layer, axes[0], max_bins=512)
    fig.colorbar(image, ax=axes[0], shrink=0.7, location="bottom", label="nonzeros per pixel")
    axes[0].set_title(f"64 -> 64, 3x3 on 56x56: {_shape_text(layer)},\n"
                      f"{layer.geometry.nnz():,} nonzeros in 512x512 pixels")
    plot.spy(corner, axes[1], blocks=[(56, 56)])
    axes[1].set_title("zoom, exact: the top-left 168x168 entries\n(3x3 row blocks of one "
                      "channel block)")
    fig.suptitle("A density raster computed from the geometry (no matrix formed), and "
                 "a zoom into one channel block", fontsize=9)
    return fig


def _shape_text(A) -> str:
    return f"{A.shape[0]:,} x {A.shape[1]:,}"


def _animation(input_size, transposed=False, **kwargs):
    if transposed:
        geom = ConvGeometry.for_transpose((1, 1, 3, 3), (1, *input_size), **kwargs)
    else:
        geom = ConvGeometry.from_weight((1, 1, 3, 3), (1, *input_size), **kwargs)
    return plot.conv_animation(geom, transposed=transposed)


FIGURES: dict[str, Callable] = {
    "toeplitz_1d.png": toeplitz_1d,
    "doubly_block_toeplitz.png": doubly_block_toeplitz_valid,
    "doubly_block_circulant.png": doubly_block_circulant_same,
    "im2col.png": im2col,
    "stride2.png": stride2,
    "dilation2.png": dilation2,
    "multichannel.png": multichannel,
    "conv1x1_kronecker.png": conv1x1_kronecker,
    "transposed.png": transposed,
    "composition.png": composition,
    "receptive_field.png": receptive_fields,
    "spectra.png": spectra_padding,
    "frequency_map.png": frequency_maps,
    "density_large.png": density_large,
    "arithmetic_no_padding_no_strides.gif": lambda: _animation((4, 4)),
    "arithmetic_padding_strides.gif": lambda: _animation((5, 5), stride=2, padding=1),
    "arithmetic_dilation.gif": lambda: _animation((7, 7), dilation=2),
    "arithmetic_transposed.gif": lambda: _animation((3, 3), True, stride=2, padding=1),
}


def _save(result, path: Path) -> None:
    from matplotlib.animation import PillowWriter

    if path.suffix == ".gif":
        result.save(path, writer=PillowWriter(fps=2), dpi=60)
    else:
        result.savefig(path, metadata={"Software": None})


def make_figures(out_dir: str | Path = "figures", names: Iterable[str] | None = None, *,
                 progress: Callable[[str], object] | None = print) -> list[Path]:
    """Write the gallery's figures into ``out_dir``; one progress line per figure.

    Parameters
    ----------
    out_dir : str or Path
        Created if missing.
    names : iterable of str, optional
        File names from :data:`FIGURES` (all by default).
    progress : callable, optional
        Called with one line per figure written (``print`` by default; ``None``: silent).

    Returns
    -------
    list of Path
        The files written, in gallery order.

    Raises
    ------
    ValueError
        An unknown figure name.
    """
    import matplotlib

    names = list(FIGURES) if names is None else list(names)
    unknown = [name for name in names if name not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown}; choose from {list(FIGURES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, name in enumerate(names, 1):
        start = time.perf_counter()
        with matplotlib.rc_context(_RC):
            _save(FIGURES[name](), out / name)
        written.append(out / name)
        if progress is not None:
            progress(f"[{i:2d}/{len(names)}] {out / name}  "
                     f"({time.perf_counter() - start:.2f} s)")
    return written
