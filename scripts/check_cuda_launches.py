#!/usr/bin/env python3
"""Checks every kernel launch the CUDA tests make against what a GPU allows, before a GPU runs them.

A GPU refuses a launch whose block needs more registers than the multiprocessor has (65,536 32-bit
registers a block on sm_90, allocated 256 a warp at a time), more threads than the kernel's
__launch_bounds__, or more shared memory than 227 KB (static plus dynamic). The host emulation of
CUDA (tests/cudaemu) runs the same launches but knows nothing of registers. So this joins two
records of the same kernels:
  - nvcc's: each src/cuda/*.cu compiled as the CUDA build compiles it (its compile_commands.json)
    plus --resource-usage and --keep: registers, spills, static shared memory (ptxas) and the
    launch bound (.maxntid in the PTX), for the first real GPU architecture it targets;
  - the emulation's: CUDAEMU_LAUNCH_LOG=FILE makes every emulated process append, per kernel, the
    largest block and dynamic shared memory it launched with
    (CUDAEMU_LAUNCH_LOG=$PWD/launches.tsv scripts/test-cudaemu.sh: the whole cuda suite);
and prints a table per kernel (registers, spills, shared memory, largest block, the block the
registers allow, resident warps per multiprocessor), then each launch a GPU would refuse.
Exit status: 0 all fit, 1 some launch would be refused or a launched kernel has no nvcc record
(the check cannot vouch for it), 2 bad usage.

  scripts/check_cuda_launches.py --build build-cuda --log launches.tsv [--jobs N] [--table]

The CUDA build needs only to be configured (cmake -S . -B build-cuda -DECMOE_CUDA=ON): the script
compiles the .cu files itself (minutes on 2 cores; nvcc, no GPU).
"""
import argparse
import collections
import concurrent.futures
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile

# sm_90 (H100/H200): per block and per multiprocessor.
REGS_PER_BLOCK = 65536
REGS_PER_SM = 65536
REG_ALLOC_UNIT = 256  # registers, per warp
MAX_THREADS = 1024
MAX_WARPS_PER_SM = 64
MAX_BLOCKS_PER_SM = 32
SHARED_PER_BLOCK = 227 * 1024
SHARED_PER_SM = 228 * 1024
SHARED_RESERVED_PER_BLOCK = 1024  # the runtime's own, per resident block


def fail_usage(msg):
    print(f"check_cuda_launches: {msg}", file=sys.stderr)
    sys.exit(2)


