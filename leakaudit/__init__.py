"""leakaudit: audit image classifiers for data leakage."""

__version__ = "0.1.0"
