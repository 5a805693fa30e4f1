"""Running a plan: the native runner (local processes) and the Docker runner (Compose), and what they share: the
run state, startup phases, processes and probes."""
