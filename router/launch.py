"""Start SMG, the fleet's router, with the backends' key from the environment (VLLM_API_KEY): its own CLI takes the
key only as `--api-key`, which any local user would read in the process list. The arguments are the rest of SMG's
(src/llmfleet/render/router.py writes them). SMG then asks every backend with this key, and answers a completion
only to a client that sends it: the front door, which alone holds it.
"""

from __future__ import annotations

import os
import sys

from smg.cli import main

if __name__ == "__main__":
    key = os.environ.get("VLLM_API_KEY", "")
    if not key:
        sys.exit("router/launch.py: VLLM_API_KEY is not set; the router would let anyone reach the backends.")
    # Kubernetes hands the plan's backends in ROUTER_WORKER_URLS (a ConfigMap each overlay renders), the other
    # runners as arguments.
    workers = os.environ.get("ROUTER_WORKER_URLS", "").split()
    main(["launch", *sys.argv[1:], *(["--worker-urls", *workers] if workers else []), "--api-key", key])
