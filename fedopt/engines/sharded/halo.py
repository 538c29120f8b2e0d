"""Halo exchange for graph products of synchronous rounds in shards.

A shard that holds the rows ``own`` of an operand needs, for ``op[own] @ operand``,
the rows of the columns ``op[own]`` touches: its own, and its *halo*, the rows of
graph neighbours in other shards. :func:`halo_plan` works out, from the operator's
sparsity and the partition alone, which of its rows a shard sends to each other shard
(its boundary rows that the other shard's block touches), which rows it receives from
each, and its local block ``op[own, own ∪ halo]``; every shard derives the same lists,
so sender and receiver agree on the order of the rows without talking. Only those rows
travel; with a partition that keeps edges inside shards
(:func:`~fedopt.engines.sharded.partition.graph_shards`) they are few. The rows of the
block that touch no halo row (most of them) can be multiplied while the halo travels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from fedopt.core.arrays import FloatArray, IntArray


@dataclass(frozen=True)
class HaloPlan:
    """What one shard sends, receives and multiplies for one operator.

    ``send[j]``: positions (in the shard's own rows) of the rows shard ``j`` needs;
    ``recv[j]``: how many rows shard ``j`` sends here (stacked in shard order after the
    own rows); ``block``: ``op[own, own ∪ halo]`` as a CSR matrix. ``inner`` are the rows
    of the block that touch no halo column and ``outer`` the others, with their blocks
    ``inner_block`` (own columns only) and ``outer_block``: the inner rows can be
    multiplied before the halo arrives (:meth:`inner_product`), each row's sum taken in the
    same order as in ``block @ ext``, so the split changes no bit of the product.
    """

    send: dict[int, IntArray]
    recv: dict[int, int]
    block: sp.csr_matrix
    inner: IntArray
    outer: IntArray
    inner_block: sp.csr_matrix
    outer_block: sp.csr_matrix

    def _check(self, own_rows: FloatArray) -> None:
        if own_rows.shape[0] != self.block.shape[0]:
            raise ValueError(f"halo exchange: a product of {own_rows.shape[0]} rows on a shard of "
                             f"{self.block.shape[0]} nodes (Mix rows are the block's rows)")

    def inner_product(self, own_rows: FloatArray) -> FloatArray:
        """The ``inner`` rows of ``op[own] @ operand``, from the own rows alone."""
        self._check(own_rows)
        return np.asarray(self.inner_block @ own_rows)

    def product(self, own_rows: FloatArray, received: dict[int, FloatArray],
                inner: FloatArray | None = None) -> FloatArray:
        """``op[own] @ operand`` from the own rows and the rows each shard sent here
        (``inner``: the :meth:`inner_product` of the same own rows, if it was taken)."""
        self._check(own_rows)
        parts = [own_rows]
        for j, count in self.recv.items():
            rows = received[j]
            if rows.shape[0] != count:
                raise ValueError(f"halo exchange: shard {j} sent {rows.shape[0]} rows, {count} expected")
            parts.append(rows)
        ext = np.concatenate(parts) if len(parts) > 1 else own_rows
        if inner is None:
            return np.asarray(self.block @ ext)
        out = np.empty((self.block.shape[0], *ext.shape[1:]), dtype=np.result_type(self.block.dtype, ext.dtype))
        out[self.inner] = inner
        out[self.outer] = self.outer_block @ ext
        return out


def _rows(A: sp.csr_matrix, rows: IntArray, width: int) -> sp.csr_matrix:
    """Rows ``rows`` of ``A`` as a CSR matrix of ``width`` columns, each row's entries in
    their stored order (so a product sums them in the same order as ``A``'s)."""
    starts, ends = A.indptr[rows], A.indptr[rows + 1]
    counts = ends - starts
    indptr = np.concatenate(([0], np.cumsum(counts))).astype(A.indptr.dtype)
    take = np.repeat(starts - indptr[:-1], counts) + np.arange(indptr[-1])
    return sp.csr_matrix((A.data[take], A.indices[take], indptr), shape=(len(rows), width))


def _columns(A: sp.csr_matrix, rows: IntArray) -> IntArray:
    """The columns the rows ``rows`` of ``A`` touch (sorted, unique)."""
    return np.unique(A[rows].indices)


def halo_plan(op: Any, shards: list[IntArray], shard: int) -> HaloPlan:
    """The :class:`HaloPlan` of shard ``shard`` for operator ``op`` ([n, n], dense or sparse)
    under the partition ``shards`` (sorted node ids per shard)."""
    A = sp.csr_matrix(op, copy=True)  # (a received operator may be read-only)
    A.eliminate_zeros()
    n = A.shape[0]
    owner = np.full(n, -1, dtype=np.int64)
    for k, s in enumerate(shards):
        owner[s] = k
    own = np.asarray(shards[shard], dtype=np.int64)
    pos = np.full(n, -1, dtype=np.int64)
    pos[own] = np.arange(len(own))
    cols = _columns(A, own)
    send: dict[int, IntArray] = {}
    recv: dict[int, int] = {}
    halo: list[IntArray] = []
    for j, other in enumerate(shards):
        if j == shard:
            continue
        theirs = _columns(A, np.asarray(other, dtype=np.int64))
        mine = theirs[owner[theirs] == shard]
        if len(mine):
            send[j] = pos[mine]
        from_j = cols[owner[cols] == j]
        if len(from_j):
            recv[j] = len(from_j)
            halo.append(from_j)
    ext = np.concatenate([own, *halo])
    colmap = np.full(n, -1, dtype=np.int64)
    colmap[ext] = np.arange(len(ext))
    rows = A[own].tocsr()
    block = sp.csr_matrix((rows.data, colmap[rows.indices], rows.indptr), shape=(len(own), len(ext)))
    row_max = np.full(len(own), -1, dtype=np.int64)
    np.maximum.at(row_max, np.repeat(np.arange(len(own)), np.diff(block.indptr)), block.indices)
    touches_halo = row_max >= len(own)
    inner, outer = np.flatnonzero(~touches_halo), np.flatnonzero(touches_halo)
    return HaloPlan(send, recv, block, inner, outer, _rows(block, inner, len(own)), _rows(block, outer, len(ext)))
