#!/usr/bin/env bash
# The CUDA backend's check on a GPU machine (docs/cuda.md, "On the GPU machine"), within a time
# budget: a preflight of what the image has; unpacks the Debian packages scripts/fetch-gpu-debs.sh
# fetched into .gpu-debs/ into build-gpu/prefix (never over /) and writes build-gpu/env.sh;
# configures and builds ecmoe with -DECMOE_CUDA=ON (sm_90a); runs the CUDA tests (ctest label
# `cuda`, failing rather than skipping without a usable GPU); compute-sanitizer on them (180 s at
# most); `ecmoe bench layer --device cuda` beside bench/bench_layer_torch.py at issue 15's shapes;
# `ecmoe bench train --device cuda` beside bench/bench_train_torch.py on small and gpu-small;
# `ecmoe bench attention --device cuda` (flash and cuBLAS paths) beside
# bench/bench_attention_torch.py (PyTorch's SDPA) at gpu-small's attention shape.
#   scripts/gpu-check.sh [--budget SECONDS] [--no-build] [--no-tests] [--no-sanitizer]
#                        [--no-bench] [--compile] [--shapes "N,d,f,E ..."] [--compile-shapes "..."]
# --budget (default $GPU_CHECK_BUDGET, else 560): every step runs under `timeout`, cut to the time
# left less 10 s; a step that no longer fits prints "SKIPPED (budget)". --no-build: no configure,
# no build: the binaries of an earlier call in build-gpu/. --compile: the torch.compile peers too
# (the layer's at --compile-shapes; cold compiles take minutes). Two calls fit the device's 15
# minutes: `--no-bench` (carry .gpu-debs), then on the still-warm machine
# `--no-build --no-tests --no-sanitizer --budget 200`.
# Writes to $OUT (the device tool's folder) or gpu-results/: summary.txt (each line as it is
# said, so it survives a kill), gpu-check.log (all output), bench.jsonl (one JSON object a
# measurement), CMakeConfigureLog.yaml when configure fails.
# Exit status: 0 when everything ran and passed, 1 when something failed, 2 when nothing failed
# but a step was skipped for the budget.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$PWD
export PATH="$PATH:/usr/local/cuda/bin"  # nvcc, compute-sanitizer
build=1 tests=1 sanitizer=1 bench=1 compile=0 suite=0 suite_quick=0 suite_device=cuda
budget=${GPU_CHECK_BUDGET:-560}
sanitizer_seconds=180
shapes="4096,256,1024,8 16384,768,3072,64 32768,1024,4096,64 65536,2048,8192,64"
compile_shapes="16384,768,3072,64"
usage="--budget SECONDS, --no-build, --no-tests, --no-sanitizer, --no-bench, --compile, --shapes, --compile-shapes, --suite, --suite-quick, --suite-device DEVICE"
while (($#)); do
  case "$1" in
    --budget) budget="${2-}"; shift ;;
    --no-build) build=0 ;;
    --no-tests) tests=0 ;;
    --no-sanitizer) sanitizer=0 ;;
    --no-bench) bench=0 ;;
    --compile) compile=1 ;;
    --shapes) shapes="${2-}"; shift ;;
    --compile-shapes) compile_shapes="${2-}"; shift ;;
    --suite) suite=1 ;;
    --suite-quick) suite=1 suite_quick=1 ;;
    --suite-device) suite_device="${2-}"; shift ;;
    *) echo "gpu-check: unknown argument '$1' ($usage)" >&2; exit 1 ;;
  esac
  shift
