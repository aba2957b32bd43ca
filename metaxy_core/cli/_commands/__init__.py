"""The commands, one module per kind: reads, snapshots, maintenance."""
