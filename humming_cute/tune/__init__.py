"""Default configs per architecture and M range."""
from .heuristics import default_config

__all__ = ["default_config"]
