"""surgkit.reasoning."""
