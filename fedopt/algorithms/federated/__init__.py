"""Federated algorithms (clients and a server)."""
