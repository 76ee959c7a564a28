"""LLM artifacts: prompts, tools (and later indexes, apps, backends, evals)."""
