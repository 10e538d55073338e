"""ecmoe's Python tools: PyTorch references, fixture generators, the scaling model.

tools/ and bench/ are Python packages under the repository root; scripts that import other
modules run as modules from the repository root, e.g.

    /usr/bin/python3 -m tools.make_moe_fixtures
    /usr/bin/python3 -m bench.bench_train_torch --config small --router top2

Shared code: the package under python/ (ecmoe.safetensors, the one safetensors reader and writer,
also importable as tools.safetensors_io; ecmoe.model, the transformer), tools.torch_model (the
reference transformer: ecmoe.model with the reference MoE layer plugged in),
tools.make_moe_fixtures (the reference MoE layer, `layer`). Importing tools puts python/ on
sys.path, so `import ecmoe` works from the repository root without installing anything.
"""

import os
import sys

_PYTHON = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python")
if _PYTHON not in sys.path:
    sys.path.append(_PYTHON)  # after PYTHONPATH: an installed or built ecmoe comes first
