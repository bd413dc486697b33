"""Parallel test runs (pytest-xdist, issue 14): locks between processes, caches shared by concurrent
workers, compile pools sized for the workers, one worker per GPU.

The benchmark suite under xdist (per-worker results, one timing per GPU at a time) is tested end to end in
``tests/test_bench.py`` with simulated GPUs.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from types import SimpleNamespace

import pytest
import torch

from fastconv.bench import pytest_bench
from fastconv.kernels.config import KernelConfig
from fastconv.locks import FileLock, LockTimeout, ReadersWriterLock
from fastconv.static import resource_gate, worker
from fastconv.static.compile import JSONCache
from fastconv.static.report import ResourceReport
from fastconv.testing import pytest_conv
from fastconv.tuning import autotuner

FORK = multiprocessing.get_context("fork")  # children need no fresh interpreter: they only write files


# ---------------------------------------------------------------------------------------------------------
# Locks
# ---------------------------------------------------------------------------------------------------------
def test_file_lock_modes_conflict_as_flock_says(tmp_path):
    a, b = FileLock(tmp_path / "l"), FileLock(tmp_path / "l")  # two open files: they conflict like processes
    with a.held("shared"):
        with b.held("shared", timeout=0):
            pass
        with pytest.raises(LockTimeout, match="not granted exclusive within 0.05 s"):
            b.acquire("exclusive", timeout=0.05)
    with a.held("exclusive"), pytest.raises(LockTimeout):
        b.acquire("shared", timeout=0.05)
    with b.held("exclusive", timeout=0):
        pass
    with pytest.raises(ValueError, match="'shared' or 'exclusive'"):
        a.acquire("read")


def _in_thread(fn):
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def test_a_waiting_writer_goes_before_new_readers(tmp_path):
    """A reader inside, a writer waiting: a new reader must wait for the writer (no writer starvation by a
    stream of tests), and the writer gets in once the first reader leaves."""
    path = tmp_path / "gpu.lock"
    reader, writer, late = (ReadersWriterLock(path) for _ in range(3))
    order = []

    def write():
        with writer.writing(timeout=10):
            order.append("writer")
            time.sleep(0.1)

    with reader.reading():
        t = _in_thread(write)
        deadline = time.monotonic() + 10
        while writer._gate.mode != "exclusive" and time.monotonic() < deadline:  # the writer is at the door
            time.sleep(0.01)
        with pytest.raises(LockTimeout), late.reading(timeout=0.2):
            pass
    t.join(10)
    assert order == ["writer"] and not t.is_alive()
    with late.reading(timeout=1):
        pass


def test_a_reader_that_writes_steps_out_and_back_in(tmp_path):
    path = tmp_path / "gpu.lock"
    me, other = ReadersWriterLock(path), ReadersWriterLock(path)
    with me.reading():
        with other.reading(timeout=1):
            pass  # readers share
        with me.writing(timeout=1):
            with pytest.raises(LockTimeout), other.reading(timeout=0.1):
                pass
            with pytest.raises(RuntimeError, match="already held for writing"), me.writing():
                pass
        with pytest.raises(LockTimeout), other.writing(timeout=0.1):  # still a reader: no writer gets in
            pass
    with other.writing(timeout=1):
        pass


# ---------------------------------------------------------------------------------------------------------
# Caches written by concurrent processes
# ---------------------------------------------------------------------------------------------------------
def _tune_many(path, first, n, start):
    while time.time() < start:  # all writers begin together
        time.sleep(0.001)
    for i in range(first, first + n):
        autotuner._save_disk(path, f"key{i}", KernelConfig.of(num_warps=4, num_stages=2, BLOCK=i))


def test_concurrent_tuners_lose_no_entry_of_the_shared_cache_file(tmp_path):
    """Four processes add 40 choices each to one tuning file at once (what xdist workers tuning on one GPU
    model do): every choice is there afterwards."""
    path = tmp_path / "tuning-x.json"
    start = time.time() + 0.5
    procs = [FORK.Process(target=_tune_many, args=(path, 40 * p, 40, start)) for p in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    data = json.loads(path.read_text())
    assert sorted(data) == sorted(f"key{i}" for i in range(160))
    assert all(KernelConfig.from_json(data[f"key{i}"])["BLOCK"] == i for i in range(160))


def _put_first(root, n, out):
    out.put(JSONCache(root).put("k", {"compile_seconds": n, "registers": 40}, replace=False))


def test_static_cache_entries_are_first_writer_wins(tmp_path):
    """Two compilations of one key differ in compile_seconds; concurrent gate runs must report the same
    entry, so a stored one is kept and returned."""
    cache = JSONCache(tmp_path)
    assert cache.put("k", {"compile_seconds": 1.0}, replace=False) == {"compile_seconds": 1.0}
    assert cache.put("k", {"compile_seconds": 2.0}, replace=False) == {"compile_seconds": 1.0}
    assert cache.get("k") == {"compile_seconds": 1.0}
    assert cache.put("k", {"compile_seconds": 3.0}) == {"compile_seconds": 3.0} == cache.get("k")
    assert [p.name for p in tmp_path.iterdir()] == ["k.json"]  # no temporary file left behind

    queue = FORK.Queue()
    procs = [FORK.Process(target=_put_first, args=(tmp_path / "race", n, queue)) for n in range(4)]
    for p in procs:
        p.start()
    answers = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
    assert len({json.dumps(a, sort_keys=True) for a in answers}) == 1
    assert answers[0] == JSONCache(tmp_path / "race").get("k")


def _report(n: float) -> dict:
    return ResourceReport(function="k", arch="sm90a", num_warps=4, num_stages=2, registers=64, stack_bytes=0,
                          local_bytes=0, static_shared_bytes=0, dynamic_shared_bytes=0, spill_stores=0,
                          spill_loads=0, compile_seconds=n).to_json()


def test_a_key_another_process_is_compiling_is_read_not_compiled_again(tmp_path, monkeypatch):
    """The static gate of two xdist workers on a cold cache: a key claimed elsewhere is waited for and read;
    if the other process made no entry after all, it is compiled here.  (The compiler is faked: the pool,
    claims and cache are real.)"""
    asked = []

    class Compiler:
        def ask(self, job, timeout):
            asked.append(job["key"])
            return {"report": _report(1.0)}

    monkeypatch.setattr(worker, "_Worker", Compiler)
    cache = JSONCache(tmp_path)
    todo = {k: (SimpleNamespace(job=lambda name, k=k: {"key": k}), "sm_90") for k in ("a", "b", "c")}
    other_b, other_c = cache.claim("b"), cache.claim("c")  # another process is compiling b and c

    def other_finishes():
        time.sleep(0.3)
        cache.put("b", _report(7.0), replace=False)  # b: stored, then let go; c: let go without an entry
        other_b.close()
        other_c.close()

    t = _in_thread(other_finishes)
    made, errors = resource_gate._compile(todo, cache, True, worker.WorkerPool(2))
    t.join(10)
    assert errors == {} and sorted(asked) == ["a", "c"]
    assert made["b"][0].compile_seconds == 7.0 and not made["b"][1]  # the other process's report
    assert made["a"][1] and made["c"][1] and cache.get("c") is not None
    again, _ = resource_gate._compile(todo, cache, True, worker.WorkerPool(2))  # entries appear meanwhile
    assert sorted(asked) == ["a", "c"] and not any(here for _, here in again.values())


def test_compile_pools_share_the_cores_between_xdist_workers(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert worker.share_of(8) == 8
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    assert (worker.share_of(8), worker.share_of(2), worker.share_of(1)) == (4, 1, 1)
    monkeypatch.setenv("FASTCONV_STATIC_JOBS", "6")
    assert resource_gate.default_jobs() == 3
    monkeypatch.delenv("FASTCONV_STATIC_JOBS")
    monkeypatch.setattr(resource_gate.os, "cpu_count", lambda: 2)
    assert resource_gate.default_jobs() == 1  # 2 cores, 2 pytest workers: one compile process each


# ---------------------------------------------------------------------------------------------------------
# One worker per GPU
# ---------------------------------------------------------------------------------------------------------
def _gpus(monkeypatch, count: int, visible: str | None):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)


def test_visible_gpus_are_named_as_cuda_visible_devices_names_them(monkeypatch):
    _gpus(monkeypatch, 0, None)
    assert pytest_conv.visible_gpus() == []
    _gpus(monkeypatch, 3, None)
    assert pytest_conv.visible_gpus() == ["0", "1", "2"]
    _gpus(monkeypatch, 2, "5, 7")
    assert pytest_conv.visible_gpus() == ["5", "7"]
    _gpus(monkeypatch, 1, "GPU-2f1e,bogus,3")  # CUDA stops at the first entry it cannot use
    assert pytest_conv.visible_gpus() == ["GPU-2f1e"]


def _specs(n, **preset):
    return [SimpleNamespace(id=f"gw{i}", env=dict(preset.get(f"gw{i}", {}))) for i in range(n)]


def test_each_worker_is_pinned_to_one_gpu_round_robin(monkeypatch):
    config = SimpleNamespace(pluginmanager=SimpleNamespace(get_plugin=lambda name: None))
    _gpus(monkeypatch, 2, "4,6")
    specs = _specs(3, gw2={"CUDA_VISIBLE_DEVICES": "9"})  # a --tx spec that pins itself is left alone
    pytest_conv.pytest_xdist_setupnodes(config, specs)
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in specs] == ["4", "6", "9"]
    specs = _specs(3)
    pytest_conv.pytest_xdist_setupnodes(config, specs)
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in specs] == ["4", "6", "4"]  # more workers than GPUs: shared
    _gpus(monkeypatch, 0, None)
    specs = _specs(2)
    pytest_conv.pytest_xdist_setupnodes(config, specs)
    assert [s.env for s in specs] == [{}, {}]  # no GPU: nothing to pin


def test_auto_starts_one_worker_per_gpu(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    _gpus(monkeypatch, 4, None)
    assert pytest_conv.pytest_xdist_auto_num_workers(None) == 4
    _gpus(monkeypatch, 0, None)
    assert pytest_conv.pytest_xdist_auto_num_workers(None) is None  # xdist's CPU count
    _gpus(monkeypatch, 4, None)
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "3")
    assert pytest_conv.pytest_xdist_auto_num_workers(None) is None  # xdist's own hook reads the variable


def test_worker_tags_name_the_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert pytest_bench.worker_tag("gw1") == "gw1-gpu3"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-GPU-1a/1/0")
    assert pytest_bench.worker_tag("gw0") == "gw0-gpuMIG-GPU-1a_1_0"  # pytest-benchmark forbids / in names
    _gpus(monkeypatch, 0, None)
    assert pytest_bench.worker_tag("gw0") == "gw0-cpu"


def test_compare_keeps_the_saved_runs_of_this_gpu_model(tmp_path):
    runs = {}
    for name, gpu in (("0001_h100.json", "NVIDIA H100 80GB HBM3"), ("0002_h200.json", "NVIDIA H200"),
                      ("0003_old.json", None)):
        (tmp_path / name).write_text(json.dumps({"machine_info": {"fastconv": {"gpu": gpu}}, "benchmarks": []}))
        runs[name] = {"test[a]": {}}

    def session(*names):
        return SimpleNamespace(compared_mapping={n: runs[n] for n in names}, storage=SimpleNamespace(path=tmp_path),
                               compare_fail=["median:10%"])

    bs = session("0001_h100.json", "0002_h200.json")
    assert pytest_bench.same_gpu_baselines(bs, "NVIDIA H200") == ["0001_h100.json (NVIDIA H100 80GB HBM3)"]
    assert list(bs.compared_mapping) == ["0002_h200.json"] and bs.compare_fail == ["median:10%"]
    bs = session("0001_h100.json")
    dropped = pytest_bench.same_gpu_baselines(bs, "NVIDIA H200")
    assert dropped[-1] == "no saved run of NVIDIA H200: NOT compared"
    assert bs.compared_mapping == {} and bs.compare_fail == []
    for gpu, names in ((None, ("0001_h100.json",)), ("NVIDIA H200", ("0003_old.json",))):
        bs = session(*names)  # no GPU here, or runs that do not say theirs: pytest-benchmark decides
        assert pytest_bench.same_gpu_baselines(bs, gpu) == [] and list(bs.compared_mapping) == list(names)



def test_compare_keeps_the_saved_runs_of_this_very_gpu_where_there_are_some(tmp_path):
    """Per-GPU baselines of one model (saved by xdist workers, one per GPU): each GPU compares with its own."""
    runs = {}
    for name, gpu, uuid in (("0001_h200-gw0-gpu0.json", "NVIDIA H200", "GPU-aaa"),
                            ("0001_h200-gw1-gpu1.json", "NVIDIA H200", "GPU-bbb"),
                            ("0002_h100.json", "NVIDIA H100 80GB HBM3", "GPU-ccc")):
        (tmp_path / name).write_text(json.dumps({"machine_info": {"fastconv": {"gpu": gpu, "gpu_uuid": uuid}},
                                                 "benchmarks": []}))
        runs[name] = {"test[a]": {}}

    def session():
        return SimpleNamespace(compared_mapping=dict(runs), storage=SimpleNamespace(path=tmp_path),
                               compare_fail=["median:10%"])

    bs = session()
    dropped = pytest_bench.same_gpu_baselines(bs, "NVIDIA H200", "GPU-bbb")
    assert list(bs.compared_mapping) == ["0001_h200-gw1-gpu1.json"] and bs.compare_fail == ["median:10%"]
    assert sorted(dropped) == ["0001_h200-gw0-gpu0.json (another NVIDIA H200: GPU-aaa)",
                               "0002_h100.json (NVIDIA H100 80GB HBM3)"]
    bs = session()  # a third H200 with no run of its own: every run of its model
    pytest_bench.same_gpu_baselines(bs, "NVIDIA H200", "GPU-ddd")
    assert sorted(bs.compared_mapping) == ["0001_h200-gw0-gpu0.json", "0001_h200-gw1-gpu1.json"]

@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCONV_LOCK_DIR", str(tmp_path / "locks"))
    pytest_bench._gpu_lock.cache_clear()
    yield tmp_path / "locks"
    pytest_bench._gpu_lock.cache_clear()


def test_a_benchmark_fails_clearly_when_its_gpu_stays_busy_or_cannot_be_locked(lock_dir, monkeypatch):
    config = SimpleNamespace(getoption=lambda name: 0.2)  # --bench-gpu-wait
    cpu = torch.device("cpu")  # what the plugin's tests time on: its lock is named by the device type
    other = ReadersWriterLock(lock_dir / "cpu.lock")
    with other.reading(), pytest.raises(pytest.fail.Exception, match="GPU cpu stayed busy for 0.2 s"), \
            pytest_bench._exclusive_gpu(config, cpu):
        pass
    with pytest_bench._exclusive_gpu(config, cpu), pytest.raises(LockTimeout):  # free again, and now held
        other.reading(timeout=0.05).__enter__()
    lock_dir.parent.joinpath("file").write_text("")
    monkeypatch.setenv("FASTCONV_LOCK_DIR", str(lock_dir.parent / "file" / "locks"))  # not a directory
    pytest_bench._gpu_lock.cache_clear()
    with pytest.raises(pytest.fail.Exception, match="cannot lock GPU cpu under .*set FASTCONV_LOCK_DIR"), \
            pytest_bench._exclusive_gpu(config, cpu):
        pass


@pytest.mark.parametrize("workers", [0, 2])
def test_the_times_log_has_a_line_per_finished_test(tmp_path, workers):
    """``--times-log``: a line per test as it finishes, in one process and from xdist's controller."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "test_some.py").write_text(
        "import pytest\n"
        "def test_ok():\n    pass\n"
        "def test_bad():\n    assert False\n"
        "@pytest.mark.skip(reason='no')\ndef test_skipped():\n    pass\n")
    log = tmp_path / "times.jsonl"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "fastconv.testing.pytest_conv", "-p",
                    "no:cacheprovider", "-n", str(workers), "--times-log", str(log), str(tmp_path / "test_some.py")],
                   cwd=tmp_path, env=env, capture_output=True, timeout=300)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted((line["nodeid"].split("::")[-1], line["outcome"]) for line in lines) == [
        ("test_bad", "failed"), ("test_ok", "passed"), ("test_skipped", "skipped")]
    assert all(line["seconds"] >= 0 for line in lines)
    assert {line["worker"] for line in lines} <= ({None} if workers == 0 else {"gw0", "gw1"})
