"""Prepared data (`ecmoe prepare`) and the engine's batches, in Python.

A data folder holds manifest.json, tokenizer.model and one token shard per split (train.bin,
val.bin): the split's token ids back to back, little-endian uint16 (uint32 when the vocabulary
does not fit), documents separated by EOS (id 3); docs/training.md. open_split checks the shard's
size and ids against the manifest (not its checksum: `ecmoe train` and `eval` do).

Batches are the engine's (src/train/batches.{h,cpp}), drawn from the same counter-based random
numbers (src/core/rng.h), so fixed_batch(…, index) is exactly the validation batch `ecmoe eval`
and training evaluate:
  encoder (masked LM): a window of T tokens, each position selected with mask_prob and then
                       replaced by [MASK] (mask_token_prob), a random ordinary token
                       (random_token_prob) or kept; targets: the original id where selected, -1
                       elsewhere (if none is selected, the position with the smallest draw is)
  decoder (next token): a window of T + 1 tokens; tokens = w[0:T], targets = w[1:T+1]
"""

import json
import os
from dataclasses import dataclass

import numpy as np

EOS_ID = 3  # ends every document (src/data/tokenizer.h)
MASK_ID = 4  # "[MASK]"
FIRST_ORDINARY_ID = 7
VALIDATION_MASKS = 1 << 62  # the mask stream of validation batch i is VALIDATION_MASKS + i
_U64 = 0xFFFFFFFFFFFFFFFF


def open_split(data_dir, split):
    """The token ids of `split` ("train" or "val") of a prepared folder, as a numpy array
    (uint16 or uint32). Raises ValueError with one line naming the problem."""
    path = os.path.join(data_dir, "manifest.json")
    if not os.path.isfile(path):
        raise ValueError(f"no prepared data in {data_dir} ({path} is missing; run `ecmoe "
                         "prepare`)")
    with open(path) as f:
        manifest = json.load(f)
    if manifest.get("format") != "ecmoe-tokens":
        raise ValueError(f"{path}: not an ecmoe token manifest")
    entry = manifest["splits"].get(split)
    if entry is None:
        raise ValueError(f"no split '{split}' in {path}")
    shard = os.path.join(data_dir, entry["file"])
    with open(shard, "rb") as f:
        blob = f.read()
    if len(blob) != entry["bytes"]:
        raise ValueError(f"token shard {shard} has {len(blob)} bytes, the manifest says "
                         f"{entry['bytes']} (partial or damaged); rerun `ecmoe prepare`")
    dtype = {"uint16": "<u2", "uint32": "<u4"}[manifest["dtype"]]
    tokens = np.frombuffer(blob, dtype=dtype)
    if tokens.size and int(tokens.max()) >= manifest["vocab_size"]:
        raise ValueError(f"token shard {shard} holds id {int(tokens.max())} but the vocabulary "
                         f"has {manifest['vocab_size']} pieces")
    return tokens


def vocab_size(data_dir):
    with open(os.path.join(data_dir, "manifest.json")) as f:
        return json.load(f)["vocab_size"]


# ---------------------------------------------------------------------------------------------
# The engine's random numbers (src/core/rng.h), vectorised over indices.


