"""Declarative factory cells: YAML files validated into typed `Scenario` objects."""

from scenarios.loader import (
    ScenarioError,
    builtin_names,
    load_scenario,
    names_a_file,
    parse_scenario,
    resolve_path,
    scenario_hash,
)
from scenarios.schema import Scenario

__all__ = ["Scenario", "ScenarioError", "builtin_names", "load_scenario", "names_a_file", "parse_scenario", "resolve_path", "scenario_hash"]
