"""engine: a DeepSpeed-backed PyTorch training framework."""

__version__ = "0.1.0"
