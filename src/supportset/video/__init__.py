"""video stage of supportset."""
