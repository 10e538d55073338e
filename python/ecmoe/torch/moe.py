"""ecmoe.torch.MoE: the engine's MoE layer (src/moe/moe_layer.h) as a torch.nn.Module.

Forward and backward run the engine's own code (ecmoe._C, python/csrc/moe_extension.cpp) through
a torch.autograd.Function; nothing of the layer is re-implemented here.

    moe = MoE(d_model, d_ff, n_experts, router="expert_choice", capacity_factor=2.0)
    out = moe(x)                      # x [..., d_model] float32 on the CPU
    out.y                             # [..., d_model], same shape as x
    out.aux_loss                      # scalar: the weighted auxiliary losses (load balance, z-loss)
    loss = task_loss(out.y) + out.aux_loss
    loss.backward()                   # the engine's backward, aux-loss gradient included

Parameters (the engine's tensor names under a layer's prefix, so a checkpoint's layer loads with
load_state_dict): router.weight [d, e] (not for dense and hash), experts.w1 [e, d, f],
experts.w2 [e, f, d] (e = 1 for dense). Routers that keep threshold cutoffs (expert_choice,
expert_threshold) have the buffer router.cutoff [e] (-1: not calibrated), which every forward in
training mode moves toward that batch's mean k-th selected score as the engine's trainer does
after each step: cutoff += threshold_ema_rate * (k-th score - cutoff), the first time the target
itself (docs/causal.md). An expert_threshold layer routes its first threshold_warmup_steps
training forwards by expert choice (module.steps counts training forwards).

Each forward call runs its own engine layer, which keeps that call's activations until autograd
runs its backward, so several forwards may be pending at once; a finished call's layer serves
the next forward (its buffers stay allocated, as the engine keeps one layer from step to step).

module.training picks the capacity factor (capacity_factor in training, capacity_factor_eval in
evaluation) and turns jitter on (its noise seed drawn from torch's generator).
"""

from typing import NamedTuple, Optional

import torch
from torch import nn

ROUTERS = ("expert_choice", "expert_choice_capped", "expert_threshold", "top1", "top2", "hash",
           "dense")
PRECISIONS = ("fp32", "bf16", "auto")


def _extension():
    try:
        from ecmoe import _C
    except ImportError as e:
        raise ImportError(
            "ecmoe._C, the compiled engine, is not built or not on the path: build with "
            "scripts/build.sh after scripts/install-deps.sh --test, then use "
            "PYTHONPATH=build/python (docs/python.md) (" + str(e) + ")") from e
    return _C


def set_num_threads(threads: int) -> None:
    """The engine's OpenMP thread count, which is torch's too (one OpenMP runtime, libgomp, so
    torch.set_num_threads sets it as well); 0: the default (OMP_NUM_THREADS, else the cores
    available). Results do not depend on it. The `ecmoe` program makes idle OpenMP threads sleep
    (OMP_WAIT_POLICY=passive); python3 cannot change that after libgomp loaded, so on a machine
    shared with other processes start python3 with OMP_WAIT_POLICY=passive (ctest does)."""
    _extension().set_num_threads(int(threads))


def get_num_threads() -> int:
    return _extension().get_num_threads()


class RoutingPlan(NamedTuple):
    """The routing plan of one forward, slot by slot, expert by expert (a token may appear under
    several experts, or none)."""
    expert: torch.Tensor  # [slots] int64
    token: torch.Tensor   # [slots] int64: row of x flattened to [n, d_model]
    gate: torch.Tensor    # [slots] float32


class MoEOutput(NamedTuple):
    """What MoE.forward returns.

    y         the layer's output, the shape of x.
    aux_loss  0-d float32 tensor: the weighted total of the auxiliary losses, with gradient (add
              it to the loss; 0 when both weights are 0 or the router has no weights).
    aux       {"load_balance", "z_loss"}: the unweighted losses as floats (no gradient; the
              weighted total carries it), and "weighted_total", aux_loss's value.
    stats     the routing statistics of this call: tokens, tokens_per_expert (list [e]: slots
              filled per expert, the load), experts_per_token (histogram: tokens with 0, 1, 2, 3,
              4, >4 experts), mean_experts_per_token, tokens_without_expert,
              requested_assignments, dropped_assignments (token choice: lost to capacity),
              dropped_fraction, capacity, max_demand_over_capacity, router_entropy, kth_score
              (list [e], expert choice and threshold routing), and for expert_choice_capped
              max_experts_per_token, solver_residual, solver_iterations, rounding_changes.
    plan      RoutingPlan: which tokens each expert took, with their gates.
    """
    y: torch.Tensor
    aux_loss: torch.Tensor
    aux: dict
    stats: dict
    plan: RoutingPlan


