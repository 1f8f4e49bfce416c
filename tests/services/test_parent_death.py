"""services.parent_death: a process tied to its parent dies when the parent is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.support.processes import alive

# a parent that starts a child tied to it, prints the child's pid, and waits forever
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(__import__("os").getpid())])
print(child.pid, flush=True)
time.sleep(600)
"""
CHILD_TIED = """
import sys, time
from services.parent_death import die_with_parent
die_with_parent(int(sys.argv[1]))
time.sleep(600)
"""


def test_a_tied_child_dies_with_its_parent():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD_TIED], stdout=subprocess.PIPE, text=True, env=env)
    try:
        child = int(parent.stdout.readline())
        time.sleep(1.0)  # the child imports and arms itself
        assert alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        deadline = time.monotonic() + 10  # it would sleep 600 s if it were not tied
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child)
    finally:
        parent.kill()
        parent.wait(5)
        parent.stdout.close()


def test_a_child_whose_parent_died_before_it_armed_exits_at_once():
    code = "import os; from services.parent_death import die_with_parent; die_with_parent(os.getppid() + 999999)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", code], env=env, timeout=30)
    assert result.returncode == 1
