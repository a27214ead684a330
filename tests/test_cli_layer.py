"""The command line's layers read from a model file (``sparseconv/_cli_layer.py``: ``--model
FILE --layer NAME``), against the modules themselves: the exported matrix is autograd's
Jacobian of the named module, and what cannot be read is refused by name."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from ._oracles import jacobian_matrix, torch

if torch is None:  # pragma: no cover - CI sets SPARSECONV_REQUIRE_TORCH=1
    pytest.skip("PyTorch is missing", allow_module_level=True)

from torch import nn  # noqa: E402

from sparseconv._cli_layer import _model_format  # noqa: E402

F64 = torch.float64


class _SecondFirst(nn.Module):
    """Calls ``conv2`` before ``conv``, both on the same shape: a name that is a prefix of
    another's, the other called first."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1, bias=False, dtype=F64)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1, bias=False, dtype=F64)

    def forward(self, x):
        return self.conv(self.conv2(x))


class _TwoSizes(nn.Module):
    """One convolution called on two input sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1, dtype=F64)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x):
        return self.conv(x).flatten(1).sum(1) + self.conv(self.pool(x)).flatten(1).sum(1)


def _scripted(model, path) -> str:
    import warnings

    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(model).save(str(path))
    return str(path)


def test_model_layer_is_the_module_of_that_exact_name(tmp_path, capsys):
    """A mutant this catches: _cli_layer.py: ``record.name == args.layer`` ->
    ``record.name.startswith(args.layer)`` (``--layer conv`` took ``conv2``, called first).
    The exported matrix must be autograd's Jacobian of ``model.conv`` itself."""
    from sparseconv.cli import main

    torch.manual_seed(0)
    model = _SecondFirst().eval()
    path = _scripted(model, tmp_path / "m.pt")
    out = tmp_path / "A.npz"
    assert main(["export", "--model", path, "--layer", "conv", "--in-shape", "2,5,5", "-o",
                 str(out)]) == 0
    capsys.readouterr()
    a = sp.load_npz(out).toarray()
    np.testing.assert_allclose(a, jacobian_matrix(model.conv, (2, 5, 5)), rtol=0, atol=1e-12)


def test_model_layer_called_on_two_sizes_is_refused(tmp_path, capsys):
    """A mutant this catches: _cli_layer.py: ``if len(shapes) > 1:`` -> ``> 2`` (a layer the
    model calls on 2x6x6 and on 2x3x3 was read on the first size, silently)."""
    from sparseconv.cli import main

    path = _scripted(_TwoSizes().eval(), tmp_path / "m.pt")
    with pytest.raises(SystemExit) as info:
        main(["info", "--model", path, "--layer", "conv", "--in-shape", "2,6,6"])
    assert info.value.code == 2
    assert "called on several input shapes" in capsys.readouterr().err


def test_a_text_file_is_no_pickle(tmp_path, capsys):
    """A mutant this catches: _cli_layer.py: ``"plain pickle" if head[:1] == b"\\x80" else
    None`` -> ``"plain pickle"``: a text file (which pickletools parses as protocol-0
    opcodes) was called a Python pickle that torch.save did not write."""
    from sparseconv.cli import main

    path = tmp_path / "notes.pt"
    path.write_text("hello world\n")
    with pytest.raises(SystemExit):
        main(["info", "--model", str(path), "--layer", "0", "--in-shape", "1,5,5"])
    err = capsys.readouterr().err
    assert "is not a file written by torch.save or torch.jit.save" in err, err


def test_model_in_shape_of_zero_is_refused_by_name(tmp_path, capsys):
    """A mutant this catches: _cli_layer.py: ``min(args.in_shape) < 1`` -> ``< 0`` (an empty
    axis went to the model, whose trace failed in other words)."""
    from sparseconv.cli import main

    path = _scripted(nn.Sequential(nn.Conv2d(1, 1, 3, dtype=F64)).eval(), tmp_path / "m.pt")
    with pytest.raises(SystemExit):
        main(["info", "--model", path, "--layer", "0", "--in-shape", "1,0,5"])
    err = capsys.readouterr().err
    assert "--in-shape must be positive integers" in err, err


