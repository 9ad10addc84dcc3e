"""splitmix64 in Python, bit for bit the generator of c_runtime/ht_core.h.

Compiled and eager code share one random stream: a shuffle or an initialisation drawn
here gives exactly what the C runtime draws from the same state.

    >>> rng = SplitMix64(0)
    >>> hex(rng.next())
    '0xe220a8397b1dcdaf'
    >>> rng.shuffle([0, 1, 2, 3])
    [2, 3, 1, 0]
"""
import numpy as np

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


def _mix(z):
    """The splitmix64 output function; works on Python ints (masked) and uint64 arrays (wrapping)."""
    if isinstance(z, int):
        z = ((z ^ (z >> 30)) * _MIX1) & MASK64
        z = ((z ^ (z >> 27)) * _MIX2) & MASK64
        return z ^ (z >> 31)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
    return z ^ (z >> np.uint64(31))


class SplitMix64:
    """A splitmix64 generator whose `state` (a 64-bit int) can be handed to and from C.

    >>> a, b = SplitMix64(7), SplitMix64(7)
    >>> a.next_array(3).tolist() == [b.next() for _ in range(3)]
    True
    """

    def __init__(self, seed=0):
        self.state = int(seed) & MASK64

    def __repr__(self):
        return f"SplitMix64(state=0x{self.state:016x})"

    def next(self):
        """The next 64-bit output (as ht_rng_next)."""
        self.state = (self.state + GAMMA) & MASK64
        return _mix(self.state)

    def next_array(self, n):
        """The next n outputs as a uint64 array, same values as n calls of next()."""
        steps = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(GAMMA)
        outputs = _mix(np.uint64(self.state) + steps)
        self.state = (self.state + n * GAMMA) & MASK64
        return outputs

    def uniform(self):
        """A float in [0, 1) from the top 24 bits (as ht_rng_uniform); exact in float32."""
        return (self.next() >> 40) * 2.0**-24

    def uniform_array(self, n):
        """The next n uniforms as a float32 array."""
        return (self.next_array(n) >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)

    def fill_uniform(self, n, lo, hi):
        """n float32 values in [lo, hi), computed like ht_rng_fill_uniform: lo + (hi - lo) * u."""
        lo, hi = np.float32(lo), np.float32(hi)
        return lo + (hi - lo) * self.uniform_array(n)

    def shuffle(self, items):
        """Fisher-Yates shuffle in place, as ht_rng_shuffle; returns `items` (a list or 1-D array).

        i runs from n-1 down to 1 and swaps with j = next() % (i + 1).
        """
        n = len(items)
        if n < 2:
            return items
        bounds = np.arange(n, 1, -1, dtype=np.uint64)  # i + 1 for i = n-1 .. 1
        picks = (self.next_array(n - 1) % bounds).tolist()
        values = items if isinstance(items, list) else items.tolist()
        for i, j in zip(range(n - 1, 0, -1), picks):
            values[i], values[j] = values[j], values[i]
        if values is not items:
            items[:] = values
        return items
