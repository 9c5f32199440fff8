"""Conceptual text prompts from ROIs (methods.md §4, He et al., official code "CoTexNet")."""