done
[[ "$budget" =~ ^[0-9]+$ ]] || { echo "gpu-check: --budget wants whole seconds, not '$budget'" >&2; exit 1; }
deadline=$((SECONDS + budget))
stage_end=$deadline  # a stage may end sooner (the sanitizer's, the layer bench's share)
out="${OUT:-$root/gpu-results}"
mkdir -p "$out"
log="$out/gpu-check.log"
jsonl="$out/bench.jsonl"
summary="$out/summary.txt"
: >"$log"
: >"$jsonl"
: >"$summary"
failed=0 skipped=0
# say LINE: to stdout and, at once, to summary.txt.
say() {
  echo "gpu-check: $*"
  echo "$*" >>"$summary"
}
finish() {
  local verdict="passed" status=0
  if ((failed)); then
    verdict="FAILED" status=1
  elif ((skipped)); then
    verdict="INCOMPLETE: nothing failed, but steps SKIPPED (budget): $skipped" status=2
  fi
  say "$verdict after $SECONDS s; results in $out"
  exit $status
}
# limit CAP: the seconds the next command may run: CAP, cut to the stage's end and to the
# budget's less 10 s; 0 when under 10 s are left.
limit() {
  local t=$1
  ((t > deadline - SECONDS - 10)) && t=$((deadline - SECONDS - 10))
  ((t > stage_end - SECONDS)) && t=$((stage_end - SECONDS))
  ((t < 10)) && t=0
  echo "$t"
}
# step NAME CAP COMMAND...: runs it under `timeout` into the log; on failure prints the log's last
# lines. Returns the command's status (124 timed out), or 254 when skipped for the budget. A step
# that times out at its own CAP failed (a hang); one stopped sooner by the budget is incomplete.
step_start=0
step() {
  local name=$1 cap=$2 t rc t0=$SECONDS
  t=$(limit "$cap")
  shift 2
  if ((t == 0)); then
    say "$name: SKIPPED (budget)"
    skipped=$((skipped + 1))
    return 254
  fi
  step_start=$(($(wc -l <"$log") + 1))
  echo "=== $name (timeout ${t} s): $*" >>"$log"
  timeout -k 5 "$t" "$@" >>"$log" 2>&1
  rc=$?
  if ((rc == 0)); then
    say "$name: ok ($((SECONDS - t0)) s)"
    return 0
  fi
  if ((rc == 124 || rc == 137)) && ((t < cap)); then
    say "$name: STOPPED by the budget after $((SECONDS - t0)) s (of its $cap s)"
    skipped=$((skipped + 1))
    return $rc
  elif ((rc == 124 || rc == 137)); then
    say "$name: FAILED: timed out after $((SECONDS - t0)) s (its limit)"
  else
    say "$name: FAILED (status $rc, $((SECONDS - t0)) s)"
  fi
  tail -n +"$step_start" "$log" | tail -40
  failed=1
  return $rc
}
# json CAP COMMAND...: runs a --json benchmark under `timeout`, its output into the log; prints
# the last stdout line that starts with '{' (nothing if none). Returns the command's status, 254
# when skipped for the budget, 253 when stopped by the budget before its own CAP.
json() {
  local cap=$1 t raw rc
  t=$(limit "$cap")
  shift
  if ((t == 0)); then
    echo "=== skipped (budget): $*" >>"$log"
    return 254
  fi
  echo "=== (timeout ${t} s) $*" >>"$log"
  raw=$(PYTHONUNBUFFERED=1 timeout -k 5 "$t" "$@" 2>>"$log")
  rc=$?
  printf '%s\n' "$raw" >>"$log"
  ((rc == 124 || rc == 137)) && echo "=== timed out after $t s" >>"$log"
  grep '^{' <<<"$raw" | tail -1
  ((rc == 124 || rc == 137)) && ((t < cap)) && return 253
  return $rc
}
# status_word RC: why a benchmark gave nothing.
status_word() {
  case "$1" in
    254) echo "SKIPPED (budget)" ;;
    253) echo "STOPPED by the budget" ;;
    124 | 137) echo "FAILED (timed out)" ;;
    *) echo "FAILED (status $1)" ;;
  esac
}
# no_result NAME RC: a benchmark of ecmoe that gave no JSON: said, and counted as skipped (the
# budget stopped it) or failed.
no_result() {
  say "$1: ecmoe $(status_word "$2")"
  if (($2 >= 253)); then skipped=$((skipped + 1)); else failed=1; fi
}

say "gpu-check at $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), budget $budget s; build $build tests $tests sanitizer $sanitizer bench $bench compile $compile suite $suite"

# --- Preflight: what the image has, in the summary even if everything after it fails.
{
  echo "=== preflight"
  grep PRETTY_NAME /etc/os-release 2>/dev/null
  echo "cores $(nproc)"
  free -g 2>/dev/null | head -2
  df -h "$root" 2>/dev/null | tail -1
} >>"$log" 2>&1
have=() missing=()
for tool in g++ gcc nvcc cmake ninja pkg-config mpicxx mpirun compute-sanitizer dpkg python3; do
  if path=$(command -v "$tool"); then
    have+=("$tool")
    echo "$tool: $path" >>"$log"
  else
    missing+=("$tool")
    echo "$tool: missing" >>"$log"
  fi
