"""Absl binaries that train, evaluate and plot rlra_tf models."""
