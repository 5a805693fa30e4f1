"""The native runner: every service a local process on 127.0.0.1."""
