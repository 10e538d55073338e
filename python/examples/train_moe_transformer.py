"""Train a small PyTorch transformer whose FFNs are ecmoe.torch.MoE layers (docs/python.md).

The model is ecmoe.model.Transformer (the engine's architecture, in PyTorch) with every FFN an
ecmoe.torch.MoE; PyTorch does the rest (AdamW, autograd through the engine's MoE backward). It
reads the token shards of a folder written by `ecmoe prepare` (default data/english) and draws
the engine's batches (ecmoe.data: random windows for training, the fixed validation windows at
the end). Prints the loss every --log-every steps and the validation loss at the end; saves
nothing unless --save is given. The defaults run in a few minutes on 2 cores.

    ecmoe prepare                                   # data/english, once
    PYTHONPATH=build/python python3 python/examples/train_moe_transformer.py
    ... --router top2 --load-balance-weight 0.01    # GShard-style token choice instead
"""

import argparse
import math
import os
import sys
import time

import torch

from ecmoe import data
from ecmoe.checkpoint import ecmoe_moe
from ecmoe.model import ModelConfig, Transformer

ROUTERS = ("expert_choice", "expert_choice_capped", "top1", "top2", "hash", "dense")


def positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0 or (kind is float and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def non_negative_float(text):
    value = float(text)
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="data/english", help="a folder written by `ecmoe prepare`")
    p.add_argument("--kind", choices=("decoder", "encoder"), default="decoder")
    p.add_argument("--steps", type=positive(int), default=300)
    p.add_argument("--batch-size", type=positive(int), default=16)
    p.add_argument("--seq-len", type=positive(int), default=32)
    p.add_argument("--d-model", type=positive(int), default=128)
    p.add_argument("--layers", type=positive(int), default=2)
    p.add_argument("--heads", type=positive(int), default=4)
    p.add_argument("--d-ff", type=positive(int), default=256)
    p.add_argument("--experts", type=positive(int), default=8)
    p.add_argument("--router", choices=ROUTERS, default="expert_choice")
    p.add_argument("--capacity-factor", type=positive(float), default=2.0,
                   help="experts per token on average (expert choice) or the capacity "
                   "multiplier (token choice), in training and evaluation")
    p.add_argument("--load-balance-weight", type=non_negative_float, default=0.0)
    p.add_argument("--lr", type=positive(float), default=3e-3)
    p.add_argument("--log-every", type=positive(int), default=25)
    p.add_argument("--eval-batches", type=positive(int), default=4)
    p.add_argument("--seed", type=int, default=0, help="initialisation and data order")
    p.add_argument("--save", help="write the trained parameters here (torch.save of the "
                   "state_dict); nothing is saved by default")
    args = p.parse_args(argv)
    if args.d_model % args.heads:
        p.error(f"--d-model {args.d_model} is not a multiple of --heads {args.heads}")
    manifest = os.path.join(args.data, "manifest.json")
    if not os.path.isfile(manifest):
        p.error(f"--data {args.data}: no prepared data ({manifest} is missing; run `ecmoe "
                "prepare` or give the folder it wrote)")
    return args


def main(argv=None, moe=None):
    """moe: the FFN factory (default ecmoe.torch.MoE through ecmoe.checkpoint.ecmoe_moe)."""
    args = parse_args(argv)
    try:
        train, val = (data.open_split(args.data, s) for s in ("train", "val"))
    except ValueError as e:
        sys.exit(f"train_moe_transformer: {e}")
    torch.manual_seed(args.seed)
    config = ModelConfig(kind=args.kind, vocab_size=data.vocab_size(args.data),
                         seq_len=args.seq_len, d_model=args.d_model, n_layers=args.layers,
                         n_heads=args.heads, d_ff=args.d_ff, moe_every=1,
                         moe=dict(router=args.router, n_experts=args.experts,
                                  capacity_factor_train=args.capacity_factor,
                                  capacity_factor_eval=args.capacity_factor,
                                  load_balance_weight=args.load_balance_weight))
    model = Transformer(config, moe or ecmoe_moe)
    model.init_parameters()
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.kind}, {args.layers} layers, d {args.d_model}, {args.experts} experts "
          f"({args.router}, capacity factor {args.capacity_factor:g}), {params:,} parameters; "
          f"{len(train):,} training tokens in {args.data}", flush=True)
    spec = data.BatchSpec(kind=args.kind, batch_size=args.batch_size, seq_len=args.seq_len,
                          vocab_size=config.vocab_size, data_seed=args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = max(1, args.steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup))  # linear warm-up, then constant
    model.train()
    start, seen = time.perf_counter(), 0
    for step in range(1, args.steps + 1):
        tokens, targets = data.random_batch(train, spec, step - 1)
        out = model.loss(torch.from_numpy(tokens), torch.from_numpy(targets))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        seen += tokens.size
        if step % args.log_every == 0 or step == args.steps:
            rate = seen / (time.perf_counter() - start)
            print(f"step {step:5d}  loss {float(out.loss):.4f}  lm {float(out.lm_loss):.4f}  "
                  f"aux {float(out.aux_loss):.4f}  {rate:,.0f} tokens/s", flush=True)
    model.eval()
    total, counted = 0.0, 0
    with torch.no_grad():
        for i in range(args.eval_batches):
            tokens, targets = data.fixed_batch(val, spec, args.eval_batches, i)
            out = model.loss(torch.from_numpy(tokens), torch.from_numpy(targets))
            total += float(out.lm_loss) * out.counted
            counted += out.counted
    loss = total / max(counted, 1)
    print(f"validation loss {loss:.4f} (perplexity {math.exp(loss):.1f}) over {counted} targets",
          flush=True)
    if args.save:
        torch.save(model.state_dict(), args.save)
        print(f"saved {args.save}")
    return loss


if __name__ == "__main__":
    main()
