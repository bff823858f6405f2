"""Metrics: token resolution and classifier tests of how much information survives."""
