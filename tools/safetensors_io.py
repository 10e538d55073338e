"""The tools' safetensors reader and writer: the package's (python/ecmoe/safetensors.py), under
the name the tools and scripts have always imported."""

from ecmoe.safetensors import DTYPES, read, read_header, write  # noqa: F401
