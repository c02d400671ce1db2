"""Where the project's committed inputs live.

The package sits in workflow/moesd of a checkout (installed editable); data/ is at the top of
that checkout. MOESD_DATA points elsewhere for a non-editable install.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("MOESD_DATA", REPO_ROOT / "data"))
ARCHITECTURES_DIR = DATA_DIR / "architectures"
PAPER_DIR = DATA_DIR / "paper"
HARDWARE_FILE = DATA_DIR / "hardware.yaml"
