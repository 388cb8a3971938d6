"""With this folder on PYTHONPATH, Python starts as on a machine without TensorFlow.

Python imports `sitecustomize` at start-up; this one sets `sys.modules["tensorflow"] = None`,
so every `import tensorflow` (or of a submodule) raises ImportError whichever module asks (the
project's or Keras'), and `importlib.util.find_spec("tensorflow")` answers None, as when it is
not installed. Child processes inherit PYTHONPATH, so they are blocked too. A run that passes
this way proves that its path needs no TensorFlow (tests/test_backends.py).
"""
import sys

if "tensorflow" in sys.modules:
    raise SystemExit("error: TensorFlow was imported before it could be blocked")
sys.modules["tensorflow"] = None
