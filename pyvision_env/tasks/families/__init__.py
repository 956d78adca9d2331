"""The registry of built-in procedural task families: `FAMILIES` maps each name to its class."""

from __future__ import annotations

from pyvision_env.tasks.families.base import TaskFamily
from pyvision_env.tasks.families.chart_value import ChartValue
from pyvision_env.tasks.families.compare_objects import CompareObjects
from pyvision_env.tasks.families.count_marks import CountMarks
from pyvision_env.tasks.families.tiny_text import TinyText

FAMILIES: dict[str, type[TaskFamily]] = {cls.name: cls for cls in (TinyText, CountMarks, CompareObjects, ChartValue)}

__all__ = ["FAMILIES", "TaskFamily"]
