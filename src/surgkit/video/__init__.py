"""surgkit.video."""
