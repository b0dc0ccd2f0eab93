"""Values of function nodes: a Python object saved to one file and loaded back.

Formats: pickle (the default), parquet (pandas DataFrames and Arrow tables, when
pyarrow or fastparquet is installed), npy (numpy arrays of plain dtypes) and
json. `format="auto"` picks by the value's type; a file's format is read back
from its first bytes, so a value file needs no extension. An .rds file is an R
value (saveRDS): Python cannot load it.
"""
from __future__ import annotations

import os

FORMATS = ("auto", "pickle", "parquet", "npy", "json")
EXTENSIONS = {".pkl": "pickle", ".pickle": "pickle", ".parquet": "parquet", ".npy": "npy", ".json": "json",
              ".rds": "rds"}


class ValueFormatError(Exception):
    """A value that cannot be saved or loaded in the format asked."""


def format_of_path(path: str, default: str = "auto") -> str:
    return EXTENSIONS.get(os.path.splitext(path)[1].lower(), default)


def _parquet_engine() -> bool:
    import importlib.util
    return any(importlib.util.find_spec(m) is not None for m in ("pyarrow", "fastparquet"))


def choose(value) -> str:
    """The format `auto` saves `value` in."""
    mod = type(value).__module__.split(".")[0]
    if mod == "pandas" and type(value).__name__ == "DataFrame" and _parquet_engine():
        return "parquet"
    if mod == "pyarrow" and type(value).__name__ == "Table":
        return "parquet"
    if mod == "numpy" and type(value).__name__ == "ndarray" and not value.dtype.hasobject:
        return "npy"
    return "pickle"


def save(value, path: str, format: str = "auto") -> str:
    """Write `value` to `path` (atomically: a temporary file renamed); return the format used."""
    fmt = choose(value) if format == "auto" else format
    tmp = f"{path}.tmp{os.getpid()}"
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        if fmt == "pickle":
            import pickle
            with open(tmp, "wb") as f:
                pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        elif fmt == "parquet":
            if type(value).__module__.split(".")[0] == "pyarrow":
                import pyarrow.parquet as pq
                pq.write_table(value, tmp)
            else:
                value.to_parquet(tmp)
        elif fmt == "npy":
            import numpy as np
            with open(tmp, "wb") as f:
                np.save(f, value, allow_pickle=False)
        elif fmt == "json":
            import json
            with open(tmp, "w") as f:
                json.dump(value, f)
        else:
            raise ValueFormatError(f"unknown value format '{fmt}' (one of {', '.join(FORMATS)})")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return fmt


def sniff(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head[:1] == b"\x80":
        return "pickle"
    if head.startswith(b"\x1f\x8b") or head.startswith((b"X\n", b"A\n", b"B\n", b"RDX")):
        return "rds"
    return "json"


def load(path: str):
    fmt = sniff(path)
    if fmt == "pickle":
        import pickle
        with open(path, "rb") as f:
            return pickle.load(f)
    if fmt == "parquet":
        import pandas as pd
        return pd.read_parquet(path)
    if fmt == "npy":
        import numpy as np
        return np.load(path, allow_pickle=False)
    if fmt == "rds":
        raise ValueFormatError(f"{path} is an R value (saveRDS): read it from R with nodefile::value()")
    import json
    with open(path) as f:
        return json.load(f)
