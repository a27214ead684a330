"""sparseconv.torch: PyTorch modules and networks as sparseconv's matrices, operators and bounds.

The adapter reads a module's weights (as float64 numpy copies) and its hyper-parameters, and
hands them to the array API: a module becomes a *layer* — its input and output shapes, a
builder of its ``scipy.sparse`` matrix, a ``LinearOperator`` (matrix-free where sparseconv has
one: convolutions, transposed convolutions, ``nn.Linear``), its affine offset (the bias
broadcast over the output) and, where the module is a convolution in disguise, the weight and
arguments that sparseconv's certified spectra take. Every public function below starts from
that one description (``_torch_layers._layer``), so a module is translated in one place.

Supported modules (``input_shape`` is ``(C, *spatial)`` without the batch; for ``nn.Linear``
the last axis is ``in_features``)::

    nn.Conv1d/2d/3d            every padding form and padding_mode, groups, dilation, bias
    nn.ConvTranspose1d/2d/3d   output_padding, or output_size= as passed at call time
    nn.AvgPool1d/2d/3d         ceil_mode, count_include_pad, divisor_override
    nn.AdaptiveAvgPool1d/2d/3d any output size (overlapping windows of different sizes)
    nn.Upsample                nearest, nearest-exact, area, (bi/tri)linear, align_corners
    nn.PixelShuffle, nn.PixelUnshuffle
    nn.Unfold, nn.Fold         im2col in torch's (C * kernel taps, L) order, and its adjoint
    nn.ChannelShuffle          a permutation of the channels
    nn.BatchNorm1d/2d/3d       eval mode, running statistics: a per-channel affine map
    nn.Linear, nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout* (eval mode), an empty
                               nn.Sequential (the identity)
    nn.ZeroPad/ConstantPad/ReflectionPad/ReplicationPad/CircularPad 1d/2d/3d (negative: crop)

Anything else (``nn.ReLU``, ``nn.MaxPool2d``, attention, ...) is not linear and is refused with
a ``TypeError`` naming it; a ``BatchNorm`` or ``Dropout`` in training mode is refused with a
``ValueError`` (call ``model.eval()``). Networks are walked by :func:`trace` (forward hooks on
every leaf module; a TorchScript model, scripted or traced and loaded with ``torch.jit.load``,
through its inlined graph, with the same records); :func:`network_operator` traces a linear
network's graph with torch.fx (residual sums, concatenations, reshapes and functional calls
included) into one operator with its adjoint, and :func:`lipschitz_report` bounds every
linear layer's spectral norm, with certificates.

For training, :func:`circular_singular_values`, :func:`circular_spectral_norm` and
:func:`spectral_norm_upper` are torch functions of a weight tensor, with autograd
(:mod:`sparseconv._torch_spectra`), and :func:`lipschitz_bounds` gives every weighted layer's
bound of a whole network at once, traced once and recomputed from the current weights on each
call (:mod:`sparseconv._torch_penalty`).

This module is the public facade; the implementation lives in private modules, one concept
each: ``_torch_kinds`` (which modules are layers, and which are refused), ``_torch_layers``,
``_torch_layer_base`` and ``_torch_fixed_layers`` (a module translated into a layer),
``_torch_module`` (one module's matrix, operator and
affine map), ``_torch_module_spectra`` (its spectra), ``_torch_fold`` (BatchNorm and padding
folding),
``_torch_trace`` (:func:`trace`), ``_torch_script``, ``_torch_script_rebuild`` and
``_torch_script_chain`` (TorchScript models), ``_torch_calls`` (the calls a forward makes),
``_torch_graph`` and ``_torch_graph_ops`` (a network's torch.fx graph as linear ops),
``_torch_graph_bound``, ``_torch_graph_rules`` and ``_torch_graph_sizes`` (a bound over that
graph),
``_torch_activations`` (activations' constants), ``_torch_network``
(:func:`network_operator`), ``_torch_report`` and ``_torch_report_rows``
(:func:`lipschitz_report`; its result in
``_report_table``, which needs no torch), ``_torch_chain`` (its network bound),
``_torch_spectra`` and ``_torch_penalty`` (:func:`lipschitz_bounds`). They, and this module,
are the only ones that import torch; ``import sparseconv`` does not.
"""

from __future__ import annotations

try:
    import torch  # noqa: F401 - fail here, with the install hint, before the private modules
except ImportError as exc:  # pragma: no cover - CI installs torch
    raise ImportError(
        "sparseconv.torch needs PyTorch: pip install torch (or, in a checkout of sparseconv, "
        'pip install -e ".[torch]")'
    ) from exc

from sparseconv._report_table import LipschitzReport
from sparseconv._torch_fold import FoldedBatchNorm, fold_batchnorm, fold_padding
from sparseconv._torch_module import affine, matrix, operator
from sparseconv._torch_module_spectra import singular_values, spectral_norm, symbol
from sparseconv._torch_network import NetworkOperator, network_operator
from sparseconv._torch_penalty import LipschitzBounds, lipschitz_bounds
from sparseconv._torch_report import lipschitz_report
from sparseconv._torch_spectra import (
    circular_singular_values,
    circular_spectral_norm,
    spectral_norm_upper,
)
from sparseconv._torch_trace import TraceRecord, trace

__all__ = [
    "FoldedBatchNorm",
    "LipschitzBounds",
    "LipschitzReport",
    "NetworkOperator",
    "TraceRecord",
    "affine",
    "circular_singular_values",
    "circular_spectral_norm",
    "fold_batchnorm",
    "fold_padding",
    "lipschitz_bounds",
    "lipschitz_report",
    "matrix",
    "network_operator",
    "operator",
    "singular_values",
    "spectral_norm",
    "spectral_norm_upper",
    "symbol",
    "trace",
]

# the public classes are documented, printed and pickled under the public module's name
for _cls in (FoldedBatchNorm, LipschitzBounds, LipschitzReport, NetworkOperator, TraceRecord):
    _cls.__module__ = __name__
del _cls
