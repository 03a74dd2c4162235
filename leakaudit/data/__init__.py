"""Datasets: the ``Sample`` value, the synthetic generator and readers for user formats."""

from leakaudit.data.samples import DataProblem, Dataset, Sample

__all__ = ["DataProblem", "Dataset", "Sample"]
