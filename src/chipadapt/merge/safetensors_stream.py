"""Plain-file reading and writing of the safetensors format, a block of rows at a time.

`safetensors.safe_open` memory-maps whole files, and every page a merge touches then counts in
the process's resident memory (two 4 GB inputs show up as 8 GB). The format is simple enough --
8-byte header length, a JSON header of dtype/shape/byte offsets, then raw little-endian data -- to
read rows with seek+readinto and to write a shard whose layout is planned up front, so each
merged block goes straight to disk and memory stays at a few blocks whatever the model size.
"""

import json
import math
import os
from pathlib import Path

import torch

from chipadapt.errors import ChipadaptError

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
NAMES = {dtype: name for name, dtype in DTYPES.items()}


def element_size(dtype: torch.dtype) -> int:
    return torch.empty(0, dtype=dtype).element_size()


# A header larger than this is not a real one (safetensors itself caps it at 100 MB).
MAX_HEADER_BYTES = 100_000_000


class SafetensorsReader:
    """Checks the whole layout up front (a truncated or damaged file is a one-line error naming the
    file and tensor) and every read's length afterwards, so a short file can never merge as zeros."""

    def __init__(self, path: Path):
        self.path = path
        size = path.stat().st_size
        self.handle = open(path, "rb")
        prefix = self.handle.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if length < 2 or length > min(MAX_HEADER_BYTES, size - 8):
            self.handle.close()
            raise ChipadaptError(
                f"{path}: not a complete safetensors file (header of {length} bytes in a {size}-byte file)"
            )
        try:
            header = json.loads(self.handle.read(length))
            if not isinstance(header, dict):
                raise ValueError("not an object")
        except ValueError as err:
            self.handle.close()
            raise ChipadaptError(f"{path}: damaged safetensors header ({err})") from None
        header.pop("__metadata__", None)
        self.header = header
        self.data_start = 8 + length
        data_bytes = size - self.data_start
        for name, info in header.items():
            self._check_entry(name, info, data_bytes)

    def _check_entry(self, name: str, info, data_bytes: int) -> None:
        try:
            dtype = DTYPES[info["dtype"]]
            begin, end = (int(x) for x in info["data_offsets"])
            expected = math.prod(info["shape"]) * element_size(dtype)
        except (KeyError, TypeError, ValueError):
            self.handle.close()
            raise ChipadaptError(f"{self.path}: tensor {name}: damaged header entry {info!r}") from None
        if end - begin != expected:
            self.handle.close()
            raise ChipadaptError(
                f"{self.path}: tensor {name}: {end - begin} bytes for shape {info['shape']} ({expected} expected)"
            )
        if begin < 0 or end > data_bytes:
            self.handle.close()
            raise ChipadaptError(
                f"{self.path}: tensor {name} ends at byte {end} of the data, but the file holds "
                f"{data_bytes}: the file is truncated"
            )

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.header[name]["shape"])

    def dtype(self, name: str) -> torch.dtype:
        return DTYPES[self.header[name]["dtype"]]

    def rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        info = self.header[name]
        shape, dtype = info["shape"], DTYPES[info["dtype"]]
        begin = info["data_offsets"][0]
        if not shape:  # a scalar
            start, stop, row_shape = 0, 1, []
        else:
            row_shape = shape[1:]
        row_bytes = math.prod(row_shape) * element_size(dtype)
        buffer = bytearray(row_bytes * (stop - start))
        self.handle.seek(self.data_start + begin + start * row_bytes)
        read = self.handle.readinto(buffer)
        if read != len(buffer):  # the file shrank since it was opened
            raise ChipadaptError(
                f"{self.path}: tensor {name}: read {read} of {len(buffer)} bytes; the file is truncated"
            )
        tensor = torch.frombuffer(buffer, dtype=dtype) if buffer else torch.empty(0, dtype=dtype)
        return tensor.reshape(shape if not shape else [stop - start, *row_shape])

    def close(self) -> None:
        self.handle.close()


class PlannedShardWriter:
    """Shards laid out before any data is merged: (name, shape, dtype) in output order."""

    def __init__(self, folder: Path, plan: list[tuple[str, tuple[int, ...], torch.dtype]], max_shard_bytes: int):
        self.folder = folder
        shards: list[list[tuple[str, tuple[int, ...], torch.dtype]]] = [[]]
        size = 0
        for entry in plan:
            nbytes = math.prod(entry[1]) * element_size(entry[2])
            if shards[-1] and size + nbytes > max_shard_bytes:
                shards.append([])
                size = 0
            shards[-1].append(entry)
            size += nbytes
        self.total_bytes = 0
        self.location: dict[str, tuple[int, int, int]] = {}  # name -> (shard, absolute offset, row bytes)
        self.files, self.final_names, self.weight_map = [], [], {}
        for number, entries in enumerate(shards, start=1):
            header, offset = {"__metadata__": {"format": "pt"}}, 0
            for name, shape, dtype in entries:
                nbytes = math.prod(shape) * element_size(dtype)
                header[name] = {"dtype": NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
                offset += nbytes
            encoded = json.dumps(header, separators=(",", ":")).encode()
            encoded += b" " * (-len(encoded) % 8)  # the format aligns the data to 8 bytes
            data_start = 8 + len(encoded)
            final = "model.safetensors" if len(shards) == 1 else f"model-{number:05d}-of-{len(shards):05d}.safetensors"
            path = folder / f".{final}.partial"
            # No truncate to the final size: filling a sparse file ran at 0.3 GB/s here against
            # 3.8 GB/s appending, and the merge writes every shard front to back anyway.
            handle = open(path, "w+b")
            handle.write(len(encoded).to_bytes(8, "little"))
            handle.write(encoded)
            self.files.append(handle)
            self.final_names.append(final)
            for name, shape, dtype in entries:
                row_bytes = (math.prod(shape[1:]) if shape else 1) * element_size(dtype)
                self.location[name] = (number - 1, data_start + header[name]["data_offsets"][0], row_bytes)
                self.weight_map[name] = final
            self.total_bytes += offset

    def write_rows(self, name: str, start_row: int, block: torch.Tensor) -> None:
        shard, offset, row_bytes = self.location[name]
        handle = self.files[shard]
        handle.seek(offset + start_row * row_bytes)
        # Raw bytes through a uint8 view (numpy has no bfloat16), written without a copy.
        handle.write(block.contiguous().reshape(-1).view(torch.uint8).numpy())

    def close(self) -> None:
        for handle, final in zip(self.files, self.final_names):
            handle.close()
            os.replace(self.folder / f".{final}.partial", self.folder / final)
        if len(self.final_names) > 1:
            index = {"metadata": {"total_size": self.total_bytes}, "weight_map": self.weight_map}
            (self.folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
