"""ecmoe.torch.MoE (the engine's layer through the C++ extension) against the float64 reference
layer of tools/make_moe_fixtures.py, for every router, fp32 and bf16; thread invariance; cutoffs;
bad inputs. Run by ctest (python_tests) with PYTHONPATH=build/python:<repository root>.

Inputs are the parity fixtures' (tests/fixtures/moe/: draws whose routing decisions are far from
ties, so float32 and float64 route alike); the reference runs live on them.
"""

import copy
import math
import os
import subprocess
import sys

import pytest
import torch

from ecmoe.torch import MoE, get_num_threads, set_num_threads
from ecmoe import _C
from tools import safetensors_io
from tools.make_moe_fixtures import cases, config_for, layer

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "moe")
# float32 against float64, as tests/parity/test_moe_parity.cpp: max |got - ref| <= 1e-5 ·
# max|ref| (floored at 1e-3); measured ~3e-7. Gates are probabilities: 1e-6.
REL_TOL, ABS_FLOOR, GATE_TOL = 1e-5, 1e-3, 1e-6
U_BF16 = 2.0**-8  # bf16 unit roundoff
CASES = {name: config_for(cfg) for name, cfg in cases()}


def module_for(cfg, **overrides):
    kw = dict(router=cfg["router"], capacity_factor=cfg["capacity_factor"],
              # different, so a training forward must pick the training factor
              capacity_factor_eval=2 * cfg["capacity_factor"] + 1,
              group_size=cfg["group_size"], token_choice_k=cfg["token_choice_k"],
              renormalize_gates=cfg["renormalize_gates"],
              batch_prioritized=cfg["batch_prioritized"],
              load_balance_weight=cfg["load_balance_weight"], z_loss_weight=cfg["z_loss_weight"],
              max_experts_per_token=cfg["max_experts_per_token"],
              capped_max_iterations=cfg.get("capped_max_iterations"), seed=1)
    kw.update(overrides)
    return MoE(cfg["d_model"], cfg["d_ff"], cfg["n_experts"], **kw)


def load_inputs(name):
    tensors, _ = safetensors_io.read(os.path.join(FIXTURES, name + ".safetensors"))
    return tensors


def set_weights(moe, t):
    with torch.no_grad():
        if moe.router.weight is not None:
            moe.router.weight.copy_(t["router"])
        moe.experts.w1.copy_(t["w1"])
        moe.experts.w2.copy_(t["w2"])


def reference(cfg, t, aux_scale=1.0):
    """float64: y, plan [(expert, token, gate)], aux, gradients of sum(y·dy) + aux_scale·aux."""
    leaves = [t[k].double().requires_grad_(True) for k in ("x", "router", "w1", "w2")
              if k in t]
    if "router" not in t:
        leaves.insert(1, torch.zeros(cfg["d_model"], cfg["n_experts"], dtype=torch.float64))
    x, wg, w1, w2 = leaves
    y, plan, aux, _, _ = layer(cfg, x, t["token_ids"], wg, w1, w2)
    loss = (y * t["dy"].double()).sum() + aux_scale * aux["total"]
    loss.backward()
    grads = {"x": x.grad, "w1": w1.grad, "w2": w2.grad}
    if "router" in t:
        grads["router"] = wg.grad
    return y.detach(), plan, aux, grads


def run_module(moe, t, aux_scale=1.0):
    x = t["x"].clone().requires_grad_(True)
    out = moe(x, token_ids=t["token_ids"])
    (out.y * t["dy"]).sum().add(aux_scale * out.aux_loss).backward()
    grads = {"x": x.grad, "w1": moe.experts.w1.grad, "w2": moe.experts.w2.grad}
    if moe.router.weight is not None:
        grads["router"] = moe.router.weight.grad
    return out, grads


