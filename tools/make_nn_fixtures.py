"""Writes tests/fixtures/nn_torch_reference.safetensors: inputs, outputs and gradients of the
nn kernels (layernorm, linear, attention, embedding, cross-entropy) computed by PyTorch, for the
C++ parity test tests/nn/test_torch_parity.cpp.

Run from the repository root with Debian's PyTorch:
    /usr/bin/python3 -m tools.make_nn_fixtures [--out FILE]
Inputs are drawn in float32 (the exact values the C++ side reads), all arithmetic is float64,
results are stored as float32. Every gradient is that of L = sum(w * out) for a stored random w
("dout"), except cross-entropy's, which is of the mean loss itself.
The file is written by tools/safetensors_io.py (tensors in the order drawn, no metadata).
"""
import argparse
import os

import torch
import torch.nn.functional as F

from tools import safetensors_io

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                   "tests", "fixtures",
                                                   "nn_torch_reference.safetensors"))
out_path = os.path.normpath(parser.parse_args().out)

torch.manual_seed(1234)
tensors = {}  # name -> float32 or int32 tensor, in insertion order


def store(name, t):
    t = t.detach()
    tensors[name] = t.to(torch.int32) if name.endswith(("targets", "tokens", "valid_len")) \
        else t.to(torch.float32)


def draw(name, *shape, scale=1.0, shift=0.0):
    """A float32 input, stored, returned as float64 leaf requiring grad."""
    x = (torch.randn(*shape) * scale + shift).to(torch.float32)
    store(name, x)
    return x.to(torch.float64).requires_grad_(True)


def backward_of_weighted_sum(prefix, out, inputs):
    w = draw(prefix + ".dout", *out.shape).detach()
    grads = torch.autograd.grad((out * w).sum(), [t for _, t in inputs])
    store(prefix + ".out", out)
    for (name, _), g in zip(inputs, grads):
        store(prefix + "." + name, g)


# LayerNorm over the last dim, eps 1e-5: x [6, 10] (a mean far from 0), gain, bias [10].
x = draw("ln.x", 6, 10, shift=3.0)
gain, bias = draw("ln.gain", 10), draw("ln.bias", 10)
out = F.layer_norm(x, (10,), gain, bias, eps=1e-5)
backward_of_weighted_sum("ln", out, [("dx", x), ("dgain", gain), ("dbias", bias)])

# Linear, W stored [in, out]: x [5, 6], W [6, 7], b [7].
x, w, b = draw("lin.x", 5, 6), draw("lin.w", 6, 7, scale=0.5), draw("lin.b", 7)
backward_of_weighted_sum("lin", F.linear(x, w.t(), b), [("dx", x), ("dw", w), ("db", b)])

# Attention core through torch's own multi-head attention with identity projections:
# qkv [B=2, T=5, 3*d], d = H*hd = 2*3; causal and not, with and without key padding.
B, T, H, hd = 2, 5, 2, 3
d = H * hd
valid_len = torch.tensor([5, 3])
store("attn.valid_len", valid_len)
identity_in = torch.cat([torch.eye(d)] * 3).to(torch.float64)
identity_out = torch.eye(d, dtype=torch.float64)


def torch_attention(qkv, causal, padded):
    q, k, v = (qkv[..., i * d:(i + 1) * d].transpose(0, 1) for i in range(3))  # [T, B, d]
    causal_mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1) if causal else None
    padding_mask = (torch.arange(T)[None, :] >= valid_len[:, None]) if padded else None
    out, _ = F.multi_head_attention_forward(
        q, k, v, d, H, identity_in, None, None, None, False, 0.0, identity_out, None,
        training=False, key_padding_mask=padding_mask, need_weights=False, attn_mask=causal_mask)
    return out.transpose(0, 1)  # [B, T, d]


def plain_attention(qkv, causal, padded):  # the same by hand, as a cross-check of the call above
    q, k, v = (qkv[..., i * d:(i + 1) * d].reshape(B, T, H, hd).transpose(1, 2) for i in range(3))
    s = q @ k.transpose(-1, -2) / hd ** 0.5
    masked = torch.zeros(B, 1, T, T, dtype=torch.bool)
    if causal:
        masked |= torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    if padded:
        masked |= (torch.arange(T)[None, :] >= valid_len[:, None])[:, None, None, :]
    p = torch.softmax(s.masked_fill(masked, float("-inf")), dim=-1)
    return (p @ v).transpose(1, 2).reshape(B, T, d)


for causal in (False, True):
    for padded in (False, True):
        name = "attn_" + ("causal" if causal else "bidir") + ("_padded" if padded else "")
        qkv = draw(name + ".qkv", B, T, 3 * d)
        out = torch_attention(qkv, causal, padded)
        assert torch.allclose(out, plain_attention(qkv, causal, padded), atol=1e-12)
        backward_of_weighted_sum(name, out, [("dqkv", qkv)])

# Token + position embedding: tokens [2, 5] over a vocabulary of 4 (repeats), dim 3.
tokens = torch.tensor([[0, 3, 3, 1, 0], [2, 3, 0, 0, 3]])
store("emb.tokens", tokens)
table, pos = draw("emb.table", 4, 3), draw("emb.pos", 5, 3)
out = F.embedding(tokens, table) + pos[None]
backward_of_weighted_sum("emb", out, [("dtable", table), ("dpos", pos)])

# Cross-entropy with ignore index -1, mean over counted rows: logits [7, 9], 3 rows ignored.
logits = draw("ce.logits", 7, 9, scale=2.0)
targets = torch.tensor([4, -1, 0, 8, -1, -1, 2])
store("ce.targets", targets)
loss = F.cross_entropy(logits, targets, ignore_index=-1, reduction="mean")
store("ce.loss", loss.reshape(1))
store("ce.dlogits", torch.autograd.grad(loss, logits)[0])

size = safetensors_io.write(out_path, tensors)
print(f"wrote {out_path}: {len(tensors)} tensors, {size} bytes")
