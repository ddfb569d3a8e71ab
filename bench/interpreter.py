"""Which CPython the benchmark runs under: the fastest one on the machine, measured.

CPython builds differ by about a fifth in CPU per call on the same code.  pyenv (the
``python3`` first on this machine's PATH) compiles without profile-guided optimisation
or link-time optimisation and with a shared ``libpython``, unless told otherwise;
Debian's and Ubuntu's ``/usr/bin/python3``, python.org's installers and Docker's official
``python`` images are PGO + LTO builds.  Operators run the latter (README: Deployment,
"The interpreter"), so the harness does too: it times a short pure-Python workload under
each candidate (the running interpreter and the system's ``python3``, best of several
interleaved runs) and, when another one is clearly faster, re-runs itself under it, in a
virtual environment of its own with the project installed (``seed.CACHE_DIR``).
Floors, server and clients then share one interpreter, and the report names it, the
timings that chose it, and (``run.py``) the 10-row c16 call served by the running
interpreter beside it.  ``--python current`` keeps the running interpreter;
``--python PATH`` names one.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

from . import seed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Interpreters tried besides the running one.
SYSTEM_CANDIDATES = ("/usr/bin/python3",)
#: Set in the re-run harness: the selection it was started with (JSON), so it does not select again.
ENV_MARK = "MCPF_BENCH_INTERPRETER"
#: A replacement must be at least this much faster (the workload's run-to-run noise is ~2-3%).
MIN_GAIN = 0.05

# Function calls, attribute and dict access, small dicts, lists and strings: the kind of
# work a tool call's Python does.  Prints the best of 5 runs in seconds.
WORKLOAD = """
import time
class P:
    __slots__ = ("a", "b")
    def __init__(self, a, b):
        self.a = a
        self.b = b
def step(d, i):
    p = P(i, str(i))
    d[p.b] = p.a + len(p.b)
    return {"k": i, "v": [p.a, p.b], "ok": d.get(p.b) is not None}
def once():
    d, out = {}, []
    for i in range(20000):
        out.append(step(d, i))
    return len(out)
best = None
for _ in range(5):
    t = time.perf_counter()
    once()
    t = time.perf_counter() - t
    best = t if best is None else min(best, t)
