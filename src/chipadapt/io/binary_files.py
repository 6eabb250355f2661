"""One test of "binary" for every reader of users' files (DAPT folder sources, curation), so a file one
of them reads as text the other does not skip."""

# Text files carry no NUL byte; most binaries do within their first few KB.
BINARY_PROBE_BYTES = 8192


def looks_binary(data: bytes) -> bool:
    return b"\x00" in data[:BINARY_PROBE_BYTES]
