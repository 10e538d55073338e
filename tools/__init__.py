"""ecmoe's Python tools: PyTorch references, fixture generators, the scaling model.

tools/ and bench/ are Python packages under the repository root; scripts that import other
modules run as modules from the repository root, e.g.

    /usr/bin/python3 -m tools.make_moe_fixtures
    /usr/bin/python3 -m bench.bench_train_torch --config small --router top2

Shared code: tools.safetensors_io (the one safetensors reader and writer), tools.torch_model
(the reference transformer), tools.make_moe_fixtures (the reference MoE layer, `layer`).
"""
