"""Where the shared real-speech fixtures are: ``<repo>/../shared/data/real_speech``.

CI clones the repository with ``shared/`` beside it; a git worktree elsewhere can
point ``MOHAQ_SHARED`` at the shared folder. Tests that need the recordings use
``needs_real_speech`` and skip cleanly when the folder is absent.
"""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def shared_dir() -> pathlib.Path:
    """$MOHAQ_SHARED if set, else <repo>/../shared."""
    env = os.environ.get("MOHAQ_SHARED")
    return pathlib.Path(env) if env else REPO.parent / "shared"


REAL_SPEECH = shared_dir() / "data" / "real_speech"

needs_real_speech = pytest.mark.skipif(
    not REAL_SPEECH.is_dir(), reason=f"no shared recordings at {REAL_SPEECH}"
)

#: The CMU ARCTIC prompt of arctic_a0009 (from the shared README).
ARCTIC_TEXT = "He turned sharply, and faced Gregson across the table."
