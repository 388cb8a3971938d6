"""The other backends' runs of the tests marked `backends`, in processes where TensorFlow cannot
be imported (tests/test_backends.py checks them), and the commands of the checks that only read
a command's output (`COMMANDS`, benchmarks/gpu_check.py's).

A process picks its Keras backend once, so each backend's run is a pytest of its own. The runs
and commands start when the suite has been collected (conftest.py) and go on in the background,
at a lower priority, while this process runs the rest; their checks run last and wait for them.
One run mostly compiles, the other mostly dispatches small ops, and much of the rest of the
suite is one process starting Python and reading files, so two cores do it all in less time
than in turn.
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

GPU_CHECK = [sys.executable, str(REPO / "benchmarks" / "gpu_check.py")]
# the checks in tests/test_backends.py that read a command's output: (argv, its backend, whether
# it may import TensorFlow)
COMMANDS = {
    "test_gpu_check_without_a_gpu_says_so_in_one_line":
        ([*GPU_CHECK, "--backends", "jax", "torch"], "tensorflow", True),
    "test_gpu_check_runs_and_reports_on_the_cpu_when_asked":  # as a GPU machine may lack it
        ([*GPU_CHECK, "--cpu", "--backends", "torch", "tensorflow", "--scripts", "vae",
          "--epochs", "2", "--subset", "300", "--is-images", "3"], "torch", False),
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
        """Start the run or the command of each check among `items` that has none yet."""
        for item in items:
            name = item.originalname
            key = (name, None if name in COMMANDS else item.callspec.params["backend"])
            if key not in self.started:
                self.started[key] = self.start(*key)

    def start(self, check, backend):
        """A check's command (`COMMANDS`; `backend` None), or pytest on the tests
        `SELECTIONS[check]` picks, on `backend`, without TensorFlow; its output to a file. On
        JAX, XLA's compiled programs are kept in a cache of this run's own, so a script resumed
        in the same test reuses what its first run compiled (test time only: what runs is the
        same program)."""
        if check in COMMANDS:
            argv, on, tensorflow = COMMANDS[check]
            return self.spawn(argv, env(on, tensorflow), self.folder / check, merged=False)
        folder = self.folder / f"{check}-{backend}"
        extra = {}
        if backend == "jax":
            extra = {"JAX_COMPILATION_CACHE_DIR": str(folder / "jax_cache"),
                     "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                     "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
        return self.spawn(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp",
             str(folder / "tmp"), "-m", SELECTIONS[check], "tests"],
            {**env(backend, tensorflow=False), **extra}, folder)

    @staticmethod
    def spawn(argv, environment, folder, merged=True):
        """Start `argv` in the background, its output to files in `folder` (standard error
        with standard output if `merged`); (the process, [its files])."""
        folder.mkdir()
        logs = [open(folder / "output.txt", "w")] + ([] if merged else
                                                    [open(folder / "errors.txt", "w")])
        process = subprocess.Popen(
            argv, env=environment, cwd=REPO, stdout=logs[0],
            stderr=subprocess.STDOUT if merged else logs[1], text=True,
            start_new_session=True)  # a group to stop
        try:  # the tests in the foreground first: this one fills the idle core (its children
            # inherit the priority); ten steps below this process's, if the system allows
            os.setpriority(os.PRIO_PROCESS, process.pid, os.getpriority(os.PRIO_PROCESS, 0) + 10)
        except (AttributeError, OSError):
            pass
        return process, logs

    def output(self, check, backend, timeout=3600):
        """Wait for that run or command (at most `timeout` seconds); its return code and its
        output (a command's: standard output, then standard error)."""
        process, logs = self.started[check, backend]
        try:
            returncode = process.wait(timeout)
        except subprocess.TimeoutExpired:
            returncode = f"still running after {timeout} s"
        texts = []
        for log in logs:
            log.close()
            texts.append(Path(log.name).read_text())
        return returncode, *texts

    def close(self):
        """Stop what still runs (after a failure, -x or Ctrl-C), with the scripts it started,
        and remove the folder."""
        for process, logs in self.started.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            for log in logs:
                log.close()
        shutil.rmtree(self.folder, ignore_errors=True)
