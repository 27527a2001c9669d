"""Gardien: carries EHR configuration changes from qualification to production."""

__version__ = "0.1.0"
