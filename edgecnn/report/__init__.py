"""Tables (rich, markdown, CSV), cross-run comparison and plots of benchmark results."""
