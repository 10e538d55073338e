"""The package's pure-Python modules import without the compiled extension (ecmoe._C)."""

import os
import subprocess
import sys

from engine_util import ROOT

PROGRAM = """
import sys
sys.modules["ecmoe._C"] = None  # any import of the extension now raises ImportError
import ecmoe.checkpoint, ecmoe.data, ecmoe.model, ecmoe.safetensors
print("ok")
"""


def test_pure_modules_import_without_the_extension():
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    r = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
