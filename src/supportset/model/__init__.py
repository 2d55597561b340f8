"""model stage of supportset."""