print(best)
"""

PROBE = ("import json, platform, sys; print(json.dumps({'version': platform.python_version(), "
         "'implementation': platform.python_implementation(), 'executable': sys.executable, "
         "'prefix': sys.prefix, 'base_prefix': sys.base_prefix, "
         "'libpython': any('libpython' in l for l in open('/proc/self/maps'))}))")


def probe(python: str) -> dict | None:
    """Version, implementation and ``libpython`` linkage of ``python``; None when it cannot
    run this project (missing, not CPython, older than 3.11)."""
    try:
        out = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=30)
        info = json.loads(out.stdout)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    major, minor = (int(x) for x in info["version"].split(".")[:2])
    if info["implementation"] != "CPython" or (major, minor) < (3, 11):
        return None
    info["path"] = python
    return info


def workload_seconds(python: str) -> float | None:
    """Best-of-5 seconds of ``WORKLOAD`` under ``python``; None if it fails."""
    try:
        out = subprocess.run([python, "-c", WORKLOAD], capture_output=True, text=True, timeout=120)
        return float(out.stdout.strip())
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def same_interpreter(a: dict, b: dict) -> bool:
    """True when two probes are the same installation (a venv and its base count as one)."""
    return os.path.realpath(a["base_prefix"]) == os.path.realpath(b["base_prefix"]) and \
        a["version"] == b["version"]


def pick(running: float, others: dict, min_gain: float = MIN_GAIN):
    """The fastest candidate (a key of ``others``) to use instead of the running interpreter, or None.

    ``running`` and ``others``' values are workload seconds (None: the candidate failed).
    A candidate replaces the running interpreter only when it is at least ``min_gain``
    faster (0.05: 5% less time), so noise never switches interpreters."""
    threshold = running * (1 - min_gain)
    clear = {key: secs for key, secs in others.items() if secs is not None and secs < threshold}
    return min(clear, key=clear.get) if clear else None


def select(choice: str = "auto", rounds: int = 3) -> dict:
    """The interpreter to run the benchmark under, and why.

    ``{"base": probe, "running": probe, "timings": {path: seconds}, "reason": text}``;
    ``base`` is ``running`` (the same dict) when the harness stays where it is.
    ``choice``: ``auto`` (the fastest of the running one and ``SYSTEM_CANDIDATES``, timed),
    ``current`` (the running one), or the path of a CPython 3.11+ to use."""
    running = probe(sys.executable)
    if running is None:     # the interpreter running this is CPython 3.11+ (setup.py); be plain anyway
        running = {"version": "", "executable": sys.executable, "path": sys.executable,
                   "prefix": sys.prefix, "base_prefix": sys.base_prefix, "libpython": None}
    stay = {"base": running, "running": running, "timings": {}}
    if choice == "current":
        return dict(stay, reason="--python current")
    if choice != "auto":
        # Literally the same path: a venv's python is a symlink to its base, but not the same environment.
        if os.path.abspath(choice) == os.path.abspath(sys.executable):
            return dict(stay, reason=f"--python {choice} is the running interpreter")
        info = probe(choice)
        if info is None:
            raise SystemExit(f"--python {choice}: not a CPython 3.11+ this harness can run")
        return {"base": info, "running": running, "timings": {}, "reason": f"--python {choice}"}
    candidates = {}
    for path in SYSTEM_CANDIDATES:
        info = probe(path)
        if info is not None and not same_interpreter(info, running):
            candidates[path] = info
    if not candidates:
        return dict(stay, reason="no other CPython 3.11+ on this machine")
    # Interleaved rounds, best of each: a slow stretch of the machine hits every candidate.
    timings: dict = {sys.executable: None, **{p: None for p in candidates}}
    for _ in range(rounds):
        for path in timings:
            secs = workload_seconds(path)
            if secs is not None and (timings[path] is None or secs < timings[path]):
                timings[path] = secs
    stay["timings"] = timings
    if timings[sys.executable] is None:
        return dict(stay, reason="the running interpreter's workload failed")
    winner = pick(timings[sys.executable], {p: timings[p] for p in candidates})
    if winner is None:
        return dict(stay, reason=f"no candidate is {MIN_GAIN:.0%} faster than the running interpreter")
    return {"base": candidates[winner], "running": running, "timings": timings,
            "reason": f"{winner} ran the workload in {timings[winner] * 1000:.1f} ms against "
                      f"{timings[sys.executable] * 1000:.1f} ms"}


def _deps_stamp() -> str:
    h = hashlib.sha256()
    for name in ("setup.py", "requirements.txt"):
        with open(os.path.join(ROOT, name), "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()[:16]


def venv_dir(base: dict) -> str:
    """Where ``venv_python`` keeps ``base``'s virtual environment (one per installation and version)."""
    tag = hashlib.sha256(f"{os.path.realpath(base['base_prefix'])} {base['version']}".encode()).hexdigest()[:12]
    return os.path.join(seed.CACHE_DIR, f"venv-{base['version']}-{tag}")


def venv_python(base: dict, log=print) -> str:
    """A virtual environment of ``base``'s with this project's dependencies installed; its
    python.  Made once under ``seed.CACHE_DIR`` and reused while setup.py and requirements.txt are
    unchanged.  The server runs from the checkout (``python -m mcp_flask.cli`` with the
    checkout as working directory), so the code measured is always the checkout's."""
    venv = venv_dir(base)
    python = os.path.join(venv, "bin", "python")
    marker = os.path.join(venv, ".mcpf-deps")
    stamp = _deps_stamp()
    try:
        with open(marker) as fh:
            if fh.read().strip() == stamp and os.path.exists(python):
                return python
    except OSError:
        pass
    log(f"preparing {venv} ({base['path']}, Python {base['version']}): pip install -e {ROOT}...")
    for step, cmd in (("python -m venv", [base["path"], "-m", "venv", "--clear", venv]),
                      ("pip install", [python, "-m", "pip", "install", "-q", "-e", ROOT])):
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"{step} for {venv} failed: {(out.stderr or out.stdout).strip()[-800:]}")
    with open(marker, "w") as fh:
        fh.write(stamp)
    return python


def describe(info: dict) -> str:
    """``3.11.2 at /usr/bin/python3 (libpython linked in)``: one interpreter, for the report."""
    link = {True: "shared libpython", False: "libpython linked in", None: "libpython unknown"}[info.get("libpython")]
    return f"{info.get('version', '?')} at {info.get('path', info.get('executable', '?'))} ({link})"