class _Router(nn.Module):
    def __init__(self, weight: Optional[torch.Tensor], n_experts: int, cutoffs: bool):
        super().__init__()
        self.weight = nn.Parameter(weight) if weight is not None else None
        if cutoffs:
            self.register_buffer("cutoff", torch.full((n_experts,), -1.0))
        else:
            self.cutoff = None


class _Experts(nn.Module):
    def __init__(self, w1: torch.Tensor, w2: torch.Tensor):
        super().__init__()
        self.w1 = nn.Parameter(w1)
        self.w2 = nn.Parameter(w2)


class _EngineMoE(torch.autograd.Function):
    """x, router.weight, w1, w2 -> y, weighted aux loss; the engine's forward and backward."""

    @staticmethod
    def forward(ctx, x, router, w1, w2, call_args, results):
        y, aux, stats, plan, call = _extension().forward(x=x, router=router, w1=w1, w2=w2,
                                                         **call_args)
        ctx.call, ctx.pool = call, results["pool"]
        ctx.save_for_backward(x, router, w1, w2)  # torch checks they are unchanged at backward
        results.update(aux=aux, stats=stats, plan=RoutingPlan(*plan), call=call)
        return y, torch.tensor(aux["weighted_total"], dtype=torch.float32)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, daux):
        ctx.saved_tensors  # raises if an input was modified in place since the forward
        call, ctx.call = ctx.call, None
        if call is None:
            raise RuntimeError("ecmoe.torch.MoE: backward ran twice over one forward (use "
                               "retain_graph=False; the engine frees its activations)")
        dx, drouter, dw1, dw2 = call.backward(dy.contiguous(), float(daux))
        ctx.pool.append(call)  # done: its layer may serve the next forward
        return dx, drouter, dw1, dw2, None, None