def assert_close(what, got, ref, rel_tol=REL_TOL):
    ref = ref.double()
    worst = (got.double() - ref).abs().max().item()
    bound = rel_tol * max(ref.abs().max().item(), ABS_FLOOR)
    assert worst <= bound, f"{what}: max |got - ref| {worst:.3g} > {bound:.3g}"


def plan_set(plan):
    return sorted(zip(plan.expert.tolist(), plan.token.tolist()))


@pytest.mark.parametrize("name", sorted(CASES))
def test_fp32_matches_reference(name):
    cfg = CASES[name]
    t = load_inputs(name)
    moe = module_for(cfg)
    set_weights(moe, t)
    out, grads = run_module(moe, t)
    y_ref, plan_ref, aux_ref, grads_ref = reference(cfg, t)
    assert plan_set(out.plan) == sorted((i, tok) for i, tok, _ in plan_ref)
    gate_ref = {(i, tok): float(g) for i, tok, g in plan_ref}
    for i, tok, g in zip(out.plan.expert.tolist(), out.plan.token.tolist(), out.plan.gate.tolist()):
        assert abs(g - gate_ref[(i, tok)]) <= GATE_TOL
    assert_close("y", out.y, y_ref)
    assert out.y.shape == t["x"].shape
    for key in ("load_balance", "z_loss"):
        ref = float(aux_ref[key])
        assert abs(out.aux[key] - ref) <= REL_TOL * max(1.0, abs(ref)), key
    assert abs(out.aux_loss.item() - float(aux_ref["total"])) <= REL_TOL
    for key, ref in grads_ref.items():
        assert_close("grad " + key, grads[key], ref)
    # statistics of this call
    n = t["x"].shape[0]
    assert out.stats["tokens"] == n
    assert sum(out.stats["experts_per_token"]) == n
    assert sum(out.stats["tokens_per_expert"]) == len(plan_ref)
    if cfg["router"] in ("top1", "top2"):
        assert out.stats["dropped_assignments"] == int(layer(cfg, t["x"].double(), t["token_ids"],
                                                             t["router"].double(),
                                                             t["w1"].double(),
                                                             t["w2"].double())[4][
                                                                 "dropped_assignments"])


@pytest.mark.parametrize("aux_scale", [0.0, 2.5])
def test_aux_loss_gradient_follows_its_weight_in_the_loss(aux_scale):
    # The engine's backward includes the weighted aux losses; the gradient reaching aux_loss
    # scales that part (0: aux_loss not in the loss at all).
    name = "top2_b"
    cfg, t = CASES[name], load_inputs(name)
    moe = module_for(cfg)
    set_weights(moe, t)
    _, grads = run_module(moe, t, aux_scale)
    _, _, _, grads_ref = reference(cfg, t, aux_scale)
    for key, ref in grads_ref.items():
        assert_close("grad " + key, grads[key], ref)


def test_eval_mode_uses_the_eval_capacity_factor():
    cfg, t = CASES["expert_choice_b"], load_inputs("expert_choice_b")
    moe = module_for(cfg)
    set_weights(moe, t)
    n, e = t["x"].shape[0], cfg["n_experts"]
    k = lambda c: max(1, min(n, math.floor(c * n / e + 0.5)))
    assert moe(t["x"]).stats["capacity"] == k(cfg["capacity_factor"])
    moe.eval()
    with torch.no_grad():
        out = moe(t["x"])
    assert out.stats["capacity"] == k(2 * cfg["capacity_factor"] + 1)
    assert len(out.plan.token) == e * k(2 * cfg["capacity_factor"] + 1)


def test_leading_dimensions_and_non_contiguous_input():
    cfg, t = CASES["top2_b"], load_inputs("top2_b")
    moe = module_for(cfg)
    set_weights(moe, t)
    flat = moe(t["x"]).y
    x3 = t["x"].reshape(4, 8, -1)
    assert torch.equal(moe(x3).y, flat.reshape(4, 8, -1))
    strided = torch.stack([t["x"], torch.zeros_like(t["x"])], dim=-1)[..., 0]  # stride 2
    assert not strided.is_contiguous()
    assert torch.equal(moe(strided).y, flat)


