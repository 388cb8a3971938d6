"""What a script does before anything else: a quiet start, and Ctrl-C that is one line.

Importing this module (the first import of every script, before Keras):
- makes Ctrl-C while the libraries load print one line and exit with status 130 (`common.run.cli`
  takes over once the script's `main` starts);
- sets the Keras backend to TensorFlow unless KERAS_BACKEND names another;
- imports Keras with the process's standard error set aside, so TensorFlow's C++ start-up
  lines (printed before its logging settings are read) do not bury a script's messages; if the
  import fails, what was set aside is printed.
"""
import os
import signal
import sys
import tempfile


_stderr = {"fd": 2}  # where a message goes while standard error is set aside


def _interrupted_while_starting(signum, frame):
    os.write(_stderr["fd"], b"\ninterrupted while starting; nothing was changed\n")
    os._exit(130)


signal.signal(signal.SIGINT, _interrupted_while_starting)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # Keras 3's backend; KERAS_BACKEND overrides
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")    # TensorFlow's own log, once it is read


def _import_keras_quietly():
    sys.stderr.flush()
    saved = os.dup(2)
    _stderr["fd"] = saved
    with tempfile.TemporaryFile() as aside:
        os.dup2(aside.fileno(), 2)
        try:
            import keras  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            aside.seek(0)
            sys.stderr.write(aside.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            _stderr["fd"] = 2
            os.close(saved)


_import_keras_quietly()
