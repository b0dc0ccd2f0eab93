"""The build's warm workers: one Python zygote and one R zygote (workers/zygote.py),
each started the first time a recipe of its language asks for one, in the
background (recipes run cold until it is ready), and ended with the build.

A worker that cannot start says why once; its recipes then run cold, and the
reason is kept in `.nodefile/workers.json` for `node status -v`. Recipes that
died warm of a signal and then succeeded cold are listed there too: they run
cold from then on.
"""
from __future__ import annotations

import json
import os
import sys

from ..executors.helper import Helper

STATE_FILE = "workers.json"
WAIT_FOR_BOOT = 3.0  # seconds: a recipe waits for a starting worker whose last start took at most this
START_AT = 2  # a worker starts when the second recipe of its language asks: a build of one
#               recipe would only pay for the worker's imports beside it


class Workers:
    """The warm workers of one build (or of one `node watch` session)."""

    def __init__(self, state_dir: str, run_log: str | None, token: str, preload):
        self.state_dir = state_dir
        self.run_log = run_log
        self.token = token
        self.preload = preload  # lang -> the modules/packages to preload (called once per worker)
        self.live: dict[str, Helper] = {}
        self.reasons: dict[str, str] = {}  # lang -> why it runs cold
        self.skipped: dict[str, list] = {}  # lang -> [(module or package, why)] it could not preload
        self.asked: dict[str, int] = {}  # lang -> recipes that asked before its worker started
        self.early = None  # () -> the languages to start at the build's first recipe (prestart)
        self._early: tuple | None = None  # what early() returned
        saved = read_state(state_dir)
        self.cold_only: set[tuple[str, str]] = {tuple(x) for x in saved.get("cold_only", [])}
        self._saved = saved
        boots = saved.get("boot", {})
        self.boots: dict[str, float] = boots if isinstance(boots, dict) else {}  # lang -> seconds to ready
        # NODEFILE_WORKER_WAIT=SECONDS: start a worker at the first recipe that asks, and let
        # recipes wait that long for it instead of running cold (tests, benchmarks)
        self.wait = float(os.environ.get("NODEFILE_WORKER_WAIT") or 0)

    def get(self, lang: str) -> Helper | None:
        """The ready worker for lang, or None (starting it if it was never asked for)."""
        self.prestart()
        w = self.live.get(lang)
        if w is None:
            self.asked[lang] = self.asked.get(lang, 0) + 1
            if lang in self.reasons or (self.asked[lang] < START_AT and not self.wait):
                return None
            w = self._start(lang)
            if w is None:
                return None
        if w.up(wait=self.wait):
            return w
        if w.dead:
            self.drop(w)
        return None

    def booting(self, lang: str) -> Helper | None:
        """The worker for lang if it is starting and worth waiting for: a recipe queued on
        it starts warm once it is ready. Worth it unless its last start in this project
        took over WAIT_FOR_BOOT seconds (a heavy preload a light recipe should not wait
        for); waiting instead of starting cold leaves the cores to the worker's imports,
        which a cold recipe would pay again beside it."""
        w = self.live.get(lang)
        if w is None or w.ready or w.dead:
            return None
        last = self.boots.get(lang)
        return w if last is None or last <= WAIT_FOR_BOOT else None

    def drop(self, w: Helper, died: bool = True) -> None:
        """A worker that died (its language runs cold from now on, this build; `status -v`
        says why), or that the build ended while it was starting (died=False: no reason)."""
        for lang, x in list(self.live.items()):
            if x is w:
                del self.live[lang]
                if died:
                    self.reasons.setdefault(lang, w.reason or f"the {lang} worker process died")
        w.close()

    def prestart(self) -> None:
        """At the build's first recipe of any language: start the workers of the languages
        the build has many recipes of (`early`), so that they load their packages while
        the first recipes run, instead of when the second recipe of their language asks."""
        if self.early is None:
            return
        langs = self._early_langs()
        self.early = None
        for lang in langs:
            if lang not in self.live and lang not in self.reasons:
                self._start(lang)

    def _early_langs(self) -> tuple:
        """The languages prestart will start (none once it has run: those are live)."""
        if self.early is None:
            return ()
        if self._early is None:
            self._early = tuple(self.early())
        return self._early

    def runs_warm(self, lang: str, node: str, recipe: str) -> bool:
        """Would the recipe run in its worker if it asked now? Yes with a live worker that
        is ready, or starting and worth waiting for (`booting`), and with one its asking
        starts (the START_AT-th recipe of its language, a language `prestart` starts,
        NODEFILE_WORKER_WAIT); no for the first recipe of a language in a small build, a
        language that runs cold (`reasons`), and a recipe that runs cold for good. The
        learner estimates the recipe from its warm or its cold runs by this."""
        if lang in self.reasons or (node, recipe) in self.cold_only:
            return False
        w = self.live.get(lang)
        if w is None:
            if not (self.wait or self.asked.get(lang, 0) + 1 >= START_AT or lang in self._early_langs()):
                return False
        elif w.dead:
            return False
        elif w.ready or self.wait:
            return True
        last = self.boots.get(lang)
        return bool(self.wait) or last is None or last <= WAIT_FOR_BOOT

    def _start(self, lang: str) -> Helper | None:
        why = cannot_start(lang)
        if why:
            self.reasons[lang] = why
            return None
        preload = list(self.preload(lang))
        code = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["NODEFILE_RUN"] = self.token  # its children carry the build's mark (end_orphans)
        env["PYTHONPATH"] = os.pathsep.join([code] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        argv = [sys.executable, "-m", "nodefile.workers.zygote", "3", "4", lang, self.run_log or "",
                json.dumps(preload)]
        log = os.path.join(self.state_dir, "workers", f"{lang}.log")
        w = Helper(argv, env=env, log=log)
        self.live[lang] = w
        return w

    def begin_build(self) -> None:
        """Before a build of a session that keeps its workers (node watch): a worker
        whose preloaded packages changed on disk (an upgrade, an edit) starts again."""
        for lang, w in list(self.live.items()):
            if w.dead or changed(w.stamps):
                w.close()
                del self.live[lang]
        self.asked = {}

    def lang_of(self, w: Helper) -> str:
        return next((lang for lang, x in self.live.items() if x is w), "?")

    def fds(self) -> list[int]:
        return [w.rep for w in self.live.values()]

    def by_fd(self, fd: int) -> Helper | None:
        for w in self.live.values():
            if w.rep == fd:
                return w
        return None

    def remember_cold(self, node: str, recipe: str) -> None:
        self.cold_only.add((node, recipe))

    def close(self) -> None:
        """End the workers (they end their running children) and keep the reasons."""
        for lang, w in self.live.items():
            if w.dead and w.reason:
                self.reasons.setdefault(lang, w.reason)
            if w.skipped:
                self.skipped[lang] = [list(x) for x in w.skipped]
            if w.boot is not None:
                self.boots[lang] = round(w.boot, 3)
            w.close()
        self.live = {}
        state = {"reasons": self.reasons, "cold_only": sorted(self.cold_only), "skipped": self.skipped,
                 "boot": self.boots}
        if state != self._saved:
            write_state(self.state_dir, state)


def changed(stamps) -> bool:
    """Has any of the (path, mtime_ns, size) a worker reported changed since?"""
    for path, mtime, size in stamps:
        try:
            st = os.stat(path)
        except OSError:
            return True
        if (st.st_mtime_ns, st.st_size) != (mtime, size):
            return True
    return False


def cannot_start(lang: str) -> str | None:
    """Why a worker for lang cannot start here (None: it can try)."""
    if not hasattr(os, "fork"):
        return "this platform cannot fork"
    if lang == "r":
        import importlib.util
        if importlib.util.find_spec("rpy2") is None:
            return "rpy2 is not installed (pip install 'nodefile[r]')"
        if os.path.exists(".Rprofile") or os.environ.get("R_PROFILE_USER"):
            return "the project has an .Rprofile (renv?): R recipes start as Rscript starts them"
    return None


def read_state(state_dir: str) -> dict:
    try:
        with open(os.path.join(state_dir, STATE_FILE)) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_state(state_dir: str, state: dict) -> None:
    path = os.path.join(state_dir, STATE_FILE)
    try:
        with open(path + ".tmp", "w") as f:
            json.dump(state, f)
        os.replace(path + ".tmp", path)
    except OSError:
        pass  # only a hint for later builds
