"""Pydantic data models: no I/O, no imports from other rubricgate layers."""
