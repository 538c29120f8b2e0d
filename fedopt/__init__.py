"""fedopt: a simulator for distributed and federated optimization research."""

__version__ = "0.1.0"
