"""What the servers need on disk: model weights (the Hugging Face cache, downloads, packaged models and their
checks) and the Python runtimes they run in."""
