"""Graphs, spectra, time-varying sequences and gossip-rate optimization."""

from fedopt.topology.graph import Topology

__all__ = ["Topology"]
