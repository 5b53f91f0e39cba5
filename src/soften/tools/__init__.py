"""soften.tools."""