def _mix64(z):
    """mix64 of a uint64 numpy array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class Rng:
    """Rng(seed, stream): value i is a pure function of (seed, stream, i)."""

    def __init__(self, seed, stream):
        s = _mix64(np.array([(stream + 0x51ED27) & _U64], dtype=np.uint64))
        self.key = _mix64(np.uint64(seed & _U64) ^ s)[0]

    def bits(self, index):
        return _mix64(self.key ^ _mix64(np.asarray(index, dtype=np.uint64)))

    def uniform(self, index):
        """float32 in [0, 1) with 24 random bits."""
        return (self.bits(index) >> np.uint64(40)).astype(np.float32) * np.float32(1 / 16777216)

    def below(self, index, bound):
        return self.bits(index) % np.uint64(bound)


# ---------------------------------------------------------------------------------------------
# Batches


@dataclass
class BatchSpec:
    """What the engine's batch_spec(config, batch_size) holds."""
    kind: str  # "encoder" or "decoder"
    batch_size: int
    seq_len: int
    vocab_size: int
    mask_prob: float = 0.15
    mask_token_prob: float = 0.8
    random_token_prob: float = 0.1
    data_seed: int = 2
    mask_seed: int = 3

    @classmethod
    def from_run_config(cls, config, batch_size=None):
        """From a run config (a checkpoint's "config" metadata, parsed); batch_size defaults to
        the evaluation batch size (eval.batch_size, else the training micro-batch,
        batch_size / grad_accum)."""
        model, data, seeds = config["model"], config.get("data", {}), config.get("seeds", {})
        if batch_size is None:
            batch_size = (config.get("eval", {}).get("batch_size", 0)
                          or config["batch_size"] // config.get("grad_accum", 1))
        return cls(kind=model["kind"], batch_size=batch_size, seq_len=model["seq_len"],
                   vocab_size=model["vocab_size"],
                   **{k: data[k] for k in ("mask_prob", "mask_token_prob", "random_token_prob")
                      if k in data},
                   data_seed=seeds.get("data", 2), mask_seed=seeds.get("mask", 3))

    @property
    def width(self):
        return self.seq_len + 1 if self.kind == "decoder" else self.seq_len


def mask_tokens(tokens, spec, rng):
    """Masked-LM corruption of tokens [n] (numpy int32): returns (tokens, targets)."""
    n = tokens.size
    p = np.arange(n, dtype=np.uint64)
    select = rng.uniform(3 * p)
    how = rng.uniform(3 * p + 1)
    random_ids = FIRST_ORDINARY_ID + rng.below(3 * p + 2, spec.vocab_size - FIRST_ORDINARY_ID)
    f32 = np.float32
    chosen = select < f32(spec.mask_prob)
    out = tokens.copy()
    targets = np.where(chosen, tokens, -1).astype(np.int32)
    keep_above = f32(f32(spec.mask_token_prob) + f32(spec.random_token_prob))
    to_mask = chosen & (how < f32(spec.mask_token_prob))
    to_random = chosen & ~to_mask & (how < keep_above)
    out[to_mask] = MASK_ID
    out[to_random] = random_ids[to_random].astype(np.int32)
    if not chosen.any():
        least = int(np.argmin(select))  # the first of equal draws, as the engine's strict <
        targets[least] = tokens[least]
        out[least] = MASK_ID
    return out, targets


def make_batch(windows, spec, mask_stream):
    """windows [B, width] (numpy) -> (tokens [B, T], targets [B, T]) int32."""
    windows = windows.astype(np.int32)
    if spec.kind == "decoder":
        return windows[:, :-1].copy(), windows[:, 1:].copy()
    tokens, targets = mask_tokens(windows.reshape(-1), spec, Rng(spec.mask_seed, mask_stream))
    return tokens.reshape(windows.shape), targets.reshape(windows.shape)


def _windows(split, starts, width):
    return np.stack([np.asarray(split[s:s + width]) for s in starts])


def _check_split(split, spec):
    if len(split) < spec.width:
        raise ValueError(f"the split has {len(split)} tokens, fewer than one window of "
                         f"{spec.width} (seq_len {spec.seq_len})")


def fixed_batch(split, spec, batches, index):
    """Validation batch `index` of `batches` (evenly spaced windows over the whole split, the
    same every time): (tokens, targets) as numpy int32 [B, T]."""
    _check_split(split, spec)
    span = len(split) - spec.width
    count = batches * spec.batch_size
    starts = [(j * span // (count - 1)) if count > 1 else 0
              for j in range(index * spec.batch_size, (index + 1) * spec.batch_size)]
    return make_batch(_windows(split, starts, spec.width), spec, VALIDATION_MASKS + index)


def random_batch(split, spec, index):
    """Training batch `index` (windows at random positions, from Rng(data_seed, index))."""
    _check_split(split, spec)
    span = len(split) - spec.width
    starts = Rng(spec.data_seed, index).below(np.arange(spec.batch_size), span + 1)
    return make_batch(_windows(split, [int(s) for s in starts], spec.width), spec, index)
