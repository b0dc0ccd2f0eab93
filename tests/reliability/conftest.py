"""The reliability suite: hostile stores, damaged state, odd paths, kill -9,
Ctrl-C, concurrent builds, racy rewrites and a fuzzer over the loader.

Each trial loop asks the `trials(short, long)` fixture (tests/conftest.py) for
its count: short in CI, the full count with `pytest tests/reliability --long`.
Test files here are named test_rel_*.py (module names must not clash with
tests/cli and tests/unit, which are not packages).

The CLI helpers of tests/cli/conftest.py are reused: `from cli_helpers import run, write`.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_CLI_CONFTEST = Path(__file__).resolve().parents[1] / "cli" / "conftest.py"
if "cli_helpers" not in sys.modules:
    spec = importlib.util.spec_from_file_location("cli_helpers", _CLI_CONFTEST)
    module = importlib.util.module_from_spec(spec)
    sys.modules["cli_helpers"] = module
    spec.loader.exec_module(module)
