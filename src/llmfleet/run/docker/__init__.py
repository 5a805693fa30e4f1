"""The Docker runner: the committed Compose files on a Docker engine, and the stand-in images."""
