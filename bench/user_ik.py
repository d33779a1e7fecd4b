"""Closed-form vs numerical tool-down IK for an arm given by URDF (sim/robots/planar_fit.py vs sim/robots/ik.py).

    python bench/user_ik.py [--urdf PATH] [--solves 20000] [--targets 200] [--step 0.025] [--json PATH]

Default arm: pybullet_data's xArm6, which gets the fitted closed form. Both solvers run side by side in one
process on the same targets: microseconds per solve (the numerical IK does the one iteration per control
step the env uses, from the last command), and how far each puts the tool point from targets --step m
from home in random directions after one solve (forward kinematics on a kinematic copy).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pybullet_data

from genba.jsonfile import write_json
from scenarios.schema import RobotConfig
from sim.robots.base import tool_down_quat
from sim.robots.ik import KinematicCopy
from sim.robots.user import ToolDownSolver, user_robot_model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--urdf", type=Path, default=Path(pybullet_data.getDataPath()) / "xarm" / "xarm6_robot.urdf")
    p.add_argument("--solves", type=int, default=20000)
    p.add_argument("--targets", type=int, default=200)
    p.add_argument("--step", type=float, default=0.025, help="m from home to each accuracy target (one control step at 0.5 m/s)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    model = user_robot_model(RobotConfig(urdf=str(args.urdf)))
    if model.tool_down_ik is None:
        print(f"{args.urdf}: no closed form: {model.source.split('no closed form: ')[-1]}", file=sys.stderr)
        return 2
    fk = ToolDownSolver(model.urdf_path, len(model.home))  # its kinematic copy's joint indices and forward kinematics
    copy = KinematicCopy(model.urdf_path, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), fk.movable, fk.tool)
    seed = list(model.home) + fk.fingers
    home, _ = fk.pose(model.home)
    closed, numerical = model.tool_down_ik, copy.solve
    quat = tool_down_quat(0.0)

    start = time.perf_counter()
    for _ in range(args.solves):
        closed(*home, 0.0, list(model.home))
    closed_us = (time.perf_counter() - start) / args.solves * 1e6
    start = time.perf_counter()
    for _ in range(args.solves):
        numerical(seed, home, quat)
    numerical_us = (time.perf_counter() - start) / args.solves * 1e6

    rng = np.random.default_rng(0)
    errors = {"closed": [], "numerical": []}
    for _ in range(args.targets):
        direction = rng.normal(size=3)
        target = home + args.step * direction / np.linalg.norm(direction)
        errors["closed"].append(float(np.linalg.norm(fk.pose(closed(*target, 0.0, list(model.home)))[0] - target)))
        errors["numerical"].append(float(np.linalg.norm(fk.pose(numerical(seed, target, quat)[:len(model.home)])[0] - target)))
    copy.close()
    fk.close()

    figures = {"urdf": str(args.urdf), "robot": model.name, "step_m": args.step, "targets": args.targets,
               "closed_form_us": round(closed_us, 2), "numerical_us": round(numerical_us, 2)}
    print(f"{model.name}: closed form {closed_us:.1f} us per solve, numerical (1 iteration) {numerical_us:.1f} us")
    for name, values in errors.items():
        mean_mm, max_mm = 1000 * float(np.mean(values)), 1000 * float(np.max(values))
        figures[f"{name}_error_mean_mm"], figures[f"{name}_error_max_mm"] = mean_mm, max_mm
        print(f"  {name:<9} tool point error after one solve, targets {args.step * 100:g} cm from home: "
              f"mean {mean_mm:.4f} mm, max {max_mm:.4f} mm")
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
