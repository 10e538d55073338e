"""PyTorch peers of `ecmoe bench` (run from the repository root as modules, e.g.
`/usr/bin/python3 -m bench.bench_layer_torch`) and the check of the BLAS they run on
(bench.peer_blas). Shared code comes from the tools package (tools/__init__.py)."""
