"""Progressive delivery: rollouts, their pure policies and statistics."""
