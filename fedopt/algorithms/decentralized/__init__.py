"""Decentralized algorithms (gossip over a graph, no server)."""
