"""The package version: one place, below every layer, so any module can record it."""

__version__ = "0.1.0"
