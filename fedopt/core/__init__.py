"""Arrays, random streams, event clocks, level batching, meters and traces."""
