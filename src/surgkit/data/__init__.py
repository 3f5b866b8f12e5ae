"""surgkit.data."""
