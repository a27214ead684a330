"""What a sparse Cholesky ordering could save on the whole Gram's certificate: counts, no times.

Issue 12 asks whether a sparse factorization on a nested-dissection ordering (CHOLMOD via
scikit-sparse, say) earns its place for the certificate that treats every axis exactly
(``spectral_norm(..., method="exact")``). On ResNet-18's 3x3 layers of stride 1 the Gram
matrix couples each pixel (a ``C x C`` block) to the pixels within 2 of it on each axis. This
script plays the elimination game on that graph of ``n x n`` pixels for two orderings --
row-major (what a band or skyline factorization does) and recursive nested dissection with
separators two pixels wide (the best over a few leaf sizes) -- and counts the multiply-adds
of the factorization that keeps every zero the ordering keeps (per eliminated pixel with
``m`` neighbours later in the order: ``(1/6 + m/2 + m^2/2) C^3``). Beside them: what the
library runs, by block rows (:func:`sparseconv._block_cholesky.block_flops`), and the band's
count ``rows * bandwidth**2``.

Run: ``python benchmarks/bench_orderings.py``
"""

from __future__ import annotations

from sparseconv._block_cholesky import block_flops

REACH = 2  # a 3x3 kernel of stride 1: the Gram couples pixels within 2 on each axis


def nested_dissection(n: int, leaf: int) -> list[tuple[int, int]]:
    """Pixels of an ``n x n`` grid, each half before the separator between them."""
    order: list[tuple[int, int]] = []

    def split(r0: int, r1: int, c0: int, c1: int) -> None:
        h, w = r1 - r0, c1 - c0
        if h <= 0 or w <= 0:
            return
        if h * w <= leaf or max(h, w) <= 2 * REACH + 1:
            order.extend((i, j) for i in range(r0, r1) for j in range(c0, c1))
            return
        if w >= h:  # a vertical separator REACH columns wide
            m = c0 + (w - REACH) // 2
            split(r0, r1, c0, m)
            split(r0, r1, m + REACH, c1)
            order.extend((i, j) for i in range(r0, r1) for j in range(m, m + REACH))
        else:
            m = r0 + (h - REACH) // 2
            split(r0, m, c0, c1)
            split(m + REACH, r1, c0, c1)
            order.extend((i, j) for i in range(m, m + REACH) for j in range(c0, c1))

    split(0, n, 0, n)
    return order


def count(order: list[tuple[int, int]]) -> float:
    """Multiply-adds, in units of ``C^3``, of the Cholesky factorization in ``order``."""
    where = {pixel: k for k, pixel in enumerate(order)}
    later: list[set[int]] = [set() for _ in order]
    for (i, j), k in where.items():
        for di in range(-REACH, REACH + 1):
            for dj in range(-REACH, REACH + 1):
                other = where.get((i + di, j + dj))
                if other is not None and other > k:
                    later[k].add(other)
    total = 0.0
    for k in range(len(order)):
        m = len(later[k])
        total += 1 / 6 + m / 2 + m * m / 2
        for v in later[k]:  # the fill: the neighbours become a clique
            later[v] |= {u for u in later[k] if u > v}
    return total


def main() -> None:
    print("multiply-adds of the whole Gram's Cholesky factorization, ResNet-18's 3x3 layers "
          "of stride 1 at 224x224 (counts, not times)")
    print(f"{'grid':<8}{'C':>5}{'row-major':>12}{'nested diss.':>14}{'block rows':>12}"
          f"{'band count':>12}{'rows / ND':>11}")
    for n, c in [(56, 64), (28, 128), (14, 256), (7, 512)]:
        natural = count([(i, j) for i in range(n) for j in range(n)]) * c**3
        nd = min(count(nested_dissection(n, leaf)) for leaf in (9, 16, 25, 36, 49)) * c**3
        rows = block_flops(n, n * c, REACH)
        band = n * n * c * ((REACH * n + REACH + 1) * c) ** 2
        print(f"{f'{n}x{n}':<8}{c:>5}{natural:>12.2e}{nd:>14.2e}{rows:>12.2e}{band:>12.2e}"
              f"{rows / nd:>11.2f}", flush=True)


if __name__ == "__main__":
    main()
