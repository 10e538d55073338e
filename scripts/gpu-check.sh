#!/usr/bin/env bash
# The CUDA backend's check on a GPU machine (docs/cuda.md), in one command: builds ecmoe with
# -DECMOE_CUDA=ON from the Debian packages scripts/fetch-gpu-debs.sh fetched into .gpu-debs/
# (unpacked into build-gpu/prefix, never over /), runs the CUDA tests (ctest label `cuda`) and
# compute-sanitizer on them, then `ecmoe bench layer --device cuda` beside the PyTorch peer
# (bench/bench_layer_torch.py --device cuda: eager, and torch.compile where --compile-shapes says)
# at the layer shapes of issue 15, `ecmoe bench train --device cuda` beside
# bench/bench_train_torch.py --device cuda (eager, torch.compile) on small and gpu-small (issue
# 16), then compute-sanitizer on the tests, and prints a compact summary. Not yet timed on a GPU machine: give the command the device's whole 600 s; what it
# printed and wrote to $OUT comes back even if it is cut off, and a second call can add --no-bench
# or --no-sanitizer. Everything it writes goes to
# $OUT (the device tool's folder) or gpu-results/: gpu-check.log (all output), bench.jsonl (one
# JSON object per measurement), summary.txt.
#   scripts/gpu-check.sh [--no-bench] [--no-sanitizer] [--shapes "N,d,f,E ..."]
# Exit status: 0 when the build and every test passed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bench=1 sanitizer=1
shapes="4096,256,1024,8 16384,768,3072,64 32768,1024,4096,64 65536,2048,8192,64"
compile_shapes="16384,768,3072,64"
while (($#)); do
  case "$1" in
    --no-bench) bench=0 ;;
    --no-sanitizer) sanitizer=0 ;;
    --shapes) shapes="$2"; shift ;;
    --compile-shapes) compile_shapes="$2"; shift ;;
    *) echo "gpu-check: unknown argument '$1' (--no-bench, --no-sanitizer, --shapes, --compile-shapes)" >&2; exit 1 ;;
  esac
  shift
done
out="${OUT:-$root/gpu-results}"
mkdir -p "$out"
log="$out/gpu-check.log"
jsonl="$out/bench.jsonl"
: >"$log"
: >"$jsonl"
summary=()
failed=0
say() { summary+=("$*"); echo "gpu-check: $*"; }
# step NAME COMMAND...: runs it into the log; on failure prints the log's last lines.
step() {
  local name=$1 t0=$SECONDS start
  shift
  start=$(wc -l <"$log")
  echo "=== $name: $*" >>"$log"
  if "$@" >>"$log" 2>&1; then
    say "$name: ok ($((SECONDS - t0)) s)"
  else
    say "$name: FAILED ($((SECONDS - t0)) s)"
    tail -n +"$((start + 1))" "$log" | tail -40
    failed=1
    return 1
  fi
}

{ nvidia-smi -L; nvcc --version | tail -1; } >>"$log" 2>&1
say "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"

