"""See the module docstrings; public names are re-exported from ``rewardlab``."""
