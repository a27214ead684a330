"""Pictures of convolution matrices: sparsity, spectra, receptive fields, animations.

matplotlib is imported inside the functions, so ``import sparseconv.plot`` stays light. Every
index drawn comes from the geometry core (see :mod:`sparseconv.plot._raster`); every function
takes ``ax=None`` (the current axes) and returns its artist, as matplotlib's own do.

Every drawing function also saves for print: ``fname=`` (format from the suffix or
``format=``: png, pdf, svg), ``dpi=`` (300 by default) and ``figsize=`` (3.5 in wide by
default: one journal column, where the style keeps every font at 8 pt or more).

Drawing
    spy, save_raster, spectrum, frequency_heatmap, receptive_field_heatmap, conv_animation
The numbers behind the pictures
    raster, Raster, bin_edges, density_counts, largest_entries, padded_index_map
"""

from __future__ import annotations

from ._animation import conv_animation
from ._charts import frequency_heatmap, receptive_field_heatmap, spectrum
from ._raster import (
    Raster,
    bin_edges,
    density_counts,
    largest_entries,
    padded_index_map,
    raster,
)
from ._spy import save_raster, spy

__all__ = [
    "Raster",
    "bin_edges",
    "conv_animation",
    "density_counts",
    "frequency_heatmap",
    "largest_entries",
    "padded_index_map",
    "raster",
    "receptive_field_heatmap",
    "save_raster",
    "spectrum",
    "spy",
]
