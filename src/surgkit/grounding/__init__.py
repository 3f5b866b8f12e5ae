"""surgkit.grounding."""
