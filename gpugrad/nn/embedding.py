"""Embedding: a table of vectors looked up by integer index."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..engine import no_grad
from ..tensor import Tensor, _is_float
from . import init
from .module import Module, Parameter


class Embedding(Module):
    """A (num_embeddings, embedding_dim) table; ``emb(ids)`` is ``weight[ids]``, of shape
    (*ids.shape, embedding_dim). Rows start N(0, 1), as in PyTorch; row ``padding_idx`` starts
    at zero and never receives a gradient. Repeated ids add their gradients (a scatter-add).

    >>> import gpugrad as gg
    >>> Embedding(10, 3)(gg.tensor([[1, 2], [2, 9]])).shape
    (2, 2, 3)
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        dtype=None,
        device: str = "cpu",
    ):
        super().__init__()
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(
                    f"Embedding: padding_idx {padding_idx} is out of range for "
                    f"{num_embeddings} embeddings"
                )
            padding_idx %= num_embeddings
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        dtype = np.dtype("float32" if dtype is None else dtype)
        if not _is_float(dtype):
            raise TypeError(f"Embedding: dtype must be floating point, got {dtype}")
        self.weight = Parameter(np.empty((num_embeddings, embedding_dim), dtype), device=device)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Redraw the table from N(0, 1), the padding row zero."""
        init.normal_(self.weight)
        if self.padding_idx is not None:
            with no_grad():
                self.weight.data[self.padding_idx] = 0

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"
