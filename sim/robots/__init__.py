"""Robot registry: scenario `robot.model` name -> Robot class; `robot.urdf` -> UserRobot (sim/robots/user.py)."""

from __future__ import annotations

import importlib

from scenarios.naming import ROBOT_MODELS
from scenarios.schema import RobotConfig
from sim.robots.base import Robot, RobotModel

# name -> "module:Class"; imported on demand so a scenario pays only for the robot it uses.
ROBOT_CLASSES = {"panda": "sim.robots.panda:Panda", "gp7": "sim.robots.gp7:GP7"}
assert set(ROBOT_CLASSES) == set(ROBOT_MODELS), "scenarios.schema.ROBOT_MODELS and the registry must agree"


def robot_class(name: str) -> type[Robot]:
    module, cls = ROBOT_CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_robot(sim, config: RobotConfig, name: str = "robot") -> Robot:
    if config.urdf is not None:
        return getattr(importlib.import_module("sim.robots.user"), "UserRobot")(sim, config, name)
    return robot_class(config.model)(sim, config, name)


__all__ = ["ROBOT_CLASSES", "Robot", "RobotModel", "make_robot", "robot_class"]
