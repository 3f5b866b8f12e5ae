"""Report generation: report.html with plots and sample frames."""
