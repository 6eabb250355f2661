"""Turn tokenised conversations into batches: packed (several per row, no attention across them) or
padded (one per row). Both report their waste: the share of positions that hold padding."""

import torch


def pack_first_fit(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices grouped into bins of at most `capacity` tokens, longest first (first-fit decreasing)."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for b, free in enumerate(room):
            if lengths[i] <= free:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(capacity - lengths[i])
    return bins


def packing_waste(lengths: list[int], capacity: int) -> float:
    bins = pack_first_fit(lengths, capacity)
    return 1.0 - sum(lengths) / (len(bins) * capacity) if bins else 0.0


def padding_waste(lengths: list[int], batch_size: int) -> float:
    """Padding share with dynamic padding to the longest sample of each batch (in data order)."""
    total = sum(
        max(lengths[i : i + batch_size]) * len(lengths[i : i + batch_size]) for i in range(0, len(lengths), batch_size)
    )
    return 1.0 - sum(lengths) / total if total else 0.0


def collate_packed(rows: list[list[tuple[list[int], list[int]]]], seq_len: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Each row is several (ids, labels) samples; position ids restart and segment ids change per sample."""
    n = len(rows)
    input_ids = torch.full((n, seq_len), pad_id, dtype=torch.long)
    labels = torch.full((n, seq_len), -100, dtype=torch.long)
    position_ids = torch.zeros((n, seq_len), dtype=torch.long)
    segment_ids = torch.zeros((n, seq_len), dtype=torch.long)
    attention = torch.zeros((n, seq_len), dtype=torch.long)
    for r, samples in enumerate(rows):
        at = 0
        for s, (ids, labs) in enumerate(samples):
            k = len(ids)
            input_ids[r, at : at + k] = torch.tensor(ids)
            labels[r, at : at + k] = torch.tensor(labs)
            position_ids[r, at : at + k] = torch.arange(k)
            segment_ids[r, at : at + k] = s
            attention[r, at : at + k] = 1
            at += k
        # Padding is a segment of its own: it attends only to itself, so no row is fully masked.
        segment_ids[r, at:] = len(samples)
        position_ids[r, at:] = torch.arange(seq_len - at)
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": position_ids,
        "segment_ids": segment_ids,
        "attention_mask": attention,
    }


def collate_padded(samples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in samples)
    n = len(samples)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    labels = torch.full((n, width), -100, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    for r, (ids, labs) in enumerate(samples):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        labels[r, : len(ids)] = torch.tensor(labs)
        attention[r, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


def block_causal_mask(segment_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(batch, 1, L, L) additive mask: causal within a segment, nothing across segments."""
    L = segment_ids.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool, device=segment_ids.device).tril()
    allowed = causal[None] & (segment_ids[:, :, None] == segment_ids[:, None, :])
    return torch.zeros(allowed.shape, dtype=dtype, device=segment_ids.device).masked_fill(
        ~allowed, torch.finfo(dtype).min
    )[:, None]