prefix="$root/build-gpu/prefix"
ls .gpu-debs/*.deb >/dev/null 2>&1 || { say "no .gpu-debs/*.deb: run scripts/fetch-gpu-debs.sh first and carry .gpu-debs"; exit 1; }
mkdir -p "$prefix"
for deb in .gpu-debs/*.deb; do dpkg -x "$deb" "$prefix" || exit 1; done
export PKG_CONFIG_PATH="$prefix/usr/lib/x86_64-linux-gnu/pkgconfig:$prefix/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export PKG_CONFIG_SYSROOT_DIR="$prefix"
export LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
step configure cmake -S . -B build-gpu "${generator[@]}" -DECMOE_CUDA=ON -DECMOE_PYTHON=OFF \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix/usr" || { printf '%s\n' "${summary[@]}" >"$out/summary.txt"; exit 1; }
step build cmake --build build-gpu -j"$(nproc)" --target ecmoe test_cuda_ops test_cuda_moe_layer \
  test_cuda_nn_ops test_cuda_model test_cuda_training test_cuda_finetune test_cuda_decode \
  test_dispatch_combine test_cuda_flash_attention || { printf '%s\n' "${summary[@]}" >"$out/summary.txt"; exit 1; }
step "cuda tests" ctest --test-dir build-gpu -L cuda --output-on-failure -j4
if grep -q "tests passed\|tests failed" "$log"; then
  say "  $(grep -E '[0-9]+% tests passed' "$log" | tail -1)"
fi
step "dispatch/combine tests (CPU)" build-gpu/tests/test_dispatch_combine
step "ecmoe info" build-gpu/ecmoe info
grep -E "^cuda:" "$log" | tail -1 | sed 's/^/  /'

if ((bench)); then
  # Expert choice at every shape; top-2 (token choice, capacity factor 2) at the second.
  runs=()
  for shape in $shapes; do runs+=("expert_choice,$shape"); done
  second=$(awk '{print $2}' <<<"$shapes")
  [[ -n "$second" ]] && runs+=("top2,$second")
  for run in "${runs[@]}"; do
    IFS=, read -r router n d f e <<<"$run"
    shape="$n,$d,$f,$e"
    args=(--tokens "$n" --d-model "$d" --d-ff "$f" --experts "$e" --capacity-factor 2
          --router "$router" --precision bf16 --repeats 10)
    ours=$(build-gpu/ecmoe bench layer --device cuda "${args[@]}" --warmup 3 --json 2>>"$log")
    if [[ -z "$ours" ]]; then say "bench $router $shape: ecmoe FAILED"; failed=1; continue; fi
    echo "$ours" >>"$jsonl"
    peer_args=("${args[@]}" --device cuda --formulation index --warmup 3 --json)
    [[ $router == expert_choice && " $compile_shapes " == *" $shape "* ]] && peer_args+=(--compile)
    peer=$(PYTHONUNBUFFERED=1 timeout 300 python3 -m bench.bench_layer_torch "${peer_args[@]}" 2>>"$log")
    [[ -n "$peer" ]] && echo "$peer" >>"$jsonl"
    say "bench $router $shape: $(python3 - "$ours" "$peer" <<'PY'
import json, sys
o = json.loads(sys.argv[1])
p = json.loads(sys.argv[2]) if sys.argv[2] else {}
line = "ecmoe %.3f ms (fwd %.3f, bwd %.3f; expert GEMMs %.1f TFLOP/s, as one expert %.1f, cuBLAS 4096^3 %.0f; outside GEMMs %.0f%%; dispatch/combine %.0f GB/s of copy %.0f)" % (
    o["ms"], o["forward_ms"], o["backward_ms"], o["expert_gemm_tflops"],
    o["library_gemm_gflops"] / 1000, o["cublas_4096_tflops"],
    100 * o["outside_gemm_share"], o["dispatch_combine_gbps"], o["copy_gbps"])
if "index_ms" in p:
    line += "; torch eager %.3f ms (%.2fx)" % (p["index_ms"], p["index_ms"] / o["ms"])
if "index_compile_ms" in p:
    line += ", torch.compile %.3f ms (%.2fx)" % (p["index_compile_ms"], p["index_compile_ms"] / o["ms"])
if not p:
    line += "; torch peer FAILED"
print(line)
PY
)"
  done
  # fp32 at the small shape: the exactness mode's speed.
  fp32=$(build-gpu/ecmoe bench layer --device cuda --tokens 16384 --d-model 768 --d-ff 3072 \
    --experts 64 --precision fp32 --repeats 5 --json 2>>"$log")
  [[ -n "$fp32" ]] && echo "$fp32" >>"$jsonl" &&
    say "bench fp32 16384,768,3072,64: $(python3 -c 'import json,sys; o=json.loads(sys.argv[1]); print("%.3f ms" % o["ms"])' "$fp32")"
fi
if ((bench)); then
  # Training (issue 16): whole steps, bf16, ecmoe --device cuda beside the PyTorch peer (eager, and
  # torch.compile for expert choice), tokens/s each, the ratio to ecmoe.
  for run in "small expert_choice" "small top2" "gpu-small expert_choice" "gpu-small top2"; do
    read -r config router <<<"$run"
    targs=(--config "$config" --set "model.moe.router=$router" --set precision=bf16 --steps 10
           --warmup 3 --json --peak-gflops 790000)
    ours=$(timeout 240 build-gpu/ecmoe bench train --device cuda "${targs[@]}" 2>>"$log")
    if [[ -z "$ours" ]]; then say "bench train $config $router: ecmoe FAILED"; failed=1; continue; fi
    echo "$ours" >>"$jsonl"
    pargs=(--config "$config" --router "$router" --device cuda --precision bf16 --steps 10
           --warmup 3 --json --ecmoe build-gpu/ecmoe)
    eager=$(PYTHONUNBUFFERED=1 timeout 240 python3 -m bench.bench_train_torch "${pargs[@]}" 2>>"$log")
    compiled=""
    [[ $router == expert_choice ]] &&
      compiled=$(PYTHONUNBUFFERED=1 timeout 300 python3 -m bench.bench_train_torch "${pargs[@]}" --compile 2>>"$log")
    for j in "$eager" "$compiled"; do [[ -n "$j" ]] && echo "$j" >>"$jsonl"; done
    say "bench train $config $router: $(python3 - "$ours" "$eager" "$compiled" <<'PY'
import json, sys
o = json.loads(sys.argv[1])
line = "ecmoe %.0f tokens/s (%.1f ms a step, MFU %.1f%% of 790 TFLOP/s)" % (
    o["tokens_per_second"], 1e3 * o["median_step_seconds"], 100 * o["mfu"])
if "device_memory_bytes" in o:
    line += ", %.1f GB of GPU memory" % (o["device_memory_bytes"]["total"] / 1e9)
if "profile" in o:
    pr = o["profile"]
    line += "; profiled step %.1f ms: " % (1e3 * pr["step_seconds"]) + ", ".join(
        "%s %.1f" % (k, 1e3 * v) for k, v in pr["seconds_per_step_by_class"].items())
for name, text in (("torch eager", sys.argv[2]), ("torch.compile", sys.argv[3])):
    if text:
        p = json.loads(text)
        line += "; %s %.0f tokens/s (ecmoe %.2fx)" % (name, p["tokens_per_s"], o["tokens_per_second"] / p["tokens_per_s"])
print(line)
PY
)"
  done
fi
# Last: the slowest part (instrumented runs); --no-sanitizer skips it.
if ((sanitizer)); then
  if command -v compute-sanitizer >/dev/null; then
    step "memcheck test_cuda_ops" compute-sanitizer --tool memcheck --error-exitcode 1 \
      build-gpu/tests/test_cuda_ops
    step "memcheck test_cuda_moe_layer" compute-sanitizer --tool memcheck --error-exitcode 1 \
      build-gpu/tests/test_cuda_moe_layer --gtest_filter='*MatchesTheCpu*'
    step "racecheck expert choice" compute-sanitizer --tool racecheck --error-exitcode 1 \
      build-gpu/tests/test_cuda_ops --gtest_filter='*ExpertChoice*:*InverseIndex*'
    step "memcheck test_cuda_nn_ops" compute-sanitizer --tool memcheck --error-exitcode 1 \
      build-gpu/tests/test_cuda_nn_ops
    step "racecheck block sums" compute-sanitizer --tool racecheck --error-exitcode 1 \
      build-gpu/tests/test_cuda_nn_ops --gtest_filter='*CrossEntropy*:*LayerNorm*'
    step "memcheck test_cuda_decode" compute-sanitizer --tool memcheck --error-exitcode 1 \
      build-gpu/tests/test_cuda_decode
    step "racecheck decode attention" compute-sanitizer --tool racecheck --error-exitcode 1 \
      build-gpu/tests/test_cuda_decode --gtest_filter='*AttentionDecode*'
    step "memcheck+racecheck flash attention" bash -c 'for t in memcheck racecheck; do compute-sanitizer --tool $t --error-exitcode 1 build-gpu/tests/test_cuda_flash_attention --gtest_filter="*Repeats*:*Logsumexp*:*Backend*" || exit 1; done'
    step "memcheck whole model (decoder EC)" compute-sanitizer --tool memcheck --error-exitcode 1 \
      build-gpu/tests/test_cuda_model --gtest_filter='*decoder_expert_choice_fp32*'
    step "memcheck fine-tuning" compute-sanitizer --tool memcheck --error-exitcode 1 \
      build-gpu/tests/test_cuda_finetune --gtest_filter='*EightSteps*:*JointClipping*'
  else
    say "compute-sanitizer: not found, skipped"
  fi
fi
printf '%s\n' "${summary[@]}" >"$out/summary.txt"
echo "gpu-check: $([[ $failed == 0 ]] && echo passed || echo FAILED); results in $out"
exit $failed
