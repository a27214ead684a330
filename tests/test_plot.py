"""sparseconv.plot, headless (Agg): the pictures' numbers are checked.

Oracles: the matrix itself (``conv_matrix``, validated against PyTorch in test_matrices),
a dense pattern summed block by block with numpy, ``np.pad`` for the padded grid, products of
all-ones layer matrices for path counts, ``numpy.linalg.svd`` for spectra, and the files read
back with matplotlib and Pillow.
"""

from __future__ import annotations

import os
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import scipy.sparse as sp
from matplotlib.animation import PillowWriter
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from PIL import Image

import sparseconv as sc
from sparseconv import (
    ConvGeometry,
    ConvOperator,
    ConvTransposeOperator,
    _cli_commands,
    conv_matrix,
    plot,
    receptive_field_paths,
)
from sparseconv._cli_layer import _Layer
from sparseconv.cli import main

from ._oracles import NP_PAD_MODE, random_layer


def axes():
    return Figure().subplots()


def geometry_of(layer):
    return ConvGeometry.from_weight(layer.weight.shape, layer.input_shape, **layer.kwargs)


def block_sum_oracle(dense_pattern, row_edges, col_edges):
    """Counts per bin by summing the dense 0/1 pattern over each block: obviously right."""
    rows = np.add.reduceat(dense_pattern, row_edges[:-1], axis=0)
    return np.add.reduceat(rows, col_edges[:-1], axis=1)


def test_import_sparseconv_imports_neither_matplotlib_nor_torch():
    code = ("import sys, sparseconv, sparseconv.plot, sparseconv.cli; "
            "print('matplotlib' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


# ---------------------------------------------------------------------------------------------
# The raster: exact pattern, honest counts.
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size, max_bins, blocks", [(10, 4, 1), (12, 5, 3), (7, 100, 1),
                                                    (64, 9, 4), (3136, 448, 1), (30, 2, 6),
                                                    (64 * 3136, 512, 64), (13, 4, 1),
                                                    (40, 3, 8), (7 * 5, 3, 7), (64, 100, 64)])
