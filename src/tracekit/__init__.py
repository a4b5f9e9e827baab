"""tracekit."""
