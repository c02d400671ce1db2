"""moesd: a reproducible replication pipeline for MoESD (arXiv 2505.19645)."""

__version__ = "0.1.0"
