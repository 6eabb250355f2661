"""Exact inner-product top-k with a torch matrix product: the dense search on a GPU.

Why not faiss on the GPU: the `faiss-gpu-cu12` wheel and `faiss-cpu` both install the `faiss`
module, so having both breaks imports, and faiss's GPU build is not on PyPI for every CUDA. Our
passage sets (hundreds to a few million 384-1024-dim vectors) fit in GPU memory, where one exact
matrix product and `topk` per query batch is what a flat faiss GPU index computes as well. The
faiss index stays the artifact on disk (any tool can open it); this keeps a copy of its vectors
on the device.
"""

import numpy as np
import torch

# Queries per matrix product: bounds the (queries x passages) score block on the device.
QUERY_BLOCK = 1024


class TorchFlatIndex:
    def __init__(self, vectors: np.ndarray, device: str):
        self.matrix = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(device)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows), each (n_queries, k), best first: faiss.Index.search's contract."""
        k = min(k, self.matrix.shape[0])
        scores, rows = [], []
        with torch.no_grad():
            for start in range(0, len(queries), QUERY_BLOCK):
                block = torch.from_numpy(np.ascontiguousarray(queries[start : start + QUERY_BLOCK], dtype=np.float32))
                top = (block.to(self.matrix.device) @ self.matrix.T).topk(k, dim=1)
                scores.append(top.values.cpu().numpy())
                rows.append(top.indices.cpu().numpy())
        if not scores:
            return np.zeros((0, k), dtype=np.float32), np.zeros((0, k), dtype=np.int64)
        return np.concatenate(scores), np.concatenate(rows)
