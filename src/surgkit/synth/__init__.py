"""surgkit.synth."""
