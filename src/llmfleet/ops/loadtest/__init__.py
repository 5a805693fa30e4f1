"""Load tests that measure what LLM users feel: TTFT, inter-token latency, tokens/s, under locust."""
