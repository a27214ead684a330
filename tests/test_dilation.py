"""A dilated layer is the layer of the zero-inserted kernel, against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from sparseconv import (
    conv_matrix,
    dilate_kernel,
)

from ._oracles import assert_close, random_layer, requires_torch, torch_conv


@requires_torch
@pytest.mark.parametrize("seed", range(30))
def test_dilation_is_a_zero_inserted_kernel(seed):
    rng = np.random.default_rng(900 + seed)
    layer = random_layer(rng, ndim=1 + seed % 3, max_size=8 - seed % 3)
    kw = dict(layer.kwargs)
    dilation = kw.pop("dilation")
    wide = dilate_kernel(layer.weight, dilation)
    assert_close(conv_matrix(wide, layer.input_shape, **kw),
                 conv_matrix(layer.weight, layer.input_shape, **layer.kwargs), layer)
    x = rng.standard_normal((1, *layer.input_shape))
    assert_close(torch_conv(x, wide, **kw), torch_conv(x, layer.weight, **layer.kwargs), layer)
