"""Spectra side by side with the plain approaches, in one process.

1. All singular values of a circular 3x3 layer: ``sparseconv.singular_values`` against the plain
   approach (``np.fft.fft2`` of the zero-padded kernel, then ``np.linalg.svd`` at every
   frequency). Target: at least 2x faster.
2. Agreement with a dense ``np.linalg.svd`` of the explicit matrix where it fits. Target: 1e-10
   relative to the largest singular value.
3. The spectral norm of zero-padded 3x3 layers with its certified interval: time, relative
   width, and the width the plain periodic embedding alone gives. Targets: 64->64 on 56x56 in
   under 5 s; widths below the plain embedding's. For reference, ``scipy.sparse.linalg.svds``
   on the CSR matrix of the 64->64 layer on 32x32 (no interval) is timed too.

4. ``spectral_norm`` on every convolution of ResNet-18 and VGG-11 at 224x224 (Kaiming-normal
   weights, seeded): time, method and relative width per layer, and the totals. Targets
   (issue 12): ResNet-18 under 60 s in total and no layer over 10 s, VGG-11 under 90 s,
   relative width under 1e-4 on every layer. ``--networks-only`` runs this part alone;
   ``--size 56`` scales the inputs down for a quick check.

5. ``--exact``: ``spectral_norm(..., method="exact")`` (every axis exact, whatever it costs)
   on each convolution of ResNet-18 at 224x224 whose default interval is wider than 1e-4
   (the same seeded weights as part 4): the time and width it takes to reach the width
   target there, and over the whole network. ``--compare`` adds, on the 14x14 and 7x7
   layers, the whole Gram's Cholesky test in LAPACK's band storage and by block rows, side
   by side: time and memory held.

6. ``--sections``: an exact section's Cholesky test (one block of the section along the first
   axis, the second axis periodic on the embedding grid, at frequency 0, real, and 1,
   complex) in LAPACK's band storage (``?pbtrf``) and by block rows of one position, side by
   side on one BLAS thread (as ``spectral_norms`` runs each layer), for the channel counts
   and grids of ResNet-18's and VGG-11's 3x3 layers: what sets ``SECTION_ROWS_FROM``.

Each time is the best of ``--repeat`` runs (one run for the slow references and the networks).

Run: ``python benchmarks/bench_spectra.py``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse.linalg as spla
from _machine import describe
from threadpoolctl import threadpool_limits

from sparseconv import conv_matrix, set_memory_limit, singular_values, spectral_norm
from sparseconv._block_cholesky import SECTION_ROWS_FROM, block_bytes
from sparseconv._certificates import embedding_grid
from sparseconv._exact_sections import _section_kernels, _top_eigenpair
from sparseconv._geometry import ConvGeometry
from sparseconv._section_gram import section_gram
from sparseconv._spectral_norm import DEFAULT_TOL
from sparseconv._spectral_norms import _norm_task, checked_layers, norms_as_done

#: The circular layer, any stride (sparseconv's shorthand for periodic padding).
PERIODIC = dict(padding=None, padding_mode="circular")


def best_of(repeat: int, fn, *args, **kwargs):
    result, times = None, []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return min(times), result


def plain_fft_svd(weight: np.ndarray, n: int) -> np.ndarray:
    symbol = np.fft.fft2(weight, s=(n, n)).transpose(2, 3, 0, 1)
    return np.sort(np.linalg.svd(symbol, compute_uv=False).ravel())[::-1]


def singular_value_speed(repeat: int) -> None:
    print("1. all singular values of a circular 3x3 layer")
    print(f"{'layer':<24}{'values':>9}{'ours s':>9}{'plain s':>9}{'speedup':>9}{'max diff':>10}")
    rng = np.random.default_rng(0)
    for c, n in [(64, 32), (128, 64)]:
        weight = rng.standard_normal((c, c, 3, 3))
        runs = repeat if c == 64 else 1
        plain_fft_svd(weight, 8), singular_values(weight, (c, 8, 8), **PERIODIC)  # warm-up
        ours, fast = best_of(runs, singular_values, weight, (c, n, n), **PERIODIC)
        theirs, slow = best_of(runs, plain_fft_svd, weight, n)
        diff = np.abs(fast - slow).max() / slow[0]
        print(f"{f'{c}->{c}, {n}x{n}':<24}{fast.size:>9,}{ours:>9.2f}{theirs:>9.2f}"
              f"{theirs / ours:>9.2f}{diff:>10.1e}")


def dense_agreement() -> None:
    print("\n2. agreement with a dense SVD of the explicit matrix (relative to sigma_max)")
    rng = np.random.default_rng(1)
    cases = [("16->16, 12x12", (16, 16, 3, 3), (16, 12, 12), {}),
             ("8->8, 16x16, stride 2", (8, 8, 3, 3), (8, 16, 16), dict(stride=2)),
             ("12->6, 12x12, dilation 2, groups 2", (6, 6, 4, 4), (12, 12, 12),
              dict(dilation=2, groups=2))]
    for label, wshape, xshape, kwargs in cases:
        weight = rng.standard_normal(wshape)
        fast = singular_values(weight, xshape, **PERIODIC, **kwargs)
        dense = singular_values(weight, xshape, method="dense", **PERIODIC, **kwargs)
        diff = np.abs(fast - dense).max() / dense[0]
        print(f"{label:<38}{fast.size:>7} values   max diff {diff:.1e}")


def spectral_norm_bounds(repeat: int, svds: bool) -> None:
    print("\n3. spectral norm of a zero-padded 3x3 layer (padding 1), certified interval")
    print(f"{'layer':<20}{'time s':>8}{'lower':>16}{'upper':>16}{'width':>10}{'plain width':>13}")
    rng = np.random.default_rng(2)
    for c, n in [(16, 16), (64, 32), (64, 56)]:
        weight = rng.standard_normal((c, c, 3, 3)) / np.sqrt(9 * c)
        seconds, r = best_of(repeat, spectral_norm, weight, (c, n, n), padding=1,
                             method="bounds")
        plain = (r.bounds["circulant"] - r.lower) / r.bounds["circulant"]
        print(f"{f'{c}->{c}, {n}x{n}':<20}{seconds:>8.2f}{r.lower:>16.10f}{r.upper:>16.10f}"
              f"{r.relative_width:>10.1e}{plain:>13.1e}")
        if svds and (c, n) == (64, 32):
            A = conv_matrix(weight, (c, n, n), padding=1)
            start = time.perf_counter()
            top = spla.svds(A, k=1, return_singular_vectors=False, rng=0)[0]
            took = time.perf_counter() - start
            inside = r.lower <= top * (1 + 1e-9) and top <= r.upper * (1 + 1e-9)
            print(f"{'   svds on its CSR':<20}{took:>8.2f}{top:>16.10f}{'':>16}{'':>10}"
                  f"{'(in interval)' if inside else '(OUTSIDE)':>13}")
    for c, n in [(128, 56)]:  # depthwise (groups = channels): each group proved on its own
        weight = rng.standard_normal((c, 1, 3, 3)) / 3
        seconds, r = best_of(repeat, spectral_norm, weight, (c, n, n), padding=1, groups=c,
                             method="bounds")
        plain = (r.bounds["circulant"] - r.lower) / r.bounds["circulant"]
        print(f"{f'{c} depthwise, {n}x{n}':<20}{seconds:>8.2f}{r.lower:>16.10f}{r.upper:>16.10f}"
              f"{r.relative_width:>10.1e}{plain:>13.1e}")


def kaiming(rng: np.random.Generator, c_out: int, c_in: int, k: int) -> np.ndarray:
    """A ``c_out x c_in x k x k`` weight with Kaiming (He) normal entries, as the benchmarks
    draw every layer's."""
    return rng.standard_normal((c_out, c_in, k, k)) * np.sqrt(2 / (c_in * k * k))