def test_model_weight_that_overflows_in_dtype_is_refused(tmp_path, capsys):
    """A mutant this catches: _cli_layer.py: ``np.isfinite(cast)`` -> ``np.isfinite(weight)``
    (a float64 weight of 1e300, finite, is inf in --dtype float32: the exported matrix held
    infinities)."""
    from sparseconv.cli import main

    conv = nn.Conv2d(1, 1, 3, bias=False, dtype=F64)
    with torch.no_grad():
        conv.weight.fill_(1e-3)
        conv.weight[0, 0, 1, 1] = 1e300
    path = _scripted(nn.Sequential(conv).eval(), tmp_path / "m.pt")
    assert 1e300 > float(np.finfo(np.float32).max)
    with pytest.raises(SystemExit):
        main(["export", "--model", path, "--layer", "0", "--in-shape", "1,5,5", "--dtype",
              "float32", "-o", str(tmp_path / "A.npz")])
    err = capsys.readouterr().err
    assert "weight must be finite in --dtype float32" in err, err


def test_a_submodule_saved_in_training_mode_is_said(tmp_path, capsys):
    """A mutant this catches: _cli_layer.py: ``any(m.training for m in model.modules())`` ->
    ``model.training`` (a model in eval mode but for one submodule left in training mode was
    switched to eval silently)."""
    from sparseconv.cli import main

    model = nn.Sequential(nn.Conv2d(1, 1, 3, dtype=F64), nn.BatchNorm2d(1, dtype=F64)).eval()
    model[1].train()
    path = _scripted(model, tmp_path / "m.pt")
    assert main(["info", "--model", path, "--layer", "0", "--in-shape", "1,5,5"]) == 0
    assert "saved in training mode" in capsys.readouterr().err


def test_model_format_of_files_torch_pickle_numpy_and_text_write(tmp_path):
    """A mutant this catches: _cli_layer.py: ``return "pickle" if any(n.endswith("data.pkl")
    ...) else None`` -> ``return "pickle"`` (a numpy .npz archive, a zip too, was taken for
    torch.save's); also ``except ValueError: return None`` -> ``return "plain pickle"`` (a
    ``\\x80`` file that is no pickle called a plain pickle)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()).eval()
    files = {}
    torch.save(model, tmp_path / "zip.pt")
    files["zip.pt"] = "pickle"
    for protocol in (0, 2, 5):
        torch.save(model, tmp_path / f"legacy{protocol}.pt",
                   _use_new_zipfile_serialization=False, pickle_protocol=protocol)
        files[f"legacy{protocol}.pt"] = "pickle"
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model), tmp_path / "script.pt")
        torch.jit.save(torch.jit.trace(model, torch.zeros(1, 1, 5, 5)), tmp_path / "trace.pt")
    files["script.pt"] = "torchscript"
    files["trace.pt"] = "torchscript"
    with open(tmp_path / "plain.pkl", "wb") as stream:
        pickle.dump(model, stream, protocol=4)
    files["plain.pkl"] = "plain pickle"
    np.savez(tmp_path / "weights.npz", w=np.ones(3))
    files["weights.npz"] = None
    (tmp_path / "notes.txt").write_text("0.5 1.5\nhello\n")
    files["notes.txt"] = None
    (tmp_path / "empty.pt").write_bytes(b"")
    files["empty.pt"] = None
    (tmp_path / "bad.pt").write_bytes(b"\x80\x02\xff\xff")  # PROTO 2, then no opcode
    files["bad.pt"] = None
    got = {name: _model_format(str(tmp_path / name)) for name in files}
    assert got == files


def test_plain_pickle_whose_first_object_is_long_is_still_a_plain_pickle(tmp_path):
    """A mutant this catches: _cli_layer.py: ``stream.read(2**16)`` -> ``stream.read(64)``
    (a pickle.dump file whose first object, a 1000-character string, runs past the bytes
    read was "not a file written by torch.save" instead of a plain pickle)."""
    path = tmp_path / "plain.pkl"
    with open(path, "wb") as stream:
        pickle.dump(("x" * 1000, {"a": 1}), stream, protocol=4)
    assert _model_format(str(path)) == "plain pickle"
