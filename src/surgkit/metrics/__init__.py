"""surgkit.metrics."""
