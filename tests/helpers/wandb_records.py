"""Read an offline W&B run's `.wandb` file: a LevelDB-style log (32 KiB blocks of records with a
7-byte header: CRC, length, type) after a 7-byte `:W&B` file header; each record is a
`wandb_internal_pb2.Record` protobuf (run, config, history, summary ...)."""

from pathlib import Path

BLOCK = 32768
RECORD_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def raw_records(path: Path):
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run log"
    pos, pieces = 7, []
    while pos + RECORD_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < RECORD_HEADER:  # block trailer: too small for a header, zero-filled
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        if kind == 0:  # zero padding to the end of the block
            pos += left
            continue
        chunk = data[pos + RECORD_HEADER : pos + RECORD_HEADER + length]
        pos += RECORD_HEADER + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pieces = [chunk]
        elif kind == MIDDLE:
            pieces.append(chunk)
        elif kind == LAST:
            yield b"".join([*pieces, chunk])


def read_run(run_folder: Path) -> dict:
    """{"run": RunRecord, "config": {key: json}, "history": [{key: json}], "summary": {key: json}} of one
    offline run folder (`offline-run-*`)."""
    import json

    from wandb.proto import wandb_internal_pb2 as pb

    (log_file,) = Path(run_folder).glob("*.wandb")
    out = {"run": None, "config": {}, "history": [], "summary": {}}
    for raw in raw_records(log_file):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
            out["config"].update({u.key: json.loads(u.value_json) for u in record.run.config.update})
        elif kind == "config":
            out["config"].update({u.key: json.loads(u.value_json) for u in record.config.update})
        elif kind == "history":
            out["history"].append(
                {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            )
        elif kind == "summary":
            out["summary"].update(
                {u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in record.summary.update}
            )
    return out
