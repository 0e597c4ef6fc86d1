"""Reports over finished or running search runs: tables and plots from ``summary.json`` / ``metrics.jsonl`` only.
This package never imports torch."""
