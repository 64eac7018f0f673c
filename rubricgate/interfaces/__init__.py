"""Edges: the composition root, the CLI and HTTP. The only code that reads the environment."""
