"""data stage of supportset."""
