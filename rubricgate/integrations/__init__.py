"""Trainer-facing adapters: TRL reward functions, verl's compute_score, an HTTP client."""
