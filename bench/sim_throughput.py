"""Env overhead over raw physics: env steps/s vs PyBullet stepping the same scene with no env around it.

For each env, rounds alternate (so both share the machine's noise) between
  env:  env.step(random action) for --steps steps: IK, motors, task logic, reward, observation, resets;
  raw:  the same world replayed with no env: per control step only the motor targets the env sent
        (one Bullet call, as any controller needs), the same part spawns, belt shifts (the conveyor
        moves its belt link back under the frame every 5 cm of travel) and resets (with each new
        episode's belt speed), then the same number of pybullet.stepSimulation substeps.
The arm moves the same way in both, so the physics costs the same; the ratio of env substeps/s to raw
substeps/s is the share of physics speed the env keeps (target >= 0.9). Times are this process's CPU
time (time.process_time): the machine is shared, and wall time would count the neighbours' load. Each side's
figure is its fastest round: what the neighbours add (cache and memory-bus contention still counts in CPU time)
only ever slows a round down, so the minimum is the steadiest estimate of the code's own cost (as timeit's
documentation advises); the medians are in the JSON too, and "paired" prints the median over rounds of
raw time / env time, each env round against the raw round right after it (no one lucky round moves it).

    python bench/sim_throughput.py [--steps 1000] [--rounds 11] [--env ID] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pybullet as pb  # noqa: E402

import sim  # noqa: E402

TARGET_RATIO = 0.9


class Recorder:
    """What the env did to the world at each control step, for the raw replay."""

    def __init__(self, env):
        self.env, self.steps = env, []
        self._spawns: list = []
        self._shifts: list = []
        conveyor = getattr(env.task, "conveyor", None)
        if conveyor is not None:
            update = conveyor.update

            def recording_update():
                shifted_at = conveyor._shifted_at
                update()
                if conveyor._shifted_at != shifted_at:
                    q, v = pb.getJointState(conveyor.body, 0, physicsClientId=env.sim.cid)[:2]
                    self._shifts.append((conveyor.body, q, v))

            conveyor.update = recording_update
        parts = getattr(env.task, "parts", None)
        if parts is not None:
            spawn = parts.spawn

            def recording_spawn(part, position, yaw, velocity, t):
                self._spawns.append((part.name, list(position), yaw, list(velocity)))
                spawn(part, position, yaw, velocity, t)

            parts.spawn = recording_spawn

    def record(self, reset: bool) -> None:
        """Called inside the timed env loop, so it stays cheap: the robot makes a new command list
        every step, which can be kept without a copy; spawn and shift lists are rarely non-empty."""
        r, conveyor = self.env.robot, getattr(self.env.task, "conveyor", None)
        # After a reset, the new episode's belt speed (randomised per episode; restoreState keeps no motor targets).
        belt_speed = conveyor.speed if reset and conveyor is not None else None
        self.steps.append((reset, r._q_cmd, r._finger_cmd, self._spawns or (), self._shifts or (), belt_speed))
        if self._spawns:
            self._spawns = []
        if self._shifts:
            self._shifts = []


def time_env(env, actions: np.ndarray, recorder: Recorder | None) -> float:
    start = time.process_time()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        reset = terminated or truncated
        if reset:
            env.reset()
        if recorder is not None:
            recorder.record(reset)
    return time.process_time() - start


def time_raw(env, steps: list, substeps: int) -> float:
    cid, r = env.sim.cid, env.robot
    arm, fingers, forces = r.arm_ids, r.finger_ids, r._forces
    kp, kd, finger_force, zero_velocities = r._kp, r._kd, [r.model.finger_force] * len(r.finger_ids), r._zero_velocities
    state, sent = env._initial_state, None
    start = time.process_time()
    conveyor = getattr(env.task, "conveyor", None)
    for reset, q, finger, spawns, shifts, belt_speed in steps:
        for body, q_belt, v_belt in shifts:
            pb.resetJointState(body, 0, q_belt, v_belt, physicsClientId=cid)
        for name, position, yaw, velocity in spawns:  # the two Bullet calls the env's spawn makes
            env.sim.set_base_pose(name, position, yaw, velocity)
        # The fingers only when their target changes, as the env sends them (Bullet motors keep their last
        # command): the least any controller sends.
        # Positional, as the env's robot sends it (PyBullet's keyword parsing costs ~0.7 us a call).
        pb.setJointMotorControlArray(r.body, arm, pb.POSITION_CONTROL, q, zero_velocities, forces, kp, kd, cid)
        if fingers and finger != sent:  # a suction tool has none
            pb.setJointMotorControlArray(r.body, fingers, pb.POSITION_CONTROL, targetPositions=[finger] * len(fingers),
                                         forces=finger_force, physicsClientId=cid)
            sent = finger
        for _ in range(substeps):
            pb.stepSimulation(physicsClientId=cid)
        if reset:
            pb.restoreState(stateId=state, physicsClientId=cid)
            sent = None  # the env's reset sends the open fingers again
            if belt_speed is not None:  # the belt's two Bullet calls (joint state, motor), as the env's reset makes them
                conveyor.reset(belt_speed)
    return time.process_time() - start


def unreplayable(env) -> str | None:
    """Why the raw side cannot replay this env's world, or None."""
    parts = getattr(env.task, "parts", None)
    if parts is not None and not hasattr(parts, "spawn"):
        return "its parts are laid out anew at each reset, which the raw replay does not reproduce"
    return None


