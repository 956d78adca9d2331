"""pyvision-env: Gymnasium environments where a multimodal model reasons by writing Python.

`import pyvision_env` registers the env ids (see `pyvision_env.registration.PRESETS`), after which
`gymnasium.make("PyVisionImage-v0")` works with no download.
"""

from pyvision_env.env import PyVisionEnv
from pyvision_env.info import EndReason
from pyvision_env.registration import register_all
from pyvision_env.tasks.task import Task

__all__ = ["EndReason", "PyVisionEnv", "Task"]
__version__ = "0.1.0"

register_all()
