"""The one safetensors reader and writer of the Python package and the tools (tools.safetensors_io
is this module).

Format: u64 little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}
(plus an optional "__metadata__": {str: str}), then the raw little-endian tensor data. The
writer emits compact JSON (no spaces), pads the header with spaces so the data starts 8-byte
aligned, lays the tensors out in the order given, and replaces the file atomically (a .tmp
beside it, then rename). read() and write() need torch and numpy (Debian's python3-torch brings
both); read_header() needs only the standard library.
"""

import json
import os
import struct

# safetensors dtype name -> (torch dtype name, little-endian numpy dtype)
DTYPES = {"F32": ("float32", "<f4"), "F64": ("float64", "<f8"), "I32": ("int32", "<i4"),
          "I64": ("int64", "<i8"), "U8": ("uint8", "u1")}


def read_header(path):
    """-> (header {name: {dtype, shape, data_offsets}}, metadata dict ({} when absent)), without
    reading the data."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    metadata = header.pop("__metadata__", {}) or {}
    return header, metadata


def read(path):
    """-> ({name: tensor}, metadata dict ({} when absent)), tensors in header order."""
    import numpy
    import torch

    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    metadata = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, entry in header.items():
        torch_name, np_dtype = DTYPES[entry["dtype"]]
        dtype = getattr(torch, torch_name)
        begin, end = entry["data_offsets"]
        values = numpy.frombuffer(data[begin:end], dtype=np_dtype).astype(np_dtype.lstrip("<"))
        tensors[name] = torch.from_numpy(values).to(dtype).reshape(entry["shape"])
    return tensors, metadata


def write(path, tensors, metadata=None, metadata_last=False):
    """tensors: {name: tensor} (F32, F64, I32, I64 or U8), written in the given order;
    metadata: {str: str} or None (no "__metadata__" entry). The header lists "__metadata__"
    first, or after the tensors with metadata_last (the layout of tests/fixtures/moe/)."""
    import torch

    names = {getattr(torch, torch_name): name for name, (torch_name, _) in DTYPES.items()}
    header, blobs, offset = {}, [], 0
    if metadata is not None and not metadata_last:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        t = t.detach().contiguous()
        dtype = names[t.dtype]
        blob = t.numpy().astype(DTYPES[dtype][1]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata is not None and metadata_last:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # pad so the data starts 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        for blob in blobs:
            out.write(blob)
    os.replace(tmp, path)
    return 8 + len(text) + offset
