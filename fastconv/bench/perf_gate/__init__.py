"""The performance gate (``python -m fastconv gate``), by job: :mod:`.stats` (the decision), :mod:`.baseline`
(loading a baseline package or saved run), :mod:`.ab` (the interleaved A/B run and its verdict), :mod:`.cli`
(the command).  The *static* (resource) gate is :mod:`fastconv.static`."""

from .ab import EXIT_PASS, EXIT_SLOWER, EXIT_USAGE, EXIT_WRONG, GateResult, ab_compare, run_cases, verdict
from .baseline import isolate_tuning_cache, load_package, load_saved_run
from .cli import configure, run
from .stats import Decision, Summary, decide_paired, decide_unpaired, parse_threshold, summarize

__all__ = ["configure", "run", "Decision", "decide_paired", "decide_unpaired", "parse_threshold", "load_package",
           "load_saved_run", "isolate_tuning_cache", "GateResult", "ab_compare", "run_cases", "verdict", "Summary",
           "summarize", "EXIT_PASS", "EXIT_SLOWER", "EXIT_USAGE", "EXIT_WRONG"]
