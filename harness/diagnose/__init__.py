"""Every message the harness prints: mismatch diagnosis and semantic-contract phrases."""

from harness.diagnose.mismatch import *  # noqa: F403
from harness.diagnose.mismatch import _close  # noqa: F401
from harness.diagnose.semantics import *  # noqa: F403
