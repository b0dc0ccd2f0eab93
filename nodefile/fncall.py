"""Function recipes run as processes: `call = "pkg.mod:fn"` with `returns`, and
`r_call = "R/functions.R::fn"`.

The function is called with keyword arguments: an input named after a node
receives that node's value (its `returns` output loaded; a node of files: its
path, or paths), any other named input its path(s), a param its value. Only the
arguments the function has are passed (all of them when it takes `...` /
`**kwargs`). The return value is saved to the `returns` output: pickle, parquet
or npy in Python (values.py), saveRDS in R.
"""
from __future__ import annotations

import json
import os



def returns_entry(node):
    """The output entry holding a node's value (the one its recipe's `returns` names);
    None for a node of files."""
    want = next((r.returns for r in node.recipes if r.returns), None)
    return None if want is None else next((e for e in node.outputs if e.name == want), None)


def plan(project, node) -> dict:
    """name -> ["value", path] | ["path", path or [paths]] | ["param", value] (absolute paths)."""
    out: dict = {}
    for e in node.inputs:
        name = e.name or (e.source if e.kind == "node" else None)  # inputs = ["data"]: the node's name
        if not name:
            continue
        src = project.nodes.get(e.source) if e.kind == "node" else None
        entry = returns_entry(src) if src is not None else None
        if entry is not None:
            out[name] = ["value", os.path.join(project.root, entry.paths[0])]
        else:
            paths = [os.path.join(project.root, p) for p in e.paths]
            out[name] = ["path", paths[0] if len(paths) == 1 and not e.many else paths]
    for k, v in node.params:
        out[k] = ["param", v]
    return out


def returns_path(project, node, recipe) -> str:
    entry = next(e for e in node.outputs if e.name == recipe.returns)
    return os.path.join(project.root, entry.paths[0])


def python_env(project, node, recipe) -> dict:
    """What `python -m nodefile._call` needs to call a function for its value."""
    if not recipe.returns:
        return {}
    return {"NODEFILE_RETURNS": returns_path(project, node, recipe),
            "NODEFILE_ARGS": json.dumps(plan(project, node), default=str)}


def call_python(func) -> None:
    """In the recipe's process: call `func` as python_env() says and save its value."""
    import inspect
    from . import values
    args = {}
    for name, (kind, v) in json.loads(os.environ["NODEFILE_ARGS"]).items():
        args[name] = values.load(v) if kind == "value" else v
    params = inspect.signature(func).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        args = {k: v for k, v in args.items() if k in params}
    result = func(**args)
    path = os.environ["NODEFILE_RETURNS"]
    values.save(result, path, values.format_of_path(path))


def r_script(project, node, recipe, jobdir: str) -> str:
    """The R code an r_call runs (through the R bootstrap, so errors name file and line)."""
    from .recipes.rlang import r_string, r_value
    rel, _, fn = recipe.target.partition("::")
    items = []
    for name, (kind, v) in plan(project, node).items():
        items.append(f"{r_string(name)} = " + (f"readRDS({r_string(v)})" if kind == "value" else r_value(v)))
    out = returns_path(project, node, recipe)
    code = f"""# written by nodefile for node {node.name}: {recipe.target}
.nodefile_env <- new.env(parent = globalenv())
sys.source({r_string(os.path.join(project.root, rel))}, envir = .nodefile_env, keep.source = TRUE)
.nodefile_fn <- get({r_string(fn)}, envir = .nodefile_env, mode = "function")
.nodefile_args <- list({", ".join(items)})
if (!("..." %in% names(formals(.nodefile_fn))))
  .nodefile_args <- .nodefile_args[intersect(names(.nodefile_args), names(formals(.nodefile_fn)))]
.nodefile_value <- withCallingHandlers(do.call(.nodefile_fn, .nodefile_args), error = function(e) {{
  for (cl in rev(sys.calls())) {{  # the innermost call of the functions' file: its line
    sr <- attr(cl, "srcref")
    f <- if (is.null(sr)) NULL else attr(sr, "srcfile")
    if (!is.null(f) && identical(f$filename, {r_string(os.path.join(project.root, rel))})) {{
      cat("  at ", {r_string(rel)}, ":", sr[1L], "\n", sep = "", file = stderr())
      options(error = NULL)  # the bootstrap would name this generated file instead
      break
    }}
  }}
}})
dir.create({r_string(os.path.dirname(out))}, recursive = TRUE, showWarnings = FALSE)
saveRDS(.nodefile_value, {r_string(out + ".tmp")})
invisible(file.rename({r_string(out + ".tmp")}, {r_string(out)}))
"""
    path = os.path.join(jobdir, node.name.replace("/", "_") + ".call.R")
    os.makedirs(jobdir, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(code)
    os.replace(path + ".tmp", path)
    return path
