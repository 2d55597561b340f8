"""features stage of supportset."""
