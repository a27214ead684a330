"""Collection rules for the whole repository (the tests' own helpers are in tests/).

``sparseconv/torch.py`` is the only module that imports PyTorch; its doctests are collected
only where PyTorch is installed (CI installs it, and SPARSECONV_REQUIRE_TORCH=1 makes the
tests that need it fail rather than skip without it).
"""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("torch") else ["sparseconv/torch.py"]
