"""Where the sources the build compiles live: the repository this package sits in."""
from pathlib import Path

# bareflow/core/paths.py -> the repository root (src/, modules/, tools/ beside bareflow/).
REPO_ROOT = Path(__file__).resolve().parents[2]
