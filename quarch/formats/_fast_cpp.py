"""An optional C++ kernel for the fast path: one pass for the block maxima, one for scale,
round and rescale, no temporaries; threaded by ATen's parallel_for (torch's OpenMP pool and its
thread count, torch.get_num_threads()).

Built lazily with `torch.utils.cpp_extension.load_inline` (about 25-35 s of gcc on this machine)
in a background thread, started by the first call that could use it; until it is ready (or if it
cannot be built: no compiler, `QUARCH_FORMATS_CPP=0`) the torch chunked path in `_fast.py`
serves, so no call ever waits for gcc. torch caches the built module (by source hash) under
its extensions directory, so later processes load it in well under a second.

The arithmetic is the reference path's, operation for operation, in IEEE float32 (no
-ffast-math; -ffp-contract=off so no multiply-add is fused): the block maximum of |x|
(NaN-propagating, on the bit patterns), then for integers v = x / s (or x * ((1/ts)/s) with
a tensor scale), nearbyint (nearest-even, as torch.round), clamp, + 0 (turns -0 into +0),
times the multiplier; for minifloats the nearest-even magic-number addition of
`_minifloat.cast_rne_add_`. A block whose scaled values may not all be finite (its maximum,
scaled, is not) is left untouched and flagged: the caller quantizes those blocks with the
reference functions (which cast them with the generic cast).
"""

from __future__ import annotations

import hashlib
import os
import platform
import threading
import time
from types import ModuleType

import torch

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <cstdint>
#include <cstring>

static inline uint32_t bits_of(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
static inline float float_of(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

// max |x| per block of k, into stat[nb]. On the bit patterns with the sign cleared, the
// unsigned order is the order of magnitudes and every NaN lies above +inf, so an integer
// maximum (which vectorises) gives max |x| and propagates NaN.
void block_absmax(torch::Tensor x, torch::Tensor stat, int64_t k, int64_t threads) {
  const uint32_t* xp = reinterpret_cast<const uint32_t*>(x.data_ptr<float>());
  float* sp = stat.data_ptr<float>();
  const int64_t nb = stat.numel();
  at::parallel_for(0, nb, std::max<int64_t>(1, 16384 / k), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const uint32_t* xb = xp + b * k;
      uint32_t m = 0;
      for (int64_t i = 0; i < k; ++i) {
        const uint32_t a = xb[i] & 0x7FFFFFFFu;
        m = a > m ? a : m;
      }
      sp[b] = float_of(m);
    }
  });
}

template <bool DIV>
static inline float scaled(float x, float s) { return DIV ? x / s : x * s; }

template <bool DIV>
static void int_block(const float* xb, float* ob, int64_t k, float s, float m, float lo, float hi) {
  for (int64_t i = 0; i < k; ++i) {
    float v = std::nearbyint(scaled<DIV>(xb[i], s));
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    ob[i] = (v + 0.0f) * m;
  }
}

template <bool DIV>
static void mf_block(const float* xb, float* ob, int64_t k, float s, float m, float lo, float hi,
                     int32_t elo, int32_t ehi, int32_t shift) {
  for (int64_t i = 0; i < k; ++i) {
    const float v = scaled<DIV>(xb[i], s);
    const uint32_t vb = bits_of(v);
    int32_t e = (int32_t)((vb >> 23) & 0xFFu);
    e = e < elo ? elo : e;
    e = e > ehi ? ehi : e;
    const uint32_t sign = vb & 0x80000000u;
    const float magic = float_of(((uint32_t)(e + shift) << 23) | sign);
    float r = (v + magic) - magic;
    r = float_of((bits_of(r) & 0x7FFFFFFFu) | sign);
    r = r < lo ? lo : r;
    r = r > hi ? hi : r;
    ob[i] = r * m;
  }
}

