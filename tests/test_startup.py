"""A script's start (common/startup.py): Ctrl-C while the libraries load is one line and exit
status 130, before `common.run.cli` takes over. (Ctrl-C once `main` runs: test_run.py.)"""
import signal
import subprocess
import sys
import time

from common import run


def test_ctrl_c_while_starting_is_one_line_and_exit_130():
    child = subprocess.Popen([sys.executable, "vae_keras.py", "--help"], cwd=run.REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # TensorFlow takes seconds to import
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, err[-2000:]
    assert err.strip() == "interrupted while starting; nothing was changed"
