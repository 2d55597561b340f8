"""train stage of supportset."""
