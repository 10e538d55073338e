"""The MoE layer's options are named in three places: the engine's config (`ecmoe train
--print-config`'s model.moe, src/train/train_config.cpp), ecmoe.model.MOE_DEFAULTS (what load()
reads from a checkpoint's config) and the extension's MoeConfig (what ecmoe.torch.MoE sets). A key
added to one and not the others would be dropped without a word when a checkpoint is loaded, so
these tests compare the three, names and defaults, and check that load()'s factory passes every
option on."""

import json
import math

import pytest

from engine_util import HAVE_EXTENSION, run_ecmoe
from ecmoe.model import MOE_DEFAULTS

# Options with no meaning inside one process: routing over all MPI ranks' tokens.
NOT_IN_THE_MODULE = {"global_routing"}


def engine_moe_defaults(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    moe = json.loads(run_ecmoe("train", "--config", empty, "--print-config"))["model"]["moe"]
    flat = {k: v for k, v in moe.items() if k != "capped"}
    for key, value in moe["capped"].items():  # as ecmoe.model.ModelConfig.from_json flattens
        flat[key if key == "max_experts_per_token" else "capped_" + key] = value
    return flat


def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6)
    return a == b


def test_model_defaults_are_the_engines(tmp_path):
    engine = engine_moe_defaults(tmp_path)
    assert sorted(engine) == sorted(MOE_DEFAULTS)
    for key, value in engine.items():
        assert same(MOE_DEFAULTS[key], value), key


@pytest.mark.skipif(not HAVE_EXTENSION, reason="ecmoe.torch (the compiled extension) not built")
def test_extension_binds_every_option_with_the_engines_default(tmp_path):
    from ecmoe import _C
    config = _C.MoeConfig()
    for key, value in engine_moe_defaults(tmp_path).items():
        if key in NOT_IN_THE_MODULE:
            continue
        assert hasattr(config, key), f"_C.MoeConfig lacks {key}"
        assert same(getattr(config, key), value), key


@pytest.mark.skipif(not HAVE_EXTENSION, reason="ecmoe.torch (the compiled extension) not built")
def test_loads_factory_passes_every_option_on():
    from ecmoe.checkpoint import ecmoe_moe
    changed = dict(MOE_DEFAULTS, router="expert_choice_capped", n_experts=4,
                   capacity_factor_train=1.5, capacity_factor_eval=2.5, group_size=16,
                   token_choice_k=1, renormalize_gates=False, batch_prioritized=True,
                   load_balance_weight=0.01, z_loss_weight=0.002, jitter=0.1,
                   threshold_ema_rate=0.2, threshold_warmup_steps=7, max_experts_per_token=3,
                   capped_lambda=0.004, capped_max_iterations=50, capped_tolerance=0.01,
                   capped_epsilon_scaling=False)
    for key, value in MOE_DEFAULTS.items():  # every option differs from its default
        assert key in NOT_IN_THE_MODULE or not same(changed[key], value), key
    module = ecmoe_moe(dict(changed, d_model=8, d_ff=16))
    config = module._engine_config()
    for key, value in changed.items():
        if key not in NOT_IN_THE_MODULE:
            assert same(getattr(config, key), value), key
