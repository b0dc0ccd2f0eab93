"""Nodefile.toml -> Project: parse, validate (every error, with its location).

The parser is imported on first use: `nodefile.config.cache` (the parsed-project
cache) is needed by builds that never parse a Nodefile."""

__all__ = ["find_nodefile", "load_project"]


def __getattr__(name: str):
    if name == "find_nodefile":
        from .schema import find_nodefile
        return find_nodefile
    if name == "load_project":
        from .load import load_project
        return load_project
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