done
say "tools: have ${have[*]:-none}; missing ${missing[*]:-none}"
{
  g++ --version 2>&1 | head -1
  nvcc --version 2>&1 | tail -2
  cmake --version 2>&1 | head -1
  ls -l /usr/lib/x86_64-linux-gnu/libmpi* /usr/lib/x86_64-linux-gnu/libz.so* 2>&1
} >>"$log"
find_header() {  # find_header NAME DIRS...: the first DIR/NAME that exists, else "missing"
  local name=$1 dir
  shift
  for dir in "$@"; do
    [[ -e "$dir/$name" ]] && { echo "$dir/$name"; return 0; }
  done
  echo missing
  return 1
}
mpi_dirs=(/usr/include /usr/include/x86_64-linux-gnu/openmpi /usr/lib/x86_64-linux-gnu/openmpi/include)
mpi_h=$(find_header mpi.h "${mpi_dirs[@]}")
zlib_h=$(find_header zlib.h /usr/include /usr/include/x86_64-linux-gnu)
say "headers: mpi.h $mpi_h; zlib.h $zlib_h; $(find /usr/lib/x86_64-linux-gnu -maxdepth 1 -name 'libmpi.so*' 2>/dev/null | wc -l) libmpi.so* files"
gpus=$(timeout 20 nvidia-smi -L 2>&1)
echo "$gpus" >>"$log"
say "nvidia-smi -L: $(head -3 <<<"$gpus" | paste -sd ';' -)"
gpu=$(timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
say "gpu: ${gpu:-none (nvidia-smi --query-gpu gave nothing)}"
torch=$(timeout 60 python3 -c "import torch; print(torch.__version__, torch.cuda.is_available())" 2>&1 | tail -1)
say "torch: $torch"

# --- The Debian packages, unpacked into a prefix; build-gpu/env.sh for later commands.
prefix="$root/build-gpu/prefix"
unpack() {  # unpack DEB: dpkg -x, or ar + tar where there is no dpkg
  if command -v dpkg >/dev/null; then
    dpkg -x "$1" "$prefix"
    return
  fi
  local member
  member=$(ar t "$1" | grep '^data\.tar') || return 1
  case "$member" in
    *.xz) ar p "$1" "$member" | tar -xJ -C "$prefix" ;;
    *.zst) ar p "$1" "$member" | tar --zstd -x -C "$prefix" ;;
    *.gz) ar p "$1" "$member" | tar -xz -C "$prefix" ;;
    *) ar p "$1" "$member" | tar -x -C "$prefix" ;;
  esac
}
if ((build)); then
  debs=(.gpu-debs/*.deb)
  [[ -e "${debs[0]}" ]] || { say "no .gpu-debs/*.deb: run scripts/fetch-gpu-debs.sh first and carry .gpu-debs"; failed=1; finish; }
  mkdir -p "$prefix"
  for deb in "${debs[@]}"; do
    unpack "$deb" >>"$log" 2>&1 || { say "unpacking $deb: FAILED"; failed=1; finish; }
  done
  # zlib1g-dev's libz.so is an absolute link to Debian 12's /lib/x86_64-linux-gnu/libz.so.1.2.13:
  # elsewhere it dangles. Point it at this system's libz.so.1, or leave the static libz.a.
  libz="$prefix/usr/lib/x86_64-linux-gnu/libz.so"
  if [[ -L "$libz" && ! -e "$libz" ]]; then
    if [[ -e /lib/x86_64-linux-gnu/libz.so.1 ]]; then
      ln -sfn /lib/x86_64-linux-gnu/libz.so.1 "$libz"
      say "zlib: libz.so -> the system's /lib/x86_64-linux-gnu/libz.so.1"
    else
      rm -f "$libz"
      say "zlib: no /lib/x86_64-linux-gnu/libz.so.1: linked statically (the prefix's libz.a)"
    fi
  fi
  cat >build-gpu/env.sh <<'EOF'
# Written by scripts/gpu-check.sh: the environment of its build and of the programs it built, for
# later commands (`source build-gpu/env.sh`): the Debian packages unpacked into build-gpu/prefix
# (libdnnl needs the prefix's libOpenCL through LD_LIBRARY_PATH), and CUDA's tools on PATH.
ecmoe_gpu_prefix="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/prefix"
export PATH="$PATH:/usr/local/cuda/bin"
export PKG_CONFIG_PATH="$ecmoe_gpu_prefix/usr/lib/x86_64-linux-gnu/pkgconfig:$ecmoe_gpu_prefix/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export PKG_CONFIG_SYSROOT_DIR="$ecmoe_gpu_prefix"
export LD_LIBRARY_PATH="$ecmoe_gpu_prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset ecmoe_gpu_prefix
EOF
fi
if [[ ! -f build-gpu/env.sh ]]; then
  say "--no-build: no build-gpu/env.sh: run scripts/gpu-check.sh without --no-build first"
  failed=1
  finish
fi
# shellcheck source=/dev/null
source build-gpu/env.sh
# Without a GPU the CUDA tests fail instead of skipping (tests/cuda/cuda_test_util.h).
export ECMOE_CUDA_TESTS_MUST_RUN=1

# --- Configure and build.
if ((build)); then
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  options=(-DECMOE_CUDA=ON -DECMOE_PYTHON=OFF -DCMAKE_BUILD_TYPE=Release
           -DCMAKE_PREFIX_PATH="$prefix/usr"
           "-DECMOE_CUDA_GENCODE=-gencode=arch=compute_90a,code=sm_90a" -DCMAKE_CUDA_FLAGS=-lineinfo
           -DCMAKE_POLICY_VERSION_MINIMUM=3.5)
  no_mpi=()
  command -v mpicxx >/dev/null || no_mpi+=(mpicxx)
  command -v mpirun >/dev/null || no_mpi+=(mpirun)
  [[ $mpi_h != missing ]] || no_mpi+=(mpi.h)
  if ((${#no_mpi[@]})); then
    options+=(-DECMOE_MPI=OFF)
    say "mpi: no ${no_mpi[*]}: configured with -DECMOE_MPI=OFF (one process only)"
  else
    say "mpi: mpicxx, mpirun and mpi.h found: built with MPI"
  fi
  if ! command -v pkg-config >/dev/null; then
    options+=(-DPKG_CONFIG_EXECUTABLE="$prefix/usr/bin/pkgconf")
    say "pkg-config: none on PATH: the prefix's pkgconf"
  fi
  if ! step configure 120 cmake -S . -B build-gpu "${generator[@]}" "${options[@]}"; then
    for f in CMakeConfigureLog.yaml CMakeError.log CMakeOutput.log; do
      [[ -f build-gpu/CMakeFiles/$f ]] && cp build-gpu/CMakeFiles/$f "$out/" && say "  build-gpu/CMakeFiles/$f copied to the results"
    done
    finish
  fi
  # ecmoe, every test binary of tests/cuda (one a file: a binary left out would leave its tests
  # out of `ctest -L cuda` without a word) and the CPU's dispatch/combine tests.
  targets=(ecmoe test_dispatch_combine)
  for src in tests/cuda/test_*.cpp; do targets+=("$(basename "$src" .cpp)"); done
  if ! step build 900 cmake --build build-gpu -j"$(nproc)" --target "${targets[@]}"; then
    if ((failed)); then
      echo "gpu-check: the first errors:"
      tail -n +"$step_start" "$log" | grep -m3 -B2 -A8 error
    else  # stopped by the budget: what is built stays, and the next call goes on from there
      say "the rest: SKIPPED (budget); a second call without --no-build finishes the build"
    fi
    finish
  fi
fi
if [[ ! -x build-gpu/ecmoe ]]; then
  say "no build-gpu/ecmoe: run scripts/gpu-check.sh without --no-build first"
  failed=1
  finish
fi
if step "ecmoe info" 60 build-gpu/ecmoe info; then
  say "  $(tail -n +"$step_start" "$log" | grep -E '^cuda:' | tail -1)"
fi

# --- The CUDA tests.
if ((tests)); then
  for src in tests/cuda/test_*.cpp; do
    bin=build-gpu/tests/$(basename "$src" .cpp)
    [[ -x $bin ]] || { say "cuda tests: $bin was not built: its tests cannot run"; failed=1; }
  done
  step "cuda tests" 300 ctest --test-dir build-gpu -L cuda --output-on-failure -j4
  rc=$?
  if ((rc != 254)); then
    results=$(tail -n +"$step_start" "$log" | grep -E '[0-9]+% tests passed' | tail -1)
    [[ -n "$results" ]] && say "  $results"
    n_skipped=$(tail -n +"$step_start" "$log" | grep -c -- '\*\*\*Skipped')
    ((n_skipped)) && say "  $n_skipped tests skipped" && failed=1
  fi
  step "dispatch/combine tests (CPU)" 120 build-gpu/tests/test_dispatch_combine
fi

# --- compute-sanitizer: 180 s at most, the most telling checks first.
if ((sanitizer)); then
  if ! command -v compute-sanitizer >/dev/null; then
    say "compute-sanitizer: not found, skipped"
  else
    stage_end=$((SECONDS + sanitizer_seconds))
    # A few seconds: does compute-sanitizer work here at all (gVisor: "Device not supported")?
    t=$(limit 30)
    probe="" rc=254
    if ((t)); then
      probe=$(timeout -k 5 "$t" compute-sanitizer --tool memcheck build-gpu/ecmoe info 2>&1)
      rc=$?
    fi
    printf '=== sanitizer probe (status %s)\n%s\n' "$rc" "$probe" >>"$log"
    unavailable='not supported|unsupported|unable to|no such device|cannot (attach|open|load)'
    if ((rc == 254)); then
      say "compute-sanitizer: SKIPPED (budget)"
      skipped=$((skipped + 1))
    elif ((rc != 0)) && grep -qiE "$unavailable" <<<"$probe"; then
      say "sanitizer unavailable: $(grep -iE "$unavailable" <<<"$probe" | head -1)"
    else
      if ((rc == 124 || rc == 137)); then
        say "sanitizer probe: no answer in $t s (memcheck of ecmoe info); going on"
      elif ((rc != 0)); then
        say "sanitizer probe: FAILED (status $rc; memcheck of ecmoe info: the log has its output)"
        failed=1
      fi
      san=(compute-sanitizer --error-exitcode 1 --print-limit 20)
      step "memcheck test_cuda_ops" 90 "${san[@]}" --tool memcheck build-gpu/tests/test_cuda_ops
      step "racecheck expert choice" 60 "${san[@]}" --tool racecheck \
        build-gpu/tests/test_cuda_ops --gtest_filter='*ExpertChoice*:*InverseIndex*'
      step "initcheck routing" 60 "${san[@]}" --tool initcheck \
        build-gpu/tests/test_cuda_ops --gtest_filter='*Plan*:*InverseIndex*'
      step "memcheck test_cuda_nn_ops" 90 "${san[@]}" --tool memcheck build-gpu/tests/test_cuda_nn_ops
      step "memcheck flash attention" 60 "${san[@]}" --tool memcheck \
        build-gpu/tests/test_cuda_flash_attention --gtest_filter='*Repeats*:*Logsumexp*:*Backend*'
      step "racecheck flash attention" 60 "${san[@]}" --tool racecheck \
        build-gpu/tests/test_cuda_flash_attention --gtest_filter='*Repeats*:*Logsumexp*:*Backend*'
      step "racecheck block sums" 60 "${san[@]}" --tool racecheck \
        build-gpu/tests/test_cuda_nn_ops --gtest_filter='*CrossEntropy*:*LayerNorm*'
      step "memcheck whole model (decoder EC)" 60 "${san[@]}" --tool memcheck \
        build-gpu/tests/test_cuda_model --gtest_filter='*decoder_expert_choice_fp32*'
      step "memcheck test_cuda_moe_layer" 60 "${san[@]}" --tool memcheck \
        build-gpu/tests/test_cuda_moe_layer --gtest_filter='*MatchesTheCpu*'
      step "memcheck test_cuda_decode" 90 "${san[@]}" --tool memcheck build-gpu/tests/test_cuda_decode
      step "racecheck decode attention" 60 "${san[@]}" --tool racecheck \
        build-gpu/tests/test_cuda_decode --gtest_filter='*AttentionDecode*'
      step "memcheck fine-tuning" 60 "${san[@]}" --tool memcheck \
        build-gpu/tests/test_cuda_finetune --gtest_filter='*EightSteps*:*JointClipping*'
      step "racecheck capped expert choice" 60 "${san[@]}" --tool racecheck \
        build-gpu/tests/test_cuda_capped --gtest_filter='*RouteMatches*'
    fi
    stage_end=$deadline
  fi
fi

# --- The MoE layer beside PyTorch: expert choice at every shape, top-2 (capacity factor 2) at the
# second, one fp32 run. With the training bench to come it takes at most 55% of the time left.
if ((bench)); then
  stage_end=$((SECONDS + (deadline - SECONDS) * 55 / 100))
  runs=()
  for shape in $shapes; do runs+=("expert_choice,$shape"); done
  second=$(awk '{print $2}' <<<"$shapes")
  [[ -n "$second" ]] && runs+=("top2,$second")
  for run in "${runs[@]}"; do
    IFS=, read -r router n d f e <<<"$run"
    shape="$n,$d,$f,$e"
    args=(--tokens "$n" --d-model "$d" --d-ff "$f" --experts "$e" --capacity-factor 2
          --router "$router" --precision bf16 --repeats 10)
    ours=$(json 60 build-gpu/ecmoe bench layer --device cuda "${args[@]}" --warmup 3 --json)
    rc=$?
    if [[ -z "$ours" ]]; then
      no_result "bench $router $shape" "$rc"
      continue
    fi
    echo "$ours" >>"$jsonl"
    peer_args=("${args[@]}" --device cuda --formulation index --warmup 3 --json)
    cap=90
    if ((compile)) && [[ $router == expert_choice && " $compile_shapes " == *" $shape "* ]]; then
      peer_args+=(--compile)
      cap=240
    fi
    peer=$(json $cap python3 -m bench.bench_layer_torch "${peer_args[@]}")
    prc=$?
    [[ -n "$peer" ]] && echo "$peer" >>"$jsonl"
    say "bench $router $shape: $(python3 - "$ours" "$peer" "$(status_word "$prc")" <<'PY'
import json, sys

def num(d, k, scale=1.0):
    v = d.get(k)
    return v * scale if isinstance(v, (int, float)) else float("nan")

o = json.loads(sys.argv[1])
try:
    p = json.loads(sys.argv[2]) if sys.argv[2] else {}
except ValueError:
    p = {}
line = "ecmoe %.3f ms (fwd %.3f, bwd %.3f; expert GEMMs %.1f TFLOP/s, as one expert %.1f, cuBLAS %s^3 %.0f; outside GEMMs %.0f%%; dispatch/combine %.0f GB/s of copy %.0f)" % (
    num(o, "ms"), num(o, "forward_ms"), num(o, "backward_ms"), num(o, "expert_gemm_tflops"),
    num(o, "library_gemm_gflops", 1e-3), o.get("square_gemm", "?"), num(o, "cublas_square_tflops"),
    num(o, "outside_gemm_share", 100), num(o, "dispatch_combine_gbps"), num(o, "copy_gbps"))
ms = num(o, "ms")
for key, name in (("index_ms", "torch eager"), ("index_compile_ms", "torch.compile")):
    if isinstance(p.get(key), (int, float)):
        line += "; %s %.3f ms (%.2fx)" % (name, p[key], p[key] / ms if ms else float("nan"))
if not p:
    line += "; torch peer " + sys.argv[3]
print(line)
PY
)"
  done
  # fp32 at the small shape: the exactness mode's speed.
  fp32=$(json 60 build-gpu/ecmoe bench layer --device cuda --tokens 16384 --d-model 768 \
    --d-ff 3072 --experts 64 --precision fp32 --repeats 5 --json)
  rc=$?
  if [[ -n "$fp32" ]]; then
    echo "$fp32" >>"$jsonl"
    say "bench fp32 16384,768,3072,64: $(python3 -c 'import json,sys; v=json.loads(sys.argv[1]).get("ms"); print("%.3f ms" % v if isinstance(v, (int, float)) else "no ms")' "$fp32")"
  else
    no_result "bench fp32 16384,768,3072,64" "$rc"
  fi
  # Capped expert choice (the solver's sweeps on the device, the greedy pass on the host; no
  # PyTorch peer has it): the layer and its routing phase at issue 15's second shape and at a
  # gpu-small layer's, against expert choice's line above.
  for shape in 16384,768,3072,64 32768,768,3072,64; do
    IFS=, read -r n d f e <<<"$shape"
    capped=$(json 90 build-gpu/ecmoe bench layer --device cuda --router expert_choice_capped \
      --tokens "$n" --d-model "$d" --d-ff "$f" --experts "$e" --capacity-factor 2 \
      --precision bf16 --repeats 3 --warmup 1 --json)
    rc=$?
    if [[ -z "$capped" ]]; then
      no_result "bench expert_choice_capped $shape" "$rc"
      continue
    fi
    echo "$capped" >>"$jsonl"
    say "bench expert_choice_capped $shape: $(python3 -c '
import json, sys
o = json.loads(sys.argv[1])
ph = o.get("phases_ms") or {}
f = lambda v: "%.3f" % v if isinstance(v, (int, float)) else "?"
print("ecmoe %s ms (fwd %s, bwd %s; routing phase %s ms; solver %s sweeps, residual %s)" % (
      f(o.get("ms")), f(o.get("forward_ms")), f(o.get("backward_ms")), f(ph.get("routing")),
      o.get("solver_iterations", "?"), f(o.get("solver_residual"))))' "$capped")"
  done
  stage_end=$deadline

  # Training (issue 16): whole steps, bf16, ecmoe --device cuda beside the PyTorch peer (eager;
  # torch.compile for expert choice with --compile), tokens/s each, the ratio to ecmoe.
  for run in "small expert_choice" "small top2" "gpu-small expert_choice" "gpu-small top2"; do
    read -r config router <<<"$run"
    targs=(--config "$config" --set "model.moe.router=$router" --set precision=bf16 --steps 10
           --warmup 3 --json --peak-gflops 790000)
    ours=$(json 120 build-gpu/ecmoe bench train --device cuda "${targs[@]}")
    rc=$?
    if [[ -z "$ours" ]]; then
      no_result "bench train $config $router" "$rc"
      continue
    fi
    echo "$ours" >>"$jsonl"
    [[ $config == gpu-small && $router == expert_choice ]] && flash_run=$ours
    pargs=(--config "$config" --router "$router" --device cuda --precision bf16 --steps 10
           --warmup 3 --json --ecmoe build-gpu/ecmoe)
    eager=$(json 120 python3 -m bench.bench_train_torch "${pargs[@]}")
    erc=$?
    compiled="" crc=0 with_compile=0
    if ((compile)) && [[ $router == expert_choice ]]; then
      with_compile=1
      compiled=$(json 240 python3 -m bench.bench_train_torch "${pargs[@]}" --compile)
      crc=$?
    fi
    for j in "$eager" "$compiled"; do [[ -n "$j" ]] && echo "$j" >>"$jsonl"; done
    say "bench train $config $router: $(python3 - "$ours" "$eager" "$compiled" "$(status_word "$erc")" "$with_compile" "$(status_word "$crc")" <<'PY'
import json, sys

def num(d, k, scale=1.0):
    v = d.get(k) if isinstance(d, dict) else None
    return v * scale if isinstance(v, (int, float)) else float("nan")

o = json.loads(sys.argv[1])
line = "ecmoe %.0f tokens/s (%.1f ms a step, MFU %.1f%% of 790 TFLOP/s)" % (
    num(o, "tokens_per_second"), num(o, "median_step_seconds", 1e3), num(o, "mfu", 100))
if isinstance(o.get("device_memory_bytes"), dict):
    line += ", %.1f GB of GPU memory" % num(o["device_memory_bytes"], "total", 1e-9)
if isinstance(o.get("profile"), dict):
    pr = o["profile"]
    by_class = pr.get("seconds_per_step_by_class") or {}
    line += "; profiled step %.1f ms: " % num(pr, "step_seconds", 1e3) + ", ".join(
        "%s %.1f" % (k, 1e3 * v) for k, v in by_class.items() if isinstance(v, (int, float)))
peers = [("torch eager", sys.argv[2], sys.argv[4])]
if sys.argv[5] == "1":
    peers.append(("torch.compile", sys.argv[3], sys.argv[6]))
for name, text, why in peers:
    try:
        p = json.loads(text) if text else None
    except ValueError:
        p = None
    tps = num(p, "tokens_per_s") if p else float("nan")
    if p and tps == tps and tps > 0:
        line += "; %s %.0f tokens/s (ecmoe %.2fx)" % (name, tps, num(o, "tokens_per_second") / tps)
    elif text:
        line += "; %s: no tokens_per_s" % name
    else:
        line += "; %s %s" % (name, why)
print(line)
PY
)"
  done

  # The attention op alone at gpu-small's shape (64 sequences of 512, 12 heads of 64, bf16),
  # encoder and decoder: ecmoe's flash kernels, its cuBLAS path and PyTorch's SDPA (eager;
  # torch.compile too with --compile), each forward and backward in TFLOP/s (FlashAttention's
  # FLOP count): how far the mma.sync kernels are from what the GPU's best attention does.
  for mask in "" --causal; do
    aargs=(--batch 64 --heads 12 --seq 512 --head-dim 64 --precision bf16 --repeats 10
           --warmup 3 --json $mask)
    flash=$(json 60 build-gpu/ecmoe bench attention --device cuda "${aargs[@]}")
    rc=$?
    if [[ -z "$flash" ]]; then
      no_result "bench attention gpu-small${mask:+ causal}" "$rc"
      continue
    fi
    echo "$flash" >>"$jsonl"
    cublas=$(json 60 env ECMOE_CUDA_ATTENTION=cublas build-gpu/ecmoe bench attention --device cuda \
             "${aargs[@]}")
    [[ -n "$cublas" ]] && echo "$cublas" >>"$jsonl"
    pargs=("${aargs[@]}" --device cuda)
    cap=90
    if ((compile)); then
      pargs+=(--compile)
      cap=240
    fi
    peer=$(json $cap python3 -m bench.bench_attention_torch "${pargs[@]}")
    prc=$?
    [[ -n "$peer" ]] && echo "$peer" >>"$jsonl"
    say "bench attention gpu-small${mask:+ causal}: $(python3 - "$flash" "$cublas" "$peer" "$(status_word "$prc")" <<'PY'
import json, sys

def load(text):
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None

def rate(o, prefix=""):
    f = lambda k: o.get(prefix + k, float("nan"))
    return "%.3f ms (fwd %.3f, bwd %.3f), %.0f TFLOP/s" % (
        f("ms"), f("forward_ms"), f("backward_ms"), f("tflops"))

flash, cublas, peer = (load(t) for t in sys.argv[1:4])
parts = ["ecmoe %s %s" % (flash.get("path", "?"), rate(flash))]
if cublas:
    parts.append("ecmoe %s %s" % (cublas.get("path", "?"), rate(cublas)))
if peer:
    for prefix, name in (("", "torch " + peer.get("formulation", "?")),
                         ("compile_", "torch.compile")):
        if isinstance(peer.get(prefix + "ms"), (int, float)):
            parts.append("%s %s (ecmoe %.2fx)" % (name, rate(peer, prefix),
                                                 peer[prefix + "ms"] / flash["ms"]))
else:
    parts.append("torch peer " + sys.argv[4])
print("; ".join(parts))
PY
)"
  done

  # The other attention path on gpu-small (ECMOE_CUDA_ATTENTION=cublas: cuBLAS products and a
  # softmax kernel; flash is the default), last, for what the budget leaves: which path the next
  # session should keep.
  targs=(--config gpu-small --set model.moe.router=expert_choice --set precision=bf16 --steps 10
         --warmup 3 --json --peak-gflops 790000)
  ours=$(json 120 env ECMOE_CUDA_ATTENTION=cublas build-gpu/ecmoe bench train --device cuda \
         "${targs[@]}")
  rc=$?
  if [[ -z "$ours" ]]; then
    no_result "bench train gpu-small expert_choice, cublas attention" "$rc"
  else
    echo "$ours" >>"$jsonl"
    say "bench train gpu-small expert_choice, attention cublas against flash: $(python3 - "$ours" "${flash_run:-}" <<'PY'
import json, sys

def describe(text):
    try:
        o = json.loads(text)
    except ValueError:
        return "no result"
    line = "%s %.0f tokens/s" % (o.get("attention", "?"), o.get("tokens_per_second", float("nan")))
    by_op = (o.get("profile") or {}).get("seconds_per_step_by_op") or {}
    if isinstance(by_op.get("attention"), (int, float)):
        line += " (attention %.1f ms of a profiled step)" % (1e3 * by_op["attention"])
    return line

print("; ".join(describe(t) for t in sys.argv[1:] if t) or "no result")
PY
)"
  fi
fi

# --- The comparison suite (issue 17), for the rest of the budget: paper-gpu's runs on the device,
# continuing those that earlier sessions finished (committed under docs/results/pretrain-gpu/runs)
# and an unfinished one from its checkpoint (left by an earlier call on this still-warm machine).
# The finished runs' result.json, metrics.jsonl and config.json come back in one file,
# paper-gpu-runs.tar.gz, for scripts/paper-gpu-report.sh here.
if ((suite)); then
  suite_out=runs/compare/paper-gpu data_dir=data/english-large
  suite_args=(compare --suite paper-gpu --device "$suite_device")
  if ((suite_quick)); then
    suite_out+=-quick data_dir=data/english
    suite_args+=(--quick)
  elif [[ -d docs/results/pretrain-gpu/runs ]]; then
    suite_args+=(--import docs/results/pretrain-gpu/runs)
  fi
  suite_args+=(--out "$suite_out")
  # A run stops at the --time-limit (writing its checkpoint) with a margin for that, a decoder's
  # post-training evaluations and the packing; `timeout` is the backstop.
  t=$(limit 100000)
  if [[ ! -f $data_dir/manifest.json ]]; then
    say "suite: no $data_dir: prepare it here (build/ecmoe prepare --corpus ${data_dir#data/} --out $data_dir) and carry it"
    failed=1
  elif ((t < 150)); then
    say "suite: SKIPPED (budget: ${t} s left)"
    skipped=$((skipped + 1))
  else
    minutes=$(awk -v t="$t" 'BEGIN { printf "%.2f", (t - 120) / 60 }')
    step "suite paper-gpu$( ((suite_quick)) && echo ' --quick') (--time-limit $minutes)" "$t" \
      build-gpu/ecmoe "${suite_args[@]}" --time-limit "$minutes"
    tail -n +"$step_start" "$log" | grep -E '^\[[0-9]+/[0-9]+\]|^time limit|^report' | while read -r line; do
      say "  $line"
    done
    packed=()
    for r in "$suite_out"/*/result.json; do
      [[ -f $r ]] || continue
      d=$(basename "$(dirname "$r")")
      for f in result.json metrics.jsonl config.json; do
        [[ -f $suite_out/$d/$f ]] && packed+=("$d/$f")
      done
    done
    if ((${#packed[@]})); then
      if tar -czf "$out/paper-gpu-runs.tar.gz" -C "$suite_out" "${packed[@]}"; then
        say "suite: $(ls "$suite_out"/*/result.json | wc -l) finished runs packed into paper-gpu-runs.tar.gz ($(du -h "$out/paper-gpu-runs.tar.gz" | cut -f1)); here: scripts/paper-gpu-report.sh FILES_AT/paper-gpu-runs.tar.gz"
      else
        say "suite: packing the finished runs FAILED"
        failed=1
      fi
    else
      say "suite: no run has finished yet"
    fi
  fi
fi
finish
