"""visearch: category-based visual similarity search (metric learning + Qdrant)."""

__version__ = "0.1.0"
