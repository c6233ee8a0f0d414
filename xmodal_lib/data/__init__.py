"""Datasets: the embedded synthetic benchmark, real dataset readers and preprocessing.

Every reader returns an :class:`~xmodal_lib.data.index.SBIRIndex`; models never read files.
"""
from .index import Record, SBIRIndex, DataError

__all__ = ["Record", "SBIRIndex", "DataError"]
