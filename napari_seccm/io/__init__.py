"""napari reader, sample data and layer builders (no Qt imports at module level)."""
