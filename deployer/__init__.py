"""One-command, low-cost, private MLflow on Google Cloud, and the same server on one machine."""

__version__ = "0.1.0"
