"""Make the repository's ``interop`` package importable for these tests.

``interop/`` is a top-level folder, not part of the installed ``pqike`` package,
and pytest's default import mode only puts this test folder on ``sys.path``.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
