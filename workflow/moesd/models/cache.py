"""Static KV cache with a separate length per sequence.

Sequence b's tokens occupy slots [0, lengths[b]) of every layer's buffer. A forward with s new
tokens per sequence writes them at slots lengths[b] .. lengths[b]+s-1 and attends causally by
slot index, so whatever lies beyond a sequence's length (padding of a ragged prefill, drafts
that were rejected) is never read before it is overwritten. Rolling a sequence back is
therefore just lowering its length.
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(self, num_layers, batch_size, num_kv_heads, max_len, head_dim, *, dtype, device):
        shape = (batch_size, num_kv_heads, max_len, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.lengths = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.max_len = max_len
        self._rows = torch.arange(batch_size, device=device)

    @property
    def batch_size(self) -> int:
        return self.lengths.shape[0]

    def positions(self, s: int) -> torch.Tensor:
        """Slots of s new tokens per sequence: [B, s]."""
        pos = self.lengths[:, None] + torch.arange(s, device=self.lengths.device)
        return pos

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor) -> None:
        """k, v: [B, n_kv, s, d] written at positions [B, s]."""
        rows = self._rows[:, None]
        self.k[layer][rows, :, positions] = k.transpose(1, 2)  # indexed view is [B, s, n_kv, d]
        self.v[layer][rows, :, positions] = v.transpose(1, 2)

    def view(self, layer: int, upto: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of slots [0, upto): [B, n_kv, upto, d]."""
        return self.k[layer][:, :, :upto], self.v[layer][:, :, :upto]

    def advance(self, n) -> None:
        """Commit n tokens per sequence (an int or a [B] tensor)."""
        self.lengths += n

    def set_lengths(self, lengths: torch.Tensor) -> None:
        self.lengths.copy_(lengths)

    def clone(self) -> KVCache:
        """A copy of this cache: its buffers and lengths."""
        copy = KVCache.__new__(KVCache)
        copy.k, copy.v = [k.clone() for k in self.k], [v.clone() for v in self.v]
        copy.lengths, copy.max_len, copy._rows = self.lengths.clone(), self.max_len, self._rows
        return copy

    def load(self, other: KVCache) -> None:
        """Take OTHER's contents (a cache of the same shape) in place: a cache that CUDA graphs were
        captured on stays the same object."""
        for mine, theirs in zip(self.k + self.v, other.k + other.v, strict=True):
            mine.copy_(theirs)
        self.lengths.copy_(other.lengths)
