"""Tokenizer definitions: tokc's own models and the published architectures."""

from .checkpoints import load_pretrained

__all__ = ["load_pretrained"]
