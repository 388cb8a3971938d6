"""The other backends' runs of the tests marked `backends`, in processes where TensorFlow cannot
be imported (tests/test_backends.py checks them).

A process picks its Keras backend once, so each backend's run is a pytest of its own. The runs
start when the suite has been collected (conftest.py) and go on in the background while this
process runs the rest; their two checks run last and wait for them. One run mostly compiles,
the other mostly dispatches small ops, and much of the rest of the suite is starting Python
and reading files, so two cores do it all in less time than in turn.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OTHERS = ("jax", "torch")
BLOCKER = REPO / "tests" / "no_tensorflow"  # its sitecustomize makes TensorFlow unimportable
# the checks in tests/test_backends.py, and the tests each one's runs select
SELECTIONS = {
    "test_the_portable_tests_pass_without_tensorflow":
        "backends and not slow and not portable_slow",
    "test_the_slower_portable_tests_pass_without_tensorflow":
        "backends and portable_slow and not slow",
}


def env(backend, tensorflow=True):
    """The environment of a subprocess on `backend`; without `tensorflow`, it cannot import it."""
    if tensorflow:
        return {**os.environ, "KERAS_BACKEND": backend}
    path = os.pathsep.join(p for p in (str(BLOCKER), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": path}


class Runs:
    """The runs the selected checks need, keyed by (check's name, backend)."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="portable-"))
        self.started = {}

    def start_for(self, items):
        """Start the run of each check among `items` that has none yet."""
        for item in items:
            key = (item.originalname, item.callspec.params["backend"])
            if key not in self.started:
                self.started[key] = self.start(*key)

    def start(self, check, backend):
        """pytest on the tests `SELECTIONS[check]` picks, on `backend`, without TensorFlow; its
        output to a file. On JAX, XLA's compiled programs are kept in a cache of this run's own,
        so a script resumed in the same test reuses what its first run compiled (test time only:
        what runs is the same program)."""
        folder = self.folder / f"{check}-{backend}"
        folder.mkdir()
        extra = {}
        if backend == "jax":
            extra = {"JAX_COMPILATION_CACHE_DIR": str(folder / "jax_cache"),
                     "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                     "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
        log = open(folder / "output.txt", "w")
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp",
             str(folder / "tmp"), "-m", SELECTIONS[check], "tests"],
            env={**env(backend, tensorflow=False), **extra}, cwd=REPO, stdout=log,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)  # a group to stop
        if hasattr(os, "setpriority"):  # the tests in the foreground first: this run fills the
            os.setpriority(os.PRIO_PROCESS, process.pid, 10)  # idle core (its children inherit)
        return process, log

    def output(self, check, backend, timeout=3600):
        """Wait for that run (at most `timeout` seconds); its return code and its output."""
        process, log = self.started[check, backend]
        try:
            returncode = process.wait(timeout)
        except subprocess.TimeoutExpired:
            returncode = f"still running after {timeout} s"
        log.close()
        return returncode, Path(log.name).read_text()

    def close(self):
        """Stop what still runs (after a failure, -x or Ctrl-C), with the scripts it started,
        and remove the folder."""
        for process, log in self.started.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            log.close()
        shutil.rmtree(self.folder, ignore_errors=True)
