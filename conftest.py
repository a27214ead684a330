"""Collection rules for the whole repository (the tests' own helpers are in tests/).

``sparseconv/torch.py`` is the only module that imports PyTorch; its doctests are collected
only where PyTorch is installed (CI installs it, and SPARSECONV_REQUIRE_TORCH=1 makes the
tests that need it fail rather than skip without it). Likewise ``sparseconv/dask.py`` and
Dask (with zarr, which its doctests write to): the ``sparseconv[dask]`` extra, which CI
installs.
"""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("torch") else ["sparseconv/torch.py"]
if not (importlib.util.find_spec("dask") and importlib.util.find_spec("zarr")):
    collect_ignore.append("sparseconv/dask.py")
