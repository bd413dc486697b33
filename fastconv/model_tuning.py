"""``fastconv.tune(model, example_inputs)``: time every conv shape of a model once, on demand, and ship the result.

By default fastconv picks launch configs without timing (:mod:`fastconv.tuning.heuristic`), so a first
forward compiles one binary per conv shape and nothing more.  :func:`tune` is the full autotuning, asked for
explicitly:

1. *capture*: the model runs once on ``example_inputs`` (``torch.no_grad()``) while every config choice of a
   fastconv call is collected (:func:`fastconv.tuning.autotuner.capture_jobs`), deduplicated by its tuning key
   (kernel, problem, precision, input layout);
2. *tune* each distinct one: all candidate configs compiled in parallel threads, then timed on the device
   one by one (:func:`fastconv.tuning.autotuner.tune_job`), the fastest kept (in memory and in the
   per-GPU disk cache), one progress line per shape on stderr;
3. *save* (``save=path``) the choices to a JSON file that :func:`load_tuning` (or ``$FASTCONV_TUNING_FILE``)
   loads on another machine with the same GPU model and Triton version, refusing any other;
4. the memoised plans are dropped, so the model's next forward uses the tuned configs.

``python -m fastconv tune --network resnet18 --batch 8 --save resnet18.json`` does this for a network of the
benchmark catalogue.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from .functional import forget_plans
from .tuning import autotuner

__all__ = ["tune", "load_tuning"]


def _as_args(example_inputs: Any) -> tuple:
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs)
    raise TypeError(f"fastconv.tune: example_inputs must be a Tensor or a tuple of them, "
                    f"not {type(example_inputs).__name__}")


def _device_of(args: tuple) -> torch.device:
    for a in args:
        if isinstance(a, torch.Tensor):
            return a.device
    return torch.device("cpu")


def tune(model: Callable, example_inputs: Any, *, save: str | os.PathLike | None = None, jobs: int | None = None,
         progress: bool = True, retune: bool = False, compile: Callable | None = None,
         timer: Callable | None = None, stream=None) -> list[dict]:
    """Autotune every fastconv conv call of ``model(*example_inputs)`` (see the module's docstring).

    Args:
        model: a module (or any callable) whose convolutions run on fastconv (e.g. after
            :func:`fastconv.convert`).
        example_inputs: a tensor, or a tuple of positional arguments, of the shapes to tune for.
        save: write the tuned choices of this model to this JSON file (:func:`load_tuning` reads it).
        jobs: compiler threads (default ``min(8, cpu_count)``).
        progress: print one line per shape (and a total) to ``stream`` (default stderr).
        retune: time again shapes that already have a tuned choice (memory, disk cache or loaded file).
        compile, timer: replace the compilation (``compile(job, configs, jobs)``) and the device timing
            (``timer(job, configs) -> {config name: ms}``) steps, e.g. with fakes in tests: Triton's
            interpreter has no device time, so without ``timer`` tuning needs a GPU.

    Returns:
        one dict per distinct conv call: ``problem``, ``kernel``, ``precision``, ``layout``, ``config``,
        ``source`` (``"timed"``, or where an existing choice came from), ``times_ms`` (per candidate),
        ``untimed`` (the config the untimed choice takes), ``compile_s``, ``seconds``.
    """
    args = _as_args(example_inputs)
    device = _device_of(args)
    if timer is None and device.type != "cuda":
        raise RuntimeError("fastconv.tune times configs on a CUDA device; the inputs are on "
                           f"{device} (Triton's interpreter has no device time)")
    out = stream if stream is not None else sys.stderr
    say = (lambda text: print(text, file=out, flush=True)) if progress else (lambda text: None)
    t_start = time.perf_counter()
    forget_plans()  # every conv call makes its choice (so it is captured) even if its plan was memoised
    with autotuner.capture_jobs() as captured, torch.no_grad():
        model(*args)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    todo = list(captured.values())
    rows: list[dict] = []
    say(f"fastconv.tune: {len(todo)} distinct conv call(s) in {time.perf_counter() - t_start:.1f} s of capture")
    for i, job in enumerate(todo, 1):
        head = f"[{i:>{len(str(len(todo)))}}/{len(todo)}] {job.describe()}"
        prior = None if retune else autotuner._tuned(job.kernel.name, job.problem, job.precision, job.layout,
                                                     job.device)
        row = {"problem": job.problem.short(), "kernel": job.kernel.name, "precision": job.precision,
               "layout": job.layout, "key": job.key}
        if prior is not None:
            row.update(config=prior.config.name(), source=prior.source, times_ms=None, untimed=None,
                       compile_s=0.0, seconds=0.0)
            say(f"{head}: {prior.config} ({prior.source}, not timed again)")
            rows.append(row)
            continue
        res = autotuner.tune_job(job, compile=compile, timer=timer, jobs=jobs)
        best_ms = res.times_ms.get(res.config.name())
        untimed_ms = res.times_ms.get(res.untimed.name()) if res.untimed is not None else None
        vs = (f", untimed choice {untimed_ms / best_ms:.2f}x" if untimed_ms and best_ms and untimed_ms == untimed_ms
              else "")
        row.update(config=res.config.name(), source="timed", times_ms=res.times_ms,
                   untimed=res.untimed.name() if res.untimed else None, compile_s=res.compile_seconds,
                   seconds=res.seconds)
        say(f"{head}: {len(res.configs)} configs, compiled {res.compile_seconds:.1f} s, total "
            f"{res.seconds:.1f} s; best {res.config} ({_ms(best_ms)}{vs})")
        rows.append(row)
    forget_plans()  # the next forward plans again, with the tuned choices
    say(f"fastconv.tune: done in {time.perf_counter() - t_start:.1f} s")
    if save is not None:
        data = autotuner.save_tuning(save, device, keys=[r["key"] for r in rows])
        say(f"fastconv.tune: {len(data['choices'])} choice(s) saved to {save} ({data['gpu']}, "
            f"Triton {data['triton']})")
    return rows


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f} ms"


def load_tuning(path: str | os.PathLike, device: torch.device | str | None = None) -> int:
    """Load a file written by :func:`tune` (``save=``) for ``device`` (default: the current GPU).

    Raises :class:`~fastconv.tuning.autotuner.TuningFileMismatch` (a ``RuntimeError``) when the file was
    tuned on another GPU model or Triton version, ``ValueError`` when it is not a tuning file.  Returns the
    number of choices loaded; they are used from the next call on (memoised plans are dropped), reported as
    ``config_source="loaded"``.  ``$FASTCONV_TUNING_FILE`` loads a file the same way at the first call."""
    n = autotuner.load_tuning(path, torch.device(device) if device is not None else None)
    forget_plans()
    return n

