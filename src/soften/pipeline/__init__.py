"""soften.pipeline."""
