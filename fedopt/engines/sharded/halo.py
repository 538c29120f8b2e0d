"""Halo exchange for graph products of synchronous rounds in shards.

A shard that holds the rows ``own`` of an operand needs, for ``op[own] @ operand``,
the rows of the columns ``op[own]`` touches: its own, and its *halo*, the rows of
graph neighbours in other shards. :func:`halo_plan` works out, from the operator's
sparsity and the partition alone, which of its rows a shard sends to each other shard
(its boundary rows that the other shard's block touches), which rows it receives from
each, and its blocks: ``op[own, own]`` and, per sender, the block of the own rows that
touch the sender's rows; every shard derives the same lists, so sender and receiver agree
on the order of the rows without talking. Only those rows travel; with a partition that
keeps edges inside shards (:func:`~fedopt.engines.sharded.partition.graph_shards`) they are
few. A product is the own block's product plus, per sender, a small product added to the
own rows that touch its rows: the own and received rows are read where they are, never
stacked into an extended operand. The own block's product needs no halo row, so it can be
taken while the halo travels (:meth:`HaloPlan.inner_product`). The blocks are dense where
the operator is dense (one BLAS product, as the local engine's ``W @ X``; a CSR product of
a wide operand streams the operand once per nonzero) and CSR where it is sparse.
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
    ``recv[j]``: how many rows shard ``j`` sends here; ``own``: ``op[own, own]``;
    ``halo[j]``: ``(rows, block)``, the positions of the own rows that touch shard ``j``'s
    rows and ``op[own[rows], from_j]``, ``from_j`` the rows shard ``j`` sends (in its order).
    The blocks are dense arrays where the operator is one (a BLAS product, as the local
    engine multiplies it), CSR matrices where it is sparse.
    """

    send: dict[int, IntArray]
    recv: dict[int, int]
    own: FloatArray | sp.csr_matrix
    halo: dict[int, tuple[IntArray, FloatArray | sp.csr_matrix]]

    def _check(self, own_rows: FloatArray) -> None:
        if own_rows.shape[0] != self.own.shape[0]:
            raise ValueError(f"halo exchange: a product of {own_rows.shape[0]} rows on a shard of "
                             f"{self.own.shape[0]} nodes (Mix rows are the block's rows)")

    def inner_product(self, own_rows: FloatArray) -> FloatArray:
        """``op[own, own] @ own_rows``: the part of the product that needs no halo row (a
        new array; :meth:`product` adds the halo terms to it in place)."""
        self._check(own_rows)
        return np.asarray(self.own @ own_rows)

    def product(self, own_rows: FloatArray, received: dict[int, FloatArray],
                inner: FloatArray | None = None) -> FloatArray:
        """``op[own] @ operand`` from the own rows and the rows each shard sent here: the
        own block's product (``inner``: the :meth:`inner_product` of the same own rows, if
        it was taken ahead; it is completed in place), plus each sender's block times its
        rows on the own rows that touch them (the received rows are read where they
        arrived, never stacked). Taking the inner product ahead changes no bit."""
        self._check(own_rows)
        out = self.inner_product(own_rows) if inner is None else inner
        for j, count in self.recv.items():
            rows = received[j]
            if rows.shape[0] != count:
                raise ValueError(f"halo exchange: shard {j} sent {rows.shape[0]} rows, {count} expected")
            at, block = self.halo[j]
            out[at] += np.asarray(block @ rows)
        return out


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
    dense = not sp.issparse(op)
    blocks: dict[int, tuple[IntArray, FloatArray | sp.csr_matrix]] = {}
    rows = A[own].tocsc()
    for j, from_j in zip(recv, halo):
        part = rows[:, from_j].tocsr()
        at = np.flatnonzero(np.diff(part.indptr))  # the own rows that touch shard j's rows
        blocks[j] = (at, part[at].toarray() if dense else part[at])
    own_block = rows[:, own].tocsr()
    return HaloPlan(send, recv, own_block.toarray() if dense else own_block, blocks)
