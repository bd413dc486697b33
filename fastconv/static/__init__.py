"""The static resource gate: every kernel config compiled for the target GPUs and checked, without a GPU.

For each kernel in :data:`fastconv.kernels.REGISTRY` and each :class:`~fastconv.kernels.StaticVariant` of
``kernel.static_variants()`` (every shipped config, in each dtype/precision it serves), and each target the
variant is declared for (``sm_89`` = RTX 4090 and ``sm_90`` = H100 by default):

1. compile with ``triton.compile(ASTSource(...), target=GPUTarget("cuda", cap, 32))`` in a worker process with
   the interpreter off (:mod:`.compile`, :mod:`.worker`);
2. read registers, stack/local memory (spills) and shared memory from the cubin with the ``cuobjdump`` shipped
   in the Triton wheel, and the SASS opcode histogram (:mod:`.report`);
3. check them against :data:`fastconv.gpus.TARGETS`: no spills, registers <= 255, shared memory
   within the per-block limit, a resident block fits, and tensor-core variants contain ``HMMA`` (sm_89) or
   ``HGMMA``/``HMMA`` (sm_90) instructions; report occupancy (resident warps per SM) (:mod:`.gate`).

Reports are cached (``$FASTCONV_CACHE_DIR/static``), so a repeat run compiles nothing.  Entry points:
``python -m fastconv inspect`` (:mod:`.inspect_cli`), ``pytest -m static`` (``tests/test_static.py``), and
:func:`check` / :func:`registry_items` from Python.  :mod:`.probes` holds kernels with known behaviour that
prove the gate rejects what it must; :func:`jit_specialization` helps write variants as the JIT launches them.
:mod:`.toolchain` judges the failures per installed Triton: pruned where expected or new, failing on a
regression of a supported toolchain or a mode left without a config.
"""

from ..kernels.specialize import jit_specialization
from .report import Occupancy, ResourceReport, evaluate, occupancy
from .resource_gate import DEFAULT_TARGETS, GateItem, GateRun, StaticResult, check, items_from, registry_items
from .toolchain import Verdict, judge

__all__ = [
    "check", "registry_items", "items_from", "GateItem", "GateRun", "StaticResult", "DEFAULT_TARGETS",
    "ResourceReport", "Occupancy", "evaluate", "occupancy", "jit_specialization", "Verdict", "judge",
]
