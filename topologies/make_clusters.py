"""Write the multi-GPU cluster topology specs of this folder.

    python topologies/make_clusters.py            # rewrites the *.yaml specs next to this file

Every graph node is one GPU (one worker); every edge is a link between two GPUs with a
latency (seconds) and a bandwidth (bytes per second), the inputs of the link-cost model
``latency + bytes / bandwidth``. The figures are round, representative numbers of the link
kinds, not measurements of a particular machine:

=====================  ===========  ===================  ==========================================
link kind              latency      bandwidth (one way)  used for
=====================  ===========  ===================  ==========================================
NVLink / NVSwitch      2 µs         150 GB/s             GPUs inside one 8-GPU box
PCIe 4.0 x16           5 µs         25 GB/s              GPUs inside a PCIe-only box
InfiniBand HDR 200G    5 µs         25 GB/s              rail-optimized links between boxes
Ethernet 25 GbE        25 µs        3.1 GB/s             between PCIe boxes / commodity servers
fat-tree hop           1 µs / hop   12.5 GB/s (100 Gb/s)  hosts of a k = 4 fat-tree
=====================  ===========  ===================  ==========================================
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import networkx as nx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from fedopt.topology.graph import Topology  # noqa: E402
from fedopt.topology.spec import save_spec  # noqa: E402

NVLINK = (2e-6, 150e9)
PCIE = (5e-6, 25e9)
INFINIBAND = (5e-6, 25e9)
ETHERNET = (25e-6, 3.125e9)


def _topology(name: str, g: nx.Graph, description: str) -> Topology:
    for u, v, d in g.edges(data=True):
        lat, bw = d.pop("link")
        d["latency"], d["bandwidth"] = lat, bw
    return Topology.from_networkx(name, g, params={"description": description})


def boxes(n_boxes: int, per_box: int, inside: tuple[float, float], between: tuple[float, float],
          rails: bool) -> nx.Graph:
    """``n_boxes`` boxes of ``per_box`` GPUs, all-to-all inside a box. Between boxes: one link
    per rail (GPU k of box a to GPU k of box b, every pair of boxes) when ``rails``, else one
    link between GPU 0 of each pair of boxes (a single NIC per box)."""
    g = nx.Graph()
    gpu = lambda b, k: b * per_box + k  # noqa: E731
    for b in range(n_boxes):
        for k, l in itertools.combinations(range(per_box), 2):
            g.add_edge(gpu(b, k), gpu(b, l), link=inside)
    for a, b in itertools.combinations(range(n_boxes), 2):
        for k in range(per_box) if rails else [0]:
            g.add_edge(gpu(a, k), gpu(b, k), link=between)
    return g


def fat_tree(k: int = 4, hop_latency: float = 1e-6, bandwidth: float = 12.5e9, core_oversubscription: float = 2.0) -> nx.Graph:
    """Hosts of a k-ary fat-tree (k³/4 hosts), all pairs connected; an edge's latency is the
    switch-hop count times ``hop_latency`` (2 hops under one edge switch, 4 inside a pod,
    6 across pods) and cross-pod bandwidth is divided by the core oversubscription."""
    half = k // 2
    hosts = [(pod, edge, h) for pod in range(k) for edge in range(half) for h in range(half)]
    g = nx.Graph()
    for (a, ha), (b, hb) in itertools.combinations(enumerate(hosts), 2):
        if ha[0] != hb[0]:
            link = (6 * hop_latency, bandwidth / core_oversubscription)
        elif ha[1] != hb[1]:
            link = (4 * hop_latency, bandwidth)
        else:
            link = (2 * hop_latency, bandwidth)
        g.add_edge(a, b, link=link)
    return g


def ethernet_ring(n_servers: int = 8, per_server: int = 2) -> nx.Graph:
    """Commodity servers of ``per_server`` PCIe GPUs; the servers form a ring over 25 GbE
    (each server's GPU 0 to the next server's GPU 0)."""
    g = nx.Graph()
    for s in range(n_servers):
        for k, l in itertools.combinations(range(per_server), 2):
            g.add_edge(s * per_server + k, s * per_server + l, link=PCIE)
        g.add_edge(s * per_server, ((s + 1) % n_servers) * per_server, link=ETHERNET)
    return g


SPECS = {
    "dgx_4x8": lambda: _topology(
        "dgx_4x8", boxes(4, 8, NVLINK, INFINIBAND, rails=True),
        "4 boxes x 8 GPUs: NVLink/NVSwitch all-to-all inside a box, rail-optimized InfiniBand HDR between boxes"),
    "dgx_2x8_ethernet": lambda: _topology(
        "dgx_2x8_ethernet", boxes(2, 8, NVLINK, ETHERNET, rails=False),
        "2 boxes x 8 GPUs: NVLink inside a box, one 25 GbE link between the boxes"),
    "pcie_boxes": lambda: _topology(
        "pcie_boxes", boxes(4, 4, PCIE, ETHERNET, rails=False),
        "4 PCIe-only boxes x 4 GPUs: PCIe 4.0 inside a box, one 25 GbE NIC per box, boxes all-to-all"),
    "fat_tree": lambda: _topology(
        "fat_tree", fat_tree(4),
        "16 hosts of a k=4 fat-tree, all pairs: 1 us per switch hop, 100 Gb/s, 2:1 core oversubscription"),
    "ethernet_ring": lambda: _topology(
        "ethernet_ring", ethernet_ring(8, 2),
        "8 servers x 2 PCIe GPUs, servers in a ring over 25 GbE"),
}


def main() -> None:
    for name, make in SPECS.items():
        top = make()
        path = save_spec(top, HERE / f"{name}.yaml")
        print(f"{path.name}: n={top.n}, edges={top.m}")


if __name__ == "__main__":
    main()