def resnet18(size: int) -> list[tuple]:
    """ResNet-18's 20 convolutions: (name, C_in, C_out, kernel, stride, padding, input size)."""
    layers = [("conv1", 3, 64, 7, 2, 3, size)]
    n = size // 4  # after conv1 and the max pooling
    layers += [(f"layer1.{b}.conv{c}", 64, 64, 3, 1, 1, n) for b in range(2) for c in (1, 2)]
    for stage, c in enumerate((128, 256, 512), start=2):
        layers += [(f"layer{stage}.0.conv1", c // 2, c, 3, 2, 1, n),
                   (f"layer{stage}.0.conv2", c, c, 3, 1, 1, n // 2),
                   (f"layer{stage}.0.downsample", c // 2, c, 1, 2, 0, n),
                   (f"layer{stage}.1.conv1", c, c, 3, 1, 1, n // 2),
                   (f"layer{stage}.1.conv2", c, c, 3, 1, 1, n // 2)]
        n //= 2
    return layers


def vgg11(size: int) -> list[tuple]:
    """VGG-11's 8 convolutions (3x3, padding 1), each after the pooling before it."""
    plan = [(3, 64, 1), (64, 128, 2), (128, 256, 4), (256, 256, 4), (256, 512, 8),
            (512, 512, 8), (512, 512, 16), (512, 512, 16)]
    return [(f"features.{i}", c_in, c_out, 3, 1, 1, size // shrink)
            for i, (c_in, c_out, shrink) in enumerate(plan)]


def networks(size: int, which: list[str], workers: int = 1, tol: float = DEFAULT_TOL,
             relative_width: float | None = None) -> None:
    how = ("one layer after the other, each on both cores" if workers == 1 else
           f"spectral_norms(..., workers={workers}): {workers} layers at once, one core each")
    print(f"\n4. spectral_norm on every convolution, {size}x{size} inputs, Kaiming weights "
          f"({how}; tol={tol:g}, relative_width={relative_width})")
    for name in which:
        layers = {"resnet18": resnet18, "vgg11": vgg11}[name](size)
        print(f"{name}\n{'layer':<24}{'shape':<26}{'method':>8}{'time s':>9}{'width':>10}"
              f"{'converged':>10}")
        given = []
        for i, (_label, c_in, c_out, k, stride, padding, n) in enumerate(layers):
            rng = np.random.default_rng(i)
            weight = kaiming(rng, c_out, c_in, k)
            given.append(dict(weight=weight, input_shape=(c_in, n, n), stride=stride,
                              padding=padding))
        # spectral_norms' own steps, called directly for each layer's time (in its worker);
        # with one worker the layers run in turn and print as each finishes
        start = time.perf_counter()
        checked, costs = checked_layers(given, "auto", relative_width is not None)
        options = [dict(method="auto", tol=tol, relative_width=relative_width)] * len(given)
        found = {}
        for i, (r, missed), took in norms_as_done(_norm_task, checked, costs, options, workers):
            found[i] = (r, took)
            if missed is not None:
                print(f"{layers[i][0]}: {missed}")
            if workers == 1:
                show(layers[i], r, took)
        results = [found[i][0] for i in range(len(given))]
        seconds = [found[i][1] for i in range(len(given))]
        if workers > 1:  # in the network's order
            for layer, r, took in zip(layers, results, seconds):
                show(layer, r, took)
        total = time.perf_counter() - start
        widest = max(r.relative_width for r in results)
        print(f"{'total (wall)':<24}{'':<26}{'':>8}{total:>9.2f}   slowest {max(seconds):.2f} s, "
              f"widest {widest:.1e}; sum of layer times {sum(seconds):.2f} s", flush=True)


def show(layer: tuple, r, took: float) -> None:
    label, c_in, c_out, k, stride, padding, n = layer
    shape = f"{c_in}->{c_out} {k}x{k}/{stride} on {n}x{n}"
    print(f"{label:<24}{shape:<26}{r.method:>8}{took:>9.2f}{r.relative_width:>10.1e}"
          f"{str(r.converged):>10}", flush=True)


def both_routes(gram, mu: float, row: int, repeat: int = 1) -> list[tuple[float, float]]:
    """``gram``'s Cholesky test at ``mu``, side by side: in LAPACK's band storage (``?pbtrf``)
    and by block rows of ``row`` positions; per route, the best time of ``repeat`` runs and
    the memory it holds (GiB)."""
    found = []
    for route in (None, row):
        gram.row = route
        took, proved = best_of(repeat, gram.below, mu)
        assert proved
        held = gram.band(mu).nbytes if route is None else block_bytes(
            gram.block_rows().reach, gram.block_rows().size, np.dtype(gram.dtype).itemsize)
        found.append((took, held / 2**30))
        gram.release()
    return found


def factorizations(weight: np.ndarray, geom, mu: float) -> tuple[float, float, float, float]:
    """The whole Gram's Cholesky test at ``mu``, side by side (:func:`both_routes`): in band
    storage (the route before block rows) and by block rows of the grid; each route's time
    and the memory it holds (GiB)."""
    kernel = weight.reshape(weight.shape[0], weight.shape[1], -1)
    gram = section_gram(kernel, geom.index_map(), int(np.prod(geom.input_size)))
    row = int(np.prod((geom.input_size if gram.inputs_side else geom.output_size)[1:]))
    (band, band_gib), (rows, rows_gib) = both_routes(gram, mu, row)
    return band, rows, band_gib, rows_gib


def exact_layers(size: int, compare: bool) -> None:
    print(f"\n5. method='exact' where the default width misses 1e-4, ResNet-18 at {size}x{size} "
          "(part 4's weights; each time one run)")
    print(f"{'layer':<24}{'shape':<26}{'default s':>10}{'width':>9}{'exact s':>9}{'width':>9}"
          + (f"{'band s':>8}{'rows s':>8}{'band GiB':>9}{'rows GiB':>9}" if compare else ""))
    default_total = exact_total = 0.0
    widths = []
    for i, (label, c_in, c_out, k, stride, padding, n) in enumerate(resnet18(size)):
        rng = np.random.default_rng(i)  # part 4's weights
        weight = kaiming(rng, c_out, c_in, k)
        options = dict(stride=stride, padding=padding)
        start = time.perf_counter()
        plain = spectral_norm(weight, (c_in, n, n), **options)
        took = time.perf_counter() - start
        default_total += took
        shape = f"{c_in}->{c_out} {k}x{k}/{stride} on {n}x{n}"
        line = f"{label:<24}{shape:<26}{took:>10.2f}{plain.relative_width:>9.1e}"
        if plain.relative_width <= 1e-4:
            exact_total += took
            widths.append(plain.relative_width)
            print(line, flush=True)
            continue
        start = time.perf_counter()
        r = spectral_norm(weight, (c_in, n, n), method="exact", **options)
        exact_took = time.perf_counter() - start
        exact_total += exact_took
        widths.append(r.relative_width)
        line += f"{exact_took:>9.2f}{r.relative_width:>9.1e}"
        if compare and n <= 14:  # the band of a 28x28 layer takes 12 GiB
            geom = ConvGeometry.from_weight(weight.shape, (c_in, n, n), **options)
            band, rows, band_gib, rows_gib = factorizations(weight, geom, r.lower**2 * (1 + 1e-6))
            line += f"{band:>8.2f}{rows:>8.2f}{band_gib:>9.2f}{rows_gib:>9.2f}"
        print(line, flush=True)
    print(f"{'total':<24}{'':<26}{default_total:>10.2f}{'':>9}{exact_total:>9.2f}"
          f"{max(widths):>9.1e}   (default everywhere; exact where the default misses 1e-4)",
          flush=True)


#: (channels, grid size) of the exact sections part 6 times: ResNet-18's and VGG-11's 3x3
#: layers of stride 1 at 224x224
SECTION_SHAPES = [(512, 7), (512, 14), (512, 28), (256, 14), (256, 28), (256, 56), (128, 28),
                  (128, 56), (64, 56), (64, 112)]


def section_tests(repeat: int) -> None:
    print("\n6. An exact section's Cholesky test, band storage against block rows of one "
          f"position (3x3, padding 1; one BLAS thread; best of {repeat}); block rows from "
          f"{SECTION_ROWS_FROM} channels")
    print(f"{'channels':>8}{'grid':>6}{'xi':>4}{'dtype':>12}{'band s':>9}{'rows s':>9}"
          f"{'rows/band':>11}")
    for channels, n in SECTION_SHAPES:
        rng = np.random.default_rng(channels + n)
        weight = rng.standard_normal((channels, channels, 3, 3)) * np.sqrt(2 / (channels * 9))
        geom = ConvGeometry.from_weight(weight.shape, (channels, n, n), padding=1)
        taps = geom.axes[0].tap_index()
        for xi in (0, 1):
            [kernel] = _section_kernels(weight, geom, embedding_grid(geom), 0, (xi,))
            gram = section_gram(kernel, taps, n)
            with threadpool_limits(1):
                mu = _top_eigenpair(gram)[0] * (1 + 1e-6)  # a proof, as most tests are
                times = [took for took, _ in both_routes(gram, mu, 1, repeat)]
            print(f"{channels:>8}{n:>6}{xi:>4}{str(gram.dtype):>12}{times[0]:>9.3f}"
                  f"{times[1]:>9.3f}{times[1] / times[0]:>11.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-svds", action="store_true", help="skip the slow svds reference")
    parser.add_argument("--networks-only", action="store_true", help="part 4 alone")
    parser.add_argument("--network", choices=["resnet18", "vgg11"], action="append",
                        help="the networks of part 4 (default: both)")
    parser.add_argument("--size", type=int, default=224, help="input size of part 4")
    parser.add_argument("--exact", action="store_true", help="part 5 alone (about 20 minutes)")
    parser.add_argument("--compare", action="store_true",
                        help="part 5: also each 14x14 and 7x7 layer's factorization in band "
                             "storage and by block rows, side by side (up to 6 GiB)")
    parser.add_argument("--workers", type=int, default=1,
                        help="part 4: layers at once, as sparseconv.spectral_norms(workers=)")
    parser.add_argument("--tol", type=float, default=DEFAULT_TOL,
                        help="part 4: spectral_norm's tol (default: its own)")
    parser.add_argument("--relative-width", type=float, default=None,
                        help="part 4: spectral_norm's relative_width (1e-4: the whole-Gram "
                             "certificate on the layers wider than the target)")
    parser.add_argument("--sections", action="store_true",
                        help="part 6 alone: an exact section's Cholesky test in band storage "
                             "and by block rows, side by side")
    args = parser.parse_args()
    print(describe(), flush=True)
    set_memory_limit(None)
    if args.sections:
        section_tests(args.repeat)
        return
    if args.exact:
        exact_layers(args.size, args.compare)
        return
    if not args.networks_only:
        singular_value_speed(args.repeat)
        dense_agreement()
        spectral_norm_bounds(args.repeat, not args.no_svds)
    networks(args.size, args.network or ["resnet18", "vgg11"], args.workers, args.tol,
             args.relative_width)


if __name__ == "__main__":
    main()
