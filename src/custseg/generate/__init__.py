"""Stage ``generate``: a synthetic customer world with ground truth, at any scale."""

from custseg.generate.runner import GeneratedWorld, generate_world, write_world

__all__ = ["GeneratedWorld", "generate_world", "write_world"]