// out = cast(x op a) * mult per block; op: divide (div != 0) or multiply. mode 0: integers in
// [qmin, qmax]; mode 1: a saturating minifloat (exponent field clamped to [elo, ehi], man_bits,
// max). A mode-1 block whose largest scaled magnitude, stat op a, is not finite is left
// untouched and flagged: rounding is monotonic, so |x| <= stat gives |x op a| <= stat op a,
// and an unflagged block has only finite scaled values (the magic-add's domain).
// Per block, as _api._scaled: without a tensor scale, divide by s and multiply back by s;
// with one (has_ts), multiply by (1 / ts) / s and back by ts * s.
int64_t qdq(torch::Tensor x, torch::Tensor stat, torch::Tensor sb, double ts, int64_t has_ts,
            torch::Tensor out, torch::Tensor flags, int64_t k, int64_t mode,
            double qmin, double qmax, int64_t elo, int64_t ehi, int64_t man_bits,
            int64_t threads) {
  const float* xp = x.data_ptr<float>();
  const float* tp = stat.data_ptr<float>();
  const float* sp = sb.data_ptr<float>();
  const float tsf = (float)ts;  // a float32 value passed as double: exact
  const float inv_ts = 1.0f / tsf;
  const int64_t div = has_ts ? 0 : 1;
  float* op = out.data_ptr<float>();
  uint8_t* fp = flags.data_ptr<uint8_t>();
  const int64_t nb = sb.numel();
  const float lo = (float)qmin, hi = (float)qmax;
  const int32_t shift = 23 - (int32_t)man_bits;
  at::parallel_for(0, nb, std::max<int64_t>(1, 16384 / k), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const float* xb = xp + b * k;
      float* ob = op + b * k;
      const float s = has_ts ? inv_ts / sp[b] : sp[b];
      const float m = has_ts ? tsf * sp[b] : sp[b];
      fp[b] = 0;
      if (mode == 0) {
        if (div) int_block<true>(xb, ob, k, s, m, lo, hi);
        else int_block<false>(xb, ob, k, s, m, lo, hi);
        continue;
      }
      const float vmax = div ? tp[b] / s : tp[b] * s;
      if (!std::isfinite(vmax)) { fp[b] = 1; continue; }
      if (div) mf_block<true>(xb, ob, k, s, m, lo, hi, (int32_t)elo, (int32_t)ehi, shift);
      else mf_block<false>(xb, ob, k, s, m, lo, hi, (int32_t)elo, (int32_t)ehi, shift);
    }
  });
  return 0;  // flagged blocks: see flags
}
"""

_lock = threading.Lock()
_state: dict[str, object] = {}  # "module": the built module, "thread": the building thread


def _cpu_tag() -> str:
    """A short hash of this CPU's model and flags: the module is built with -march=native, so
    torch's build cache (keyed by name) must not hand it to a different CPU sharing the home
    directory."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))][:2]
    except OSError:
        lines = [platform.processor(), platform.machine()]
    return hashlib.sha256("".join(lines).encode()).hexdigest()[:10]


_STALE_LOCK_S = 600.0
"""A build lock older than this is left by a process killed mid-build (a build takes ~30 s)."""


def _clear_stale_lock(name: str) -> None:
    """Remove the build lock of a process that died while building `name`.

    torch's extension builder waits on a `lock` file in the build directory for as long as it
    exists, so one left by a killed process would hang every later build."""
    from torch.utils.cpp_extension import _get_build_directory  # no public way to ask for it

    lock = os.path.join(_get_build_directory(name, verbose=False), "lock")
    try:
        if time.time() - os.path.getmtime(lock) > _STALE_LOCK_S:
            os.remove(lock)
    except OSError:  # no lock, or another process just removed it
        pass


def _build() -> None:
    from torch.utils.cpp_extension import load_inline

    name = f"quarch_formats_fast_{_cpu_tag()}"
    try:
        _clear_stale_lock(name)
        mod = load_inline(
            name=name,
            cpp_sources=_SOURCE,
            functions=["block_absmax", "qdq"],
            # ATen's parallel_for is inline OpenMP: without -fopenmp it runs serially
            extra_cflags=["-O3", "-march=native", "-ffp-contract=off", "-fopenmp"],
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception as e:  # no compiler, headers or OpenMP: the torch path serves
        _state["error"] = repr(e)
        return
    _state["module"] = mod


def enabled() -> bool:
    return os.environ.get("QUARCH_FORMATS_CPP", "1") != "0"


def module(*, wait: bool = False) -> ModuleType | None:
    """The built kernel module, or None while it builds (in the background) or if it cannot.

    wait: build in the foreground and wait (tests and benchmarks)."""
    if not enabled():
        return None
    with _lock:
        if "module" in _state or "error" in _state:
            mod = _state.get("module")
            return mod if isinstance(mod, ModuleType) else None
        thread = _state.get("thread")
        if thread is None:
            thread = threading.Thread(target=_build, name="quarch-formats-cpp", daemon=True)
            _state["thread"] = thread
            thread.start()
    if wait:
        assert isinstance(thread, threading.Thread)
        thread.join()
        mod = _state.get("module")
        return mod if isinstance(mod, ModuleType) else None
    return None


def build_error() -> str | None:
    err = _state.get("error")
    return err if isinstance(err, str) else None


def threads() -> int:
    return torch.get_num_threads()
