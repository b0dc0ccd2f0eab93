"""Frozen value types shared by every layer: the project as data, verdicts, outcomes."""
from __future__ import annotations

import enum
from collections import namedtuple

from .records import cached, field, record

FORMAT_VERSION = 1

RUN_KINDS = ("python", "r", "shell", "call", "r_call")
TRANSFER_KINDS = ("fetch", "load")
RECIPE_KINDS = RUN_KINDS + ("fetch",)


@record(frozen=True)
class Entry:
    """One input or output entry: a name (or None) and the path(s) it stands for.

    `value` keeps the declared shape: a str for one path, a tuple for several.
    `source` is what was written (a node name, a glob, a path), for messages.
    """

    name: str | None
    paths: tuple[str, ...]
    many: bool = False
    source: str = ""
    kind: str = "path"  # path | node | glob | dir

    @property
    def value(self) -> str | list[str]:
        return list(self.paths) if self.many or len(self.paths) != 1 else self.paths[0]


@record(frozen=True)
class Recipe:
    kind: str  # python | r | shell | call | fetch
    target: str  # script path, shell command, "module:function", or store name
    name: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    timeout: float | None = None
    retries: int = 0
    resources: tuple[tuple[str, float], ...] = ()
    label: str = ""  # a portable name for a script outside the project (templates)
    warm: bool = True  # may run in a warm worker (`warm = false` opts out); not in the key
    stdout: str = ""  # where standard output goes: a path among the node's outputs, or a placeholder
    returns: str = ""  # call / r_call: the output entry the function's return value is saved to

    @property
    def script(self) -> str | None:
        return self.target if self.kind in ("python", "r") else None

    def signature(self) -> dict:
        """What of the recipe enters the node key (never `name`, never fetch)."""
        sig = {"kind": self.kind, "target": self.label or self.target, "args": list(self.args),
               "env": [list(p) for p in self.env]}
        if self.stdout:  # only when set: the keys of recipes without it are unchanged
            sig["stdout"] = self.stdout
        if self.returns:
            sig["returns"] = self.returns
        return sig


@record(frozen=True)
class Node:
    name: str
    outputs: tuple[Entry, ...]
    inputs: tuple[Entry, ...]
    params: tuple[tuple[str, object], ...]  # TOML values
    recipes: tuple[Recipe, ...]
    cwd: str  # project-relative folder recipes run in ("" = project root)
    file: str  # declaring Nodefile (for messages)
    line: int | None = None
    wildcards: tuple[tuple[str, str], ...] = ()
    priority: int = 0
    order: int = 0  # declaration order
    deps: tuple[str, ...] = ()  # names of nodes whose outputs this node reads
    # extra file dependencies discovered statically (recipe scripts)
    script_inputs: tuple[str, ...] = ()
    always: bool = False  # `always = true`: volatile, its recipe runs at every build that needs it

    @cached
    def output_paths(self) -> tuple[str, ...]:
        return tuple(p for e in self.outputs for p in e.paths)

    @cached
    def input_paths(self) -> tuple[str, ...]:
        return tuple(p for e in self.inputs for p in e.paths)

    @property
    def is_alias(self) -> bool:
        return not self.recipes

    @property
    def params_dict(self) -> dict:
        return dict(self.params)


@record(frozen=True)
class Store:
    name: str
    url: str
    push: bool = False
    options: tuple = ()  # fsspec storage options, as (key, value) pairs
    timeout: float | None = None  # seconds a remote store may stay silent (None: stores.DEFAULT_TIMEOUT)


@record(frozen=True)
class Project:
    root: str  # absolute path of the project root
    file: str  # absolute path of the root Nodefile
    name: str
    nodes: dict  # name -> Node, in declaration order
    producers: dict  # output path -> node name
    params: dict
    default: tuple[str, ...]
    jobs: int | None = None
    cache: bool = True
    python: str | None = None
    stores: dict = field(default_factory=dict)
    dir_outputs: tuple[tuple[str, str], ...] = ()  # (dir path with trailing /, node)
    sources: tuple[str, ...] = ()  # Nodefile and template files, for watch
    warm: bool = True  # [project] warm: python and r recipes may run in warm workers
    preload: tuple[tuple[str, tuple[str, ...]], ...] = ()  # [workers.LANG] preload: (lang, names)
    executor: tuple = ("local", None)  # [executor] (kind, address)
    missing: tuple = ()  # missing sources: (path, nodes needing it, message); they block only those
    scans: tuple = ()  # instances from files: (node, pattern, glob, files listed, wildcards), config/filematrix.py


class Status(enum.Enum):
    UP_TO_DATE = "up to date"
    STALE = "stale"
    MISSING = "missing"


