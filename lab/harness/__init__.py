"""The wiring: the PKI, the topology, `Lab` (one scenario's world) and the runner."""
