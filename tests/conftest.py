"""pytest configuration. The oracles and random layers the tests share are in ``_oracles.py``."""
