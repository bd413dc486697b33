"""FastLaunch: after Triton's first launch of a plan, later launches reuse its binary with the new tensors.

These run on the CPU with a stand-in for a ``@triton.jit`` function and its compiled kernel (Triton's
interpreter compiles nothing); tests/test_kernels.py checks the real path's results on a GPU.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from fastconv.kernels import launch as L


class FakeCompiled:
    function, packed_metadata = "cu_function", "packed"

    def __init__(self, key):
        self.key = key
        self.runs: list[tuple] = []
        self.metadata_calls = 0

    def run(self, g0, g1, g2, stream, function, packed, meta, enter, leave, *values):
        assert (function, packed) == (self.function, self.packed_metadata)
        self.runs.append(((g0, g1, g2), stream, meta, values))
        self.hooks = (enter, leave)

    def launch_metadata(self, grid, stream, *values):
        self.metadata_calls += 1
        return {"grid": grid}


class FakeJit:
    """``fn[grid](**kwargs)`` like Triton's: 'compiles' one binary per pointer-alignment pattern."""

    arg_names = ["x_ptr", "y_ptr", "N", "STRIDE", "BLOCK"]

    def __init__(self):
        self.binaries: dict[tuple, FakeCompiled] = {}
        self.slow: list[tuple] = []

    def __getitem__(self, grid):
        def run(**kwargs):
            self.slow.append((grid, kwargs))
            key = tuple(kwargs[n].data_ptr() % 16 == 0 for n in ("x_ptr", "y_ptr"))
            return self.binaries.setdefault(key, FakeCompiled(key))
        return run


@pytest.fixture
def site(monkeypatch):
    monkeypatch.setattr(L, "_current_device", lambda: 0)
    monkeypatch.setattr(L, "_current_stream", lambda device: 1234)
    fn = FakeJit()
    s = L.FastLaunch(fn, (7, 2), ("x_ptr", "y_ptr"), num_warps=4)
    s.enabled = True  # under the interpreter it is off; the logic is what is tested here
    return fn, s


def _args(x, y, made):
    def make():
        made.append(1)
        return dict(x_ptr=x, y_ptr=y, N=100, STRIDE=1, BLOCK=64)
    return make


def test_first_launch_goes_through_triton_later_ones_straight_to_the_binary(site):
    fn, s = site
    made = []
    x0, y0 = torch.randn(64), torch.empty(64)
    s((x0, y0), _args(x0, y0, made))
    assert len(fn.slow) == 1 and fn.slow[0][1]["num_warps"] == 4 and made == [1]
    for _ in range(3):
        x, y = torch.randn(64), torch.empty(64)
        s((x, y), _args(x, y, made))
        grid, stream, meta, values = fn.binaries[(True, True)].runs[-1]
        assert values[0] is x and values[1] is y and values[2:] == (100, 1, 64)  # new tensors, same constants
        assert grid == (7, 2, 1) and stream == 1234 and meta is None
    assert len(fn.slow) == 1 and made == [1]  # the arguments were never rebuilt
    assert (s.launches, s.fast_launches) == (4, 3)


def test_a_differently_aligned_tensor_gets_triton_s_own_binary(site):
    fn, s = site
    made = []
    x, y = torch.randn(64), torch.empty(64)
    s((x, y), _args(x, y, made))
    odd = torch.randn(65)[1:]  # 4 bytes past a 16-byte boundary: Triton drops the divisibility hint
    assert odd.data_ptr() % 16 != 0
    s((odd, y), _args(odd, y, made))
    assert len(fn.slow) == 2 and set(fn.binaries) == {(True, True), (False, True)}
    s((odd, y), _args(odd, y, made))
    assert fn.binaries[(False, True)].runs[-1][3][0] is odd and len(fn.slow) == 2


def test_the_cached_entry_keeps_no_tensor_alive(site):
    fn, s = site
    x, y = torch.randn(1 << 16), torch.empty(1 << 16)
    s((x, y), _args(x, y, []))
    fn.slow.clear()  # the stand-in's own record of the first call
    refs = [weakref.ref(x), weakref.ref(y)]
    del x, y
    gc.collect()
    assert all(r() is None for r in refs)


def test_launch_hooks_still_get_their_metadata(site, monkeypatch):
    from triton import knobs

    fn, s = site
    x, y = torch.randn(64), torch.empty(64)
    s((x, y), _args(x, y, []))
    s((x, y), _args(x, y, []))
    binary = fn.binaries[(True, True)]
    assert binary.metadata_calls == 0 and binary.hooks == (None, None)  # no hook registered: nothing to call
    hook = lambda meta: None  # a profiler's hook (e.g. proton's)
    monkeypatch.setattr(knobs.runtime, "launch_enter_hook", hook)
    s((x, y), _args(x, y, []))
    assert binary.metadata_calls == 1 and binary.runs[-1][2] == {"grid": (7, 2, 1)} and binary.hooks[0] is hook


def test_disabled_or_incomplete_arguments_always_take_triton_s_path(site):
    fn, s = site
    x, y = torch.randn(64), torch.empty(64)
    s.enabled = False
    for _ in range(2):
        s((x, y), _args(x, y, []))
    assert len(fn.slow) == 2 and s.fast_launches == 0
    s.enabled = True
    partial = lambda: dict(x_ptr=x, y_ptr=y, N=100, STRIDE=1)  # BLOCK left to a default: not replayable
    for _ in range(2):
        s((x, y), partial)
    assert len(fn.slow) == 4 and s.fast_launches == 0


def test_host_side_integer_helpers():
    assert [L.cdiv(a, 4) for a in (0, 1, 4, 5, 8)] == [0, 1, 1, 2, 2]
    assert [L.next_pow2(n) for n in (0, 1, 2, 3, 16, 17)] == [1, 1, 2, 4, 16, 32]


def test_switch_off_by_environment(monkeypatch):
    monkeypatch.setenv("FASTCONV_FAST_LAUNCH", "0")
    assert not L.fast_launch_enabled()
