"""Read-only arrays stay read-only through pickle and copy (``sparseconv._read_only``).

A review wrote through the ``.weight`` of a ``ConvOperator`` back from ``pickle.loads`` (or
``copy.deepcopy``): numpy pickles arrays without their flags, the write was accepted, and the
operator's forward followed it while its adjoint did not (the dot test 159.4 against 134.8).
Oracles: the original object's own arrays and products, the dense matrix, and the dot test.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import scipy.sparse as sp

import sparseconv as sc


def _arrays(value, seen=None):
    """Every numpy array reachable from ``value`` through attributes, containers and sparse
    arrays (an independent walk: ``vars`` of every object, not the mixin's paths)."""
    seen = set() if seen is None else seen
    if id(value) in seen or isinstance(value, (str, bytes, int, float, complex, type)):
        return
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        yield value
        return
    if isinstance(value, dict):
        for item in value.values():
            yield from _arrays(item, seen)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _arrays(item, seen)
    elif sp.issparse(value) or hasattr(value, "__dict__"):
        for item in vars(value).values():
            yield from _arrays(item, seen)


def _read_only_count(obj) -> int:
    return sum(not a.flags.writeable for a in _arrays(obj))


def _copies(obj):
    yield "pickle", pickle.loads(pickle.dumps(obj))
    yield "deepcopy", copy.deepcopy(obj)


def _objects():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3))
    conv = sc.ConvOperator(w, (3, 8, 8), padding=1)
    transposed = sc.ConvTransposeOperator(rng.standard_normal((3, 4, 3, 3)), (3, 5, 5),
                                          stride=2, padding=1, output_padding=1)
    complex_layer = sc.ConvOperator(w + 1j * rng.standard_normal(w.shape), (3, 6, 6),
                                    padding=1, dtype=np.complex128)
    yield "ConvOperator", conv
    yield "ConvTransposeOperator", transposed
    yield "a complex ConvOperator's adjoint", complex_layer.H
    yield "a ConvTransposeOperator's transpose", transposed.T
    yield "a channels-last ConvOperator", sc.ConvOperator(w, (3, 8, 8), padding=1,
                                                          layout="channels_last")
    yield "AffineMap", sc.affine_conv(w, rng.standard_normal(4), (3, 8, 8), padding=1)
    yield "CircularSVD", sc.circular_svd(w, (3, 8, 8))


@pytest.mark.parametrize("name, obj", list(_objects()), ids=[n for n, _ in _objects()])
def test_pickled_and_copied_objects_keep_their_arrays_read_only(name, obj):
    """Every array read-only in the original is read-only in the copy (counted by an
    independent walk), and the copy computes what the original does."""
    frozen = _read_only_count(obj)
    assert frozen > 0, name  # (the test would pass on any object holding none)
    x = np.random.default_rng(1).standard_normal(obj.shape[1])
    y = np.random.default_rng(2).standard_normal(obj.shape[0])
    for how, twin in _copies(obj):
        assert _read_only_count(twin) == frozen, (name, how)
        if isinstance(obj, sc.AffineMap):
            np.testing.assert_array_equal(twin(x), obj(x))
            for array in (twin.bias, twin.matrix.data, twin.matrix.indices):
                with pytest.raises(ValueError, match="read-only"):
                    array[0] = 7
            continue
        np.testing.assert_array_equal(twin @ x, obj @ x)
        np.testing.assert_array_equal(twin.H @ y, obj.H @ y)
        if isinstance(obj, sc.CircularSVD):
            with pytest.raises(ValueError, match="read-only"):
                twin.S[0] = 7
        elif hasattr(obj, "weight"):
            with pytest.raises(ValueError, match="read-only"):
                twin.weight[0] = 7


def test_the_reviews_write_through_an_unpickled_weight_is_refused():
    """The review's case: ``B.weight[0] *= 2`` on an unpickled operator was accepted, and
    ``B.H`` was no longer ``B``'s adjoint. Refused now, and the copy passes the dot test
    against its own dense matrix."""
    rng = np.random.default_rng(0)
    for make in (lambda: sc.ConvOperator(rng.standard_normal((4, 3, 3, 3)), (3, 8, 8),
                                         padding=1),
                 lambda: sc.ConvTransposeOperator(rng.standard_normal((3, 4, 3, 3)), (3, 8, 8),
                                                  padding=1)):
        for _, B in _copies(make()):
            with pytest.raises(ValueError, match="read-only"):
                B.weight[0] *= 2.0
            M = B.tosparse().toarray()
            x, y = rng.standard_normal(B.shape[1]), rng.standard_normal(B.shape[0])
            np.testing.assert_allclose(B @ x, M @ x, rtol=1e-13, atol=1e-13)
            np.testing.assert_allclose(B.H @ y, M.T @ y, rtol=1e-13, atol=1e-13)


def test_a_dask_operator_keeps_its_weight_read_only():
    pytest.importorskip("dask")
    import sparseconv.dask as scd

    w = np.random.default_rng(3).standard_normal((4, 3, 3, 3))
    A = scd.ConvOperator(w, (3, 8, 8), padding=1, chunks=4)
    frozen = _read_only_count(A)
    assert frozen > 0
    x = np.random.default_rng(4).standard_normal(A.shape[1])
    for how, twin in _copies(A):
        assert _read_only_count(twin) == frozen, how
        np.testing.assert_array_equal(twin @ x, A @ x)


def test_a_network_operators_offset_is_read_only_in_it_and_its_copies():
    """A new user's trial: ``network_operator``'s public ``offset`` took writes (an
    ``AffineMap``'s bias refuses them), in the original and in a deep copy, and in a pickled
    one: its graph holds closures, which plain pickle refused ("Can't pickle local object"),
    so it pickles through cloudpickle; its adjoint too. Mutant: ``__reduce__`` removed."""
    torch = pytest.importorskip("torch")
    import sparseconv.torch as sct

    model = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3, padding=1),
                                torch.nn.AvgPool1d(2)).double().eval()
    net = sct.network_operator(model, (1, 8))
    x = np.random.default_rng(5).standard_normal(8)
    y = np.random.default_rng(6).standard_normal(net.operator.shape[0])
    for candidate in (net, copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        with pytest.raises(ValueError, match="read-only"):
            candidate.offset[0] = 7
        np.testing.assert_array_equal(candidate(x), net(x))
        np.testing.assert_array_equal(candidate.operator.H @ y, net.operator.H @ y)


def test_a_network_operator_without_cloudpickle_says_what_to_install(monkeypatch):
    """Without cloudpickle, pickling a ``NetworkOperator`` raises a TypeError that says why
    and what to install, not pickle's "Can't pickle local object"."""
    torch = pytest.importorskip("torch")
    import sys

    import sparseconv.torch as sct

    net = sct.network_operator(torch.nn.Conv1d(1, 1, 3).double().eval(), (1, 8))
    monkeypatch.setitem(sys.modules, "cloudpickle", None)  # (import raises ImportError)
    with pytest.raises(TypeError, match="pickles through cloudpickle"):
        pickle.dumps(net)
