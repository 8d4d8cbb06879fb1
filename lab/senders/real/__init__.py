"""Adapters that drive real MTAs inside the isolated topology."""
