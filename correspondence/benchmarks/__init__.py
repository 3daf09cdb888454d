"""Benchmark commands: each writes a JSON report (with every setting) and a Markdown table."""
