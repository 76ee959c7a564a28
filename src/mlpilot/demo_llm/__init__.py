"""The support-assistant LLM app of the demo: a small knowledge-base corpus, prompts, a tool and an eval set."""
