"""Compiled-kernel cache and launch on torch's current stream."""
