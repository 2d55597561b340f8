"""Action recognition with a linear probe on frozen video features (the paper's Table 11)."""
