"""soften.reporting."""
