"""Adapters from a dataset's native layout to the category layout: images/ + meta CSV."""