# ---------------------------------------------------------------------------------------------
# bf16: the router stays fp32, so the plan is identical; outputs and gradients within bounds
# from bf16 rounding. Each bf16 GEMM perturbs its result by at most 2u·|A||B| elementwise, about
# u normwise; y depends on two GEMMs, each gradient on at most four: allow 4u per GEMM, i.e.
# ‖Δ‖/‖ref‖ <= 8u for y and 16u for gradients (as tests/moe/test_moe_bf16.cpp). A wrong
# operand or a skipped conversion gives O(1).

def rel_norm(got, ref):
    return ((got.double() - ref.double()).norm() / ref.double().norm()).item()


@pytest.mark.parametrize("router", ["expert_choice", "expert_choice_capped", "top1", "top2",
                                    "hash", "dense", "expert_threshold"])
def test_bf16_within_bf16_rounding_of_the_reference(router):
    name = {"expert_threshold": "expert_choice_b"}.get(router, router + "_b")
    cfg, t = CASES[name], load_inputs(name)
    y_ref, plan_ref, _, grads_ref = reference(cfg, t)
    moe = module_for(cfg, router=router, precision="bf16")
    set_weights(moe, t)
    if router == "expert_threshold":
        # cutoffs at each expert's k-th score (from an expert-choice forward): the EC plan
        with torch.no_grad():
            moe(t["x"], router="expert_choice")
        moe.steps = moe.config["threshold_warmup_steps"]
    out, grads = run_module(moe, t)
    assert plan_set(out.plan) == sorted((i, tok) for i, tok, _ in plan_ref)
    assert rel_norm(out.y, y_ref) <= 8 * U_BF16
    for key, ref in grads_ref.items():
        assert rel_norm(grads[key], ref) <= 16 * U_BF16, key
    fp32 = module_for(cfg, router=router)
    fp32.load_state_dict(moe.state_dict())
    assert not torch.equal(fp32(t["x"], token_ids=t["token_ids"]).y, out.y), "bf16 not used"


# ---------------------------------------------------------------------------------------------
# Threads: bitwise the same results at 1 and 2 threads.

@pytest.mark.parametrize("router,precision", [("expert_choice", "fp32"), ("top2", "fp32"),
                                              ("expert_choice_capped", "fp32"),
                                              ("expert_choice", "bf16")])
def test_identical_at_one_and_two_threads(router, precision):
    saved = get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            set_num_threads(threads)
            assert get_num_threads() == threads == torch.get_num_threads()
            torch.manual_seed(5)
            moe = MoE(48, 96, 8, router=router, precision=precision, group_size=128,
                      load_balance_weight=0.01, z_loss_weight=0.001, seed=3)
            x = torch.randn(600, 48, requires_grad=True)
            out = moe(x)
            (out.y * torch.randn(600, 48)).sum().add(out.aux_loss).backward()
            results.append([out.y, x.grad] + [p.grad for p in moe.parameters()] +
                           [out.plan.token, out.plan.gate])
        for a, b in zip(*results):
            assert torch.equal(a, b)
    finally:
        set_num_threads(saved)


# ---------------------------------------------------------------------------------------------
# Threshold routing and its cutoffs.

