"""llmfleet: one OpenAI-compatible gateway in front of one vLLM server per GPU, with monitoring."""

__version__ = "0.1.0"
