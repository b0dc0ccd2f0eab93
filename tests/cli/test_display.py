"""The terminal display (SPEC §6, issue 24 item 6): run under a real pseudo-terminal,
read the bytes a user's terminal would get and replay them on a small screen model."""
from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest

from conftest import base_env, run, write

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")

SGR = re.compile(rb"\x1b\[[0-9;]*m")


def slow_py(name: str, seconds: float) -> str:
    return (f"import time, nodefile\njob = nodefile.job()\ntime.sleep({seconds})\n"
            f"open(job.outputs['out'], 'w').write({name!r})\n")


def project(tmp_path):
    return write(tmp_path, {
        "Nodefile.toml": """
            [project]
            default = ["c"]
            [nodes.a]
            outputs = { out = "a.txt" }
            python = "a.py"
            [nodes.b]
            outputs = { out = "b.txt" }
            python = "b.py"
            [nodes.c]
            outputs = { out = "c.txt" }
            inputs = { a = "a", b = "b" }
            python = "c.py"
        """,
        "a.py": slow_py("a", 1.6), "b.py": slow_py("b", 1.2), "c.py": slow_py("c", 1.0),
    })


def run_in_pty(cwd, *args, env, script=None) -> tuple[int, bytes]:
    """Run `python -m nodefile ARGS` (or `python SCRIPT ARGS`) with stdin, stdout and stderr on a pseudo-terminal
    of 100 columns; return (exit status, every byte written to the terminal)."""
    master, slave = pty.openpty()
    import fcntl
    import struct
    import termios
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    head = [sys.executable, str(script)] if script else [sys.executable, "-m", "nodefile"]
    proc = subprocess.Popen([*head, *args], cwd=str(cwd), env=env,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=10), bytes(out)


def screen(data: bytes) -> list[str]:
    """The lines left on a terminal after `data` (\\r, \\n, ESC[2K, ESC[nA, colours)."""
    lines, row, col = [""], 0, 0
    text = SGR.sub(b"", data).decode("utf-8", "replace").replace("\r\n", "\n")
    i = 0
    while i < len(text):
        ch = text[i]
        m = re.match(r"\x1b\[(\d*)([AK])", text[i:])
        if m:
            if m.group(2) == "A":
                row = max(0, row - int(m.group(1) or 1))
            else:  # 2K: erase the line
                lines[row] = ""
            i += m.end()
            continue
        if ch == "\n":
            row += 1
            col = 0
            if row == len(lines):
                lines.append("")
        elif ch == "\r":
            col = 0
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + ch + line[col + 1:]
            col += 1
        i += 1
    return [x.rstrip() for x in lines]


def tty_env(**extra) -> dict:
    env = base_env()
    env.pop("NODEFILE_PROGRESS")
    env.pop("NO_COLOR", None)
    env["TERM"] = "xterm-256color"
    env.update(extra)
    return env


def test_terminal_shows_bar_eta_running_nodes_and_leaves_a_clean_screen(tmp_path):
    p = project(tmp_path)
    run(p, "build", "-j", "2", check=0)  # learn the durations: the ETA is then a number
    code, data = run_in_pty(p, "build", "-B", "-j", "2", env=tty_env())
    assert code == 0, data.decode(errors="replace")
    text = SGR.sub(b"", data).decode("utf-8", "replace")
    assert re.search(r"░{24} 0/3  ETA \d", text), text  # the bar, done/total, a measured ETA
    assert re.search(r"▸ a +\d+(\.\d)?(ms|s) / 1\.\ds", text), text  # a running node: elapsed / expected
    assert "▸ b" in text, text
    assert re.search(r"█{16}░{8} 2/3 ", text), text  # redrawn after the ok lines
    assert b"\x1b[32mok\x1b[0m" in data, data  # colour on a terminal
    lines = [x for x in screen(data) if x]
    # what stays on the screen: the ok lines and the summary, no torn or left-over status line
    assert [x.split()[:2] for x in lines[:3]] == [["ok", "b"], ["ok", "a"], ["ok", "c"]], lines
    assert lines[-1].startswith("built 3 in"), lines
    assert len(lines) == 4, lines
    assert not any("█" in x or "ETA" in x or "▸" in x for x in lines), lines


def test_no_color_means_no_colour_codes(tmp_path):
    p = project(tmp_path)
    code, data = run_in_pty(p, "build", "-j", "2", env=tty_env(NO_COLOR="1"))
    assert code == 0, data.decode(errors="replace")
    assert b"ok   a" in data and "0/3".encode() in data, data
    assert not SGR.search(data), data


def test_a_failure_is_red_with_its_log_path(tmp_path):
    p = write(tmp_path, {"Nodefile.toml": '[nodes.a]\noutputs = { out = "a.txt" }\npython = "a.py"\n',
                         "a.py": "raise SystemExit('bad data')\n"})
    code, data = run_in_pty(p, "build", env=tty_env())
    assert code == 1, data.decode(errors="replace")
    assert b"\x1b[31;1mFAILED a: " in data, data
    assert re.search(rb"\x1b\[31m +log: \.nodefile/logs/\S+a\.1\.python\.log", data), data


def test_plain_output_when_not_on_a_terminal(tmp_path):
    """Off a terminal (a pipe), even without NODEFILE_PROGRESS=plain: run/ok lines, no escape codes."""
    p = project(tmp_path)
    env = tty_env()
    proc = run(p, "build", "-j", "2", env=env, check=0)
    assert "run  a" in proc.stdout and "ok   c" in proc.stdout, proc.stdout
    assert "\x1b" not in proc.stdout + proc.stderr


CHECK_NO_RICH = """
import runpy, sys
sys.argv = ["nodefile"] + sys.argv[1:]
try:
    runpy.run_module("nodefile", run_name="__main__")
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("rich", "pygments", "curses"))
print("HEAVY", heavy, file=sys.stderr)
"""


def test_the_display_imports_no_rich_no_curses(tmp_path):
    """A plain run, a no-op build and a build on a terminal import no display library."""
    p = project(tmp_path)
    check = tmp_path / "check.py"
    check.write_text(CHECK_NO_RICH)
    for args in (["build", "-j", "2"], ["build"]):  # a plain run, then a no-op
        proc = subprocess.run([sys.executable, str(check), *args], cwd=str(p),
                              env=base_env(), capture_output=True, text=True, timeout=60)
        assert "HEAVY []" in proc.stderr, proc.stderr
    code, data = run_in_pty(p, "build", "-B", env=tty_env(), script=check)
    assert code == 0 and b"ok   c" in SGR.sub(b"", data) and b"HEAVY []" in data, data
