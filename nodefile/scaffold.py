"""Commands that need no project: `node init` (a Nodefile and one example recipe) and
`node completion bash|zsh` (shell completion: commands, options, node names)."""
from __future__ import annotations

import os

from .errors import ConfigError, ExitCode

_NODEFILE = """\
# {name}: a nodefile project. `node build` runs what is stale, `node status` says why.
# Reference: docs/nodefile-reference.md in the nodefile repository.

[project]
name = "{name}"
default = ["squares"]

[params]
n = 10                          # `node build --set n=20` for one run

[nodes.squares]
outputs = {{ csv = "out/squares.csv" }}
params = ["n"]
{kind} = "{script}"
"""

_PY = '''\
"""squares: the first `n` squares as a CSV file. nodefile.job() gives this
recipe its outputs and params (run it by hand with `node job squares`)."""
import os

import nodefile

job = nodefile.job()
out = job.outputs.csv
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w") as f:
    f.write("x,square\\n")
    for x in range(job.params.n):
        f.write(f"{x},{x * x}\\n")
'''

_R = """\
# squares: the first `n` squares as a CSV file. nodefile defines `node`:
# node$params$n, node$outputs$csv (run it by hand with `node job squares`).
x <- seq_len(node$params$n) - 1
out <- node$outputs$csv
dir.create(dirname(out), recursive = TRUE, showWarnings = FALSE)
write.csv(data.frame(x = x, square = x^2), out, row.names = FALSE)
"""


def cmd_init(args, rep) -> int:
    """Write Nodefile.toml and tasks/squares.py (or .R) here; never overwrite a file."""
    lang = args.lang or "python"
    script = "tasks/squares.py" if lang == "python" else "tasks/squares.R"
    name = os.path.basename(os.getcwd()) or "project"
    files = {"Nodefile.toml": _NODEFILE.format(name=name.replace('"', ""), kind=lang, script=script),
             script: _PY if lang == "python" else _R}
    there = [f for f in files if os.path.lexists(f)]
    if there:
        raise ConfigError(f"init: {', '.join(there)} already exist{'s' if len(there) == 1 else ''}; "
                          "nothing written (init never overwrites)")
    for path, text in files.items():
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "x") as f:
            f.write(text)
    rep.print(f"wrote Nodefile.toml and {script}; now run: node build")
    return ExitCode.OK


# -- shell completion ----------------------------------------------------------------------
def _spec() -> tuple[list[tuple[str, str]], dict[str, str], set[str]]:
    """(command, help) pairs, each command's options, and the commands taking TARGETs."""
    from .cli import COMMANDS, make_parser  # the parser is the one list of options
    parser = make_parser()
    cmds, opts, with_targets = [], {}, set()
    for name in COMMANDS:
        sp = parser.commands.get(name)
        if sp is None:
            continue
        cmds.append((name, (sp.description or "").replace("'", "'\\''").replace(":", "\\:")))
        flags = []
        for action in sp._actions:
            flags += [o for o in action.option_strings]
            if action.dest == "targets":
                with_targets.add(name)
        opts[name] = " ".join(flags)
    return cmds, opts, with_targets


def names(rep) -> int:
    """Every node name of the project here, one a line (for completion: silent on errors)."""
    from .config import load_project
    try:
        project = load_project(None, {}, check_sources=False)
    except Exception:
        return ExitCode.OK
    for n in project.nodes:
        rep.print(n)
    return ExitCode.OK


def cmd_completion(args, rep) -> int:
    if args.shell == "names":
        return names(rep)
    cmds, opts, with_targets = _spec()
    words = " ".join(c for c, _ in cmds)
    cases = "\n".join(f"        {c}) opts='{o}' ;;" for c, o in opts.items())
    targets = "|".join(sorted(with_targets))
    if args.shell == "bash":
        rep.print(_BASH.replace("@WORDS@", words).replace("@CASES@", cases).replace("@TARGETS@", targets))
    else:
        described = "\n".join(f"    '{c}:{h}'" for c, h in cmds)
        rep.print(_ZSH.replace("@DESCRIBED@", described).replace("@CASES@", cases).replace("@TARGETS@", targets))
    return ExitCode.OK


_BASH = r"""# nodefile completion for bash: add to ~/.bashrc
#   eval "$(node completion bash)"
_nodefile_complete() {
    local cur=${COMP_WORDS[COMP_CWORD]} cmd= i opts=
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            -C|--directory|-f|--file) ((i++)) ;;
            -*) ;;
            *) cmd=${COMP_WORDS[i]}; break ;;
        esac
    done
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "@WORDS@ -C --directory -f --file --version -h --help" -- "$cur"))
        return
    fi
    case $cmd in
@CASES@
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [[ $cmd == help ]]; then
        COMPREPLY=($(compgen -W "@WORDS@" -- "$cur"))
    elif [[ $cmd == @(@TARGETS@) ]]; then
        COMPREPLY=($(compgen -W "$(command nodefile completion names 2>/dev/null)" -- "$cur"))
    fi
}
complete -o default -o bashdefault -F _nodefile_complete node nodefile"""

_ZSH = r"""#compdef node nodefile
# nodefile completion for zsh: save as _node in a folder of $fpath
#   node completion zsh > "${fpath[1]}/_node"
# or, after compinit, in ~/.zshrc: eval "$(node completion zsh)"
_nodefile() {
  local -a cmds targets
  cmds=(
@DESCRIBED@
  )
  local cmd= i opts=
  for ((i = 2; i < CURRENT; i++)); do
    case ${words[i]} in
      -C|--directory|-f|--file) ((i++)) ;;
      -*) ;;
      *) cmd=${words[i]}; break ;;
    esac
  done
  if [[ -z $cmd ]]; then
    _describe -t commands 'nodefile command' cmds
    _files
    return
  fi
  case $cmd in
@CASES@
  esac
  if [[ $PREFIX == -* ]]; then
    compadd -- ${=opts}
  elif [[ $cmd == help ]]; then
    _describe -t commands 'nodefile command' cmds
  elif [[ $cmd == (@TARGETS@) ]]; then
    targets=(${(f)"$(command nodefile completion names 2>/dev/null)"})
    compadd -- $targets
    _files
  else
    _files
  fi
}
if [[ ${zsh_eval_context[-1]} == loadautofunc ]]; then
  _nodefile "$@"
else
  compdef _nodefile node nodefile
fi"""