class MoE(nn.Module):
    """The engine's MoE layer: router, routing, experts (two-layer GELU FFNs), combine.

    Arguments are MoeConfig's fields (src/moe/moe_config.h):
      d_model, d_ff, n_experts    sizes (dense: one expert whatever n_experts)
      router                      expert_choice | expert_choice_capped | expert_threshold |
                                  top1 | top2 | hash (needs token_ids) | dense
      capacity_factor             training: experts per token on average (expert choice) or the
                                  capacity multiplier (token choice)
      capacity_factor_eval        evaluation (module.eval()); None: capacity_factor
      max_experts_per_token       expert_choice_capped's cap b; None: 2
      group_size                  tokens per routing group, consecutive; 0: the whole batch
      jitter                      training: router input times U(1 - jitter, 1 + jitter)
      precision                   "fp32", "bf16": the experts' GEMMs in bf16 operands with fp32
                                  accumulation (the router, softmax and routing stay fp32), or
                                  "auto": bf16 where the CPU has bf16 instructions, else fp32
                                  (resolved here: module.config names bf16 or fp32)
      load_balance_weight, z_loss_weight      weights of the auxiliary losses in aux_loss
      token_choice_k              choices per token for top1/top2 (0: the router's 1 or 2)
      renormalize_gates           top-k gates divided by their sum
      batch_prioritized           token choice fills slots by top-1 score, not position
      threshold_ema_rate, threshold_warmup_steps     threshold cutoffs (docs/causal.md)
      capped_lambda, capped_max_iterations, capped_tolerance, capped_epsilon_scaling
                                  capped expert choice's solver (None: the engine's default)
      seed                        the engine's initialisation (init_moe_params) from this seed;
                                  None: a seed drawn from torch's generator
      router_init_std             the router weights' initial standard deviation
    module.config holds the MoeConfig fields given (a dict, under the engine's names:
    capacity_factor_train, capacity_factor_eval, ...); module.steps counts training forwards.

    forward(x [..., d_model] float32 CPU (bfloat16/float16 x is computed in float32 and y
    returned in x's dtype, as under autocast), token_ids [...] integer (hash routing), router=None
    (route this call by another router over the same weights, e.g. "expert_threshold" for an
    expert_choice layer)) -> MoEOutput(y, aux_loss, aux, stats, plan). A non-contiguous x is
    copied (.contiguous()); wrong dtype, device or shape raises TypeError, NotImplementedError
    (CUDA: the engine runs on the CPU only) or ValueError; what the engine rejects raises
    ecmoe._C.EngineError (a RuntimeError). Results are identical for every thread count.
    """

    def __init__(self, d_model: int, d_ff: int, n_experts: int, router: str = "expert_choice",
                 capacity_factor: float = 2.0, capacity_factor_eval: Optional[float] = None,
                 max_experts_per_token: Optional[int] = None, group_size: int = 0,
                 jitter: float = 0.0, precision: str = "fp32", load_balance_weight: float = 0.0,
                 z_loss_weight: float = 0.0, token_choice_k: int = 0,
                 renormalize_gates: bool = True, batch_prioritized: bool = False,
                 threshold_ema_rate: float = 0.05, threshold_warmup_steps: int = 100,
                 capped_lambda: Optional[float] = None,
                 capped_max_iterations: Optional[int] = None,
                 capped_tolerance: Optional[float] = None,
                 capped_epsilon_scaling: Optional[bool] = None, seed: Optional[int] = None,
                 router_init_std: float = 0.02):
        super().__init__()
        C = _extension()
        if router not in ROUTERS:
            raise ValueError(f"ecmoe.torch.MoE: unknown router {router!r} (expected one of "
                             f"{', '.join(ROUTERS)})")
        if precision not in PRECISIONS:
            raise ValueError(f"ecmoe.torch.MoE: unknown precision {precision!r} (expected fp32, "
                             f"bf16 or auto)")
        if precision == "auto":
            precision = C.native_precision()
        fields = dict(d_model=d_model, d_ff=d_ff, n_experts=n_experts, router=router,
                      capacity_factor_train=capacity_factor,
                      capacity_factor_eval=(capacity_factor if capacity_factor_eval is None
                                            else capacity_factor_eval),
                      max_experts_per_token=max_experts_per_token, group_size=group_size,
                      jitter=jitter, precision=precision,
                      load_balance_weight=load_balance_weight, z_loss_weight=z_loss_weight,
                      token_choice_k=token_choice_k, renormalize_gates=renormalize_gates,
                      batch_prioritized=batch_prioritized, threshold_ema_rate=threshold_ema_rate,
                      threshold_warmup_steps=threshold_warmup_steps, capped_lambda=capped_lambda,
                      capped_max_iterations=capped_max_iterations,
                      capped_tolerance=capped_tolerance,
                      capped_epsilon_scaling=capped_epsilon_scaling)
        # The engine's MoeConfig fields (None: the engine's default), kept as a plain dict so the
        # module pickles and deep-copies; _engine_config() makes the C++ struct for each call.
        self.config = {name: value for name, value in fields.items() if value is not None}
        config = self._engine_config(C)
        self.steps = 0  # training forwards so far (threshold warm-up)
        # Engine calls whose backward ran (or that need none): the next forwards reuse their
        # layers' buffers, as the engine reuses one layer from step to step. For one config.
        self._pool, self._pool_config = [], None
        if seed is None:
            seed = int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"ecmoe.torch.MoE: seed must be a non-negative int, got {seed!r}")
        router_weight, w1, w2 = C.init_params(config, seed, float(router_init_std))
        self.router = _Router(router_weight, config.n_experts, C.router_has_cutoffs(router))
        self.experts = _Experts(w1, w2)

    def __getstate__(self):  # pickling and deepcopy: the engine calls stay behind
        state = self.__dict__.copy()
        state["_pool"], state["_pool_config"] = [], None
        return state

    def _engine_config(self, C=None):
        C = C or _extension()
        config = C.MoeConfig()
        for name, value in self.config.items():
            try:
                setattr(config, name, value)
            except TypeError:
                raise TypeError(f"ecmoe.torch.MoE: {name} must be "
                                f"{type(getattr(config, name)).__name__}, got "
                                f"{type(value).__name__} {value!r}") from None
        try:
            config.validate()
        except C.EngineError as e:
            raise ValueError(f"ecmoe.torch.MoE: {e}") from None
        return config

    def extra_repr(self) -> str:
        c = self._engine_config()
        return (f"d_model={c.d_model}, d_ff={c.d_ff}, n_experts={c.n_experts}, "
                f"router={c.router}, capacity_factor={c.capacity_factor_train:g}/"
                f"{c.capacity_factor_eval:g}, precision={c.precision}")

    def forward(self, x: torch.Tensor, token_ids: Optional[torch.Tensor] = None,
                router: Optional[str] = None) -> MoEOutput:
        c = self._engine_config()
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"ecmoe.torch.MoE: x must be a tensor, got {type(x).__name__}")
        if x.device.type != "cpu":
            raise NotImplementedError(f"ecmoe.torch.MoE: x is on {x.device}; the engine runs on "
                                      f"the CPU only (no CUDA yet)")
        # bf16/fp16 activations (an autocast region, a half-precision model) enter the layer as
        # fp32, the way autocast treats its fp32 ops, and y leaves in x's dtype; float64 is
        # refused rather than silently rounded.
        out_dtype = x.dtype
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        if x.dtype != torch.float32:
            raise TypeError(f"ecmoe.torch.MoE: x must be float32 (or bfloat16/float16, computed "
                            f"in float32), got {x.dtype}; precision='bf16' runs the expert GEMMs "
                            f"in bf16")
        if x.dim() < 1 or x.shape[-1] != c.d_model:
            raise ValueError(f"ecmoe.torch.MoE: x must be [..., d_model={c.d_model}], got shape "
                             f"{list(x.shape)}")
        flat = x.reshape(-1, c.d_model).contiguous()
        ids = self._token_ids(token_ids, x.shape[:-1])
        if router is not None and router not in ROUTERS:
            raise ValueError(f"ecmoe.torch.MoE: unknown router {router!r} (expected one of "
                             f"{', '.join(ROUTERS)})")
        if (router is None and c.router == "expert_threshold" and self.training and
                self.steps < c.threshold_warmup_steps):
            router = "expert_choice"  # warm-up: expert choice sets the cutoffs
        seed = 0
        if self.training and c.jitter > 0:
            seed = int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))
        weight = self.router.weight
        w1, w2 = self.experts.w1, self.experts.w2
        if self._pool_config != self.config:
            self._pool, self._pool_config = [], dict(self.config)
        call_args = dict(config=c, token_ids=ids, cutoffs=self.router.cutoff,
                         training=self.training, seed=seed, route_by=router,
                         update_cutoffs=self.training,
                         recycle=self._pool.pop() if self._pool else None)
        results = {"pool": self._pool}
        y, aux_loss = _EngineMoE.apply(flat, None if weight is None else weight.contiguous(),
                                       w1.contiguous(), w2.contiguous(), call_args, results)
        if y.grad_fn is None:  # no backward will come (no_grad, or nothing requires grad)
            self._pool.append(results["call"])
        if self.training:
            self.steps += 1
        return MoEOutput(y.reshape(x.shape).to(out_dtype), aux_loss, results["aux"],
                         results["stats"], results["plan"])

    def _token_ids(self, token_ids, shape):
        if token_ids is None:
            return None
        if not isinstance(token_ids, torch.Tensor):
            token_ids = torch.as_tensor(token_ids)
        if token_ids.device.type != "cpu":
            raise NotImplementedError(f"ecmoe.torch.MoE: token_ids are on {token_ids.device}; "
                                      f"the engine runs on the CPU only (no CUDA yet)")
        if token_ids.dtype.is_floating_point or token_ids.dtype.is_complex or \
                token_ids.dtype == torch.bool:
            raise TypeError(f"ecmoe.torch.MoE: token_ids must be integers, got {token_ids.dtype}")
        if token_ids.shape != shape:
            raise ValueError(f"ecmoe.torch.MoE: token_ids must have x's shape without its last "
                             f"dimension, {list(shape)}, got {list(token_ids.shape)}")
        flat = token_ids.reshape(-1)
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) > 2**31 - 1):
            raise ValueError(f"ecmoe.torch.MoE: token ids must be in [0, 2^31), got "
                             f"{int(flat.min())}..{int(flat.max())}")
        return flat.to(torch.int32).contiguous()