def test_cutoffs_follow_the_engine_update_and_threshold_routing_after_warm_up():
    cfg, t = CASES["expert_choice_b"], load_inputs("expert_choice_b")
    moe = module_for(cfg, router="expert_threshold", threshold_warmup_steps=1,
                     threshold_ema_rate=0.25)
    set_weights(moe, t)
    assert torch.equal(moe.router.cutoff, torch.full((cfg["n_experts"],), -1.0))
    _, plan_ref, _, _ = reference(cfg, t)
    # Warm-up: routed by expert choice, cutoffs set to the k-th scores (first update: the target).
    first = moe(t["x"])
    assert plan_set(first.plan) == sorted((i, tok) for i, tok, _ in plan_ref)
    kth = torch.tensor(first.stats["kth_score"], dtype=torch.float32)
    assert torch.equal(moe.router.cutoff, kth)
    # Then by thresholds: with cutoffs at this batch's k-th scores, the same tokens as EC.
    second = moe(t["x"])
    assert plan_set(second.plan) == plan_set(first.plan)
    assert torch.equal(moe.router.cutoff, kth)
    # Another batch: cutoff += rate · (k-th score − cutoff).
    x2 = t["x"].flip(0) * 1.5
    before = moe.router.cutoff.clone()
    third = moe(x2)
    target = torch.tensor(third.stats["kth_score"], dtype=torch.float32)
    assert torch.allclose(moe.router.cutoff, before + 0.25 * (target - before), rtol=0, atol=1e-7)
    assert not torch.equal(moe.router.cutoff, before)
    # Threshold plan: every (expert, token) with score >= cutoff (float64 scores, none near one).
    scores = torch.softmax(x2.double() @ t["router"].double(), dim=-1)
    expected = sorted((i, tok) for tok in range(scores.shape[0]) for i in range(scores.shape[1])
                      if scores[tok, i] >= before[i])
    assert ((scores - before.double()).abs().min() > 1e-5)
    assert plan_set(third.plan) == expected
    # Evaluation does not move them.
    moe.eval()
    with torch.no_grad():
        moe(t["x"])
    assert torch.allclose(moe.router.cutoff, before + 0.25 * (target - before), rtol=0, atol=1e-7)
    assert "router.cutoff" in moe.state_dict()


def test_threshold_output_and_gradients_match_a_float64_oracle():
    cfg, t = CASES["expert_choice_a"], load_inputs("expert_choice_a")
    moe = module_for(cfg, router="expert_threshold", threshold_warmup_steps=0)
    set_weights(moe, t)
    with torch.no_grad():
        moe.router.cutoff.fill_(0.3)
    scores64 = torch.softmax(t["x"].double() @ t["router"].double(), dim=-1)
    assert (scores64 - 0.3).abs().min() > 1e-5
    out, grads = run_module(moe, t)
    # Oracle from the layer's definition: y = sum over (i, t) with S[t, i] >= cutoff of
    # S[t, i] · gelu(x_t W1_i) W2_i.
    x, wg, w1, w2 = [t[k].double().requires_grad_(True) for k in ("x", "router", "w1", "w2")]
    s = torch.softmax(x @ wg, dim=-1)
    mask = (s.detach() >= 0.3).double()
    hidden = torch.nn.functional.gelu(torch.einsum("nd,edf->enf", x, w1))
    per_expert = torch.einsum("enf,efd->end", hidden, w2)
    y = torch.einsum("ne,end->nd", s * mask, per_expert)
    (y * t["dy"].double()).sum().backward()
    assert_close("y", out.y, y.detach())
    for key, leaf in (("x", x), ("router", wg), ("w1", w1), ("w2", w2)):
        assert_close("grad " + key, grads[key], leaf.grad)


# ---------------------------------------------------------------------------------------------
# Construction, init, errors.

def test_init_is_the_engines_and_seeded():
    a = MoE(16, 32, 4, seed=7)
    b = MoE(16, 32, 4, seed=7)
    c = MoE(16, 32, 4, seed=8)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb) and not torch.equal(pa, pc), name
    assert set(dict(a.named_parameters())) == {"router.weight", "experts.w1", "experts.w2"}
    assert abs(a.router.weight.std().item() - 0.02) < 0.005
    assert abs(a.experts.w1.std().item() - 1 / 4) < 0.03  # 1/sqrt(d)
    torch.manual_seed(1)
    d = MoE(16, 32, 4)
    torch.manual_seed(1)
    e = MoE(16, 32, 4)
    assert torch.equal(d.experts.w1, e.experts.w1)
    dense = MoE(16, 32, 4, router="dense")
    assert dense.router.weight is None and dense.experts.w1.shape == (1, 16, 32)


