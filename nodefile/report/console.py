"""The console reporter: a live progress line on a terminal, plain lines otherwise.

Plain ANSI rather than rich: importing rich costs ~40 ms, a large share of a
no-op build's budget (see docs/decisions.md).
"""
from __future__ import annotations

import os
import sys
import time

from ..model import NodeResult, Outcome, Summary


def fmt_seconds(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 60:
        return f"{s:.1f}s"
    m, s = divmod(int(s), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


def _seconds_env(name: str, default: float) -> float:
    try:
        return max(0.0, float(os.environ.get(name, default)))
    except ValueError:
        return default


class Console:
    def __init__(self, verbosity: int = 0, out=None, err=None, tty: bool | None = None):
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.verbosity = verbosity
        self.tty = self.err.isatty() if tty is None else tty
        if os.environ.get("NODEFILE_PROGRESS") == "plain":
            self.tty = False
        self._line = False
        self.live = self.tty  # flush every line (watch mode sets it: output is read as it comes)
        self._flushed = 0.0
        self.started_at: dict[str, float] = {}
        self.expected: dict[str, float | None] = {}  # node -> its first recipe's seconds (None: unknown)
        self.eta = None  # report.eta.Eta of the build, set by build
        # plain progress lines (not on a terminal): one every this many seconds of a long build
        self.plain_every = _seconds_env("NODEFILE_PROGRESS_EVERY", 10.0)
        self._plain_at = time.monotonic()
        self.streams: dict[str, list] = {}  # -v: node -> [its log, bytes shown, partial line]
        self._streamer = None

    # -- plumbing ------------------------------------------------------------------------
    def _clear(self) -> None:
        if self._line:
            self.err.write("\r\x1b[2K")
            self.err.flush()
            self._line = False

    def print(self, text: str = "") -> None:
        self._clear()
        self.out.write(text + "\n")
        # every line on a terminal; otherwise (CI logs, pipes) at most every 0.2 s:
        # a flush per line of a 1,000-node build costs half a second
        now = time.monotonic()
        if self.live or now - self._flushed >= 0.2:
            self.out.flush()
            self._flushed = now

    def info(self, text: str) -> None:
        if self.verbosity >= 0:
            self.print(text)

    def detail(self, text: str) -> None:
        if self.verbosity > 0:
            self.print(text)

    def warn(self, text: str) -> None:
        self._clear()
        self.err.write(f"warning: {text}\n")
        self.err.flush()

    def waiting(self, text: str) -> None:
        """A transfer waits on a slow store (called from a transfer thread)."""
        if self.verbosity >= 0:
            self._clear()
            self.err.write(f"... {text}\n")
            self.err.flush()

    def error(self, text: str) -> None:
        self._clear()
        self.err.write(f"error: {text}\n")
        self.err.flush()

    # -- build events ----------------------------------------------------------------
    # -- -v: recipe output on the terminal, each line prefixed by its node's name ----------
    def _stream(self, node: str, final: bool = False) -> None:
        with self._stream_lock:
            self._stream_new(node, final)

    def _stream_new(self, node: str, final: bool) -> None:
        s = self.streams.get(node)
        if s is None:
            return
        try:
            with open(s[0], "rb") as f:
                f.seek(s[1])
                chunk = f.read()
        except OSError:
            chunk = b""
        s[1] += len(chunk)
        *lines, s[2] = (s[2] + chunk).split(b"\n")
        if final and s[2]:
            lines.append(s[2])
        for line in lines:
            self.print(f"{node} | {line.decode('utf-8', 'replace')}")

    def _follow(self, spec) -> None:
        if spec.recipe.kind in ("load", "fetch"):
            return
        import threading
        if self._streamer is None:
            self._stream_lock = threading.Lock()
        self._stream(spec.node, final=True)  # the rest of an earlier attempt's log
        self.streams[spec.node] = [spec.log, 0, b""]
        if not self._streamer or not self._streamer.is_alive():
            self._streamer = threading.Thread(target=self._stream_loop, daemon=True, name="nodefile-stream")
            self._streamer.start()

    def _stream_loop(self) -> None:
        while self.streams:
            for node in list(self.streams):
                self._stream(node)
            time.sleep(0.1)

    def started(self, spec) -> None:
        self.started_at[spec.node] = time.monotonic()
        if self.verbosity > 0:
            self._follow(spec)
        if not self.tty and self.verbosity >= 0:
            r = spec.recipe
            what = r.target if r.kind != "shell" else "shell"
            self.print(f"run  {spec.node}  ({r.kind} {what})" if r.kind != "shell" else f"run  {spec.node}  (shell)")

    def done(self, result: NodeResult) -> None:
        if result.node in self.streams:
            self._stream(result.node, final=True)
            with self._stream_lock:
                self.streams.pop(result.node, None)
        if self.eta is not None:
            self.eta.settle(result.node)
        o = result.outcome
        if o is Outcome.OK:
            if self.verbosity >= 0:
                via = f" via {result.recipe}" if result.recipe else ""
                via += " (warm)" if result.warm else ""
                via += f" on {result.worker}" if result.worker else ""
                self.print(f"ok   {result.node}  {fmt_seconds(result.duration)}{via}")
        elif o is Outcome.FAILED:
            self._clear()
            self.err.write(f"FAILED {result.node}: {result.message}\n")
            self.err.flush()
        elif o is Outcome.SKIPPED:
            if self.verbosity >= 0:
                self.print(f"skip {result.node}  ({result.message})")
        elif o is Outcome.UP_TO_DATE and self.verbosity > 0:
            self.print(f"     {result.node}  up to date")

    def progress(self, running, done: int, total: int, now: float) -> str:
        """`[done/total] running: node elapsed/expected, ...  ETA left`: an expected time
        never measured is "?", an ETA with such nodes left is a lower bound ("≥")."""
        parts = []
        for spec in running[:4]:
            el = now - self.started_at.get(spec.node, now)
            shown = ""
            if spec.node in self.expected:
                exp = self.expected[spec.node]
                shown = "/?" if exp is None else f"/{fmt_seconds(exp)}"
            parts.append(f"{spec.node} {fmt_seconds(el)}{shown}")
        more = f" +{len(running) - 4}" if len(running) > 4 else ""
        eta = ""
        if self.eta is not None:
            left, known = self.eta.left({s.node: now - self.started_at.get(s.node, now) for s in running})
            eta = "  ETA ?" if left is None else f"  ETA {'' if known else '≥'}{fmt_seconds(left)}"
        return f"[{done}/{total}] running: {', '.join(parts)}{more}{eta}"

    def tick(self, running, done: int, total: int) -> None:
        if self.verbosity < 0:
            return
        now = time.monotonic()
        if not self.tty:
            if now - self._plain_at >= self.plain_every and running:
                self._plain_at = now
                self.err.write(self.progress(running, done, total, now) + "\n")
                self.err.flush()
            return
        line = self.progress(running, done, total, now)
        width = 200
        try:
            width = os.get_terminal_size(self.err.fileno()).columns - 1
        except (OSError, ValueError):
            pass
        self.err.write("\r\x1b[2K" + line[:width])
        self.err.flush()
        self._line = True

    def flush(self) -> None:
        self.out.flush()

    def summary(self, s: Summary, dry_run: bool = False) -> None:
        self._clear()
        self.live = True
        if self.verbosity < 0 and s.ok:
            return
        if not s.built and not s.failed and not s.skipped and not s.interrupted:
            self.print(f"nothing to do: {len(s.up_to_date)} node(s) up to date ({fmt_seconds(s.elapsed)})")
            return
        bits = made_counts(s)
        if s.up_to_date:
            bits.append(f"up to date {len(s.up_to_date)}")
        if s.failed:
            bits.append(f"failed {len(s.failed)}")
        if s.skipped:
            bits.append(f"not built {len(s.skipped)}")
        tail = " (interrupted)" if s.interrupted else ""
        self.print(f"{', '.join(bits)} in {fmt_seconds(s.elapsed)}{tail}")
        self._stores(s)

    def _stores(self, s: Summary) -> None:
        """The store entries rejected and the stores found down in this build."""
        if s.rejected:
            stores = sorted({r.split("store '", 1)[1].split("'", 1)[0] for r in s.rejected if "store '" in r})
            self.print(f"rejected {len(s.rejected)} store entr{'y' if len(s.rejected) == 1 else 'ies'}"
                       + (f" (store {', '.join(repr(x) for x in stores)})" if stores else "")
                       + "; see the warnings above. `node gc --store NAME` removes damaged entries")
        for name, why in s.down.items():
            self.print(why if why.startswith(f"store '{name}'") else f"store '{name}': {why}")


def made_counts(s: Summary) -> list[str]:
    """What a build made, restores told from builds: ["built 3", "restored 25 from the
    cache", "fetched 2 from nas"] ("built 0" only when nothing was restored either)."""
    restored = [n for n in s.built if n in s.restored]
    bits = [f"built {len(s.built) - len(restored)}"] if len(restored) < len(s.built) or not restored else []
    by: dict = {}
    for n in restored:
        by[s.restored[n]] = by.get(s.restored[n], 0) + 1
    if None in by:
        bits.append(f"restored {by.pop(None)} from the cache")
    bits.extend(f"fetched {k} from {name}" for name, k in sorted(by.items()))
    return bits
