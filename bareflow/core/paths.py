"""Where the sources the build compiles live (the repository this package sits in), and the cache."""
import os
from pathlib import Path

# bareflow/core/paths.py -> the repository root (src/, modules/, tools/ beside bareflow/).
REPO_ROOT = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    """$BAREFLOW_CACHE, else ~/.cache/bareflow: the one cache for downloads, unpacked Debian
    packages (llvm-22/) and derived data (models/, llvm-libc/); tools/fetch_models.py agrees."""
    return Path(os.environ.get("BAREFLOW_CACHE") or Path.home() / ".cache" / "bareflow")
