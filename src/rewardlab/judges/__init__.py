"""LLM-as-judge: templates, injected clients, pure parsing, bias controls, caching, agreement."""