def test_jitter_is_seeded_by_torchs_generator():
    moe = MoE(16, 32, 4, jitter=0.1, seed=2)
    x = torch.randn(40, 16)
    torch.manual_seed(3)
    a = moe(x).y
    torch.manual_seed(3)
    b = moe(x).y
    torch.manual_seed(4)
    c = moe(x).y
    assert torch.equal(a, b) and not torch.equal(a, c)
    moe.eval()
    assert torch.equal(moe(x).y, moe(x).y)


def raises(exc, match, fn, *args, **kwargs):
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)


def test_auto_precision_is_the_engines_native_one():
    # "auto" resolves once, at construction, to what `ecmoe info` calls native here: bf16 on a
    # CPU with bf16 instructions, fp32 elsewhere; the module's config names the resolved one.
    moe = MoE(8, 16, 4, precision="auto", seed=1)
    assert _C.native_precision() in ("fp32", "bf16")
    assert moe.config["precision"] == _C.native_precision()
    assert moe._engine_config().precision == _C.native_precision()
    assert f"precision={_C.native_precision()}" in repr(moe)


def test_bad_construction_raises():
    raises(ValueError, "unknown router 'top3'", MoE, 8, 16, 4, router="top3")
    raises(ValueError, "unknown precision", MoE, 8, 16, 4, precision="fp16")
    raises(ValueError, "capacity factor", MoE, 8, 16, 4, capacity_factor=-1.0)
    raises(ValueError, "d_model must be positive", MoE, 0, 16, 4)
    raises(TypeError, "d_model must be int", MoE, "8", 16, 4)
    raises(ValueError, "token_choice_k", MoE, 8, 16, 4, router="top2", token_choice_k=5)


def test_bad_inputs_raise():
    moe = MoE(8, 16, 4, seed=0)
    x = torch.randn(10, 8)
    raises(TypeError, r"x must be float32 \(or bfloat16/float16, computed in float32\), got "
           "torch.float64", moe, x.double())
    raises(TypeError, "x must be a tensor", moe, [[0.0] * 8])
    raises(ValueError, r"x must be \[..., d_model=8\], got shape \[10, 7\]", moe, x[:, :7])
    raises(NotImplementedError, "CPU only", moe, torch.empty(10, 8, device="meta"))
    hashed = MoE(8, 16, 4, router="hash", seed=0)
    raises(ValueError, "hash routing needs token_ids", hashed, x)
    raises(TypeError, "token_ids must be integers", hashed, x, token_ids=torch.zeros(10))
    raises(ValueError, "token_ids must have x's shape", hashed, x,
           token_ids=torch.zeros(9, dtype=torch.long))
    raises(ValueError, "token ids must be in", hashed, x,
           token_ids=torch.full((10,), -1, dtype=torch.long))
    assert hashed(x, token_ids=torch.arange(10)).plan.expert.tolist() == sorted(
        [i % 4 for i in range(10)])
    raises(ValueError, "unknown router", moe, x, router="nope")
    # The engine's own errors: a threshold layer never calibrated, in evaluation.
    threshold = MoE(8, 16, 4, router="expert_threshold", seed=0).eval()
    with pytest.raises(_C.EngineError, match="expert 0 has no calibrated cutoff"):
        threshold(x)
    assert issubclass(_C.EngineError, RuntimeError)
    raises(_C.EngineError, "cannot route by dense", moe, x, router="dense")


