"""Run inside the pinned vLLM's own runtime: parse each command line as vLLM's server does (the parser and the
checks of vllm/entrypoints/launchers/api_server/entry.py), turn it into engine arguments, and print what came out.

stdin: a JSON list of {"name": ..., "argv": [...]}; stdout: a JSON list of {"name", "error"} or {"name", "engine"}.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys

from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
from vllm.utils.argparse_utils import FlexibleArgumentParser

FIELDS = ("model", "served_model_name", "max_model_len", "max_num_seqs", "tensor_parallel_size",
          "gpu_memory_utilization", "enable_prefix_caching", "enforce_eager")  # fmt: skip


def parse(argv: list[str]) -> dict:
    parser = make_arg_parser(FlexibleArgumentParser(description="vLLM OpenAI-Compatible RESTful API server."))
    complaint = io.StringIO()
    try:
        with contextlib.redirect_stderr(complaint):
            args = parser.parse_args(argv)
        validate_parsed_serve_args(args)
        engine = AsyncEngineArgs.from_cli_args(args)
    except SystemExit:
        return {"error": complaint.getvalue().strip().splitlines()[-1]}
    except Exception as problem:  # vLLM's own checks raise TypeError, ValueError ...
        return {"error": f"{type(problem).__name__}: {problem}"}
    found = {f: getattr(engine, f) for f in FIELDS}
    found["middleware"] = args.middleware
    return {"engine": found}


print(json.dumps([{"name": c["name"], **parse(c["argv"])} for c in json.load(sys.stdin)]))
