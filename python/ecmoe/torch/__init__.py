"""The engine's MoE layer as a torch.nn.Module (docs/python.md).

    from ecmoe.torch import MoE
    moe = MoE(d_model=256, d_ff=1024, n_experts=8)        # expert choice, capacity factor 2
    out = moe(x)                                          # x [..., 256] float32, CPU
    loss = task_loss(out.y) + out.aux_loss

MoE, MoEOutput, RoutingPlan: python/ecmoe/torch/moe.py. load (a checkpoint as a PyTorch model):
python/ecmoe/checkpoint.py. set_num_threads / get_num_threads: the engine's thread count, which is
also torch's (both run on the same OpenMP runtime).
"""

from ecmoe.torch.moe import (MoE, MoEOutput, RoutingPlan, get_num_threads,  # noqa: F401
                             set_num_threads)
from ecmoe.checkpoint import load  # noqa: E402,F401  (an ecmoe checkpoint as a PyTorch model)
