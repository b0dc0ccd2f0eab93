"""Nodefile.toml -> Project: parse, validate (every error, with its location)."""
from .load import find_nodefile, load_project

__all__ = ["find_nodefile", "load_project"]
