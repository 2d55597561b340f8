"""supportset: the Support-Set Bottlenecks video-text retrieval pipeline."""

__version__ = "0.1.0"
