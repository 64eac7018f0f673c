"""Shipped resources (prompt templates, rubrics) and rubric files: finding, loading, validating."""
