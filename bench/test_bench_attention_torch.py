"""Tests of bench/bench_attention_torch.py's formulation: it computes the engine's attention op
(nn/attention.h's layout: each row of qkv is q | k | v, head h at columns h·head_dim.. of each
part), checked against a per-head float64 loop written from that description, with and without
the causal mask. From the repository root:
    /usr/bin/python3 -m bench.test_bench_attention_torch"""

import argparse
import math
import unittest

import torch

from bench import bench_attention_torch as peer


def reference(qkv, heads, head_dim, causal):
    """out[b, t, h·D + j] = Σ_s softmax_s(q_t·k_s / sqrt(D)) v_s[j] over the keys t may see."""
    b_count, t_count, _ = qkv.shape
    d = heads * head_dim
    x = qkv.double()
    out = torch.zeros(b_count, t_count, d, dtype=torch.float64)
    for b in range(b_count):
        for h in range(heads):
            cols = slice(h * head_dim, (h + 1) * head_dim)
            q, k, v = x[b, :, cols], x[b, :, d:][:, cols], x[b, :, 2 * d:][:, cols]
            for t in range(t_count):
                keys = t + 1 if causal else t_count
                w = torch.softmax((k[:keys] @ q[t]) / math.sqrt(head_dim), dim=0)
                out[b, t, cols] = w @ v[:keys]
    return out


class Formulation(unittest.TestCase):
    def test_matches_the_engines_op(self):
        gen = torch.Generator().manual_seed(3)
        for causal in (False, True):
            args = argparse.Namespace(heads=3, head_dim=4, causal=causal)
            qkv = torch.randn(2, 5, 3 * 12, generator=gen)
            got = peer.attention(qkv, args).double()
            want = reference(qkv, 3, 4, causal)
            self.assertEqual(tuple(got.shape), (2, 5, 12))
            self.assertLess(float((got - want).abs().max()), 1e-5, "causal=%s" % causal)

    def test_causal_differs_from_full(self):
        gen = torch.Generator().manual_seed(4)
        qkv = torch.randn(1, 6, 3 * 8, generator=gen)
        full = peer.attention(qkv, argparse.Namespace(heads=2, head_dim=4, causal=False))
        causal = peer.attention(qkv, argparse.Namespace(heads=2, head_dim=4, causal=True))
        # The last query sees every key either way; the first sees only itself under the mask.
        self.assertLess(float((full[:, -1] - causal[:, -1]).abs().max()), 1e-6)
        self.assertGreater(float((full[:, 0] - causal[:, 0]).abs().max()), 1e-3)


if __name__ == "__main__":
    unittest.main()
