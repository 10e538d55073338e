"""ecmoe for Python: the engine's MoE layer as a PyTorch module (ecmoe.torch; docs/python.md).

The compiled part, ecmoe._C, is built by CMake (ECMOE_PYTHON) into build/python/ecmoe/ next to
copies of these files; modules that do not need it import without it.
"""
