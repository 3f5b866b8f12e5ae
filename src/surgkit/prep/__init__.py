"""surgkit.prep."""
