import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import signal  # noqa: E402

import pytest  # noqa: E402

from common import run  # noqa: E402

pytest.register_assert_rewrite("simulate")  # its helpers' asserts explain their failures
from simulate import KillAt  # noqa: E402

import portable  # noqa: E402

PORTABLE = pytest.StashKey()


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected
def pytest_collection_modifyitems(session, config, items):
    """The other backends' runs and the checks' commands (tests/portable.py) start now, in the
    background, and the checks that wait for them go last, so the rest of the suite runs
    meanwhile."""
    waiting = [item for item in items if getattr(item, "originalname", None)
               in {**portable.SELECTIONS, **portable.COMMANDS}]
    option = config.option
    if not waiting or any(getattr(option, name, False) for name in (
            "collectonly", "showfixtures", "setupplan", "setuponly")):  # nothing will run
        return
    items[:] = [item for item in items if item not in waiting] + waiting
    config.stash[PORTABLE] = portable.Runs()  # stashed first: closed at exit whatever happens
    config.stash[PORTABLE].start_for(waiting)


def pytest_unconfigure(config):
    if PORTABLE in config.stash:
        config.stash[PORTABLE].close()


@pytest.fixture
def portable_run(request):
    """(return code, output) of the requesting check's run on its backend, started when the
    suite was collected, once it has ended."""
    node = request.node
    return request.config.stash[PORTABLE].output(node.originalname, node.callspec.params["backend"])


@pytest.fixture
def background_command(request):
    """The requesting check's command (`portable.COMMANDS`), started when the suite was
    collected, once it has ended: a CompletedProcess with its output and errors."""
    import subprocess

    name = request.node.originalname
    returncode, stdout, stderr = request.config.stash[PORTABLE].output(name, None)
    return subprocess.CompletedProcess(portable.COMMANDS[name][0], returncode, stdout, stderr)


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """An empty repository for the claims' readers (common/claims/committed.py) to read fake
    committed runs from."""
    from common.claims import committed

    monkeypatch.setattr(committed, "REPO", tmp_path)
    return tmp_path


@pytest.fixture
def killed_then_resumed():
    """Run a script's `main(argv)` for 2 epochs, killed as its second epoch starts, then again.

    Checks that the kill left a backup, that the second run trained only the second epoch and
    kept the first epoch's history row, and that the backup is gone once done. Returns the
    second run's metrics. `before_resume()` runs between the two, if given.
    """
    def check(main, argv, out, before_resume=None):
        kill = KillAt(1)
        with pytest.raises(KeyboardInterrupt):
            main(argv, callbacks=[kill])
        assert kill.started == [0, 1] and (out / "backup").is_dir()
        # a killed run publishes nothing: its epochs wait in the partial history
        assert not (out / "history.csv").exists() and not (out / "config.json").exists()
        first_epoch = run.read_history(out / run.PARTIAL_HISTORY)
        kill.started.clear()
        if before_resume:
            before_resume()
        metrics = main(argv, callbacks=[kill])
        assert kill.started == [1]  # resumed: only the second epoch ran
        history = run.read_history(out / "history.csv")
        assert list(history["epoch"]) == [0, 1]
        for column, values in first_epoch.items():
            assert list(values) == [history[column][0]], column
        assert not (out / "backup").exists() and not (out / run.PARTIAL_HISTORY).exists()
        return metrics

    return check


@pytest.fixture(autouse=True)
def plain_ctrl_c():
    """Ctrl-C is KeyboardInterrupt in tests (common.startup's start-up handler exits at once)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def test_images_1000(monkeypatch):
    """MNIST with its test set cut to the first 1,000 images, for runs whose validation and
    evaluation over the test set would otherwise take most of their time, where what the test
    checks does not depend on the test set's size."""
    from common import data

    load_mnist = data.load_mnist

    def cut(path=None):
        train, (x_test, y_test) = load_mnist(path)
        return train, (x_test[:1000], y_test[:1000])
    monkeypatch.setattr(data, "load_mnist", cut)
