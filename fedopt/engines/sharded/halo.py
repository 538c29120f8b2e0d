"""Halo exchange for graph products of synchronous rounds in shards.

A shard that holds the rows ``own`` of an operand needs, for ``op[own] @ operand``,
the rows of the columns ``op[own]`` touches: its own, and its *halo*, the rows of
graph neighbours in other shards. :func:`halo_plan` works out, from the operator's
sparsity and the partition alone, which of its rows a shard sends to each other shard
(its boundary rows that the other shard's block touches), which rows it receives from
each, and its blocks; every shard derives the same lists, so sender and receiver agree on
the order of the rows without talking. Only those rows travel; with a partition that keeps
edges inside shards (:func:`~fedopt.engines.sharded.partition.graph_shards`) they are few.
Part of each product needs no halo row and can be taken while the halo travels
(:meth:`HaloPlan.inner_product`). Two layouts, by the operator's kind:

* a **sparse** operator (the mixing matrices of large graphs) gets one CSR block
  ``op[own, own ∪ halo]`` whose rows keep the operator's entries in their stored order, so a
  product sums every row in the same order as the local engine's ``W @ X`` and equals it bit
  for bit (:class:`SparseHaloPlan`); the rows that touch no halo row are the inner product;
* a **dense** operator (small graphs) gets dense blocks, ``op[own, own]`` and, per sender, the
  block of the own rows that touch its rows, so that a product is BLAS products of the own
  and received rows where they are, never stacked into an extended operand (a CSR product
  of a wide operand streams it once per nonzero, and stacking copies every own row): the own
  block's product is the inner product, each sender's adds to it (:class:`DenseHaloPlan`;
  BLAS sums in its own order, so the rows agree with the local engine's to rounding).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from fedopt.core.arrays import FloatArray, IntArray


@dataclass(frozen=True)
class HaloPlan(ABC):
    """What one shard sends, receives and multiplies for one operator.

    ``send[j]``: positions (in the shard's own rows) of the rows shard ``j`` needs;
    ``recv[j]``: how many rows shard ``j`` sends here (in the order of ``op``'s columns).
    """

    send: dict[int, IntArray]
    recv: dict[int, int]

    @property
    @abstractmethod
    def size(self) -> int:
        """The number of own rows."""

    def _check(self, own_rows: FloatArray) -> None:
        if own_rows.shape[0] != self.size:
            raise ValueError(f"halo exchange: a product of {own_rows.shape[0]} rows on a shard of "
                             f"{self.size} nodes (Mix rows are the block's rows)")

    def _received(self, received: dict[int, FloatArray]) -> dict[int, FloatArray]:
        for j, count in self.recv.items():
            if received[j].shape[0] != count:
                raise ValueError(f"halo exchange: shard {j} sent {received[j].shape[0]} rows, {count} expected")
        return received

    @abstractmethod
    def inner_product(self, own_rows: FloatArray) -> FloatArray:
        """The part of ``op[own] @ operand`` that needs no halo row (from the own rows alone)."""

    @abstractmethod
    def product(self, own_rows: FloatArray, received: dict[int, FloatArray],
                inner: FloatArray | None = None) -> FloatArray:
        """``op[own] @ operand`` from the own rows and the rows each shard sent here
        (``inner``: the :meth:`inner_product` of the same own rows, if it was taken ahead;
        taking it ahead changes no bit of the product)."""


@dataclass(frozen=True)
class SparseHaloPlan(HaloPlan):
    """``block``: ``op[own, own ∪ halo]`` as a CSR matrix whose columns are the own rows, then
    the rows received from each shard in shard order, each row's entries in the operator's
    stored order. ``inner`` are the rows of the block that touch no halo column and ``outer``
    the others, with their blocks ``inner_block`` (own columns only) and ``outer_block``."""

    block: sp.csr_matrix
    inner: IntArray
    outer: IntArray
    inner_block: sp.csr_matrix
    outer_block: sp.csr_matrix

    @property
    def size(self) -> int:
        return int(self.block.shape[0])

    def inner_product(self, own_rows: FloatArray) -> FloatArray:
        """The ``inner`` rows of ``op[own] @ operand``."""
        self._check(own_rows)
        return np.asarray(self.inner_block @ own_rows)

    def product(self, own_rows: FloatArray, received: dict[int, FloatArray],
                inner: FloatArray | None = None) -> FloatArray:
        self._check(own_rows)
        got = self._received(received)
        parts = [own_rows, *(got[j] for j in self.recv)]
        ext = np.concatenate(parts) if len(parts) > 1 else own_rows
        if inner is None:
            return np.asarray(self.block @ ext)
        out = np.empty((self.size, *ext.shape[1:]), dtype=np.result_type(self.block.dtype, ext.dtype))
        out[self.inner] = inner
        out[self.outer] = self.outer_block @ ext
        return out


@dataclass(frozen=True)
class DenseHaloPlan(HaloPlan):
    """``own``: ``op[own, own]``; ``halo[j]``: ``(rows, block)``, the positions of the own rows
    that touch shard ``j``'s rows and ``op[own[rows], from_j]`` (``from_j``: the rows shard
    ``j`` sends, in its order), all dense arrays."""

    own: FloatArray
    halo: dict[int, tuple[IntArray, FloatArray]]

    @property
    def size(self) -> int:
        return int(self.own.shape[0])

    def inner_product(self, own_rows: FloatArray) -> FloatArray:
        """``op[own, own] @ own_rows`` (a new array; :meth:`product` adds the halo terms to it
        in place)."""
        self._check(own_rows)
        return np.asarray(self.own @ own_rows)

    def product(self, own_rows: FloatArray, received: dict[int, FloatArray],
                inner: FloatArray | None = None) -> FloatArray:
        self._check(own_rows)
        got = self._received(received)
        out = self.inner_product(own_rows) if inner is None else inner
        for j in self.recv:
            at, block = self.halo[j]
            out[at] += block @ got[j]
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
    if sp.issparse(op):
        ext = np.concatenate([own, *halo])
        colmap = np.full(n, -1, dtype=np.int64)
        colmap[ext] = np.arange(len(ext))
        rows = A[own].tocsr()
        block = sp.csr_matrix((rows.data, colmap[rows.indices], rows.indptr), shape=(len(own), len(ext)))
        row_max = np.full(len(own), -1, dtype=np.int64)
        np.maximum.at(row_max, np.repeat(np.arange(len(own)), np.diff(block.indptr)), block.indices)
        touches_halo = row_max >= len(own)
        inner, outer = np.flatnonzero(~touches_halo), np.flatnonzero(touches_halo)
        return SparseHaloPlan(send, recv, block, inner, outer, _rows(block, inner, len(own)),
                              _rows(block, outer, len(ext)))
    blocks: dict[int, tuple[IntArray, FloatArray]] = {}
    by_column = A[own].tocsc()
    for j, from_j in zip(recv, halo):
        part = by_column[:, from_j].tocsr()
        at = np.flatnonzero(np.diff(part.indptr))  # the own rows that touch shard j's rows
        blocks[j] = (at, part[at].toarray())
    return DenseHaloPlan(send, recv, by_column[:, own].toarray(), blocks)