def measure(env_id: str, steps: int, rounds: int) -> dict | None:
    env = gym.make(env_id).unwrapped
    why = unreplayable(env)
    if why is not None:
        env.close()
        print(f"skipped {env_id}: {why}")
        return None
    substeps = env.scenario.physics.substeps
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, env.action_space.shape[0])).astype(np.float32)
    env.reset(seed=0)
    time_env(env, actions[:100], None)  # warm-up
    env_times, raw_times = [], []
    for _ in range(rounds):
        env.reset(seed=0)
        recorder = Recorder(env)
        env_times.append(time_env(env, actions, recorder))
        env.reset(seed=0)
        raw_times.append(time_raw(env, recorder.steps, substeps))
    env.close()
    env_sps = steps / min(env_times)
    raw_sub = steps * substeps / min(raw_times)
    return {
        "env_id": env_id, "substeps_per_env_step": substeps, "env_steps_per_s": env_sps,
        "overhead_us_per_step": 1e6 / env_sps - 1e6 * substeps / raw_sub,
        "env_substeps_per_s": env_sps * substeps, "raw_substeps_per_s": raw_sub, "ratio": env_sps * substeps / raw_sub,
        "ratio_of_medians": statistics.median(raw_times) / statistics.median(env_times),
        # Each env round against the raw round right after it: a lucky round on one side moves the
        # fastest-round ratio, not the median of these pairs.
        "paired_ratio_median": statistics.median(raw / env for env, raw in zip(env_times, raw_times)),
        "env_round_s": env_times, "raw_round_s": raw_times,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000, help="env steps per round")
    parser.add_argument("--rounds", type=int, default=11, help="alternating env/raw rounds; each side's fastest is reported")
    parser.add_argument("--env", action="append", help="env id (default: every registered genba env)")
    parser.add_argument("--json", dest="json_path", help="write the figures to this JSON file")
    args = parser.parse_args()
    rows = [row for env_id in (args.env or sim.ENV_IDS) if (row := measure(env_id, args.steps, args.rounds)) is not None]
    print(f"{'env':28s} {'substeps':>8s} {'env steps/s':>12s} {'env substeps/s':>15s} {'raw substeps/s':>15s} "
          f"{'env us/step over raw':>21s} {'ratio':>6s} {'paired':>7s}")
    for r in rows:
        print(f"{r['env_id']:28s} {r['substeps_per_env_step']:8d} {r['env_steps_per_s']:12.0f} "
              f"{r['env_substeps_per_s']:15.0f} {r['raw_substeps_per_s']:15.0f} {r['overhead_us_per_step']:21.1f} {r['ratio']:6.3f} {r['paired_ratio_median']:7.3f}")
    missed = [r["env_id"] for r in rows if r["ratio"] < TARGET_RATIO]
    print(f"target env/raw >= {TARGET_RATIO}: " + (f"MISSED by {', '.join(missed)}" if missed else "met by every env"))
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump({"rows": rows, "steps": args.steps, "rounds": args.rounds, "target_ratio": TARGET_RATIO,
                       "clock": "process CPU time", "estimator": "fastest round per side"}, f, indent=2)


if __name__ == "__main__":
    main()
