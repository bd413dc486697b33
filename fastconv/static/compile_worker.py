"""The compile worker process: ``python -m fastconv.static.compile_worker`` (started by
:class:`fastconv.static.worker.WorkerPool`, never imported by the package).

It serves the protocol of :mod:`fastconv.static.worker` on its original stdout, one JSON job per line on stdin,
with ``TRITON_INTERPRET`` off so kernels are real ``JITFunction`` objects.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

from ..gpus import TARGETS
from .compile import compile_report
from .variants import describe_provider, resolve


def _serve(proto) -> None:

    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            job = json.loads(line)
            if job["op"] == "describe":
                answer = {"variants": describe_provider(job["ref"][0], tuple(job["ref"][1]))}
            elif job["op"] == "compile":
                variant = resolve(job["ref"], job["fingerprint"], job.get("overrides") or {})
                report = compile_report(variant, TARGETS[job["target"]], maxnreg=job.get("maxnreg"))
                answer = {"report": report.to_json()}
            else:
                raise ValueError(f"unknown op {job['op']!r}")
        except Exception:  # noqa: BLE001 - every failure goes back to the parent as a gate error
            answer = {"error": traceback.format_exc(limit=8)}
        proto.write(json.dumps(answer) + "\n")
        proto.flush()


def main() -> None:
    # `python -m fastconv.static.compile_worker` has imported fastconv (and its kernels) before this line runs,
    # so the interpreter must already be off in the environment (WorkerPool sets TRITON_INTERPRET=0).
    if os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on", "y"):
        sys.exit("fastconv.static.compile_worker: run with TRITON_INTERPRET=0 (kernels must be JITFunctions)")
    proto = os.fdopen(os.dup(1), "w")  # the protocol channel: the original stdout
    os.dup2(2, 1)  # whatever the compiler prints goes to stderr
    sys.stdout = sys.stderr
    _serve(proto)


if __name__ == "__main__":
    main()
