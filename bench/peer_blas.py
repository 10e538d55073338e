#!/usr/bin/python3
"""Which BLAS the PyTorch peer of the benchmarks runs on, in one place.

Debian's python3-torch calls the BLAS behind libblas.so.3, which is whatever the alternatives
system points at: OpenBLAS when libopenblas0-pthread is installed (scripts/install-deps.sh
--bench), else the reference implementation from libblas3 (~3-4 GFLOP/s, which would make every
"ecmoe vs PyTorch" ratio ~50x too flattering). The benchmark scripts therefore name the library
actually loaded (read from /proc/self/maps after torch is imported) and the OpenBLAS kernel in
force, and refuse to measure a peer on the reference BLAS.

    from bench.peer_blas import prepare_environment, check_peer  # prepare_environment() first
    bench/peer_blas.py            # imports torch, prints one line, exit 1 on the reference BLAS
    bench/peer_blas.py --maps F   # classifies a saved maps file instead (no torch; for tests)
"""

import ctypes
import os
import re
import sys

# Debian's libblas3 installs the reference BLAS as <multiarch>/blas/libblas.so.3*.
_REFERENCE = re.compile(r"/blas/libblas\.so(\.[0-9.]+)?$")
_OPTIMISED = [  # (kind, basename pattern)
    ("OpenBLAS", re.compile(r"^libopenblas")),
    ("MKL", re.compile(r"^libmkl_")),
    ("BLIS", re.compile(r"^libblis")),
    ("ATLAS", re.compile(r"^lib[st]?atlas")),
    ("FlexiBLAS", re.compile(r"^libflexiblas")),
]


def cpu_has_avx512(cpuinfo="/proc/cpuinfo"):
    try:
        with open(cpuinfo) as f:
            return any(line.startswith("flags") and " avx512f" in line for line in f)
    except OSError:
        return False


# OpenBLAS kernels that use AVX-512 (OPENBLAS_CORETYPE names, lower case).
AVX512_CORETYPES = ("skylakex", "cooperlake", "sapphirerapids")


def prepare_environment(env=None, avx512=None, out=sys.stderr):
    """Before torch loads: OPENBLAS_CORETYPE=SkylakeX on an AVX-512 CPU (Debian's OpenBLAS 0.3.21
    does not recognise recent CPUs and picks a Haswell or SSE3 kernel), and ATEN_CPU_CAPABILITY=
    avx512 likewise (Debian's ATen defaults to its AVX2 kernels). The peer runs its best: a
    coretype already set to a kernel without AVX-512 (a machine's profile may set Haswell) is
    replaced, with a line on `out`, unless ECMOE_PEER_KEEP_CORETYPE=1. Returns the environment."""
    env = os.environ if env is None else env
    if avx512 is None:
        avx512 = cpu_has_avx512()
    if avx512:
        current = env.get("OPENBLAS_CORETYPE")
        if current is None:
            env["OPENBLAS_CORETYPE"] = "SkylakeX"
        elif (current.lower() not in AVX512_CORETYPES
              and env.get("ECMOE_PEER_KEEP_CORETYPE") != "1"):
            print(f"peer_blas: OPENBLAS_CORETYPE={current} has no AVX-512 kernel; the peer runs "
                  "SkylakeX (ECMOE_PEER_KEEP_CORETYPE=1 keeps it)", file=out)
            env["OPENBLAS_CORETYPE"] = "SkylakeX"
        env.setdefault("ATEN_CPU_CAPABILITY", "avx512")
    return env


def mapped_libraries(maps_text):
    """Paths of the shared objects in a /proc/<pid>/maps text."""
    paths = set()
    for line in maps_text.splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6 and fields[5].startswith("/") and ".so" in fields[5]:
            paths.add(fields[5].strip())
    return paths


def classify(paths):
    """-> (kind, path): kind is one of _OPTIMISED's names, "reference" (libblas3) or None (no
    shared BLAS loaded: e.g. a PyTorch wheel with MKL linked in)."""
    for kind, pattern in _OPTIMISED:
        for p in sorted(paths):
            if pattern.search(os.path.basename(p)):
                return kind, p
    for p in sorted(paths):
        if _REFERENCE.search(p):
            return "reference", p
    return None, None


def openblas_core(path):
    """The kernel OpenBLAS chose (openblas_get_corename), or None."""
    try:
        lib = ctypes.CDLL(path)
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return None


def describe(kind, path, env=None):
    """One line naming the peer's BLAS, its kernel and OPENBLAS_CORETYPE."""
    env = os.environ if env is None else env
    coretype = env.get("OPENBLAS_CORETYPE", "unset")
    if kind is None:
        return "PyTorch peer BLAS: none loaded as a shared library (built into torch)"
    text = f"PyTorch peer BLAS: {kind} ({path})"
    if kind == "OpenBLAS":
        core = openblas_core(path) if os.path.exists(path) else None
        text += f", kernel {core or 'unknown'}, OPENBLAS_CORETYPE={coretype}"
    return text


REFUSAL = ("refusing to benchmark: the PyTorch peer runs on the reference BLAS ({path}, "
           "libblas3, ~50x slower than OpenBLAS); install libopenblas0-pthread "
           "(scripts/install-deps.sh --bench)")


def check_peer(maps_path="/proc/self/maps", out=sys.stderr, quiet=False):
    """After torch is imported: exits 1 with one line on stderr if the BLAS is the reference one;
    else prints describe()'s line to `out` (unless quiet) and returns it."""
    with open(maps_path) as f:
        kind, path = classify(mapped_libraries(f.read()))
    if kind == "reference":
        print("error: " + REFUSAL.format(path=path), file=sys.stderr)
        sys.exit(1)
    line = describe(kind, path)
    if not quiet:
        print(line, file=out)
    return line


def main(argv):
    if len(argv) == 3 and argv[1] == "--maps":
        check_peer(argv[2], out=sys.stdout)
        return 0
    if len(argv) != 1:
        print("usage: peer_blas.py [--maps FILE]", file=sys.stderr)
        return 2
    prepare_environment()
    try:
        import torch  # noqa: F401  (loads the BLAS that torch links)
    except ImportError as e:
        print(f"error: no PyTorch for {sys.executable} ({e}); install python3-torch "
              "(scripts/install-deps.sh --bench) or set PYTHON", file=sys.stderr)
        return 1
    check_peer(out=sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