def test_replaced_weights_with_wrong_shape_or_dtype_raise():
    moe = MoE(8, 16, 4, seed=0)
    x = torch.randn(10, 8)
    moe.experts.w1 = torch.nn.Parameter(torch.zeros(4, 8, 15))
    raises(ValueError, r"experts.w1 must have shape \[4, 8, 16\], got \[4, 8, 15\]", moe, x)
    moe = MoE(8, 16, 4, seed=0)
    moe.router.weight = torch.nn.Parameter(moe.router.weight.double())
    raises(TypeError, "router.weight must be float32, got float64", moe, x)
    moe = MoE(8, 16, 4, seed=0)
    moe.router.weight = None
    raises(ValueError, "needs router.weight", moe, x)
    moe = MoE(8, 16, 4, router="expert_choice", seed=0)
    moe.router.cutoff = torch.zeros(3)
    raises(ValueError, r"router.cutoff must have shape \[4\]", moe, x)


def test_backward_guards():
    moe = MoE(8, 16, 4, seed=0)
    x = torch.randn(10, 8, requires_grad=True)
    out = moe(x)
    out.y.sum().backward(retain_graph=True)
    raises(RuntimeError, "backward ran twice", out.y.sum().backward)
    out = moe(x)
    with torch.no_grad():
        moe.experts.w1.add_(1.0)  # in place between forward and backward
    raises(RuntimeError, "modified by an inplace operation", out.y.sum().backward)
    # Two forwards pending at once keep their own activations.
    x1, x2 = torch.randn(10, 8, requires_grad=True), torch.randn(12, 8, requires_grad=True)
    o1, o2 = moe(x1), moe(x2)
    o2.y.sum().backward()
    o1.y.sum().backward()
    g1 = x1.grad.clone()
    x1.grad = None
    moe(x1).y.sum().backward()
    assert torch.equal(x1.grad, g1)


def test_deepcopy_and_pickle_keep_the_layer(tmp_path):
    moe = MoE(8, 16, 4, router="top2", load_balance_weight=0.01, seed=0)
    x = torch.randn(10, 8)
    y = moe(x).y
    assert torch.equal(copy.deepcopy(moe)(x).y, y)
    torch.save(moe, tmp_path / "moe.pt")
    assert torch.equal(torch.load(tmp_path / "moe.pt")(x).y, y)


def test_no_tokens():
    moe = MoE(8, 16, 4, seed=0)
    out = moe(torch.zeros(0, 8, requires_grad=True))
    assert out.y.shape == (0, 8) and out.stats["tokens"] == 0
    out.y.sum().backward()


def test_the_package_imports_without_the_extension():
    # From the source tree (python/, no ecmoe._C there): importing works, making a layer says
    # how to build the extension.
    source = os.path.join(os.path.dirname(__file__), "..", "..", "python")
    code = ("import ecmoe.torch\n"
            "try:\n    ecmoe.torch.MoE(8, 16, 2)\n"
            "except ImportError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=source), cwd="/")
    assert done.returncode == 0, done.stderr
    assert "ecmoe._C, the compiled engine, is not built" in done.stdout


def test_half_precision_x_is_computed_in_float32_and_returned_in_its_dtype():
    # A bf16 activation (an autocast region, a bf16 model) enters as its exact fp32 value: y is
    # the fp32 layer's y rounded to bf16, and x's gradient the fp32 gradient rounded to bf16.
    moe = MoE(8, 16, 4, seed=0)
    x16 = torch.randn(12, 8).bfloat16().requires_grad_()
    x32 = x16.detach().float().requires_grad_()
    r = torch.randn(12, 8)
    out16, out32 = moe(x16), moe(x32)
    assert out16.y.dtype == torch.bfloat16
    assert torch.equal(out16.y, out32.y.bfloat16())
    (out16.y.float() * r).sum().backward()
    (out32.y * r.bfloat16().float()).sum().backward()
    assert x16.grad.dtype == torch.bfloat16
    assert torch.equal(x16.grad, x32.grad.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = torch.nn.functional.linear(x32, torch.eye(8))  # bf16 under autocast
        assert moe(h).y.dtype == torch.bfloat16
