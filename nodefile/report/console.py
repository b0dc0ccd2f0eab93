"""The console reporter: a live status block on a terminal, plain lines otherwise.

On a terminal (stderr), below the `ok` / `skip` / `FAILED` lines, a block of a few
lines is redrawn in place: a bar with done/total and the ETA, then one line per
running node with its elapsed and expected time. Every printed line clears the
block, writes itself and redraws the block, so it is always there. Colour when the
stream is a terminal and `NO_COLOR` is unset (https://no-color.org).

Plain ANSI rather than rich: importing rich costs ~40 ms, a large share of a
no-op build's budget (see docs/decisions.md).
"""
from __future__ import annotations

import os
import sys
import time

from ..model import NodeResult, Outcome, Summary
from . import Reporter


def fmt_seconds(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 60:
        return f"{s:.1f}s"
    m, s = divmod(int(s), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


BAR_WIDTH = 24
SHOWN_RUNNING = 5  # running nodes listed under the bar ("+N more" after them)
GREEN, RED, YELLOW, DIM, BOLD, CYAN = "32", "31", "33", "2", "1", "36"


def colour_on(stream) -> bool:
    """Colour for this stream: a terminal, `NO_COLOR` unset or empty, `TERM` not dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def paint(text: str, code: str, on: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if on else text


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    full = width if total <= 0 else min(width, done * width // total)
    return "█" * full + "░" * (width - full)


def _seconds_env(name: str, default: float) -> float:
    try:
        return max(0.0, float(os.environ.get(name, default)))
    except ValueError:
        return default


class Console(Reporter):
    """The `Reporter` of every command; it owns the progress state (when each running
    node started, what its first recipe is expected to take) and the build's ETA."""

    def __init__(self, verbosity: int = 0, out=None, err=None, tty: bool | None = None):
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.verbosity = verbosity
        self.tty = self.err.isatty() if tty is None else tty
        if os.environ.get("NODEFILE_PROGRESS") == "plain":
            self.tty = False
        self._line = 0  # lines of the status block on the terminal (0: none drawn)
        self._state = None  # (running specs, done, total) of the last tick: the block redrawn after a line
        self.colour = colour_on(self.out)
        self.colour_err = colour_on(self.err)
        self._lock = None
        if self.tty:
            import threading
            self._lock = threading.RLock()
        self.live = self.tty  # flush every line (watch mode sets it: output is read as it comes)
        self._flushed = 0.0
        self.started_at: dict[str, float] = {}
        self.expected: dict[str, float | None] = {}  # node -> its first recipe's seconds (None: unknown)
        self.eta = None  # report.eta.Eta of the build, made by build_started
        # plain progress lines (not on a terminal): one every this many seconds of a long build
        self.plain_every = _seconds_env("NODEFILE_PROGRESS_EVERY", 10.0)
        self._plain_at = time.monotonic()
        self.streams: dict[str, list] = {}  # -v: node -> [its log, bytes shown, partial line]
        self._streamer = None

    # -- plumbing ------------------------------------------------------------------------
    def _clear(self) -> None:
        """Erase the status block (the cursor is left at the start of its first line)."""
        if self._line:
            self.err.write("\r\x1b[2K" + "\x1b[1A\x1b[2K" * (self._line - 1))
            self.err.flush()
            self._line = 0

    def print(self, text: str = "") -> None:
        if self._lock is not None:  # a terminal: -v's streaming thread prints too
            with self._lock:
                return self._print(text)
        return self._print(text)

    def _print(self, text: str) -> None:
        self._clear()
        self.out.write(text + "\n")
        # every line on a terminal; otherwise (CI logs, pipes) at most every 0.2 s:
        # a flush per line of a 1,000-node build costs half a second
        now = time.monotonic()
        if self.live or now - self._flushed >= 0.2:
            self.out.flush()
            self._flushed = now
        self._redraw()

    def _redraw(self) -> None:
        """The status block again, below the line just printed."""
        if self.tty and self._state is not None and self.verbosity >= 0:
            self._draw(*self._state)

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
        self._redraw()

    def waiting(self, text: str) -> None:
        """A transfer waits on a slow store (called from a transfer thread)."""
        if self.verbosity >= 0:
            self._clear()
            self.err.write(f"... {text}\n")
            self.err.flush()
            self._redraw()

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

    def build_started(self, order, deps: dict, weight, slots: float) -> None:
        from .eta import Eta
        self.eta = Eta(order, deps, weight, slots)

    def planned(self, name: str, choice) -> None:
        if choice.estimates:
            first = choice.estimates[0]
            self.expected[name] = first.duration if first.known and not first.floor else None
        if self.eta is not None:
            self.eta.decided(name)

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
        if self._state is not None:  # the block drawn after this line no longer shows it running
            running, done, total = self._state
            self._state = ([s for s in running if s.node != result.node], min(done + 1, total), total)
        o = result.outcome
        if o is Outcome.OK:
            if self.verbosity >= 0:
                via = f" via {result.recipe}" if result.recipe else ""
                via += " (warm)" if result.warm else ""
                via += f" on {result.worker}" if result.worker else ""
                self.print(f"{paint('ok', GREEN, self.colour)}   {result.node}  "
                           f"{fmt_seconds(result.duration)}{via}")
        elif o is Outcome.FAILED:
            self._clear()
            head, _, rest = result.message.partition("\n")
            head = paint(f"FAILED {result.node}: {head}", RED + ";" + BOLD, self.colour_err)
            if rest and self.colour_err:
                rest = "\n".join(paint(x, RED, True) if x.lstrip().startswith("log:") else x
                                 for x in rest.split("\n"))
            self.err.write(head + ("\n" + rest if rest else "") + "\n")
            self.err.flush()
            self._redraw()
        elif o is Outcome.SKIPPED:
            if self.verbosity >= 0:
                self.print(f"{paint('skip', YELLOW, self.colour)} {result.node}  ({result.message})")
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
        eta = self.eta_text(running, now)
        eta = f"  {eta}" if eta else ""
        return f"[{done}/{total}] running: {', '.join(parts)}{more}{eta}"

    def eta_text(self, running, now: float) -> str:
        """`ETA 2.0s`, `ETA ≥2.0s` (some durations never measured) or `ETA ?`."""
        if self.eta is None:
            return ""
        left, known = self.eta.left({s.node: now - self.started_at.get(s.node, now) for s in running})
        return "ETA ?" if left is None else f"ETA {'' if known else '≥'}{fmt_seconds(left)}"

    def block(self, running, done: int, total: int, now: float) -> list[str]:
        """The terminal's status block: `[bar] done/total  ETA`, then a line per running
        node `  name  elapsed / expected` (`?`: never measured)."""
        c = self.colour_err
        eta = self.eta_text(running, now)
        head = f"{paint(bar(done, total), CYAN, c)} {done}/{total}" + (f"  {paint(eta, BOLD, c)}" if eta else "")
        lines = [head]
        wide = max((len(s.node) for s in running[:SHOWN_RUNNING]), default=0)
        for spec in running[:SHOWN_RUNNING]:
            el = fmt_seconds(now - self.started_at.get(spec.node, now))
            exp = ""
            if spec.node in self.expected:
                e = self.expected[spec.node]
                exp = " / ?" if e is None else f" / {fmt_seconds(e)}"
            lines.append(f"  {paint('▸', YELLOW, c)} {spec.node.ljust(wide)}  {el}{paint(exp, DIM, c)}")
        if len(running) > SHOWN_RUNNING:
            lines.append(f"    +{len(running) - SHOWN_RUNNING} more running")
        return lines

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
        self._state = (list(running), done, total)
        with self._lock:
            self._draw(list(running), done, total)

    def _draw(self, running, done: int, total: int) -> None:
        lines = self.block(running, done, total, time.monotonic())
        width = 200
        try:
            width = os.get_terminal_size(self.err.fileno()).columns - 1
        except (OSError, ValueError):
            pass
        self._clear()
        # a line longer than the terminal would wrap and the block could not be erased:
        # cut each to the width (escape sequences take no columns)
        self.err.write("\n".join(_cut(x, width) for x in lines))
        self.err.flush()
        self._line = len(lines)

    def flush(self) -> None:
        self.out.flush()

    def summary(self, s: Summary, dry_run: bool = False) -> None:
        self._state = None
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


def _cut(line: str, width: int) -> str:
    """`line` shown in at most `width` columns, its colour codes kept (they take none)."""
    out, cols, i = [], 0, 0
    while i < len(line):
        if line[i] == "\x1b":
            j = line.index("m", i) + 1
            out.append(line[i:j])
            i = j
            continue
        if cols < width:
            out.append(line[i])
            cols += 1
        i += 1
    return "".join(out)


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
