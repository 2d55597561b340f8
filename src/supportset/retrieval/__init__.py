"""retrieval stage of supportset."""
