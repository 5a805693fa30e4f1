"""`llmfleet doctor`: what would stop `up` on this host, each with its fix (checks.run)."""