class ReasonKind(enum.Enum):
    NEVER_BUILT = "never built"
    FORCED = "forced"
    INCOMPLETE = "previous build was interrupted"
    OUTPUT_MISSING = "output missing"
    OUTPUT_CHANGED = "output edited since it was built"
    SCRIPT_CHANGED = "script changed"
    IMPORT_CHANGED = "imported file changed"
    CODE_CHANGED = "function changed"
    INPUT_CHANGED = "input changed"
    INPUT_ADDED = "input added"
    INPUT_REMOVED = "input removed"
    PARAM_CHANGED = "param changed"
    WILDCARD_CHANGED = "wildcard changed"
    RECIPE_CHANGED = "recipe changed"
    OUTPUTS_CHANGED = "declared outputs changed"
    FORMAT_CHANGED = "nodefile format changed"
    UPSTREAM = "an input will be rebuilt"
    INPUT_MISSING = "input missing"


@record(frozen=True)
class Reason:
    kind: ReasonKind
    subject: str = ""
    old: str | None = None
    new: str | None = None

    def __str__(self) -> str:
        text = self.kind.value
        if self.subject:
            text += f": {self.subject}"
        if self.old is not None or self.new is not None:
            text += f" ({_short(self.old)} -> {_short(self.new)})"
        return text


def _short(v: str | None) -> str:
    if v is None:
        return "none"
    return v[:12] if len(v) == 32 and all(c in "0123456789abcdef" for c in v) else v


@record(frozen=True)
class Verdict:
    node: str
    status: Status
    reasons: tuple[Reason, ...] = ()
    key: str | None = None

    @property
    def stale(self) -> bool:
        return self.status is not Status.UP_TO_DATE


class _Word(str, enum.Enum):
    """An enum whose members are their stored strings: `Outcome.OK == "ok"`, and SQLite
    rows, JSON and f-strings see the plain value (no migration)."""

    __str__ = str.__str__
    __format__ = str.__format__


class Outcome(_Word):
    """How a node ended in a build (`NodeResult.outcome`) or how one attempt ended
    (the `attempts.outcome` column)."""
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"  # not run because an upstream node failed
    UP_TO_DATE = "up to date"
    CANCELLED = "cancelled"
    STOPPED = "stopped"  # an attempt stopped on purpose (a bounded probe)


class FailureClass(_Word):
    """Why an attempt failed (the `attempts.failure` column, `StoreError.failure`)."""
    UNAVAILABLE = "unavailable"  # the recipe could not start, or the store lacks the entry
    TRANSIENT = "transient"  # may succeed if tried again (timeout, outage, interruption)
    RECIPE_ERROR = "recipe error"  # the recipe ran and failed, or the entry is corrupt
    PROBE = "probe"  # a bounded probe that was stopped


@record(frozen=True)
class NodeResult:
    node: str
    outcome: Outcome
    recipe: str | None = None
    duration: float = 0.0
    message: str = ""
    log: str | None = None
    warm: bool = False  # its recipe ran in a warm worker
    worker: str = ""  # the Dask worker that ran its recipe


@record
class Summary:
    built: list = field(default_factory=list)  # every node made in this build, restored ones too
    restored: dict = field(default_factory=dict)  # of those, restored ones: node -> None (the local cache) or the store's name
    up_to_date: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    durations: dict = field(default_factory=dict)
    elapsed: float = 0.0
    interrupted: bool = False
    rejected: list = field(default_factory=list)  # "node: why" of every store entry rejected
    down: dict = field(default_factory=dict)  # store name -> why it was not asked again

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted and not self.skipped


# -- rows of the state store (state.py): records and attempts are named tuples (cheaper to
# build than the dicts they replace; records() reads one per node) --------------------------
NodeRecord = namedtuple("NodeRecord", "key parts outputs built_ns recipe build_id incomplete",
                        defaults=(None, None, None, 0))
NodeRecord.__doc__ = """A node's record (the `nodes` table): its key, the JSON of its key parts
and of its outputs' hashes as built, when, by which recipe and build, and whether its
outputs were moved aside since (incomplete: 1)."""

AttemptRow = namedtuple("AttemptRow", "id build_id node recipe kind attempt start_ns duration outcome "
                                      "failure bytes log exit_code message script_hash key")
AttemptRow.__doc__ = """One row of the `attempts` table: outcome and failure are the stored
strings (equal to `Outcome` and `FailureClass` members)."""

# A file's stamp and stat: plain tuples in one layout, unpacked by position (`size, mtime_ns,
# ino, ctime_ns, h, recorded_ns = stamp`). Not named tuples: there is one per file, and an
# instance of a tuple subclass stays tracked by the garbage collector (a plain tuple of
# numbers and strings is untracked): +2-3% CPU on a no-op of 10,000 nodes without the fast path.
STAMP = ("size", "mtime_ns", "ino", "ctime_ns", "hash", "recorded_ns")
"""A file's recorded stamp (`State.stamps()`, the `files` table, the stat cache): its stat,
the hash of its content then, and when that was recorded (the racy-timestamp rule)."""

FILE_STAT = ("size", "mtime_ns", "ino", "ctime_ns", "dev", "is_dir")
"""A path's stat as the hasher saw it when it hashed it (`Hasher.stats`, the no-op record's
stats): a stamp's first four fields, then the device (its racy window) and whether it is a folder."""