def regs_per_warp(regs):
    return -(-regs * 32 // REG_ALLOC_UNIT) * REG_ALLOC_UNIT


def threads_allowed(regs, bound):
    """The largest block (threads, a multiple of 32) whose registers fit, within the bound."""
    warps = REGS_PER_BLOCK // regs_per_warp(max(regs, 1))
    return min(warps * 32, bound or MAX_THREADS, MAX_THREADS)


def resident_warps(regs, threads, shared):
    """Warps of this kernel one multiprocessor holds at once (occupancy), at `threads` a block."""
    warps = -(-threads // 32)
    by_regs = REGS_PER_SM // (warps * regs_per_warp(max(regs, 1)))
    by_shared = SHARED_PER_SM // (shared + SHARED_RESERVED_PER_BLOCK)
    by_warps = MAX_WARPS_PER_SM // warps
    return min(by_regs, by_shared, by_warps, MAX_BLOCKS_PER_SM) * warps


def demangle(names):
    if not names:
        return {}
    out = subprocess.run(["c++filt"], input="\n".join(names) + "\n", capture_output=True,
                         text=True, check=True).stdout.splitlines()
    return dict(zip(names, out))


def key_of(demangled):
    """The kernel's qualified name and template arguments, without its parameter list: g++ (the
    emulation) and nvcc spell parameter types apart (typedefs of bf16, say), not names."""
    depth = 0
    for i, ch in enumerate(demangled):
        if ch in "<":
            depth += 1
        elif ch in ">":
            depth -= 1
        elif ch == "(" and depth == 0 and not demangled.startswith("(anonymous", i):
            return strip_void(demangled[:i].replace(" ", ""))
    return strip_void(demangled.replace(" ", ""))


def strip_void(key):
    """A function template's demangled name starts with its return type."""
    return key[4:] if key.startswith("void") and not key.startswith("void_") else key


def first_sass_arch(args):
    for a in args:
        m = re.search(r"code=(sm_\w+)", a)
        if m:
            return m.group(1)
    return None


def compile_one(entry, tmp):
    """One .cu file through nvcc with --resource-usage: {mangled: record}."""
    args = shlex.split(entry["command"]) if "command" in entry else list(entry["arguments"])
    arch = first_sass_arch(args)
    keep = tempfile.mkdtemp(dir=tmp)
    out = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "-o":
            skip = True
            continue
        if a.startswith("-gencode") or a.startswith("--generate-code"):
            continue
        out.append(a)
    if arch:
        out.append(f"-gencode=arch=compute_{arch[3:]},code={arch}")
    out += ["--resource-usage", "--keep", "--keep-dir", keep, "-o",
            os.path.join(keep, "out.o")]
    try:
        r = subprocess.run(out, cwd=entry["directory"], capture_output=True, text=True)
    except OSError as e:
        raise RuntimeError(f"cannot run {out[0]}: {e.strerror}") from e
    if r.returncode != 0:
        first = next((ln for ln in r.stderr.splitlines() if "error" in ln), r.stderr.strip()[:300])
        raise RuntimeError(f"nvcc failed on {entry['file']}: {first}")
    kernels = {}
    current = None
    for line in (r.stdout + r.stderr).splitlines():
        m = re.search(r"Compiling entry function '([^']+)'", line)
        if m:
            current = kernels.setdefault(m.group(1), {"file": os.path.basename(entry["file"]),
                                                      "regs": 0, "shared": 0, "spill": 0,
                                                      "stack": 0, "bound": 0})
            continue
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            current = kernels.get(m.group(1), current) if m.group(1) in kernels else None
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores", line)
        if m:
            current["stack"], current["spill"] = int(m.group(1)), int(m.group(2))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            current["regs"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            current["shared"] = int(s.group(1)) if s else 0
    # Launch bounds: the PTX's `.entry NAME ... .maxntid X, Y, Z`.
    for name in os.listdir(keep):
        if not name.endswith(".ptx"):
            continue
        text = open(os.path.join(keep, name), encoding="utf-8", errors="replace").read()
        for m in re.finditer(r"\.entry\s+(\S+?)\s*\((.*?)\)\s*(.*?)\{", text, re.S):
            b = re.search(r"\.maxntid\s+(\d+),\s*(\d+),\s*(\d+)", m.group(3))
            if b and m.group(1) in kernels:
                kernels[m.group(1)]["bound"] = int(b.group(1)) * int(b.group(2)) * int(b.group(3))
    return kernels, arch


def nvcc_records(build, jobs):
    path = os.path.join(build, "compile_commands.json")
    if not os.path.isfile(path):
        fail_usage(f"{path} is missing: configure the CUDA build first "
                   "(cmake -S . -B build-cuda -DECMOE_CUDA=ON)")
    entries = [e for e in json.load(open(path)) if e["file"].endswith(".cu")]
    if not entries:
        fail_usage(f"{path} compiles no .cu file: is it a -DECMOE_CUDA=ON build?")
    records, arch = {}, None
    with tempfile.TemporaryDirectory() as tmp, \
            concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for kernels, a in pool.map(lambda e: compile_one(e, tmp), entries):
            records.update(kernels)
            arch = arch or a
    return records, arch


def launch_records(log):
    """(module, offset) -> [threads, shared, launches], the largest over processes."""
    uses = {}
    for n, line in enumerate(open(log, encoding="utf-8"), 1):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 5:
            fail_usage(f"{log}:{n}: not a CUDAEMU_LAUNCH_LOG line")
        module, offset = parts[0], int(parts[1], 16)
        threads, shared, launches = (int(p) for p in parts[2:])
        u = uses.setdefault((module, offset), [0, 0, 0])
        u[0], u[1], u[2] = max(u[0], threads), max(u[1], shared), u[2] + launches
    return uses


def symbols(module):
    out = subprocess.run(["nm", "--defined-only", module], capture_output=True, text=True)
    table = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            table[int(parts[0], 16)] = parts[2]
    return table


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True, help="the configured CUDA build (-DECMOE_CUDA=ON)")
    ap.add_argument("--log", required=True, help="the CUDAEMU_LAUNCH_LOG file of the cuda tests")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--table", action="store_true", help="print every kernel, not only problems")
    a = ap.parse_args()
    if not os.path.isfile(a.log) or os.path.getsize(a.log) == 0:
        fail_usage(f"{a.log} is missing or empty: run "
                   "CUDAEMU_LAUNCH_LOG=<absolute path> scripts/test-cudaemu.sh")

    try:
        records, arch = nvcc_records(a.build, a.jobs)
    except RuntimeError as e:
        fail_usage(str(e))
    by_key = collections.defaultdict(list)
    for mangled, name in demangle(list(records)).items():
        by_key[key_of(name)].append(records[mangled])

    uses = launch_records(a.log)
    launched = {}  # key -> [threads, shared, launches]
    unresolved = 0
    for module in sorted({m for m, _ in uses}):
        table = symbols(module)
        names = demangle(sorted(set(table.values())))
        for (m, offset), u in uses.items():
            if m != module:
                continue
            sym = table.get(offset)
            if sym is None:
                unresolved += 1
                continue
            k = key_of(names[sym])
            v = launched.setdefault(k, [0, 0, 0])
            v[0], v[1], v[2] = max(v[0], u[0]), max(v[1], u[1]), v[2] + u[2]

    # The backend's kernels; the emulator's own tests (tests/cudaemu) launch kernels of theirs.
    others = sorted(k for k in launched if not k.startswith("ecmoe::"))
    problems, rows = [], []
    for k in sorted(set(launched) - set(others)):
        threads, dyn, launches = launched[k]
        recs = by_key.get(k)
        if not recs:
            problems.append(f"{k}: launched on the emulation, but nvcc compiled no kernel of that "
                            "name (renamed, or a different template argument)")
            continue
        # Kernels of the same name in several files (anonymous namespaces): the worst of them.
        regs = max(r["regs"] for r in recs)
        shared = max(r["shared"] for r in recs)
        spill = max(r["spill"] for r in recs)
        bounds = [r["bound"] for r in recs if r["bound"]]
        bound = min(bounds) if bounds else 0
        allowed = threads_allowed(regs, bound)
        files = ",".join(sorted({r["file"] for r in recs}))
        total_shared = shared + dyn
        warps = resident_warps(regs, threads, total_shared)
        rows.append((k, files, regs, spill, shared, dyn, threads, allowed, warps, launches))
        if threads > allowed:
            why = (f"its __launch_bounds__ is {bound}" if bound and bound < threads
                   else f"{regs} registers a thread allow {allowed}")
            problems.append(f"{k} ({files}): launched with {threads} threads a block; {why}")
        if total_shared > SHARED_PER_BLOCK:
            problems.append(f"{k} ({files}): {shared} bytes of static and {dyn} of dynamic "
                            f"shared memory, over {SHARED_PER_BLOCK}")
    if unresolved:
        problems.append(f"{unresolved} launched kernels could not be named from their modules' "
                        "symbols: rebuilt since the log was written (run the suite again), or "
                        "stripped")

    if a.table:
        print(f"{'kernel':58} {'file':22} regs spill smem  dyn  block allowed warps/SM launches")
        for r in rows:
            name = r[0].replace("ecmoe::cuda::(anonymousnamespace)::", "")
            name = name if len(name) <= 58 else name[:55] + "..."
            print(f"{name:58} {r[1][:22]:22} {r[2]:4} {r[3]:5} {r[4]:5} {r[5]:6} {r[6]:5} "
                  f"{r[7]:7} {r[8]:8} {r[9]:8}")
    never = sorted(k for k in set(by_key) - set(launched) if k.startswith("ecmoe::"))
    lowest = min((r[8] for r in rows), default=0)
    print(f"check_cuda_launches: {len(rows)} kernels launched by the tests checked against nvcc's "
          f"{arch or '?'} code ({len(by_key)} kernels compiled, {len(never)} of the backend's "
          f"never launched by the tests); spills in {sum(1 for r in rows if r[3])}; lowest "
          f"occupancy {lowest} warps of {MAX_WARPS_PER_SM} a multiprocessor; "
          f"{len(others)} kernels of the emulator's own tests left out")
    if never and a.table:
        print("never launched: " + "; ".join(never))
    for p in problems:
        print(f"check_cuda_launches: REFUSED on a GPU: {p}" if "launched with" in p or
              "shared memory" in p else f"check_cuda_launches: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
