"""surgkit.skill."""
