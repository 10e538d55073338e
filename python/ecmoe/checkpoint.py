"""ecmoe checkpoints as PyTorch models: load(path) -> ecmoe.model.Transformer.

Reads a training checkpoint (`ecmoe train`: <out>/checkpoint.safetensors) or a fine-tuned
classifier (`ecmoe finetune`: <out>/model.safetensors, whose encoder is loaded; its head is in
read(path).extra); docs/checkpoint-format.md has both layouts. The model is built from the
config the file records, its FFNs by the `moe` factory (default: ecmoe.torch.MoE, which needs the
compiled extension), its parameters (and the threshold-routing cutoffs, where the FFN keeps them)
copied in; it comes back in evaluation mode (the evaluation capacity factor), as `ecmoe eval`
runs it. The file's checksums are not verified here (`ecmoe inspect` and every engine command do).
"""

import json
import struct
from dataclasses import dataclass

import torch

from ecmoe import safetensors
from ecmoe.model import ModelConfig, Transformer

TRAIN_FORMAT = "ecmoe-train-checkpoint"
CLASSIFIER_FORMAT = "ecmoe-finetuned-classifier"
STATE_PREFIX = "state."  # router state: layers.L.ffn.router.cutoff
SKIPPED_PREFIXES = ("adam_m.", "adam_v.", "train.", "optim.")


@dataclass
class CheckpointFile:
    config: dict  # the run config (a fine-tuned model: its encoder's pre-training config)
    params: dict  # the model's parameters: name -> float32 tensor
    state: dict  # the router state without its prefix: layers.L.ffn.router.cutoff -> tensor
    extra: dict  # anything else that is not bookkeeping, e.g. a classifier's head
    metadata: dict  # the file's __metadata__


def read(path):
    """The parts of an ecmoe checkpoint or fine-tuned model. Raises ValueError naming the file
    when it is neither."""
    try:
        tensors, metadata = safetensors.read(path)
    except (OSError, ValueError, KeyError, TypeError, struct.error) as e:
        raise ValueError(f"'{path}' is not a readable safetensors file ({e})") from None
    fmt = metadata.get("format")
    if fmt == TRAIN_FORMAT:
        key = "config"
    elif fmt == CLASSIFIER_FORMAT:
        key = "pretrain_config"
    else:
        raise ValueError(f"'{path}' is not an ecmoe checkpoint (its metadata format is {fmt!r}, "
                         f"not {TRAIN_FORMAT!r} or {CLASSIFIER_FORMAT!r})")
    config = json.loads(metadata[key])
    params, state, extra = {}, {}, {}
    for name, t in tensors.items():
        if name.startswith(STATE_PREFIX):
            state[name[len(STATE_PREFIX):]] = t
        elif name.startswith(SKIPPED_PREFIXES):
            continue
        elif name.startswith("classifier."):
            extra[name] = t
        else:
            params[name] = t
    return CheckpointFile(config, params, state, extra, metadata)


def ecmoe_moe(options):
    """The FFN factory of load(): ecmoe.torch.MoE with a layer's options (ModelConfig.ffn_options,
    the engine's names). Its initial weights come from seed 0 (so building a model draws nothing
    from torch's generator): load() overwrites them, Transformer.init_parameters redraws them."""
    try:
        from ecmoe.torch import MoE
    except ImportError as e:
        raise ImportError(f"ecmoe.torch.MoE is not available ({e}); build the extension "
                          "(docs/python.md) or pass moe= another FFN factory") from None
    o = options
    names = ("capacity_factor_eval", "max_experts_per_token", "group_size", "jitter",
             "load_balance_weight", "z_loss_weight", "token_choice_k", "renormalize_gates",
             "batch_prioritized", "threshold_ema_rate", "threshold_warmup_steps", "capped_lambda",
             "capped_max_iterations", "capped_tolerance", "capped_epsilon_scaling")
    return MoE(o["d_model"], o["d_ff"], o["n_experts"], router=o["router"],
               capacity_factor=o["capacity_factor_train"], seed=0, **{k: o[k] for k in names})


def load(path, moe=None, dtype=torch.float32):
    """An ecmoe checkpoint (training checkpoint or fine-tuned model) as an ecmoe.model.Transformer
    in evaluation mode: model(tokens [B, T], valid_len=None) -> logits [B, T, V];
    model.loss(tokens, targets) -> .loss (LM + weighted aux, the training loss), .lm_loss (what
    `ecmoe eval` reports). moe: the FFN factory (default ecmoe.torch.MoE); dtype: of the
    parameters. Raises ValueError naming the first tensor that is missing, extra or misshapen."""
    ckpt = read(path)
    config = ModelConfig.from_json(ckpt.config["model"])
    model = Transformer(config, moe or ecmoe_moe)
    expected = dict(model.named_parameters())
    for name, p in expected.items():
        if name not in ckpt.params:
            raise ValueError(f"'{path}' has no tensor {name}, which the model of its config "
                             f"({config.kind}, {config.n_layers} layers, router "
                             f"{config.moe['router']}) has")
        if tuple(ckpt.params[name].shape) != tuple(p.shape):
            raise ValueError(f"'{path}': {name} has shape {list(ckpt.params[name].shape)}, the "
                             f"model wants {list(p.shape)}")
    extra = sorted(set(ckpt.params) - set(expected))
    if extra:
        raise ValueError(f"'{path}' has tensor {extra[0]}, which the model does not")
    with torch.no_grad():
        for name, p in expected.items():
            p.copy_(ckpt.params[name])
    buffers = dict(model.named_buffers())
    for name, cutoff in ckpt.state.items():
        if name in buffers:
            buffers[name].copy_(cutoff)
        elif config.moe["router"] == "expert_threshold":
            raise ValueError(f"'{path}': threshold routing needs {name}, which the FFN has no "
                             "buffer for")
    return model.to(dtype).eval()
