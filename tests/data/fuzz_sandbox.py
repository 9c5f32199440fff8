"""Run ``read_image`` / ``read_mask`` on fuzz inputs in a child process: the reader contract, checked without
letting a hang, a crash or a memory blow-up take the test run (or the shared machine) with it.

The contract (issue 20): for any file, a reader returns a valid array (image HxW or HxWx3 uint8, mask HxW bool)
or raises :class:`roiprompt.errors.InputError` -- never another exception, never a hang, never more than 2 GB.

How each part is checked, cheaply and honestly:

* other exceptions and bad outputs: the worker calls the reader and classifies what came back;
* hangs: the parent waits ``timeout`` seconds for each answer, then kills and restarts the worker;
* memory is resident memory (RSS), what a machine actually pays: before each call the worker resets its peak
  (Linux ``/proc/self/clear_refs`` "5") and reads ``VmHWM`` after it, so every call gets its own peak (``peak_mb``
  with the worker's ~250 MB idle footprint, torch included; ``extra_mb`` what the call added). While it waits the
  parent reads the worker's RSS every 50 ms and kills it once the call has added more than ``memory_limit_mb``
  (status "memory"), so a decompression bomb is caught at 2 GB instead of eating the shared machine. Address space
  is not capped: a reader that reserves 4 GB for a bogus length field and touches none of it costs nothing.

The readers are called with the minimal arguments (``read_image(path)``, ``read_mask(path)``) so that the harness
survives keyword arguments being added to them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["Outcome", "READERS", "Sandbox"]

READERS = ("read_image", "read_mask")
OK = ("accepted", "input_error")


@dataclass
class Outcome:
    """What one reader did with one file."""

    reader: str
    # accepted | input_error | other (another exception) | bad_output | memory (over the RSS limit) | hang | crash
    status: str
    error: str = ""  # module-qualified exception type, or what was wrong with the output / how the worker died
    message: str = ""  # the exception's message (InputError's too), cut to 300 characters
    frames: list[str] = field(default_factory=list)  # last traceback frames, innermost last
    seconds: float = 0.0
    peak_mb: float = 0.0  # the worker's peak RSS during the call (idle footprint included)
    extra_mb: float = 0.0  # peak_mb minus the RSS right before the call: what the reader itself added

    @property
    def ok(self) -> bool:
        return self.status in OK

    @property
    def signature(self) -> str:
        """Groups findings: reader, error type and the innermost frame."""
        return f"{self.reader}: {self.error or self.status} at {self.frames[-1] if self.frames else '?'}"

    def describe(self) -> str:
        tail = "\n".join(f"    {f}" for f in self.frames)
        head = f"{self.reader} -> {self.status} {self.error}" + (f": {self.message}" if self.message else "")
        return f"{head}\n{tail}".rstrip()


# -- the worker (child process) ---------------------------------------------------------------------------------
def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _short(filename: str) -> str:
    """site-packages/PIL/x.py -> PIL/x.py; <any checkout>/roiprompt/data/io.py -> roiprompt/data/io.py."""
    for marker, keep in (("site-packages/", ""), ("/roiprompt/", "roiprompt/"), ("/lib/", "")):
        if marker in filename:
            return keep + filename.split(marker, 1)[1]
    return filename


def _frames(err: BaseException, keep: int = 6) -> list[str]:
    import traceback

    return [f"{_short(f.filename)}:{f.lineno} in {f.name}: {(f.line or '').strip()}"
            for f in traceback.extract_tb(err.__traceback__) if f.filename != __file__][-keep:]


def _bad_output(reader: str, value: Any) -> str:
    """'' when ``value`` is what ``reader`` promises, else what is wrong with it."""
    import numpy as np

    if not isinstance(value, np.ndarray):
        return f"returned {type(value).__name__}, not an ndarray"
    if value.size == 0:
        return f"empty array {value.shape}"
    if reader == "read_image":
        if value.dtype != np.uint8 or not (value.ndim == 2 or value.ndim == 3 and value.shape[2] == 3):
            return f"image {value.dtype} {value.shape}, not HxW or HxWx3 uint8"
    elif value.dtype != np.bool_ or value.ndim != 2:
        return f"mask {value.dtype} {value.shape}, not HxW bool"
    return ""


def _main(fd: int, stack_file: str) -> None:
    """Worker entry point (``python -c``): serve on the inherited socket ``fd``; SIGUSR1 writes the Python stack to
    ``stack_file`` (faulthandler: works inside C code too), so a hang or a memory kill still says where it was."""
    import faulthandler

    faulthandler.register(signal.SIGUSR1, file=open(stack_file, "w"), all_threads=False)
    _serve(Connection(fd))


def _serve(conn: Connection) -> None:
    """Worker loop: receive (path, reader), answer an Outcome as a dict; None stops it."""
    import resource
    import warnings

    warnings.simplefilter("ignore")  # DecompressionBombWarning & co. are not part of the contract
    from roiprompt.data import read_image, read_mask
    from roiprompt.errors import InputError

    readers = {"read_image": read_image, "read_mask": read_mask}
    exact_peak = _reset_peak()
    conn.send({"pid": os.getpid(), "exact_peak": exact_peak, "idle_rss_mb": _status_kb("VmRSS") / 1024})
    while (request := conn.recv()) is not None:
        path, reader = request
        _reset_peak()
        before = _status_kb("VmRSS")
        start = time.perf_counter()
        out = Outcome(reader, "accepted")
        try:
            value = readers[reader](path)
        except InputError as err:
            out.status, out.message = "input_error", str(err)[:300]
        except Exception as err:  # the contract violations this harness exists to find
            out = Outcome(reader, "other", f"{type(err).__module__}.{type(err).__qualname__}".removeprefix(
                "builtins."), str(err)[:300], _frames(err))
        else:
            if problem := _bad_output(reader, value):
                out.status, out.error = "bad_output", problem
            del value
        out.seconds = time.perf_counter() - start
        peak = _status_kb("VmHWM") if exact_peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out.peak_mb, out.extra_mb = peak / 1024, max(0, peak - before) / 1024
        conn.send(asdict(out))


# -- the parent side --------------------------------------------------------------------------------------------
class Sandbox:
    """One worker process; :meth:`run` writes the bytes to a file and hands it to each reader in turn.

    Example:
        >>> with Sandbox(timeout=30) as box:
        ...     outcomes = box.run(data, ".png")   # [Outcome(read_image ...), Outcome(read_mask ...)]
    """

    def __init__(self, timeout: float = 30.0, memory_limit_mb: int = 2048, workdir: str | Path | None = None):
        self.timeout, self.memory_limit_mb = timeout, memory_limit_mb
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="roiprompt_fuzz_"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._proc: Any = None
        self._conn: Any = None
        self._stack_file = self.workdir / "stack.txt"
        self.info: dict[str, Any] = {}
        self.restarts = 0

    def __enter__(self) -> "Sandbox":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        # a fresh interpreter (not fork: no inherited torch threads; not multiprocessing's spawn, which would re-run
        # the caller's main script), talking over a socket pair; it sees the caller's sys.path, so the same
        # roiprompt (a checkout or a snapshot on PYTHONPATH) is fuzzed
        ours, theirs = socket.socketpair()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(os.path.abspath(p) for p in sys.path if p),
                   OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")  # one core: a shared machine
        code = "import sys; from tests.data.fuzz_sandbox import _main; _main(int(sys.argv[1]), sys.argv[2])"
        # its stderr (libtiff and nibabel complain about every broken header) goes to a log, not the test output
        with open(self.workdir / "worker.log", "ab") as log:
            self._proc = subprocess.Popen([sys.executable, "-c", code, str(theirs.fileno()), str(self._stack_file)],
                                          pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=log)
        theirs.close()
        self._conn = Connection(ours.detach())
        if not self._conn.poll(120):
            self._kill()
            raise RuntimeError("fuzz worker did not start in 120 s")
        try:
            self.info = self._conn.recv()
        except EOFError:
            self._kill()
            raise RuntimeError(f"fuzz worker died at start; see {self.workdir / 'worker.log'}") from None

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()  # only our own worker (Popen.kill: SIGKILL to its pid)
            self._proc.wait(10)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def restart(self) -> None:
        self._kill()
        self.restarts += 1
        self.start()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.send(None)
                self._proc.wait(5)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        self._kill()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def path_for(self, ext: str) -> Path:
        return self.workdir / f"input{ext}"

    def run(self, data: bytes, ext: str, readers: tuple[str, ...] = READERS) -> list[Outcome]:
        """Each reader's Outcome on ``data`` saved as ``input<ext>`` (``ext`` "" = a file without extension)."""
        path = self.path_for(ext)
        path.write_bytes(data)
        return [self.call(path, r) for r in readers]

    def _rss_kb(self) -> int:
        try:
            with open(f"/proc/{self._proc.pid}/status") as f:
                return next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        except OSError:
            return 0

    def _stack(self) -> list[str]:
        """The worker's current Python frames, innermost last (asked with SIGUSR1 before it is killed)."""
        import linecache
        import re

        try:
            os.kill(self._proc.pid, signal.SIGUSR1)
            time.sleep(0.3)
            text = self._stack_file.read_text()
        except OSError:
            return []
        frames = re.findall(r'File "(.+)", line (\d+) in (\S+)', text)
        return [f"{_short(f)}:{n} in {name}: {linecache.getline(f, int(n)).strip()}"
                for f, n, name in reversed(frames) if f not in (__file__, "<string>")][-6:]

    def _replace_worker(self) -> None:
        self._kill()
        self.restarts += 1
        self.start()

    def call(self, path: Path, reader: str) -> Outcome:
        """One reader on one file, watched: answer, or hang / memory / crash."""
        if self._proc is None:
            self.start()
        before_kb = self._rss_kb()
        limit_kb = before_kb + self.memory_limit_mb * 1024
        self._conn.send((str(path), reader))
        start = time.monotonic()
        try:
            while not self._conn.poll(0.05):  # returns at once when the answer is there: no cost per call
                if (rss := self._rss_kb()) > limit_kb:
                    out = Outcome(reader, "memory", f"RSS grew past {self.memory_limit_mb} MB; killed",
                                  frames=self._stack(), seconds=time.monotonic() - start, peak_mb=rss / 1024,
                                  extra_mb=(rss - before_kb) / 1024)
                    self._replace_worker()
                    return out
                if time.monotonic() - start > self.timeout:  # a hang, or a decode slower than the limit
                    out = Outcome(reader, "hang", f"no answer in {self.timeout:g} s", frames=self._stack(),
                                  seconds=self.timeout)
                    self._replace_worker()
                    return out
            return Outcome(**self._conn.recv())
        except (EOFError, OSError):
            pass
        try:
            code = self._proc.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        self._replace_worker()
        return Outcome(reader, "crash", f"worker died ({how})")
