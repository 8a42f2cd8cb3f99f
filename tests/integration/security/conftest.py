"""The pipeline tests' tiny models, for the security tests that run `rollspec train` (the Ray session
fixture is tests/conftest.py's)."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("pipeline_conftest", Path(__file__).parents[1] / "pipeline" / "conftest.py")
_pipeline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_pipeline)

tiny_models = _pipeline.tiny_models
