"""Package data: the example nomad.yaml written by ``nomad init``."""
