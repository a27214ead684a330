"""sparseconv.plot, headless (Agg): the pictures' numbers are checked.

Oracles: the matrix itself (``conv_matrix``, validated against PyTorch in test_matrices),
a dense pattern summed block by block with numpy, ``np.pad`` for the padded grid, products of
all-ones layer matrices for path counts, ``numpy.linalg.svd`` for spectra, and the files read
back with matplotlib and Pillow.
"""

from __future__ import annotations

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
    cli,
    conv_matrix,
    plot,
    receptive_field_paths,
)

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


@pytest.mark.parametrize("seed", range(12))
def test_layer_raster_from_geometry_equals_the_matrix(seed):
    rng = np.random.default_rng(seed)
    layer = random_layer(rng, ndim=1 + seed % 3, max_size=8 - seed % 3)
    A = conv_matrix(layer.weight, layer.input_shape, **layer.kwargs)
    geom = geometry_of(layer)
    channels = (geom.out_channels, geom.in_channels)
    for max_bins in (1, 5, 17, 10_000):
        from_geometry = plot.raster(geom, max_bins)
        from_matrix = plot.raster(A, max_bins, channels=channels)
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
    with pytest.raises(ValueError, match="one pixel per entry"):
        plot.spy(sp.eye_array(600), axes(), values=True)


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
def test_receptive_field_plot_and_errors():
    g = ConvGeometry.from_weight((1, 1, 3, 3), (1, 17, 17), padding=1)
    dilated = [ConvGeometry.from_weight((1, 1, 3, 3), (1, 17, 17), padding=d, dilation=d)
               for d in (1, 2, 4)]
    assert int((plot.receptive_field_heatmap([g, g, g], axes()).get_array() > 0).sum()) == 49
    image = plot.receptive_field_heatmap(dilated, axes()).get_array()
    assert int((image > 0).sum()) == 225 and int(image.max()) == 9
    one_d = ConvGeometry.from_weight((1, 1, 3), (1, 5), padding=1)
    assert plot.receptive_field_heatmap([one_d, one_d], axes()).get_array().shape == (1, 5)
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
    top, how = cli._top_singular_values(cli._Layer(w, (2, 9, 9), layer, geometry), k=5)
    assert "ARPACK" in how
    np.testing.assert_allclose(top, dense[:5], rtol=1e-8)


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
