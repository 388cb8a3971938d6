"""Run a script as on a machine where TensorFlow is not installed.

    python tests/without_tensorflow.py SCRIPT [ARGS ...]
    python tests/without_tensorflow.py -m MODULE [ARGS ...]    (e.g. -m pytest)

`sys.modules["tensorflow"] = None` makes every `import tensorflow` (or of a submodule) raise
ImportError, whichever module asks (the project's or Keras'), and makes
`importlib.util.find_spec("tensorflow")` answer None, as when it is absent; so a run that
passes proves its path needs no TensorFlow.
"""
import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    if any(m == "tensorflow" or m.startswith("tensorflow.") for m in sys.modules):
        raise SystemExit("error: TensorFlow was imported before it could be blocked")
    sys.modules["tensorflow"] = None
    if sys.argv[1] == "-m":
        sys.argv = sys.argv[2:]
        sys.path.insert(0, "")
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = sys.argv[1:]
        sys.path.insert(0, str(Path(sys.argv[0]).resolve().parent))
        runpy.run_path(sys.argv[0], run_name="__main__")
