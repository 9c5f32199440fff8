"""Baselines: methods every paper method is compared with, through the same code path."""
