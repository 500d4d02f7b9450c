"""Every message the harness prints, by what it is about.

mismatch: a gradient against its reference (where, how much, which pattern); findings: a
check's Finding as a Record; contracts: broken autograd contracts and training steps;
transforms: layouts, forward mode, batching, precision, complex, sparse, compiled; events:
exceptions, crashes, time-outs, interruptions, leaked global state.
"""

from harness.diagnose.mismatch import compare, describe, pattern, triangulate

__all__ = ["compare", "describe", "pattern", "triangulate"]
