"""`call` recipes: python -m nodefile._call package.module:function."""
import importlib
import sys


def main() -> int:
    target = sys.argv[1]
    sys.argv = [target] + sys.argv[2:]
    mod, _, fn = target.partition(":")
    func = importlib.import_module(mod)
    for part in fn.split("."):
        func = getattr(func, part)
    import os
    if os.environ.get("NODEFILE_RETURNS"):  # returns = ...: called with its arguments, its value saved
        from .fncall import call_python
        call_python(func)
        return 0
    from .jobctx import job
    result = func(job())
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