def test_bin_edges_cover_the_axis_and_respect_blocks(size, max_bins, blocks):
    edges = plot.bin_edges(size, max_bins, blocks)
    block = size // blocks
    lengths = np.diff(edges)
    assert edges[0] == 0 and edges[-1] == size and (lengths > 0).all()
    assert len(lengths) <= max(max_bins, blocks if blocks <= max_bins else max_bins)
    if blocks <= max_bins:
        assert set(range(0, size + 1, block)) <= set(edges.tolist())  # no bin straddles a block
        per_block = lengths[:len(lengths) // blocks]
        # every block is binned alike, in equal bins when the block length allows it
        np.testing.assert_array_equal(lengths.reshape(blocks, -1), np.tile(per_block, (blocks, 1)))
        wanted = min(block, max_bins // blocks)
        assert 2 * len(per_block) >= wanted
        if any(block % d == 0 for d in range(-(-wanted // 2), wanted + 1)):
            assert len(set(per_block.tolist())) == 1
        assert per_block.max() - per_block.min() <= 1
    else:  # whole blocks per bin
        assert (edges % block == 0).all() and len(lengths) <= max_bins


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "bsr", "lil", "dense"])
def test_density_counts_match_block_sums_for_every_format(fmt):
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((53, 71)) * (rng.random((53, 71)) < 0.1)
    A = dense if fmt == "dense" else sp.csr_array(dense).asformat(fmt)
    r = plot.raster(A, 9)
    pattern = (dense != 0).astype(np.int64)
    assert r.counts.shape == (9, 9) and not r.exact
    np.testing.assert_array_equal(r.counts, block_sum_oracle(pattern, r.row_edges, r.col_edges))
    assert r.counts.sum() == np.count_nonzero(dense)
    if fmt in ("csr", "csc", "coo"):  # chunked reading gives the same histogram
        chunked = plot.density_counts(A, r.row_edges, r.col_edges, chunk=7)
        np.testing.assert_array_equal(chunked, r.counts)
        # (a new user's trial: chunk=-1 counted nothing, chunk=0 divided by zero)
        for chunk, error in ((-1, ValueError), (0, ValueError), (1.5, TypeError),
                             (True, TypeError), (None, TypeError)):
            with pytest.raises(error, match="^chunk must be a positive integer"):
                plot.density_counts(A, r.row_edges, r.col_edges, chunk=chunk)


@pytest.mark.parametrize("seed", range(12))
def test_layer_raster_from_geometry_equals_the_matrix(seed):
    rng = np.random.default_rng(seed)
    layer = random_layer(rng, ndim=1 + seed % 3, max_size=8 - seed % 3)
    A = conv_matrix(layer.weight, layer.input_shape, **layer.kwargs)
    geom = geometry_of(layer)
    channels = (geom.out_channels, geom.in_channels)
    for max_bins in (1, 5, 17, 10_000):
        from_geometry = plot.raster(geom, max_bins)
        rows = (int(np.prod(geom.output_size[1:])), int(np.prod(geom.input_size[1:])))
        from_matrix = plot.raster(A, max_bins, channels=channels, period=rows)
        np.testing.assert_array_equal(from_geometry.counts, from_matrix.counts, err_msg=str(layer))
        assert from_geometry.counts.sum() == A.nnz, layer
    exact = plot.raster(geom, 10_000)
    assert exact.exact
    np.testing.assert_array_equal(exact.counts, (A.toarray() != 0).astype(int), err_msg=str(layer))


def test_operators_are_rastered_as_their_matrices():
    w = np.random.default_rng(1).standard_normal((4, 2, 3, 3))
    T = ConvTransposeOperator(w, (4, 5, 5), stride=2, padding=1)
    A = ConvOperator(w[:2].transpose(1, 0, 2, 3).copy(), (4, 6, 6), padding=1, groups=2)
    for op in (T, A, A.H, T.H):
        M = op.tosparse()
        for max_bins in (6, 50, 1000):
            r = plot.raster(op, max_bins)
            expected = block_sum_oracle((M.toarray() != 0).astype(int), r.row_edges, r.col_edges)
            np.testing.assert_array_equal(r.counts, expected)


def test_spy_exact_is_the_pattern_and_density_counts_sum_to_nnz():
    w = np.random.default_rng(2).standard_normal((4, 3, 3, 3))
    A = conv_matrix(w, (3, 6, 6), stride=2, padding=1)
    geom = ConvGeometry.from_weight(w.shape, (3, 6, 6), stride=2, padding=1)
    exact = plot.spy(A, axes(), geometry=geom, blocks=True).get_array()
    np.testing.assert_array_equal(exact, A.toarray() != 0)
    assert exact.shape == A.shape
    density = plot.spy(A, axes(), max_bins=20).get_array()
    assert density.shape == (18, 18) and density.sum() == A.nnz  # 36 x 108 in equal bins
    values = plot.spy(A, axes(), values=True).get_array()
    stored = A.toarray() != 0
    np.testing.assert_array_equal(values[stored], A.toarray()[stored])
    np.testing.assert_array_equal(np.ma.getmaskarray(values), ~stored)  # NaN: nothing stored
    big = ConvOperator(np.ones((64, 64, 3, 3)), (64, 56, 56), padding=1)
    image = plot.spy(big, axes(), blocks=True)
    assert image.get_array().shape == (512, 512) and image.get_array().sum() == big.geometry.nnz()


def test_spy_labels_channels_and_rejects_inconsistent_requests():
    w = np.ones((4, 3, 3, 3))
    geom = ConvGeometry.from_weight(w.shape, (3, 5, 5), padding=1)
    ax = axes()
    plot.spy(conv_matrix(w, (3, 5, 5), padding=1), ax, geometry=geom, blocks=True)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
    assert "input channel" in ax.get_xlabel() and "output channel" in ax.get_ylabel()
    assert len(ax.collections) == 4  # channel and row blocks, horizontal and vertical
    with pytest.raises(ValueError, match="geometry describes"):
        plot.spy(sp.eye_array(7), axes(), geometry=geom)
    with pytest.raises(ValueError, match="needs a layer"):
        plot.spy(sp.eye_array(7), axes(), blocks=True)
    # longer than max_bins: each bin's largest entry (it was refused: "one pixel per entry")
    image = plot.spy(3 * sp.eye_array(600), axes(), values=True)
    assert image.get_array().shape == (300, 300)  # bins of 2 x 2 entries
    np.testing.assert_array_equal(image.get_array().filled(0), 3 * np.eye(300))
    assert image.colorbar.ax.get_ylabel() == "largest-magnitude entry per bin (2 x 2 entries)"


def test_a_channels_last_operator_has_no_channel_blocks():
    """A new user's trial: spy of a channels-last ConvOperator with blocks=True said "pass
    geometry= or a ConvOperator" (it was one), and geometry= then drew channel blocks and
    labels that were not its matrix's. Refused by its layout, for blocks, zoom and geometry;
    drawn as a plain matrix otherwise."""
    from sparseconv import ConvOperator

    A = ConvOperator(np.ones((4, 3, 3, 3)), (3, 6, 6), padding=1, layout="channels_last")
    for kwargs in (dict(blocks=True), dict(zoom=((0, 2), (0, 2))), dict(geometry=A.geometry)):
        with pytest.raises(ValueError, match=r"A is a channels-last operator: its matrix is the "
                                             r"geometry's with rows and columns permuted"):
            plot.spy(A, axes(), **kwargs)
    with pytest.raises(ValueError, match="channels-last operator"):
        plot.save_raster("unused.png", A, zoom=((0, 1), (0, 1)))
    plot.spy(A, axes())  # a plain matrix


def test_save_raster_png_pixels_are_the_pattern(tmp_path):
    w = np.random.default_rng(3).standard_normal((2, 2, 3, 3))
    A = conv_matrix(w, (2, 5, 5), padding=1, padding_mode="reflect")
    plot.save_raster(tmp_path / "exact.png", A)
    pixels = matplotlib.image.imread(tmp_path / "exact.png")[..., :3]
    np.testing.assert_array_equal((pixels < 1).any(axis=-1), A.toarray() != 0)
    geom = ConvGeometry.from_weight((16, 16, 3, 3), (16, 20, 20), stride=2, padding=1)
    plot.save_raster(tmp_path / "density.png", geom, max_bins=64)
    pixels = matplotlib.image.imread(tmp_path / "density.png")[..., :3]
    counts = plot.raster(geom, 64).counts
    assert pixels.shape[:2] == counts.shape
    np.testing.assert_array_equal((pixels < 1).any(axis=-1), counts > 0)


# ---------------------------------------------------------------------------------------------
# Receptive fields and the animation's maps.
# ---------------------------------------------------------------------------------------------
def test_receptive_field_plot_and_errors(tmp_path):
    g = ConvGeometry.from_weight((1, 1, 3, 3), (1, 17, 17), padding=1)
    dilated = [ConvGeometry.from_weight((1, 1, 3, 3), (1, 17, 17), padding=d, dilation=d)
               for d in (1, 2, 4)]
    assert int((plot.receptive_field_heatmap([g, g, g], axes()).get_array() > 0).sum()) == 49
    image = plot.receptive_field_heatmap(dilated, axes()).get_array()
    assert int((image > 0).sum()) == 225 and int(image.max()) == 9
    one_d = ConvGeometry.from_weight((1, 1, 3), (1, 5), padding=1)
    line = plot.receptive_field_heatmap([one_d, one_d], axes())
    assert line.get_array().shape == (1, 5)
    # (a new user's trial: ten y tick labels piled on the one row, the colorbar squeezed to
    # its height): no row axis, the colorbar under it, horizontal
    assert not line.axes.get_yticks().size and line.axes.get_ylabel() == ""
    assert line.colorbar.orientation == "horizontal"
    made = plot.receptive_field_heatmap([one_d, one_d], fname=tmp_path / "line.png")
    assert made.axes.figure.get_size_inches().tolist() == [3.5, 1.4]  # (a short figure)
    with pytest.raises(ValueError, match="reads spatial size"):
        receptive_field_paths([g, ConvGeometry.from_weight((1, 1, 3, 3), (1, 9, 9))])
    with pytest.raises(ValueError, match="position"):
        receptive_field_paths(g, (17, 0))


@pytest.mark.parametrize("seed", range(15))
def test_padded_index_map_agrees_with_np_pad_and_the_index_map(seed):
    rng = np.random.default_rng(200 + seed)
    layer = random_layer(rng, ndim=1 + seed % 3, max_size=7)
    geom = geometry_of(layer)
    window, source = plot.padded_index_map(geom)
    ids = np.arange(np.prod(geom.input_size)).reshape(geom.input_size)
    mode = NP_PAD_MODE[geom.padding_mode]
    extra = {"constant_values": -1} if mode == "constant" else {}
    np.testing.assert_array_equal(source, np.pad(ids, geom.padding, mode=mode, **extra).ravel(),
                                  err_msg=str(layer))
    np.testing.assert_array_equal(source[window], geom.index_map(), err_msg=str(layer))


@pytest.mark.parametrize("transposed", [False, True])
def test_animation_frames_follow_the_index_map(tmp_path, transposed):
    if transposed:
        geom = ConvGeometry.for_transpose((1, 1, 3, 3), (1, 3, 3), stride=2, padding=1)
    else:
        geom = ConvGeometry.from_weight((1, 1, 3, 3), (1, 6, 5), stride=2, padding=1,
                                        dilation=(1, 2))
    anim = plot.conv_animation(geom, transposed=transposed)
    window, _ = plot.padded_index_map(geom)
    big = anim._fig.axes[0].collections[0]
    dark = {"#2b5d8a", "#238b45", "#969696"}  # the window, or the transposed stamp
    for frame in range(window.shape[0]):
        anim._func(frame)
        faces = [to_hex(c) for c in big.get_facecolor()]
        marked = {i for i, c in enumerate(faces) if c in dark}
        assert marked == set(window[frame].tolist()), (frame, geom)
    anim.save(tmp_path / "a.gif", writer=PillowWriter(fps=2), dpi=40)
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == window.shape[0]


# ---------------------------------------------------------------------------------------------
# Spectra: the stand-in helper and the plots.
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("groups, dilation, k, size", [(1, 1, 3, (6, 7)), (2, 2, 3, (8, 6)),
                                                       (1, 1, 2, (5, 5)), (4, 1, 4, (6, 6))])
def test_circular_symbol_spectrum_equals_dense_svd(groups, dilation, k, size):
    w = np.random.default_rng(k).standard_normal((4, 4 // groups, k, k))
    A = conv_matrix(w, (4, *size), padding="same", padding_mode="circular", dilation=dilation,
                    groups=groups)
    dense = np.linalg.svd(A.toarray(), compute_uv=False)
    fast = sc.singular_values(w, (4, *size), dilation=dilation, groups=groups, padding="same",
                              padding_mode="circular")
    np.testing.assert_allclose(fast, dense, atol=1e-12 * dense[0])
    fmap = sc.frequency_map(w, size, dilation=dilation, groups=groups)
    assert fmap.shape == size and np.isclose(fmap.max(), dense[0])


def test_cli_top_singular_values_fall_back_to_arpack(monkeypatch):
    w = np.random.default_rng(5).standard_normal((3, 2, 3, 3))
    layer = dict(padding=1, padding_mode="zeros", stride=2)
    dense = np.linalg.svd(conv_matrix(w, (2, 9, 9), **layer).toarray(), compute_uv=False)
    monkeypatch.setattr(sc._spectra, "DENSE_FLOPS", 10)
    with pytest.raises(ValueError, match="spectral_norm"):
        sc.singular_values(w, (2, 9, 9), **layer)
    geometry = ConvGeometry.from_weight(w.shape, (2, 9, 9), **layer)
    top, how = _cli_commands._top_singular_values(_Layer(w, (2, 9, 9), layer, geometry), k=5)
    assert "ARPACK" in how
    np.testing.assert_allclose(top, dense[:5], rtol=1e-8)
    # its products counted on a progress bar (a new user's trial: 80 s without a sign)
    counts, closed = [], []
    again, _ = _cli_commands._top_singular_values(
        _Layer(w, (2, 9, 9), layer, geometry), k=5,
        bar=lambda: (lambda done, total: counts.append(done), lambda: closed.append(1)))
    np.testing.assert_array_equal(again, top)
    assert counts == list(range(1, len(counts) + 1)) and len(counts) > 5 and closed == [1]


def test_spectrum_of_an_interval_alone():
    """No values and an interval: the band alone (the command line's --upper); no values and
    no interval: refused."""
    ax = axes()
    assert plot.spectrum([], ax, interval=(1.0, 1.5)) == []
    assert ax.get_legend().get_texts()[-1].get_text().startswith("certified")
    # (a new user's trial: x ticks of -0.04..0.04 under a band with no legend entry, the
    # legend on the error bar): the band is the legend's entry, over no index axis, above it
    (band,) = ax.get_legend().legend_handles
    assert ax.get_xticks().size == 0 and ax.get_ylim()[0] == 0
    assert band.get_facecolor()[:3] == pytest.approx((0.875,) * 3)
    with pytest.raises(ValueError, match="at least one singular value"):
        plot.spectrum([], axes())
    # (a review: an empty mapping drew empty axes)
    with pytest.raises(ValueError, match="at least one series of singular values, got an "
                       "empty mapping"):
        plot.spectrum({}, axes())
    assert plot.spectrum({}, axes(), interval=(1.0, 1.5)) == []


def test_singular_values_and_frequency_map_plots():
    lines = plot.spectrum({"a": [1.0, 3.0, 2.0], "b": [5.0, 4.0]}, axes(), fraction=True)
    assert [ln.get_label() for ln in lines] == ["a", "b"]
    np.testing.assert_array_equal(lines[0].get_ydata(), [3.0, 2.0, 1.0])
    np.testing.assert_allclose(lines[1].get_xdata(), [0.25, 0.75])
    w = np.random.default_rng(6).standard_normal((3, 2, 3, 3))
    symbol = sc.symbol(w, (8, 6))
    image = plot.frequency_heatmap(symbol, axes())
    norms = np.linalg.norm(symbol, ord=2, axis=(-2, -1))
    np.testing.assert_allclose(image.get_array(), np.fft.fftshift(norms))
    assert np.isclose(image.get_array()[4, 3], norms[0, 0])  # zero frequency at the center
    with pytest.raises(ValueError, match="shape"):
        plot.frequency_heatmap(np.zeros((2, 3, 4)), axes())


# ---------------------------------------------------------------------------------------------
# Rasters without aliasing: every channel block of a layer is binned, and drawn, alike.
# ---------------------------------------------------------------------------------------------
BIG = ConvGeometry.from_weight((64, 64, 3, 3), (64, 56, 56), padding=1)


def blocks_of(counts, channels):
    """``counts`` cut into its ``channels`` x ``channels`` channel blocks."""
    n = counts.shape[0] // channels
    return counts.reshape(channels, n, channels, n).transpose(0, 2, 1, 3)


@pytest.mark.parametrize("max_bins", [512, 448, 256, 300, 100, 64])
def test_a_64_channel_layer_raster_has_identical_blocks(max_bins):
    r = plot.raster(BIG, max_bins)
    assert r.counts.sum() == BIG.nnz() and r.bin_shape is not None  # equal bins
    blocks = blocks_of(r.counts, 64)
    assert (blocks == blocks[0, 0]).all()  # no moiré: one pattern in every block
    # and that pattern is the band structure of one channel pair, binned the same way
    S = sc._geometry.spatial_matrix(BIG)
    per = r.counts.shape[0] // 64
    np.testing.assert_array_equal(blocks[0, 0], plot.density_counts(
        S, r.row_edges[:per + 1], r.col_edges[:per + 1]))
    assert (np.diag(blocks[0, 0]) > 0).all()  # the main band is unbroken
    if max_bins >= 64:  # bins of whole image rows (56 positions), or of parts of one
        assert r.bin_shape[0] % 56 == 0 or 56 % r.bin_shape[0] == 0


def test_zoomed_bins_follow_the_image_rows():
    r = plot.raster(BIG, 256, zoom=((0, 4), (0, 4)))
    assert r.bin_shape == (56, 56)  # one row of the 56x56 image per bin: bands stay straight
    blocks = blocks_of(r.counts, 4)
    assert (blocks == blocks[0, 0]).all()
    # with bins of one row, the pattern of one channel pair is the row-block tridiagonal
    np.testing.assert_array_equal(blocks[0, 0] > 0, np.abs(np.subtract.outer(
        np.arange(56), np.arange(56))) <= 1)


def test_whole_blocks_per_bin_when_blocks_are_smaller_than_a_pixel():
    r = plot.raster(BIG, 16)  # 4 channels to a bin
    assert r.counts.shape == (16, 16) and (r.counts == 16 * BIG.nnz() // 64**2).all()
    w = np.random.default_rng(4).standard_normal((12, 2, 3, 3))
    A = conv_matrix(w, (6, 5, 5), padding=1, groups=3)
    geom = ConvGeometry.from_weight(w.shape, (6, 5, 5), padding=1, groups=3)
    for max_bins in (2, 3, 5, 8):
        r = plot.raster(geom, max_bins)
        np.testing.assert_array_equal(r.counts, block_sum_oracle(
            (A.toarray() != 0).astype(int), r.row_edges, r.col_edges), err_msg=str(max_bins))
        assert (r.row_edges % 25 == 0).all() and (r.col_edges % 25 == 0).all()


def render(ax_fn, pixels: int) -> np.ndarray:
    """RGB pixels of axes that fill a ``pixels`` square figure, drawn by ``ax_fn(ax)``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=(pixels / 100, pixels / 100), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax_fn(ax)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3]


@pytest.mark.parametrize("pixels, max_bins", [(512, 512), (1024, 256)])
def test_rendered_64_channel_layer_shows_identical_blocks(pixels, max_bins):
    rgb = render(lambda ax: plot.spy(BIG, ax, max_bins=max_bins, colorbar=False), pixels)
    side = pixels // 64
    blocks = rgb.reshape(64, side, 64, side, 3).transpose(0, 2, 1, 3, 4)
    assert (blocks == blocks[0, 0]).all()
    assert 0 < (blocks[0, 0] < 250).any(axis=-1).sum() < side**2  # a band, not a flat block


def test_zoom_draws_the_block_range_of_the_matrix():
    w = np.random.default_rng(7).standard_normal((6, 4, 3, 3))
    geom = ConvGeometry.from_weight(w.shape, (4, 6, 6), stride=2, padding=1)
    A = conv_matrix(w, (4, 6, 6), stride=2, padding=1)
    T = ConvTransposeOperator(w, (6, 3, 3), stride=2, padding=1, output_padding=1)  # A.T
    dense = (A.toarray() != 0).astype(int)
    for zoom, max_bins in [(((1, 3), (2, 4)), 1000), (((0, 6), (1, 2)), 7), (((2, 5), (0, 4)), 2)]:
        (r0, r1), (c0, c1) = zoom
        window = dense[r0 * 9:r1 * 9, c0 * 36:c1 * 36]
        for source in (geom, A):
            r = plot.raster(source, max_bins, channels=(6, 4), zoom=zoom)
            assert r.row_edges[0] == r0 * 9 and r.col_edges[-1] == c1 * 36
            np.testing.assert_array_equal(r.counts, block_sum_oracle(
                window, r.row_edges - r0 * 9, r.col_edges - c0 * 36), err_msg=str(zoom))
        # the transposed layer zooms its own rows (the convolution's input channels)
        rt = plot.raster(T, max_bins, zoom=((c0, c1), (r0, r1)))
        np.testing.assert_array_equal(rt.counts, block_sum_oracle(
            window.T, rt.row_edges - c0 * 36, rt.col_edges - r0 * 9))
    ax = axes()
    image = plot.spy(geom, ax, zoom=((1, 3), (2, 4)), blocks=True)
    assert image.get_extent() == [2 * 36 - 0.5, 4 * 36 - 0.5, 3 * 9 - 0.5, 9 - 0.5]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "3"]
    for bad, error in [(((0, 7), (0, 1)), ValueError), (((2, 2), (0, 1)), ValueError),
                       (((0, 1),), TypeError), (((0, 1.0), (0, 1)), TypeError)]:
        with pytest.raises(error, match="zoom"):
            plot.spy(geom, axes(), zoom=bad)


def test_values_of_a_zoom_window_are_the_matrix_entries():
    """``values=True`` with ``zoom=`` draws the window's entries at the whole matrix's
    coordinates (a new user's trial: it was refused, with advice to slice the matrix, which
    the command line cannot do)."""
    w = np.random.default_rng(8).standard_normal((6, 4, 3, 3))
    geom = ConvGeometry.from_weight(w.shape, (4, 6, 6), stride=2, padding=1)
    A = conv_matrix(w, (4, 6, 6), stride=2, padding=1)  # 6 x 4 blocks of 9 x 36 entries
    T = ConvTransposeOperator(w, (6, 3, 3), stride=2, padding=1, output_padding=1)  # A.T
    dense = A.toarray()
    for source, geometry, matrix, block, zoom in [
            (A, geom, dense, (9, 36), ((1, 3), (2, 4))),
            (ConvOperator(w, (4, 6, 6), stride=2, padding=1), None, dense, (9, 36),
             ((0, 6), (3, 4))),
            (T, None, dense.T, (36, 9), ((2, 4), (1, 3)))]:
        (r0, r1), (c0, c1) = zoom
        window = matrix[r0 * block[0]:r1 * block[0], c0 * block[1]:c1 * block[1]]
        image = plot.spy(source, axes(), values=True, zoom=zoom, geometry=geometry)
        drawn = image.get_array()
        np.testing.assert_array_equal(np.ma.getmaskarray(drawn), window == 0)
        np.testing.assert_array_equal(drawn.filled(0), window)
        assert image.get_extent() == [c0 * block[1] - 0.5, c1 * block[1] - 0.5,
                                      r1 * block[0] - 0.5, r0 * block[0] - 0.5]
    # a window longer than max_bins: each bin's entry of largest magnitude (it was refused)
    image = plot.spy(T, axes(), values=True, zoom=((0, 4), (0, 4)), max_bins=100)
    window = dense.T[:144, :36]  # 4 x 4 blocks of 36 x 9; rows in bins of 2 (72 per axis)
    drawn = image.get_array()
    assert drawn.shape == (72, 36)
    np.testing.assert_array_equal(drawn.filled(np.nan), _pooled(window, (2, 1)))


def test_values_of_a_zoom_window_build_the_window_alone(memory_limit):
    """``values=True`` with ``zoom=`` on a channels-first layer builds the window's matrix
    alone (a new user's trial: a 4 x 4 window of a 64-channel layer built the whole, 1.4 GB,
    and under a memory limit was refused for it, advised to zoom): under a limit the whole
    matrix exceeds, the window is drawn; the refusal of a window still too large advises
    fewer blocks, not the matrix-free operator it was given. Every kind of layer operator
    (adjoints, transposes, complex, grouped, every padding mode) against its dense matrix's
    window, entry for entry."""
    w = np.random.default_rng(12).standard_normal((32, 32, 3, 3))
    layer = ConvOperator(w, (32, 28, 28), padding=1)  # 25088 x 25088, 7.1e6 nonzeros
    # the whole matrix: about 170 MB; the window's 16 rows of blocks 85 MB; the window 3 MB
    # and its image 25 MB
    memory_limit(30 * 2**20)
    image = plot.spy(layer, axes(), values=True, zoom=((0, 16), (5, 6)), max_bins=784)
    window = sc.conv_matrix(w[:16, 5:6], (1, 28, 28), padding=1)
    edges = plot.bin_edges(12544, 784, 16, 28), np.arange(785)  # bins of 16 x 1 entries
    np.testing.assert_array_equal(image.get_array().filled(np.nan),
                                  plot.largest_entries(window, *edges))
    with pytest.raises(sc.MatrixTooLargeError, match=r"values=True draws the matrix's "
                       r"entries: .* zoom= fewer channel blocks, or values=False \(the "
                       r"pattern, from the geometry alone\), or raise"):
        plot.spy(layer, axes(), values=True)
    memory_limit(None)
    rng = np.random.default_rng(13)
    for groups, mode in ((1, "reflect"), (2, "circular"), (3, "replicate"), (2, "zeros")):
        w = rng.standard_normal((2 * groups, 2, 3, 3)) + 1j * rng.standard_normal(
            (2 * groups, 2, 3, 3))
        A = ConvOperator(w, (2 * groups, 5, 5), padding=1, groups=groups, padding_mode=mode,
                         dtype=np.complex128)
        T = ConvTransposeOperator(w, (2 * groups, 3, 3), stride=2, padding=1, groups=groups,
                                  dtype=np.complex128)
        for op in (A, A.H, T, T.H):
            dense = op.tosparse().toarray()
            channels = (op.output_shape[0], op.input_shape[0])
            block = (dense.shape[0] // channels[0], dense.shape[1] // channels[1])
            zoom = ((channels[0] - 2, channels[0]), (0, 1))
            drawn = plot.spy(op, axes(), values=True, zoom=zoom).get_array()
            window = dense[zoom[0][0] * block[0]:, :block[1]]
            np.testing.assert_array_equal(np.ma.getmaskarray(drawn), window == 0)
            np.testing.assert_array_equal(drawn.filled(0), np.abs(window))


def test_values_of_operators_without_a_geometry_are_their_matrices():
    """A new user's trial: a channels-last operator and a complex layer's ``.T`` (drawn by
    ``spy`` from ``tosparse()``) crashed with ``values=True``: scipy's "does not support
    dtype object", from ``np.asarray`` of the operator. A LinearOperator with no matrix is
    refused by name."""
    from scipy.sparse.linalg import aslinearoperator

    w = np.random.default_rng(14).standard_normal((3, 2, 3, 3))
    last = ConvOperator(w, (2, 5, 5), padding=1, layout="channels_last")
    complex_t = ConvOperator(w + 1j, (2, 5, 5), padding=1, dtype=np.complex128).T
    for op in (last, complex_t):
        dense = op.tosparse().toarray()
        drawn = plot.spy(op, axes(), values=True).get_array()
        np.testing.assert_array_equal(drawn.filled(0), np.abs(dense) if
                                      np.iscomplexobj(dense) else dense)
    with pytest.raises(TypeError, match="values=True needs the matrix of a "
                       "MatrixLinearOperator: pass A.tosparse"):
        plot.spy(aslinearoperator(np.eye(3)), axes(), values=True)


def _pooled(dense: np.ndarray, bins: tuple[int, int]) -> np.ndarray:
    """Each ``bins``-sized bin's entry of largest magnitude (the positive of a tie), NaN where
    all are zero: ``largest_entries`` by its definition, on a dense matrix."""
    (r, c), (m, n) = bins, dense.shape
    out = np.full((m // r, n // c), np.nan)
    for i in range(m // r):
        for j in range(n // c):
            entries = dense[i * r:(i + 1) * r, j * c:(j + 1) * c]
            entries = entries[entries != 0]
            if entries.size:
                top = np.abs(entries).max()
                out[i, j] = top if (entries == top).any() else -top
    return out


def test_values_beyond_max_bins_are_each_bins_largest_entry():
    """``values=True`` on a matrix longer than ``max_bins`` pools each bin (the channel-aligned
    bins of the counts) to its stored entry of largest magnitude, with its sign (a new user's
    trial: it was refused, and drawing one pixel per entry made entries fade into white).
    Checked against the dense matrix pooled by definition; ``largest_entries`` against a
    brute force on random matrices of every format, with duplicates, ties and stored zeros."""
    w = np.random.default_rng(9).standard_normal((8, 4, 3, 3))
    geom = ConvGeometry.from_weight(w.shape, (4, 12, 12), padding=1)
    A = conv_matrix(w, (4, 12, 12), padding=1)  # 8 x 4 blocks of 144 x 144 entries
    for source, geometry in ((A, geom), (ConvOperator(w, (4, 12, 12), padding=1), None)):
        image = plot.spy(source, axes(), values=True, max_bins=96, geometry=geometry)
        # 12 bins a block of 144 rows (one image row each) and 24 a block of columns
        assert image.get_array().shape == (96, 96)
        np.testing.assert_array_equal(image.get_array().filled(np.nan),
                                      _pooled(A.toarray(), (12, 6)))
        assert image.colorbar.ax.get_ylabel() == ("largest-magnitude entry per bin "
                                                  "(12 x 6 entries)")
        assert image.get_clim() == (-np.abs(w).max(), np.abs(w).max())
    rng = np.random.default_rng(10)
    for _ in range(200):
        m, n = rng.integers(1, 30, 2)
        B = sp.random_array((m, n), density=rng.uniform(0, 0.6), rng=rng,
                            format=rng.choice(["csr", "csc", "coo"]))
        if rng.random() < 0.5:  # ties of either sign, and stored zeros
            B.data = np.round(4 * B.data) - 2
        if B.format == "coo" and B.nnz:  # duplicates, summed first
            B = sp.coo_array((np.r_[B.data, -B.data[:2]], (np.r_[B.row, B.row[:2]],
                                                           np.r_[B.col, B.col[:2]])), B.shape)
        elif rng.random() < 0.3:  # read through a CSR copy
            B = B.asformat(rng.choice(["lil", "dok", "bsr"]))
        rows = np.unique(np.r_[0, rng.integers(1, m + 1, rng.integers(0, 5)), m])
        cols = np.unique(np.r_[0, rng.integers(1, n + 1, rng.integers(0, 5)), n])
        got = plot.largest_entries(B, rows, cols, chunk=int(rng.integers(1, 20)))
        C = sp.coo_array(B)
        C.sum_duplicates()
        stored = np.zeros(B.shape, bool)
        stored[C.row, C.col] = True
        dense = C.toarray()
        want = np.full((len(rows) - 1, len(cols) - 1), np.nan)
        for i in range(len(rows) - 1):
            for j in range(len(cols) - 1):
                cell = (slice(rows[i], rows[i + 1]), slice(cols[j], cols[j + 1]))
                entries = dense[cell][stored[cell]]
                if entries.size:
                    top = np.abs(entries).max()
                    want[i, j] = top if (entries == top).any() else -top
        np.testing.assert_array_equal(got, want)
    # int8's -128 (abs would wrap), complex moduli, and the arguments checked
    edges = np.array([0, 2])
    assert plot.largest_entries(sp.csr_array(np.array([[-128, 127]], np.int8).T), edges,
                                np.array([0, 1])).tolist() == [[-128.0]]
    assert plot.largest_entries(sp.csr_array(np.array([[3 - 4j, 1j]])), np.array([0, 1]),
                                edges).tolist() == [[5.0]]
    with pytest.raises(TypeError, match="scipy.sparse"):
        plot.largest_entries(np.eye(2), edges, edges)
    with pytest.raises(ValueError, match="col_edges must be increasing"):
        plot.largest_entries(sp.eye_array(2), edges, np.array([0, 3]))
    with pytest.raises(ValueError, match="chunk"):
        plot.largest_entries(sp.eye_array(2), edges, edges, chunk=0)


def test_large_layer_grid_ticks_and_colorbar():
    ax = axes()
    image = plot.spy(BIG, ax, max_bins=256, blocks=True)
    hlines, vlines = ax.collections  # the channel grid: 63 lines each way; rows too dense
    assert len(hlines.get_segments()) == len(vlines.get_segments()) == 63
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["0", "8", "16", "24", "32", "40", "48", "56"]
    assert image.colorbar.ax.get_ylabel() == "nonzeros per bin (784 x 784 entries)"
    exact = plot.spy(sp.eye_array(5), axes())
    assert exact.colorbar is None  # a 0/1 pattern needs no colorbar


def all_font_sizes(fig):
    fig.canvas.draw()  # constrained layout and tick labels are made at draw time
    return [t.get_fontsize() for t in fig.findobj(lambda a: hasattr(a, "get_fontsize"))
            if t.get_text()]


@pytest.mark.parametrize("fmt", ["png", "pdf", "svg"])
def test_spy_saves_for_print(tmp_path, fmt):
    out = tmp_path / f"layer.{fmt}"
    image = plot.spy(BIG, fname=out, max_bins=128, blocks=True, dpi=150, figsize=(3.5, 3.0))
    data = out.read_bytes()
    if fmt == "png":
        with Image.open(out) as png:
            assert png.size == (525, 450)  # 3.5 x 3.0 in at 150 dpi
    elif fmt == "pdf":
        assert data.startswith(b"%PDF") and b"/MediaBox [ 0 0 252 216 ]" in data  # points
    else:
        assert b'width="252pt" height="216pt"' in data
    assert min(all_font_sizes(image.figure)) >= 8  # legible at a 3.5 in column
    other = tmp_path / "named.bin"
    plot.spy(sp.eye_array(4), fname=other, format=fmt)
    assert other.read_bytes()[:4] == data[:4]  # format= overrides the suffix


def test_spectrum_draws_the_certified_interval_rounded_outward(tmp_path, caplog):
    w = np.random.default_rng(8).standard_normal((3, 3, 3, 3))
    s = sc.singular_values(w, (3, 7, 7), padding=1)
    norm = sc.spectral_norm(w, (3, 7, 7), padding=1)
    ax = axes()
    plot.spectrum(s, ax, interval=norm)
    text = ax.get_legend().get_texts()[-1].get_text()
    low, high = (float(v) for v in text[text.index("[") + 1:text.index("]")].split(","))
    assert low <= norm.lower <= s.max() <= norm.upper <= high and high - low < 1e-4 * high
    # as many digits as show the width (a new user's trial read [1.88386, 1.88387], six
    # digits, for an interval 9e-11 wide), up to ten
    for lower, upper, digits in [(1.883863904601696, 1.883863904687749, 10),
                                 (1.0, 1.0 + 3e-8, 10), (1.0, 1.0 + 3e-6, 8), (1.0, 2.0, 6),
                                 (0.25, 0.25, 10), (0.0, 0.0, 6)]:
        other = axes()
        plot.spectrum([upper], other, interval=(lower, upper))
        text = other.get_legend().get_texts()[-1].get_text()
        ends = text[text.index("[") + 1:text.index("]")].split(", ")
        low, high = (float(v) for v in ends)
        assert low <= lower <= upper <= high, (lower, upper, ends)
        assert max(len(e.replace(".", "").lstrip("0")) for e in ends) <= digits, ends
        assert high - low <= max(upper - lower, 1e-9 * upper) * 20, (lower, upper, ends)
    (bar,) = [c for c in ax.collections if len(c.get_segments()) == 1]
    np.testing.assert_allclose(bar.get_segments()[0][:, 1], [norm.lower, norm.upper])
    out = tmp_path / "s.svg"
    lines = plot.spectrum(s, interval=(1.0, 2.0), fname=out)
    assert out.read_bytes().startswith(b"<?xml") and min(all_font_sizes(lines[0].figure)) >= 8
    for suffix in ("ps", "eps"):  # (a trial: matplotlib logged that PostScript has no
        # transparency, for the band)
        with caplog.at_level("WARNING", logger="matplotlib"):
            plot.spectrum(s, interval=(1.0, 2.0), fname=tmp_path / f"s.{suffix}")
        assert (tmp_path / f"s.{suffix}").read_bytes().startswith(b"%!PS")
        assert not [r for r in caplog.records if "transparency" in r.getMessage()], suffix
    for bad, error in [((2.0, 1.0), ValueError), ((np.nan, 1.0), ValueError), (3.0, TypeError)]:
        with pytest.raises(error, match="interval"):
            plot.spectrum(s, axes(), interval=bad)


def test_colorbars_say_what_they_measure():
    image = plot.frequency_heatmap(sc.frequency_map(np.ones((2, 2, 3, 3)), (8, 8)), axes())
    assert "largest singular value" in image.colorbar.ax.get_ylabel()
    assert image.axes.get_xlabel() == "horizontal frequency (cycles/sample)"
    g = ConvGeometry.from_weight((1, 1, 3, 3), (1, 17, 17), padding=1)
    assert plot.receptive_field_heatmap(g, axes()).colorbar is None  # one layer: 1 path each
    stack = plot.receptive_field_heatmap([g, g], axes())
    assert stack.colorbar.ax.get_ylabel() == "paths to the output unit"
    ticks = stack.colorbar.get_ticks()
    assert ticks[0] == 1 and ticks[-1] == 9 and np.all(ticks == ticks.round())


@pytest.mark.parametrize("suffix", ["gif", "png"])
def test_conv_animation_saves_at_least_600_pixels_wide(tmp_path, suffix):
    geom = ConvGeometry.from_weight((1, 1, 3, 3), (1, 4, 4))
    anim = plot.conv_animation(geom, fname=tmp_path / f"a.{suffix}")
    with Image.open(tmp_path / f"a.{suffix}") as picture:
        assert picture.width >= 600
        assert getattr(picture, "n_frames", 1) == (4 if suffix == "gif" else 1)
    assert min(all_font_sizes(anim._fig)) >= 9
    with pytest.raises(ValueError, match="suffix must be one of gif, png, pdf, svg"):
        plot.conv_animation(geom, fname=tmp_path / "a.mp4")
    with pytest.raises(ValueError, match="fps"):
        plot.conv_animation(geom, fps=0)


def test_conv_animation_sizes_its_gif_first(tmp_path, memory_limit, monkeypatch):
    """A GIF's frames, all kept until the file is written, are sized against the memory limit
    before any is drawn (a new user's trial: 200x200 ran until killed), and before the grids
    are (a trial: their patches took 11 s before the refusal); a still is not."""
    from sparseconv.plot import _animation

    geom = ConvGeometry.from_weight((1, 1, 3, 3), (1, 40, 40), padding=1)  # 1,600 frames
    memory_limit(2**30)
    drawn = []
    real = _animation._draw_grids
    monkeypatch.setattr(_animation, "_draw_grids", lambda *a: drawn.append(1) or real(*a))
    with pytest.raises(sc.MatrixTooLargeError, match="1600 frames of"):
        plot.conv_animation(geom, fname=tmp_path / "big.gif")
    assert not (tmp_path / "big.gif").exists() and not drawn
    plot.conv_animation(geom, fname=tmp_path / "big.png")  # the first frame alone
    small = ConvGeometry.from_weight((1, 1, 3, 3), (1, 4, 4))
    plot.conv_animation(small, fname=tmp_path / "small.gif")


def test_raster_of_a_channels_last_operator_is_its_matrix():
    w = np.random.default_rng(0).standard_normal((2, 3, 3, 3))
    op = sc.ConvOperator(w, (3, 6, 6), padding=1, layout="channels_last")
    expected = sc.plot.raster(op.tosparse(), 8).counts
    assert np.array_equal(sc.plot.raster(op, 8).counts, expected)
    assert np.array_equal(sc.plot.raster(op.H, 8).counts, sc.plot.raster(op.H.tosparse(), 8).counts)


@pytest.mark.parametrize("fmt", ["png", "pdf", "svg", "svgz", "eps", "ps"])
@pytest.mark.parametrize("draw", ["spy", "save_raster"])
def test_the_same_figure_gives_the_same_bytes_at_another_time(tmp_path, monkeypatch, fmt, draw):
    """A figure's bytes hold no date and no random id: an svg's ids were salted with a uuid,
    an svgz's gzip header held the time, a PostScript file its creation date."""
    import time

    A = sc.conv_matrix(np.arange(18.0).reshape(1, 2, 3, 3), (2, 5, 5), padding=1)
    out = tmp_path / f"A.{fmt}"

    def written():
        if draw == "spy":
            plot.spy(A, fname=out, max_bins=16)
        else:
            plot.save_raster(out, A, max_bins=16)
        return out.read_bytes()

    first = written()
    monkeypatch.setattr(time, "time", lambda: 2e9)  # another time: gzip's and the others'
    monkeypatch.setattr(time, "ctime", lambda *a: "Mon Jan  1 00:00:00 2035")
    assert written() == first
    assert "SOURCE_DATE_EPOCH" not in os.environ  # (a review: a race on it; never set)
    out = tmp_path / f"another name.{fmt}"  # (a review: PostScript held the file's name,
    assert written() == first  # the command line's temporary one)


def test_save_raster_refuses_a_format_imsave_cannot_write(tmp_path):
    for suffix in ("tif", "raw", "rgba", "pgf"):  # (imsave raised KeyError: 'TIF')
        with pytest.raises(ValueError, match=rf"A.{suffix}'?: the suffix must be one of .*tiff"):
            plot.save_raster(tmp_path / f"A.{suffix}", sp.eye_array(4))
    assert not list(tmp_path.iterdir())


def test_an_exact_pattern_drawn_into_fewer_pixels_keeps_every_entry(tmp_path):
    """A hunt: spy drew an exact pattern nearest-neighbour, so a 500 x 500 diagonal saved at
    100 dpi (about 250 pixels a side) lost runs of entries (its first ~190 rows drew
    nothing). Antialiased, every pixel row of the axes holds ink."""
    A = conv_matrix(np.ones((1, 1, 1)), (1, 500))  # the 500 x 500 identity
    fname = tmp_path / "diagonal.png"
    image = plot.spy(A, fname=fname, dpi=100, color="black", colorbar=False)
    pixels = matplotlib.image.imread(fname)[..., :3].sum(-1)
    box = image.axes.get_window_extent()
    scale, height = 100 / image.axes.figure.dpi, pixels.shape[0]
    x0, x1, y0, y1 = (int(round(v * scale)) for v in (box.x0, box.x1, box.y0, box.y1))
    inside = pixels[height - y1 + 2:height - y0 - 2, x0 + 2:x1 - 2]  # within the frame
    assert inside.shape[0] < 500 and (inside < 2.9).any(axis=1).all()


@pytest.mark.parametrize("call, error, match", [
    (lambda A, g, ax: plot.spy(A, ax, blocks=[(0, 3)]), ValueError, r"blocks\[0\] must be a "
     "positive integer or a tuple of 2 of them, got \\(0, 3\\)"),
    (lambda A, g, ax: plot.spy(A, ax, blocks=[(3,)]), ValueError,
     r"blocks\[0\] has 1 value for 2 axes: it must be a "),
    (lambda A, g, ax: plot.spy(A, ax, blocks=["3"]), TypeError, r"blocks\[0\] must be a "),
    (lambda A, g, ax: plot.spy(A, ax, blocks="yes"), TypeError, "blocks must be True, False"),
    (lambda A, g, ax: plot.spy(A, ax, values="no"), TypeError, "values must be a bool"),
    (lambda A, g, ax: plot.spy("abc", ax), TypeError, r"A must be a matrix .* got str"),
    (lambda A, g, ax: plot.spy(np.ones((2, 2, 2)), ax), TypeError, r"shape \(2, 2, 2\)"),
    # (a new user's trial: drawn with matplotlib's warning; into 3-D axes; a directory's
    # suffix blamed)
    (lambda A, g, ax: plot.spy(sp.csr_array((0, 5)), ax), ValueError,
     r"A has shape \(0, 5\): no entry to draw"),
    (lambda A, g, ax: plot.spy(A, ax.figure.add_subplot(2, 2, 4, projection="3d")), ValueError,
     "ax must be a 2-D matplotlib Axes, got a '3d' one"),
    (lambda A, g, ax: plot.spy(A, fname="."), IsADirectoryError, "fname is a directory"),
    (lambda A, g, ax: plot.raster(A, channels=(0, 1)), ValueError, "channels must be a "
     "positive integer or a tuple of 2 of them"),
    (lambda A, g, ax: plot.raster(A, channels="2"), TypeError, "channels must be a positive"),
    (lambda A, g, ax: plot.spectrum([], ax), ValueError, "at least one singular value"),
    (lambda A, g, ax: plot.spectrum(None, ax), TypeError, "values must be real numbers"),
    (lambda A, g, ax: plot.frequency_heatmap(np.ones((0, 4)), ax), ValueError, "must not be empty"),
    (lambda A, g, ax: plot.frequency_heatmap(1j * np.ones((4, 4)), ax), TypeError,
     "values must be real"),
    (lambda A, g, ax: plot.frequency_heatmap(np.ones((4, 4)), ax, colorbar="no"), TypeError,
     "colorbar must be a bool"),
    (lambda A, g, ax: plot.density_counts(A, np.array([4, 32]), np.array([0, 32])), ValueError,
     "row_edges must be increasing integers from 0 to 32"),
    (lambda A, g, ax: plot.density_counts(A.toarray(), np.array([0, 32]), np.array([0, 32])),
     TypeError, "A must be a 2-D scipy.sparse array"),
    (lambda A, g, ax: plot.bin_edges(-4, 3), ValueError, "size must be a non-negative integer"),
    # (a review: a string was a ValueError, as -4 is; the shared positive_int's TypeError)
    (lambda A, g, ax: plot.bin_edges("100", 3), TypeError, "size must be a non-negative"),
    (lambda A, g, ax: plot.bin_edges(12, 3, period="2"), TypeError,
     "period must be a positive integer"),
    (lambda A, g, ax: plot.spy(A, ax, max_bins="5"), TypeError,
     "max_bins must be a positive integer, got '5'"),
    (lambda A, g, ax: plot.spy(A, ax, max_bins=0), ValueError,
     "max_bins must be a positive integer, got 0"),
    (lambda A, g, ax: plot.padded_index_map(A), TypeError, "geom must be a ConvGeometry"),
    (lambda A, g, ax: plot.conv_animation(g, fig="x"), TypeError, "fig must be a matplotlib"),
    (lambda A, g, ax: plot.conv_animation(g, interval=-5), ValueError, "interval must be a"),
    (lambda A, g, ax: plot.conv_animation(g, transposed="no"), TypeError, "transposed must be a"),
    # (a new user's trial: matplotlib's KeyError for a colormap; a negative singular value
    # drawn as one)
    (lambda A, g, ax: plot.spy(A, ax, cmap="nope"), ValueError,
     "cmap must be the name of a matplotlib colormap .*, got 'nope'"),
    (lambda A, g, ax: plot.spy(A, ax, values=True, cmap="nope"), ValueError, "cmap must be"),
    (lambda A, g, ax: plot.frequency_heatmap(np.ones((4, 4)), ax, cmap=3), TypeError,
     "cmap must be the name"),
    (lambda A, g, ax: plot.receptive_field_heatmap(g, ax, cmap="nope"), ValueError,
     "cmap must be"),
    (lambda A, g, ax: plot.spectrum([3, -1, 2], ax), ValueError,
     r"values must be finite and non-negative \(singular values\), got np.int64\(-1\)"),
    (lambda A, g, ax: plot.spectrum({"a": [1.0, np.nan]}, ax), ValueError,
     r"non-negative .* got np.float64\(nan\) for 'a'"),
    # (a new user's trial: a bad color failed only at save time; NaN drew a blank pixel)
    (lambda A, g, ax: plot.spy(A, ax, color="notacolor"), ValueError,
     "color must be a matplotlib color .*, got 'notacolor'"),
    (lambda A, g, ax: plot.save_raster("x.png", A, color=(1, 2)), ValueError,
     "color must be a matplotlib color"),
    (lambda A, g, ax: plot.spectrum({"w": np.ones((2, 2))}, ax), ValueError,
     r"values must be a 1-D array of singular values, got shape \(2, 2\) for 'w': pass "
     r"np.linalg.svd\(A, compute_uv=False\)"),
    (lambda A, g, ax: plot.frequency_heatmap(np.array([[1.0, np.nan]]), ax), ValueError,
     r"values must be finite, got 1 NaN or infinite value\(s\) of 2"),
    # (a new user's trial: a weight and a shape, as the spectral functions take, got only
    # "ax must be a matplotlib Axes, got tuple")
    (lambda A, g, ax: plot.frequency_heatmap(np.ones((2, 2, 3, 3)), (2, 8, 8)), TypeError,
     r"ax must be a matplotlib Axes, got tuple: frequency_heatmap draws values per "
     r"frequency; for a layer's, pass frequency_map\(weight, input_size\)"),
])
def test_the_plots_name_a_bad_argument(call, error, match):
    """A hunt: each raised an internal error (ZeroDivisionError, IndexError, AttributeError,
    "cannot unpack") or was taken silently (``values="no"`` drew the values, a colorbar was
    drawn for ``colorbar="no"``, ``plot.bin_edges(-4, 3)`` returned ``[-4]``)."""
    A = conv_matrix(np.ones((2, 2, 3, 3)), (2, 4, 4), padding=1)
    g = ConvGeometry.from_weight((2, 2, 3, 3), (2, 4, 4), padding=1)
    with pytest.raises(error, match=match):
        call(A, g, Figure().subplots())


def test_blocks_as_an_array_of_pairs_are_taken():
    A = conv_matrix(np.ones((2, 2, 3, 3)), (2, 4, 4), padding=1)
    ax = Figure().subplots()
    plot.spy(A, ax, blocks=np.array([[16, 16]]))
    assert ax.collections  # (the grid lines drawn)


def test_an_empty_matrix_still_rasters():
    """The bin edges' new check (a review of the hunt's fix) must take ``[0]``, an empty
    axis's edges."""
    counts = plot.raster(sp.csr_array((0, 5))).counts
    assert counts.shape == (0, 5)
    assert plot.density_counts(sp.csr_array((0, 5)), np.array([0]), np.arange(6)).shape == (0, 5)


def test_the_row_label_of_a_wide_matrix_stays_inside_the_figure(tmp_path):
    """(A new user's trial: "output channel (blocks of 5x5 positions)" was longer than the
    short axes of a wide grouped layer's matrix, and ran off the saved figure.)"""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    w = np.random.default_rng(1).standard_normal((6, 2, 3, 3))
    options = dict(stride=2, padding=2, dilation=2, groups=3)
    A = conv_matrix(w, (6, 9, 9), **options)
    g = ConvGeometry.from_weight(w.shape, (6, 9, 9), **options)
    for values in (True, False):
        image = plot.spy(A, geometry=g, blocks=True, values=values, fname=tmp_path / "a.png")
        figure = image.axes.figure
        FigureCanvasAgg(figure).draw()  # laid out as when it was saved
        box = image.axes.yaxis.label.get_window_extent()
        assert 0 <= box.y0 and box.y1 <= figure.bbox.height, (values, box)
        assert 0 <= box.x0, (values, box)


def test_the_certified_interval_is_drawn_off_the_curve(monkeypatch, tmp_path):
    """A new user's trial: in ``sparseconv spectrum``'s figure (a column wide, beside the
    frequency map), the interval's legend entry, on one line, spanned the axes, and the
    legend, which has no frame, was drawn across the curve."""

    figures = []
    monkeypatch.setattr(_cli_commands, "_savefig", lambda fig, *args: figures.append(fig))
    for seed in ([], ["--seed", "1"], ["--seed", "2"]):
        assert main(["spectrum", "-o", str(tmp_path / "s.png"), "--in-shape", "16,16,16",
                     "--out-channels", "16", "--kernel-size", "3", "--padding", "1",
                     *seed]) in (0, None)
    assert len(figures) == 3
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    for fig in figures:
        FigureCanvasAgg(fig).draw()  # (a Figure's own canvas draws nothing)
        ax = fig.axes[0]
        box = ax.get_legend().get_window_extent()
        line = ax.get_lines()[0]  # (then the interval's caps)
        # the curve, densely: points along each of its segments, in pixels
        x, y = line.get_xdata(), line.get_ydata()
        t = np.linspace(0, 1, 50)[:, None]
        dense = np.column_stack([(x[:-1] + t * np.diff(x)).ravel(),
                                 (y[:-1] + t * np.diff(y)).ravel()])
        assert not box.count_contains(ax.transData.transform(dense))


class TestKeywordsPassedToMatplotlib:
    """A review: an unknown keyword raised matplotlib's AttributeError from the artist's
    ``set`` (``spy(A, channels=...)``, a keyword of ``raster``), after a pyplot figure was
    made and left open."""

    @pytest.mark.parametrize("call, name, method", [
        (lambda A, g, **kw: plot.spy(A, **kw), "spy", "imshow"),
        (lambda A, g, **kw: plot.spectrum([1.0, 2.0], **kw), "spectrum", "plot"),
        (lambda A, g, **kw: plot.frequency_heatmap(np.ones((4, 4)), **kw),
         "frequency_heatmap", "imshow"),
        (lambda A, g, **kw: plot.receptive_field_heatmap(g, **kw), "receptive_field_heatmap",
         "imshow"),
    ])
    def test_an_unknown_keyword_is_a_type_error_and_no_figure(self, call, name, method):
        import matplotlib.pyplot as plt

        A = conv_matrix(np.ones((2, 2, 3, 3)), (2, 4, 4), padding=1)
        g = ConvGeometry.from_weight((2, 2, 3, 3), (2, 4, 4), padding=1)
        plt.close("all")
        for keyword in ("bogus", "channels"):
            with pytest.raises(TypeError, match=rf"^{name}\(\) got an unexpected keyword "
                               rf"argument '{keyword}' \(neither {name}'s own nor one of "
                               rf"Axes.{method}'s"):
                call(A, g, figsize=(3, 3), **{keyword: 1})
        assert plt.get_fignums() == []
        # matplotlib's own keywords, properties and their aliases are passed on
        artist = call(A, g, figsize=(3, 3), alpha=0.5, zorder=3)
        assert (artist[0] if isinstance(artist, list) else artist).get_alpha() == 0.5
        plt.close("all")

    def test_aliases_and_method_keywords_reach_matplotlib(self):
        lines = plot.spectrum([1.0, 2.0], Figure().subplots(), lw=3, c="r", scalex=False)
        assert lines[0].get_linewidth() == 3 and lines[0].get_color() == "r"
        image = plot.spy(sp.eye(4, format="csr"), Figure().subplots(), vmax=2,
                         interpolation_stage="rgba")
        assert image.get_clim()[1] == 2

    def test_a_pyplot_figure_made_for_a_failing_call_is_closed(self, monkeypatch):
        import matplotlib.pyplot as plt
        from matplotlib.axes import Axes

        def fail(*args, **kwargs):
            raise RuntimeError("drawing failed")

        monkeypatch.setattr(Axes, "plot", fail)
        plt.close("all")
        with pytest.raises(RuntimeError, match="drawing failed"):
            plot.spectrum([1.0, 2.0], figsize=(3, 3))
        assert plt.get_fignums() == []
        # pyplot's current axes: a figure made for the call is closed, the caller's is kept
        with pytest.raises(RuntimeError, match="drawing failed"):
            plot.spectrum([1.0, 2.0])
        assert plt.get_fignums() == []
        mine = plt.figure()
        with pytest.raises(RuntimeError, match="drawing failed"):
            plot.spectrum([1.0, 2.0])
        assert plt.get_fignums() == [mine.number]
        plt.close("all")


class TestRasterOfManyRows:
    """A review: three entries on 10**9 rows took 39 s and 7.6 GB before a MemoryError (a
    table of every row's bin); the bins are searched on long axes now, and a CSR matrix is
    read at most a chunk of rows at a time."""

    @pytest.mark.parametrize("fmt", ["coo", "csr", "csc"])
    def test_few_entries_on_many_rows(self, fmt):
        import tracemalloc

        n = 10**9 if fmt == "coo" else 10**8  # (CSR/CSC hold an index pointer per row)
        rows, cols = np.array([0, 5, n - 1]), np.array([0, 7, n - 1])
        A = sp.coo_array((np.ones(3), (rows, cols)), shape=(n, n)).asformat(fmt)
        tracemalloc.start()
        try:
            image = plot.raster(A, max_bins=64)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 160 * 2**20, peak  # (a chunk of rows at a time: 4 Mi of them)
        r = np.searchsorted(image.row_edges, rows, side="right") - 1
        c = np.searchsorted(image.col_edges, cols, side="right") - 1
        expected = np.zeros_like(image.counts)
        np.add.at(expected, (r, c), 1)
        assert image.counts.sum() == 3 and (image.counts == expected).all()

    def test_the_binning_on_long_axes_is_the_table_s(self, monkeypatch):
        from sparseconv.plot import _raster

        A = conv_matrix(np.random.default_rng(0).standard_normal((3, 2, 3, 3)), (2, 30, 30),
                        padding=1, stride=2)
        edges = (plot.bin_edges(A.shape[0], 50, 3), plot.bin_edges(A.shape[1], 50, 2))
        table = plot.density_counts(A, *edges, chunk=1000)
        monkeypatch.setattr(_raster, "_CHUNK", 16)  # every axis is long now
        assert (plot.density_counts(A, *edges, chunk=1000) == table).all()
        assert table.sum() == A.nnz

    def test_another_format_is_sized_before_its_csr_copy(self, memory_limit):
        memory_limit(2**23)
        A = sp.dia_array((np.ones((1, 10**6)), [0]), shape=(10**6, 10**6))
        with pytest.raises(sc.MatrixTooLargeError, match=r"the CSR copy of a 1000000 x "
                           r"1000000 dia matrix"):
            plot.raster(A, max_bins=64)
        assert plot.raster(A.tocoo(), max_bins=64).counts.sum() == 10**6


class TestRasterChecksItsFields:
    """A review: ``Raster`` took any value, to fail later in drawing or draw nonsense."""

    def test_the_fields_are_arrays_of_the_edges_shape(self):
        r = plot.Raster([[1, 0], [0, 2]], [0, 2, 4], [0, 3, 4])
        assert isinstance(r.counts, np.ndarray) and isinstance(r.row_edges, np.ndarray)
        assert r.shape == (4, 4) and r.bin_shape is None and not r.exact
        assert plot.Raster(np.zeros((0, 2)), [0], [0, 1, 2]).shape == (0, 2)

    @pytest.mark.parametrize(("counts", "rows", "cols", "error", "match"), [
        (np.eye(2), [0, 2.0, 4], [0, 2, 4], TypeError, "row_edges must be integers"),
        (np.eye(2), [0, 2, 4], ["0", "2", "4"], TypeError, "col_edges must be integers"),
        (np.eye(2) * 1j, [0, 2, 4], [0, 2, 4], TypeError, "counts must be real"),
        (np.eye(2), [0, 2, 2], [0, 2, 4], ValueError, "row_edges must increase strictly"),
        (np.eye(2), [0, 3, 2], [0, 2, 4], ValueError, "row_edges must increase strictly"),
        (np.eye(2), [-1, 2, 4], [0, 2, 4], ValueError, "row_edges must increase strictly"),
        (np.eye(2), [[0, 2, 4]], [0, 2, 4], ValueError, "row_edges must be one-dimensional"),
        (np.eye(2), np.array([], int), [0, 2, 4], ValueError, "at least one edge"),
        (np.eye(3), [0, 2, 4], [0, 2, 4], ValueError, r"shape \(3, 3\); .* 2 x 2 bins"),
        (np.ones(2), [0, 2, 4], [0, 4], ValueError, r"shape \(2,\); .* 2 x 1 bins"),
    ])
    def test_bad_fields_are_refused_by_name(self, counts, rows, cols, error, match):
        with pytest.raises(error, match=match):
            plot.Raster(counts, rows, cols)


def test_spy_values_of_a_complex_matrix_draws_the_moduli():
    """A mutant this catches: plot/_spy.py: ``np.abs(A.data)`` -> ``A.data.real`` for a
    complex matrix: values=True draws each stored entry's modulus (as documented), NaN
    (masked) where nothing is stored."""
    from matplotlib.figure import Figure

    from sparseconv.plot import spy

    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 1, 3)) + 1j * rng.standard_normal((2, 1, 3))
    A = sc.conv_matrix(w, (1, 5), padding=1)
    image = spy(A, Figure().subplots(), values=True)
    drawn = np.ma.filled(np.ma.masked_invalid(image.get_array()), np.nan)
    dense = A.toarray()
    stored = dense != 0
    np.testing.assert_allclose(drawn[stored], np.abs(dense[stored]), rtol=1e-15)
    assert np.isnan(drawn[~stored]).all()
    # the colorbar says moduli (a new user's trial: "entry value" over moduli), per entry or
    # per bin; bins of unequal sizes along one axis only name a range there (it read
    # "14-14 x 15-16 entries")
    assert image.colorbar.ax.get_ylabel() == "entry modulus"
    binned = spy(A, Figure().subplots(), values=True, max_bins=5)
    assert binned.colorbar.ax.get_ylabel() == "largest modulus per bin (2 x 1 entries)"
    real = spy(sp.random_array((29, 40), density=0.3, rng=0), Figure().subplots(),
               values=True, max_bins=10)
    assert real.colorbar.ax.get_ylabel() == "largest-magnitude entry per bin (2-3 x 4 entries)"


def test_spy_draws_every_stored_entry_and_every_nonempty_bin_off_white():
    """A new user's trial: signed values on RdBu_r (white at 0) hid a kernel's small taps,
    and on Blues a bin of 166 entries beside bins of 6,640 drew as white: every stored
    entry, and every bin holding one, is drawn darker than the white of the others."""
    from matplotlib.figure import Figure

    from sparseconv.plot import spy

    def darkest(image, where):  # each pixel's darkest channel, where `where`
        rgba = image.cmap(image.norm(np.ma.masked_invalid(image.get_array())))
        return rgba[..., :3].min(axis=-1)[where]

    w = np.array([[[1e-3, -1.0, 2.0, -1e-3, 0.5]], [[3.0, 1e-4, 0.0, 0.0, 0.0]]])
    A = sc.conv_matrix(w, (1, 9), padding=2)
    image = spy(A, Figure().subplots(), values=True)
    stored = np.zeros(A.shape, bool)
    stored[sp.coo_array(A).coords] = True
    assert darkest(image, stored).max() < 0.9 and (darkest(image, ~stored) == 1).all()
    dense = np.zeros((64, 64))
    dense[:32, :32], dense[40, 50] = 1.0, 1.0  # (bins of 256 entries, and one of 1)
    image = spy(sp.csr_array(dense), Figure().subplots(), max_bins=4)
    counts = np.asarray(image.get_array())
    assert sorted(set(counts.ravel().tolist())) == [0, 1, 256]
    assert darkest(image, counts > 0).max() < 0.9 and (darkest(image, counts == 0) == 1).all()


def test_spy_values_of_signed_entries_use_a_symmetric_color_scale():
    """A mutant this catches: plot/_spy.py: the values' color limits ``(-top, top)`` ->
    ``(0, top)`` for signed entries: negative entries would all be drawn as the lowest
    color; the scale is symmetric about 0 and reaches the largest modulus."""
    from matplotlib.figure import Figure

    from sparseconv.plot import spy

    w = np.array([[[1.0, -3.0, 2.0]]])
    image = spy(sc.conv_matrix(w, (1, 4), padding=1), Figure().subplots(), values=True)
    assert image.get_clim() == (-3.0, 3.0)
    positive = spy(sc.conv_matrix(np.abs(w), (1, 4), padding=1), Figure().subplots(),
                   values=True)
    assert positive.get_clim() == (0.0, 3.0)


# ---------------------------------------------------------------------------------------------
# spy's grid, labels and colour scale, from a mutation review of plot/_spy.py: each test says
# the mutant it catches. Oracles: the layer's own sizes (channels x positions, from the
# weights and PyTorch's output-size formula, written out here), the matrix's dense entries,
# and matplotlib's artists read back.
# ---------------------------------------------------------------------------------------------
def _grid_lines(ax):
    """The y of each horizontal and the x of each vertical grid line spy drew."""
    hlines, vlines = ax.collections[:2]
    return (sorted({float(s[0][1]) for s in hlines.get_segments()}),
            sorted({float(s[0][0]) for s in vlines.get_segments()}))


def test_spy_channel_grid_lies_between_the_blocks_of_a_strided_layer():
    """Mutants this catches: plot/_spy.py: the channel blocks' sizes taken from the input's
    positions for the rows (``output_size`` <-> ``input_size``), and the lines drawn on the
    first entry of a block instead of between two (``lines - 0.5`` -> ``lines``). A 2 -> 3
    layer, stride 2, on 8x8: 3 row blocks of 4x4 = 16 outputs, 2 column blocks of 64
    inputs."""
    A = conv_matrix(np.ones((3, 2, 3, 3)), (2, 8, 8), stride=2, padding=1)
    geom = ConvGeometry.from_weight((3, 2, 3, 3), (2, 8, 8), stride=2, padding=1)
    assert A.shape == (3 * 16, 2 * 64)
    ax = axes()
    plot.spy(A, ax, geometry=geom, blocks=[(16, 64)])
    rows, cols = _grid_lines(ax)
    assert rows == [15.5, 31.5] and cols == [63.5]
    ax = axes()
    plot.spy(A, ax, geometry=geom, blocks=True)  # channel blocks, then image rows
    rows, cols = _grid_lines(ax)
    assert rows == [15.5, 31.5] and cols == [63.5]


def test_spy_of_a_transpose_is_the_transposed_picture():
    """Mutants this catches: plot/_spy.py: a transpose's block sizes not swapped
    (``lvl[::-1] if transposed``), its axis labels not swapped (``sides.reverse()``), and
    its bins aligned to the other side's image rows (``row_lengths(geom)[::-1 if
    transposed else 1]``). The oracle: the picture of ``A.T`` is the transpose of ``A``'s
    (counts, grid lines, and the labels' sizes), ``A`` a 2 -> 3 layer, stride 2, on 10x10
    (rows of 5 outputs and of 10 inputs), binned into few pixels."""
    geom = ConvGeometry.from_weight((3, 2, 3, 3), (2, 10, 10), stride=2, padding=1)
    A = conv_matrix(np.ones((3, 2, 3, 3)), (2, 10, 10), stride=2, padding=1)
    ax, ax_t = axes(), axes()
    image = plot.spy(A, ax, geometry=geom, blocks=True, max_bins=12)
    image_t = plot.spy(A.T.tocsr(), ax_t, geometry=geom, blocks=True, max_bins=12)
    np.testing.assert_array_equal(image_t.get_array(), image.get_array().T)
    assert int(image_t.get_array().sum()) == A.nnz
    rows, cols = _grid_lines(ax)
    rows_t, cols_t = _grid_lines(ax_t)
    assert (rows_t, cols_t) == (cols, rows) and rows == [24.5, 49.5]
    # (the labels name the drawn map's sides: A.T maps the layer's 5x5 outputs to its 10x10
    # inputs)
    assert ax.get_ylabel() == "output channel\n(blocks of 5x5 positions)"
    assert ax.get_xlabel() == "input channel (blocks of 10x10 positions)"
    assert ax_t.get_ylabel() == "output channel\n(blocks of 10x10 positions)"
    assert ax_t.get_xlabel() == "input channel (blocks of 5x5 positions)"


def test_spy_channel_ticks_are_centred_on_their_blocks():
    """A mutant this catches: plot/_spy.py: a channel's tick at its block's first entry
    (``(starts + 0.5) * block - 0.5`` -> ``starts * block``). 4 channels of 3x3 positions:
    channel c's block spans entries 9c..9c+8, centred on 9c + 4."""
    geom = ConvGeometry.from_weight((4, 4, 3, 3), (4, 3, 3), padding=1)
    ax = axes()
    plot.spy(geom, ax)
    ticks = dict(zip((t.get_text() for t in ax.get_yticklabels()), ax.get_yticks()))
    assert ticks and all(ticks[c] == 9 * int(c) + 4 for c in ticks)


def test_spy_values_sum_duplicate_entries():
    """A mutant this catches: plot/_spy.py: ``values=True`` not summing duplicate entries (a
    CSR array with one position stored twice drew the last one, 2, where the matrix holds
    3). The oracle: the matrix's dense entries."""
    A = sp.csr_array((np.array([1.0, 2.0, 4.0]), np.array([1, 1, 0]), np.array([0, 2, 3])),
                     shape=(2, 3))
    assert not A.has_canonical_format
    image = plot.spy(A, axes(), values=True).get_array()
    dense = A.toarray()
    np.testing.assert_array_equal(np.where(image.mask, 0, image.data), dense)


def test_spy_values_between_minus_one_and_zero_are_signed():
    """Mutants this catches: plot/_spy.py: entries in (-1, 0) not read as signed
    (``finite.min() < 0`` -> ``< -1``) and an asymmetric scale (``vmin=-top`` ->
    ``vmin=finite.min()``): -0.25 would be drawn as 0. The scale is symmetric about 0."""
    A = sp.csr_array(np.array([[-0.25, 0.0], [0.0, 0.5]]))
    assert plot.spy(A, axes(), values=True).get_clim() == (-0.5, 0.5)


def test_spy_colorbar_goes_under_a_wide_picture():
    """A mutant this catches: plot/_spy.py: the colorbar's place chosen by the tall side
    (``image.shape[1] >= 2 * image.shape[0]`` -> the reverse): beside a wide picture it
    would tower over it. Under a picture at least twice as wide as tall, beside the rest."""
    wide = plot.spy(sp.random_array((10, 40), density=0.3, rng=0), axes(), values=True)
    tall = plot.spy(sp.random_array((40, 10), density=0.3, rng=0), axes(), values=True)
    assert wide.colorbar.orientation == "horizontal"
    assert tall.colorbar.orientation == "vertical"


def test_spy_draws_a_grid_level_only_where_its_blocks_span_two_pixels():
    """A mutant this catches: plot/_spy.py: grid levels drawn however small their blocks
    (``size * pixels >= 2 * (hi - lo)`` dropped): a 2-channel layer on 8x8 binned into 8
    pixels a side has row blocks of 8 entries, an eighth of a pixel: only the channel
    level is drawn (one line each way)."""
    geom = ConvGeometry.from_weight((2, 2, 3, 3), (2, 8, 8), padding=1)
    ax = axes()
    plot.spy(geom, ax, blocks=True, max_bins=8)
    assert len(ax.collections) == 2
    assert _grid_lines(ax) == ([63.5], [63.5])


def test_spy_colorbar_label_names_rows_then_columns_of_a_bin():
    """A mutant this catches: plot/_spy.py: the colorbar's bin size printed columns first.
    A 1 -> 4 layer on 16x16 (1,024 rows, 256 columns) in 16 bins a side: 64 x 16 entries."""
    geom = ConvGeometry.from_weight((4, 1, 3, 3), (1, 16, 16), padding=1)
    image = plot.spy(geom, axes(), max_bins=16)
    counts = image.get_array()
    rows, cols = geom.shape[0] // counts.shape[0], geom.shape[1] // counts.shape[1]
    assert (rows, cols) == (64, 16)
    assert image.colorbar.ax.get_ylabel() == f"nonzeros per bin ({rows:,} x {cols:,} entries)"


def test_save_raster_checks_values_and_stores_the_dpi(tmp_path):
    """Mutants this catches: plot/_spy.py: ``save_raster``'s ``values`` taken without the
    check (``values="no"`` drew the values) and its ``dpi`` dropped (every png stored 100
    pixels per inch). The oracle: the png read back by Pillow."""
    A = conv_matrix(np.ones((1, 1, 3)), (1, 6), padding=1)
    with pytest.raises(TypeError, match="values"):
        plot.save_raster(tmp_path / "A.png", A, values="no")
    plot.save_raster(tmp_path / "A.png", A, dpi=254)
    with Image.open(tmp_path / "A.png") as png:
        assert png.size == (6, 6)
        assert tuple(round(d) for d in png.info["dpi"]) == (254, 254)


def test_a_figure_spy_makes_is_one_column_at_300_dpi(tmp_path):
    """A mutant this catches: plot/_figure.py: the default size of a figure made to be saved
    (3.5 x 3.0 in, one journal column) replaced by matplotlib's 6.4 x 4.8: a png written
    with neither ``figsize`` nor ``dpi`` is 1050 x 900 pixels."""
    plot.spy(sp.eye_array(4), fname=tmp_path / "eye.png")
    with Image.open(tmp_path / "eye.png") as png:
        assert png.size == (1050, 900)


@pytest.mark.parametrize("count, most", [(17, 8), (9, 8), (64, 8), (65, 8), (100, 6),
                                         (513, 8), (7, 6), (1, 8)])
def test_nice_step_gives_at_most_most_ticks(count, most):
    """A mutant this catches: plot/_figure.py: ``nice_step`` counting ticks by floor
    division (``math.ceil(count / s)`` -> ``count // s``): over 17 channels with at most 8
    ticks, a step of 2 gives 9 ticks (0, 2, ..., 16). The oracle: the ticks counted with
    ``range``, and the next smaller step of the documented ladder giving too many."""
    from sparseconv.plot._figure import nice_step

    ladder = [1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 200, 250, 256, 500, 512]
    step = nice_step(count, most)
    assert len(range(0, count, step)) <= most
    smaller = [s for s in ladder if s < step]
    assert not smaller or len(range(0, count, smaller[-1])) > most


def test_round_outward_keeps_every_digit_asked(tmp_path):
    """A mutant this catches: plot/_figure.py: ``round_outward`` printing the rounded
    decimal through a float's ``:g`` (six digits, to the nearest): an upper bound to 8
    digits, 0.1234561234 -> 0.12345613, printed 0.123456, below the value. The oracle:
    exact rationals."""
    from decimal import ROUND_CEILING, ROUND_FLOOR
    from fractions import Fraction

    from sparseconv.plot._figure import round_outward

    for value in (0.1234561234, 98765.4321, 1.0000001234e-7):
        upper = round_outward(value, ROUND_CEILING, 8)
        lower = round_outward(value, ROUND_FLOOR, 8)
        assert Fraction(lower) <= Fraction(value) <= Fraction(upper), (lower, value, upper)
        assert Fraction(upper) - Fraction(lower) < Fraction(value) * Fraction(1, 10**7)


def test_spectrum_band_spans_the_certified_interval():
    """A mutant this catches: plot/_charts.py: ``ax.axhspan(lower, upper,`` ->
    ``ax.axhspan(upper, upper,``. The grey band drawn for the interval must cover exactly
    [lower, upper] in data coordinates (read back from the patch matplotlib drew)."""
    ax = Figure().subplots()
    lower, upper = 1.25, 2.5
    plot.spectrum([3.0, 1.0, 2.0], ax, interval=(lower, upper))
    (band,) = ax.patches
    ys = band.get_patch_transform().transform(band.get_path().vertices)[:, 1]
    assert min(ys) == pytest.approx(lower) and max(ys) == pytest.approx(upper)


def test_spectrum_draws_the_bound_for_every_input_size():
    """``every_size=`` (toeplitz_norm's result, or a pair) is a dashed line at its upper end,
    labelled with it rounded up (a new user's trial: the command line printed the bound for
    every input size and drew nothing of it); drawn with the values, or with the interval
    alone, on either scale, within the axes, the legend below it (a second trial: a legend
    entry put the legend over the values of a low-rank layer; matplotlib's "best" put it over
    the label); its arguments checked as the interval's are."""
    from decimal import Decimal

    w = np.random.default_rng(4).standard_normal((3, 3, 3, 3))
    every = sc.toeplitz_norm(w)
    values = sc.singular_values(w, (3, 6, 6), padding=1)
    for given, yscale in ((values, "linear"), (values, "log"), ([], "linear")):
        ax = Figure().subplots()
        plot.spectrum(given, ax, every_size=every, yscale=yscale,
                      interval=sc.spectral_norm(w, (3, 6, 6), padding=1))
        (line,) = [line for line in ax.lines if line.get_linestyle() == "--"]
        assert line.get_ydata()[0] == every.upper
        assert ax.get_ylim()[1] > every.upper  # on the axes, not above them
        (label,) = ax.texts
        text = label.get_text()
        assert text.startswith("every input size:"), text
        ax.figure.canvas.draw()  # the label, and the legend below it, within the axes
        box, legend = label.get_window_extent(), ax.get_legend().get_window_extent()
        assert ax.get_window_extent().contains(box.x1 - 1, box.y1 - 1)
        assert legend.y1 <= ax.transData.transform((0, every.upper))[1] <= box.y0 + 3
        printed = Decimal(text.rsplit(" ", 1)[1])
        assert printed >= Decimal(every.upper) and printed - Decimal(every.upper) < Decimal(
            "1e-8") * Decimal(every.upper)
    ax = Figure().subplots()
    plot.spectrum([2.0, 1.0], ax, every_size=(2.5, 3.0))
    assert [line.get_ydata()[0] for line in ax.lines if line.get_linestyle() == "--"] == [3.0]
    from sparseconv.plot._figure import STYLE

    with matplotlib.rc_context(STYLE):  # a diagonal of values: "best" is the empty top left
        ax = Figure().subplots()
        plot.spectrum(np.linspace(12.1, 0.0, 144), ax, interval=(12.1, 12.1),
                      every_size=(13.0, 13.08))
        ax.figure.canvas.draw()
    assert ax.get_legend().get_window_extent().y1 <= ax.transData.transform((0, 13.08))[1]
    with pytest.raises(TypeError, match="every_size must be"):
        plot.spectrum([1.0], Figure().subplots(), every_size="big")
    with pytest.raises(ValueError, match="every_size must satisfy"):
        plot.spectrum([1.0], Figure().subplots(), every_size=(2.0, 1.0))
    with pytest.raises(ValueError, match="every_size's upper end 0.0 cannot be drawn"):
        plot.spectrum([1.0], Figure().subplots(), every_size=(0.0, 0.0), yscale="log")


def test_spectrum_error_bar_spans_the_certified_interval():
    """A mutant this catches: plot/_charts.py: ``yerr=[[(upper - lower) / 2]] * 2`` ->
    ``/ 4``. On a wide interval the error bar must run from lower to upper exactly (the
    suite's own check used an interval 1e-9 wide, where the mutant hid in rtol)."""
    ax = Figure().subplots()
    plot.spectrum([3.0, 1.0, 2.0], ax, interval=(1.0, 2.0))
    (bar,) = [c for c in ax.collections if len(c.get_segments()) == 1]
    ys = sorted(bar.get_segments()[0][:, 1])
    assert ys == pytest.approx([1.0, 2.0], abs=1e-12)


def test_frequency_heatmap_extent_of_a_non_square_grid():
    """A mutant this catches: plot/_charts.py: ``dy, dx = 1/H, 1/W`` -> ``dx, dy = ...``.
    On a 4 x 6 grid the image spans the cells of np.fft.fftfreq's frequencies, half a cell
    beyond the first and last: x from -1/2 - 1/12 to 1/3 + 1/12, y from -1/2 - 1/8 to
    1/4 + 1/8 (written out here)."""
    values = np.arange(24.0).reshape(4, 6)
    image = plot.frequency_heatmap(values, Figure().subplots(), colorbar=False)
    assert image.get_extent() == pytest.approx([-7 / 12, 5 / 12, -5 / 8, 3 / 8])
    np.testing.assert_array_equal(image.get_array(), np.roll(values, (2, 3), axis=(0, 1)))


def test_receptive_field_heatmap_takes_vmax_equal_to_the_largest_count():
    """A mutant this catches: plot/_charts.py: ``vmax < top`` -> ``vmax <= top`` (a vmax
    equal to the largest path count, allowed by the docstring, was refused). Two 3x3 layers:
    the centre input pixel has 9 paths to the centre unit (counted here by convolving a
    3x3 box with itself)."""
    from sparseconv import ConvGeometry

    g = ConvGeometry.from_weight((1, 1, 3, 3), (1, 9, 9), padding=1)
    box = np.ones((3, 3))
    paths = np.zeros((5, 5))
    for i in range(3):
        for j in range(3):
            paths[i:i + 3, j:j + 3] += box
    assert paths.max() == 9
    image = plot.receptive_field_heatmap([g, g], Figure().subplots(), vmax=9)
    assert image.norm.vmax == pytest.approx(9.5)
    assert int(np.ma.filled(image.get_array(), 0).max()) == 9


def test_receptive_field_colours_one_per_count_with_every_count_ticked():
    """Mutants this catches: plot/_charts.py: ``np.linspace(0.5, top + 0.5, levels + 1)``
    -> ``top - 0.5`` (counts drawn one colour off), and ``range(1, top + 1)`` ->
    ``range(1, top)`` (the top count unticked). Two 3x3 layers: counts 1..9, each between
    the boundaries k - 1/2 and k + 1/2, each its own colour, ticks 1..9."""
    from sparseconv import ConvGeometry

    g = ConvGeometry.from_weight((1, 1, 3, 3), (1, 9, 9), padding=1)
    image = plot.receptive_field_heatmap([g, g], Figure().subplots())
    np.testing.assert_allclose(image.norm.boundaries, np.arange(10) + 0.5)
    colours = [tuple(image.cmap(image.norm(k))) for k in range(1, 10)]
    assert len(set(colours)) == 9
    assert list(image.colorbar.get_ticks()) == list(range(1, 10))


def test_spectrum_error_bar_sits_at_the_first_fraction():
    """A mutant this catches: plot/_charts.py: ``x0 = float(...lines[0].get_xdata()[0])``
    -> ``x0 = 0.0``. With ``fraction=True`` the three values sit at (i + 1/2) / 3: the
    interval's error bar is drawn at the first of them, 1/6, where the largest value is."""
    ax = Figure().subplots()
    (line,) = plot.spectrum([1.0, 3.0, 2.0], ax, fraction=True, interval=(2.5, 3.5))
    assert list(line.get_xdata()) == pytest.approx([1 / 6, 1 / 2, 5 / 6])
    (bar,) = [c for c in ax.collections if len(c.get_segments()) == 1]
    assert list(bar.get_segments()[0][:, 0]) == pytest.approx([1 / 6, 1 / 6])


def test_frequency_heatmap_centres_zero_frequency_of_an_odd_grid():
    """A mutant this catches: plot/_charts.py: ``np.fft.fftshift(v)`` -> ``ifftshift``
    (alike on even sizes only). On a 3 x 5 grid the zero frequency (values[0, 0]) must be
    drawn at the centre cell (1, 2): rows and columns rolled by 1 and 2."""
    values = np.arange(15.0).reshape(3, 5)
    image = plot.frequency_heatmap(values, Figure().subplots(), colorbar=False)
    drawn = np.asarray(image.get_array())
    assert drawn[1, 2] == values[0, 0]
    np.testing.assert_array_equal(drawn, np.roll(values, (1, 2), axis=(0, 1)))


def _faces(collection) -> list[str]:
    from matplotlib.colors import to_hex

    return [to_hex(c) for c in collection.get_facecolor()]


def _drawn(anim):
    """``anim``, marked as drawn (its frames are read here, not rendered: matplotlib would
    warn at its deletion)."""
    anim._draw_was_started = True
    return anim


def test_animation_colours_the_padding_by_what_it_holds():
    """Mutants this catches: plot/_animation.py: ``position < lo + axis.size`` -> ``<=``
    (the first padding cell past the input drawn as input) and ``_COPY if s >= 0`` ->
    ``s > 0`` (a circular pad copying input cell 0 drawn as a zero). 1-D, 4 inputs, padding
    1: padded cells 1..4 are the input; zero padding makes cells 0 and 5 alike (zeros),
    circular padding makes them copies (alike, and unlike zeros)."""
    from sparseconv import ConvGeometry

    zeros = ConvGeometry.from_weight((1, 1, 3), (1, 4), padding=1)
    circular = ConvGeometry.from_weight((1, 1, 3), (1, 4), padding=1, padding_mode="circular")
    faces = {}
    for name, geom in (("zeros", zeros), ("circular", circular)):
        anim = _drawn(plot.conv_animation(geom))
        # the big grid at a frame whose window (cells 2..4) leaves cells 0, 1 and 5 alone
        anim._func(2)
        faces[name] = _faces(anim._fig.axes[0].collections[0])
    z, c = faces["zeros"], faces["circular"]
    assert len(z) == len(c) == 6
    assert z[0] == z[5] and c[0] == c[5]  # both pads alike
    assert z[1] != z[5] and c[1] != c[5]  # a pad is no input cell
    assert z[5] != c[5]  # a zero is no copy (circular: cell 0 copies input 3, cell 5 input 0)


def test_forward_animation_marks_the_outputs_done_so_far():
    """A mutant this catches: plot/_animation.py: ``range(frame)`` -> ``range(frame - 1)``
    in the small grid's done outputs. 1-D, 5 inputs, kernel 3: outputs 0, 1, 2; at frame 2,
    outputs 0 and 1 are done (one colour), 2 is current (another)."""
    from sparseconv import ConvGeometry

    anim = _drawn(plot.conv_animation(ConvGeometry.from_weight((1, 1, 3), (1, 5))))
    anim._func(0)
    fresh = _faces(anim._fig.axes[0].collections[1])
    anim._func(2)
    small = _faces(anim._fig.axes[0].collections[1])
    assert small[0] == small[1] != fresh[0] and small[2] not in (small[0], fresh[1])


def test_transposed_animation_keeps_every_earlier_stamp():
    """A mutant this catches: plot/_animation.py: ``window[:frame]`` -> ``window[:frame -
    1]`` in the transposed frames. 1-D kernel 3, stride 2, padding 1 on 5 inputs: input
    cell f stamps padded output cells 2f, 2f + 1, 2f + 2 (written out here); at frame 2
    cell 3 (stamped by input 1 only) must show as done, like cell 1, and at frame 0 as
    untouched, like cells 4 and 5."""
    from sparseconv import ConvGeometry

    geom = ConvGeometry.from_weight((1, 1, 3), (1, 5), stride=2, padding=1)
    anim = _drawn(plot.conv_animation(geom, transposed=True))
    big = anim._fig.axes[0].collections[0]
    anim._func(0)
    first = _faces(big)
    anim._func(2)
    later = _faces(big)
    stamped = {2 * f + k for f in range(3) for k in range(3)}
    assert stamped == set(range(7))
    assert first[3] == first[4] == first[5]  # at frame 0, none of them stamped yet
    assert later[1] == later[3] != first[3]  # stamped at frames 0 and 1: done, kept
    assert later[3] != later[5]  # done, not the current stamp (cells 4, 5, 6)


def test_gif_frames_are_sized_at_four_bytes_a_pixel(tmp_path, memory_limit):
    """A mutant this catches: plot/_animation.py: ``check_memory(4 * frames * width *
    height`` -> ``frames * width * height``. The GIF's frame count and pixel size are read
    from the file PIL opens; under a limit of twice frames x pixels (below the 4 bytes a
    pixel the docstring says are kept) the GIF is refused before it is drawn."""
    from PIL import Image

    import sparseconv as sc
    from sparseconv import ConvGeometry

    geom = ConvGeometry.from_weight((1, 1, 2), (1, 3))
    plot.conv_animation(geom, fname=tmp_path / "a.gif", dpi=20)
    with Image.open(tmp_path / "a.gif") as gif:
        frames, width, height = gif.n_frames, gif.width, gif.height
    memory_limit(2 * frames * width * height)
    with pytest.raises(sc.MatrixTooLargeError):
        plot.conv_animation(geom, fname=tmp_path / "b.gif", dpi=20)


def test_animation_dashes_zero_pads_and_marks_cropped_stamps():
    """Mutants this catches: plot/_animation.py: ``is_pad & (source < 0)`` -> ``is_pad``
    (a circular pad, a copy, drawn dashed like a zero) and ``_CROPPED_CURRENT if
    is_pad[cell] else _CURRENT`` -> ``_CURRENT`` (a transposed stamp on a cropped cell
    drawn like one kept). 1-D, 4 inputs, padding 1: padded cells 0 and 5 are the pads."""
    from sparseconv import ConvGeometry

    def dashed(anim):
        styles = anim._fig.axes[0].collections[0].get_linestyles()
        return [dashes is not None for _, dashes in styles]

    zeros = ConvGeometry.from_weight((1, 1, 3), (1, 4), padding=1)
    circular = ConvGeometry.from_weight((1, 1, 3), (1, 4), padding=1, padding_mode="circular")
    assert dashed(_drawn(plot.conv_animation(zeros))) == [True, False, False, False, False,
                                                          True]
    assert not any(dashed(_drawn(plot.conv_animation(circular))))
    anim = _drawn(plot.conv_animation(zeros, transposed=True))
    anim._func(0)  # input 0 stamps padded cells 0 (cropped), 1 and 2
    faces = _faces(anim._fig.axes[0].collections[0])
    assert faces[1] == faces[2] != faces[0]


def test_a_log_scale_of_less_than_a_decade_is_labelled_in_plain_numbers():
    """A new user's trial: ``spectrum --log`` of values from 2.15 to 2.49 labelled its ticks
    ``2.45 x 10^0`` (matplotlib's minor labels within a decade); plain numbers there, and
    matplotlib's own labels over several decades. Mutant this catches: plot/_charts.py: the
    formatters not set."""
    narrow = axes()
    plot.spectrum(np.linspace(2.15, 2.49, 32), narrow, yscale="log", interval=(2.49, 2.4901))
    narrow.figure.canvas.draw()
    labels = [t.get_text() for t in (*narrow.get_yticklabels(),
                                     *narrow.get_yticklabels(minor=True)) if t.get_text()]
    assert labels and all("10^" not in text and "times" not in text for text in labels), labels
    assert any(text == "2.4" for text in labels), labels
    wide = axes()
    plot.spectrum([5.0, 2.0, 1e-6], wide, yscale="log")
    wide.figure.canvas.draw()
    assert any("10^" in t.get_text() for t in wide.get_yticklabels()), [
        t.get_text() for t in wide.get_yticklabels()]


def test_spectrum_on_a_log_scale_leaves_out_the_zeros_and_says_so():
    """A log scale for the small values' decay (a new user's trial asked for one): the
    values drawn are the nonzero ones, sorted, the zeros counted on the axis label; an
    interval's band stays; a lower end of 0 and an unknown scale are refused by name."""
    ax = axes()
    (line,) = plot.spectrum([0.0, 2.0, 1e-6, 0.0, 5.0], ax, yscale="log", interval=(4.9, 5.1))
    assert ax.get_yscale() == "log"
    drawn = np.ma.masked_invalid(np.ma.asarray(line.get_ydata()))
    assert drawn.compressed().tolist() == [5.0, 2.0, 1e-6]
    assert ax.get_ylabel().endswith("(2 zeros not drawn)")
    assert ax.get_legend().get_texts()[-1].get_text().startswith("certified")
    linear = axes()
    plot.spectrum([1.0, 0.0], linear)
    assert linear.get_yscale() == "linear" and "not drawn" not in linear.get_ylabel()
    with pytest.raises(ValueError, match="interval's lower end 0.0 cannot be drawn on "
                       "yscale='log'"):
        plot.spectrum([1.0], axes(), yscale="log", interval=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"yscale must be one of \('linear', 'log'\), got "
                       "'symlog'"):
        plot.spectrum([1.0], axes(), yscale="symlog")
    with pytest.raises(TypeError, match="yscale must be one of"):
        plot.spectrum([1.0], axes(), yscale=None)


@pytest.mark.parametrize("dtype", [">f8", "float16", ">i4", ">c16"])
def test_a_dense_array_in_another_byte_order_or_float16_is_drawn(dtype):
    """A review: a big-endian (or float16) dense array raised scipy's "does not support
    dtype" from raster and spy."""
    A = np.eye(6)
    A[0, 3] = -2.0
    given = A.astype(dtype)
    counts = [plot.raster(a, max_bins=3).counts.tolist() for a in (given, A)]
    assert counts[0] == counts[1], counts
    same = A.astype(complex) if given.dtype.kind == "c" else A  # (moduli, for complex)
    image, expected = (plot.spy(a, axes(), values=True) for a in (given, same))
    np.testing.assert_array_equal(np.asarray(image.get_array()),
                                  np.asarray(expected.get_array()))
