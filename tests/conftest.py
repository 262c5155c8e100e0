import os, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture
def home(tmp_path):
    "An empty workspace directory."
    h = tmp_path / "home"
    h.mkdir()
    return h


def cllm_env(home=None):
    env = {k: v for k, v in os.environ.items() if k != "CLLM_DEBUG"}
    if home is not None:
        env["CLLM_HOME"] = str(home)
    return env
