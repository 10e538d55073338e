"""Tests of bench/peer_blas.py on made-up /proc/self/maps texts (no torch needed), from the
repository root:
    python3 -m bench.test_peer_blas"""

import io
import subprocess
import sys
import tempfile
import unittest

from bench import peer_blas

LIB = "/usr/lib/x86_64-linux-gnu"


def maps(*paths):
    rows = ["7f0000000000-7f0000001000 r-xp 00000000 08:01 1 /usr/bin/python3.11",
            "7f0000002000-7f0000003000 rw-p 00000000 00:00 0 [heap]"]
    rows += [f"7f00{i:08x}-7f00{i + 1:08x} r-xp 00000000 08:01 {i} {p}"
             for i, p in enumerate(paths)]
    return "\n".join(rows) + "\n"


TORCH = f"{LIB}/libtorch_cpu.so.1.13"
REFERENCE = maps(TORCH, f"{LIB}/blas/libblas.so.3.11.0", f"{LIB}/lapack/liblapack.so.3.11.0")
OPENBLAS = maps(TORCH, f"{LIB}/openblas-pthread/libblas.so.3",
                f"{LIB}/openblas-pthread/libopenblasp-r0.3.21.so")


class Classify(unittest.TestCase):
    def test_reference_blas(self):
        kind, path = peer_blas.classify(peer_blas.mapped_libraries(REFERENCE))
        self.assertEqual((kind, path), ("reference", f"{LIB}/blas/libblas.so.3.11.0"))

    def test_openblas(self):
        kind, path = peer_blas.classify(peer_blas.mapped_libraries(OPENBLAS))
        self.assertEqual(kind, "OpenBLAS")
        self.assertTrue(path.endswith("libopenblasp-r0.3.21.so"))

    def test_no_shared_blas(self):
        self.assertEqual(peer_blas.classify(peer_blas.mapped_libraries(maps(TORCH))),
                         (None, None))

    def test_mkl_wins_over_a_reference_library_also_loaded(self):
        text = maps(f"{LIB}/blas/libblas.so.3", "/opt/intel/lib/libmkl_core.so.2")
        self.assertEqual(peer_blas.classify(peer_blas.mapped_libraries(text))[0], "MKL")


class Environment(unittest.TestCase):
    def test_sets_coretype_on_avx512_when_unset(self):
        env = peer_blas.prepare_environment({}, avx512=True)
        self.assertEqual(env["OPENBLAS_CORETYPE"], "SkylakeX")

    def test_replaces_a_coretype_without_avx512(self):
        out = io.StringIO()
        env = peer_blas.prepare_environment({"OPENBLAS_CORETYPE": "Haswell"}, avx512=True, out=out)
        self.assertEqual(env["OPENBLAS_CORETYPE"], "SkylakeX")
        self.assertIn("OPENBLAS_CORETYPE=Haswell has no AVX-512 kernel", out.getvalue())

    def test_keeps_an_avx512_coretype_or_when_asked(self):
        env = peer_blas.prepare_environment({"OPENBLAS_CORETYPE": "CooperLake"}, avx512=True)
        self.assertEqual(env["OPENBLAS_CORETYPE"], "CooperLake")
        env = peer_blas.prepare_environment(
            {"OPENBLAS_CORETYPE": "Haswell", "ECMOE_PEER_KEEP_CORETYPE": "1"}, avx512=True)
        self.assertEqual(env["OPENBLAS_CORETYPE"], "Haswell")

    def test_leaves_coretype_unset_without_avx512(self):
        self.assertNotIn("OPENBLAS_CORETYPE", peer_blas.prepare_environment({}, avx512=False))


class CommandLine(unittest.TestCase):
    def run_on(self, text):
        with tempfile.NamedTemporaryFile("w", suffix=".maps") as f:
            f.write(text)
            f.flush()
            return subprocess.run([sys.executable, peer_blas.__file__, "--maps", f.name],
                                  capture_output=True, text=True)

    def test_refuses_the_reference_blas_in_one_line(self):
        r = self.run_on(REFERENCE)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)
        self.assertIn("reference BLAS", r.stderr)
        self.assertIn("libopenblas0-pthread", r.stderr)

    def test_names_openblas_and_the_coretype(self):
        r = self.run_on(OPENBLAS)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("OpenBLAS", r.stdout)
        self.assertIn("OPENBLAS_CORETYPE=", r.stdout)


if __name__ == "__main__":
    unittest.main()
