"""The Gymnasium environment of a factory cell: it only wires simulator, cell and task together."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from perception.localize import Detection, PartLocator
from scenarios import Scenario, load_scenario, scenario_hash
from scenarios.randomization import Overlay, with_randomization, without_domain_randomization
from scenarios.schema import URDF_ROBOT_KEYS
from sim.camera_pose import CameraError
from sim.cell import build_cell
from sim.errors import SimError
from sim.pixel_obs import capture_images, describe_images, image_spaces
from sim.randomization import DomainRandomizer, declared
from sim.sensors import build_sensors, render_view
from sim.simulator import Simulator
from sim.tasks import TASKS, GoalTask
from sim.tasks.base import COMMAND_FEATURES

RENDER_MODES = ["rgb_array", "human"]
OBS_MODES = ("state", "pixels", "perceived")
VECTOR_KEYS = ("proprio", "achieved_goal", "desired_goal")  # the pixels observation's non-image keys
# Observation bounds per unit: generous physical limits of a cell (parts lie within 5 m, nothing moves
# at 10 m/s, angles wrap within a turn). Observations are clipped into them so the space always holds.
UNIT_BOUNDS = {"m": (-5.0, 5.0), "m/s": (-10.0, 10.0), "rad": (-2 * np.pi, 2 * np.pi), "bool": (0.0, 1.0),
               "N": (-1000.0, 1000.0), "N.m": (-100.0, 100.0)}  # wrist F/T: beyond any force a cell's limits allow


def feature_bounds(features: list[tuple[str, int, str]]) -> tuple[np.ndarray, np.ndarray]:
    low = np.concatenate([np.full(size, UNIT_BOUNDS[unit][0]) for _, size, unit in features])
    high = np.concatenate([np.full(size, UNIT_BOUNDS[unit][1]) for _, size, unit in features])
    return low.astype(np.float32), high.astype(np.float32)


def clip_into(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Clip in place with two ufunc calls (np.clip's Python wrapper costs several times more)."""
    return np.minimum(np.maximum(values, low, out=values), high, out=values)


def check_observation_cameras(spec: Scenario, obs_mode: str) -> None:
    """Before anything is built: the cameras an observation mode needs exist, and their keys are free."""
    use = {"pixels": "pixels", "perceived": "perception"}.get(obs_mode)
    if use is None:
        return
    names = [c.name for c in spec.cameras if use in c.use]
    if not names:
        raise CameraError(f"obs_mode {obs_mode!r} needs a camera with `use: [{use}]` in scenario {spec.name!r}; "
                          f"its cameras: {', '.join(c.name for c in spec.cameras)}")
    keys = [k for c in spec.cameras if use in c.use for k in (c.name, f"{c.name}_depth")]
    clash = sorted(set(keys) & set(VECTOR_KEYS)) if obs_mode == "pixels" else []
    if clash:
        raise CameraError(f"camera names {clash} clash with the observation keys {list(VECTOR_KEYS)}; rename the cameras")


def with_robot(spec: Scenario, robot: str | None = None, control: str | None = None) -> Scenario:
    """The scenario with another built-in arm (`robot`, in place of its model or URDF one) or control mode."""
    updates = {k: v for k, v in (("model", robot), ("control", control)) if v is not None}
    if robot is not None and spec.robot.urdf is not None:  # a built-in arm instead of the scenario's URDF one
        updates.update({k: None for k in ("urdf", "home", *URDF_ROBOT_KEYS)})
    if not updates:
        return spec
    spec = spec.model_copy(update={"robot": spec.robot.model_copy(update=updates)})
    return Scenario.model_validate(spec.model_dump())  # re-validate the overridden values


class FactoryEnv(gym.Env):
    """A scenario as an env. Actions are normalised to [-1, 1]:

    - `ee_delta` (default): (dx, dy, dz, dyaw, grip), scaled by robot.max_ee_speed (m/s) and
      robot.max_yaw_rate (rad/s) over one control period; grip -1 = open, +1 = closed
      (a suction tool: > 0 vacuum on, <= 0 off).
    - `joint_delta`: one value per arm joint, scaled by max_joint_speed_fraction of its rated speed, then grip.

    Observations (`obs_mode`):

    - `state` (default): float32 robot features (tool position, yaw, velocity, gripper opening (a suction
      tool: vacuum sealed, 0/1), joints)
      then the task's features; a goal task splits off achieved_goal / desired_goal (see feature_spec).
    - `pixels`: a Dict with, per camera whose `use` lists pixels, `<name>`: RGB uint8 (H, W, 3) and, if
      it lists depth, `<name>_depth`: uint8 (H, W, 1) linear over the camera's [near, far] (0 = near,
      255 = far or beyond); `proprio`: float32 robot features as in state (then any command features); a goal task adds
      achieved_goal / desired_goal.
    - `perceived`: the state layout, with the task's features (the part's pose, class, held...) taken from
      what perception.localize finds in the `use: perception` camera's frames and from the robot's own
      sensors (perception.observers, the code a real cell runs), instead of the simulator's exact poses.
      A bundle trained on state runs unchanged; the scripted expert reads the same estimate. Rewards,
      success and KPIs stay the simulator's truth.

    `observe_command=True` appends COMMAND_FEATURES (sim/tasks/base.py) after the task's features (pixels: after
    the robot's features in `proprio`): the commanded tool target minus the measured tool, which a controller
    knows. A task that `observes_command` (palletize) has them always.

    `visual_detail` ("full" / "low") picks the robot's visual meshes; default "low" whenever cameras feed
    observations (several times faster to render, same physics), "full" in state mode (the viewer's).
    `env.sensors` holds a CameraSensor for every scenario camera.

    Domain randomisation (the scenario's randomization.dynamics / sensing / visuals, sim.randomization):
    `randomization` is an overlay deep-merged over that section (a dict, a YAML path or a shipped profile
    name such as "shop-floor"); `play=True` turns every dynamics / sensing / visuals factor off and
    keeps the task's draws, so one seed starts the same episode as in a randomised env.
    """

    def __init__(
        self, scenario: str | Scenario = "conveyor-pick", robot: str | None = None, control: str | None = None,
        render_mode: str | None = None, camera: str | None = None, obs_mode: str = "state",
        visual_detail: str | None = None, randomization: Overlay | None = None, play: bool = False,
        observe_command: bool = False,
    ):
        spec = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        spec = with_randomization(spec, randomization)
        if play:
            spec = without_domain_randomization(spec)
        spec = with_robot(spec, robot, control)
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise ValueError(f"render_mode must be one of {RENDER_MODES}, got {render_mode!r}")
        if obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {obs_mode!r}")
        self.scenario = spec
        self.render_mode = render_mode
        self.obs_mode = obs_mode
        self.metadata = {"render_modes": RENDER_MODES, "render_fps": spec.physics.control_hz}
        cameras = {c.name: c for c in spec.cameras}
        if camera is not None and camera not in cameras:
            raise CameraError(f"scenario {spec.name!r} has no camera {camera!r}; cameras: {', '.join(cameras)}")
        viewers = [c for c in spec.cameras if "view" in c.use]
        self.camera = cameras[camera] if camera else (viewers or list(spec.cameras))[0]
        check_observation_cameras(spec, obs_mode)
        self.observe_command = observe_command

        detail = visual_detail or ("full" if obs_mode == "state" else "low")
        self.sim = Simulator(spec.physics, gui=render_mode == "human", visual_detail=detail)
        self.cell = build_cell(self.sim, spec)
        self.robot = self.cell.robot
        self.task = TASKS[spec.task.type](self.cell, spec)
        self._command_features = self._checked_command_features()
        try:
            self.sensors = build_sensors(self.sim, spec.cameras, self.robot)  # checks mount links now
        except CameraError:
            self.sim.close()
            raise
        self.robot.reset()
        self._initial_state = self.sim.save_state()
        self._steps = 0
        self._time_weight = float(getattr(spec.task.reward, "time", 0.0))  # per step (sim time is a KPI: _time_cost)

        dt = spec.physics.control_period
        n_joints = len(self.robot.arm_ids)
        if spec.robot.control == "ee_delta":
            self._action_scale = [spec.robot.max_ee_speed * dt] * 3 + [spec.robot.max_yaw_rate * dt]
        else:
            self._action_scale = (self.robot.max_velocity * spec.robot.max_joint_speed_fraction * dt).tolist()
        self._ee_delta = spec.robot.control == "ee_delta"
        self.action_space = spaces.Box(-1.0, 1.0, shape=(len(self._action_scale) + 1,), dtype=np.float32)
        self._action_shape = self.action_space.shape
        self._obs_low, self._obs_high = feature_bounds(self._robot_features() + self.task.features() + self._command_features)
        flat = spaces.Box(self._obs_low, self._obs_high, dtype=np.float32)
        self._splits: tuple[int, int] | None = None
        if isinstance(self.task, GoalTask):
            goal_low, goal_high = feature_bounds(self.task.goal_features)
            goal = spaces.Box(goal_low, goal_high, dtype=np.float32)
            # Observation and both goals are built as one array (one clip), then handed out as views.
            n, g = len(self._obs_low), len(goal_low)
            self._splits = (n, n + g)
            self._obs_low = np.concatenate([self._obs_low, goal_low, goal_low])
            self._obs_high = np.concatenate([self._obs_high, goal_high, goal_high])
            self.observation_space = spaces.Dict({"observation": flat, "achieved_goal": goal, "desired_goal": goal})
        else:
            self.observation_space = flat
        self._n_joints = n_joints
        if obs_mode == "pixels":
            self.observation_space = self._pixel_space()
        self.detections: list[Detection] | None = None  # obs_mode "perceived": what the camera found last
        if obs_mode == "perceived":
            self._start_perception()
        self._randomizer: DomainRandomizer | None = None
        self._noise: np.ndarray | None = None  # std per observation value (feature_spec order), or None
        if declared(spec.randomization):
            try:
                self._randomizer = DomainRandomizer(spec.randomization, self.sim, self.cell, self.sensors, self._observation_features())
            except SimError:
                self.sim.close()
                raise
            self._noise = self._randomizer.noise_std

    # --- Gymnasium API --------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.sim.restore_state(self._initial_state)
        self.robot.reset(self.scenario.randomization.joint_noise, self.np_random)
        if self._randomizer is not None:  # before the task: parts laid out at reset draw theirs as they spawn
            self._randomizer.begin_episode(self.np_random)
        self.task.reset(self.np_random)
        self._steps = 0
        for sensor in self.sensors.values():
            sensor.reset()
        if self.task.observer is not None:
            self.task.observer.reset()
            self._frame_time, self.detections = None, None
        return self._observation(), self.task.info()

    def step(self, action):
        # Plain floats from here on: for a handful of values they are much cheaper than numpy ops.
        array = np.asarray(action)
        if array.dtype.kind != "f":
            array = array.astype(np.float64)
        if array.shape != self._action_shape:
            array = array.reshape(self._action_shape)
        values = array.tolist()  # float32 -> float is exact
        if not all(map(math.isfinite, values)):
            raise ValueError(f"action has NaN or inf: {values}")
        grip = values.pop()
        grip = -1.0 if grip < -1.0 else 1.0 if grip > 1.0 else grip
        delta = [(-1.0 if v < -1.0 else 1.0 if v > 1.0 else v) * s for v, s in zip(values, self._action_scale)]
        if self._ee_delta:
            self.robot.command_tool_delta(delta[:3], delta[3], grip)
        else:
            self.robot.command_joint_delta(delta, grip)
        self.task.before_physics(self.np_random)
        self.sim.step()
        self.robot.refresh()
        self.task.after_physics()
        self._steps += 1
        terminated = self.task.is_terminated()
        truncated = not terminated and self._steps >= self.scenario.max_episode_steps
        return self._observation(), self.task.reward() + self._time_cost(terminated), terminated, truncated, self.task.info()

    def _time_cost(self, terminated: bool) -> float:
        """The task's `time` weight for this step; an early end without success pays for the steps it had left too."""
        weight = self._time_weight
        if weight and terminated and not self.task.is_success():
            return weight * (1 + self.scenario.max_episode_steps - self._steps)
        return weight

    def render(self):
        if self.render_mode == "rgb_array":
            return render_view(self.sim, self.camera, self.robot)
        return None

    def close(self) -> None:
        self.sim.close()

    # --- observation ----------------------------------------------------------------------------
    def _robot_features(self) -> list[tuple[str, int, str]]:
        features = [
            ("tool_position", 3, "m"), ("tool_yaw", 1, "rad"), ("tool_velocity", 3, "m/s"),
            # A suction tool has no opening: its place holds whether the cup is sealed on a part (0/1).
            ("gripper_opening", 1, "m") if self.robot.suction is None else ("vacuum_sealed", 1, "bool"),
            ("joint_positions", len(self.robot.arm_ids), "rad"),
        ]
        if self.robot.wrist is not None:  # robot.wrist_ft declared: the reading follows the joints (ArmReading.wrench)
            features += [("wrist_force", 3, "N"), ("wrist_torque", 3, "N.m")]
        return features

    def _checked_command_features(self) -> list[tuple[str, int, str]]:
        """COMMAND_FEATURES when observe_command is set or the task observes them always, else none."""
        if self.observe_command and self.task.observes_command:
            self.sim.close()
            raise SimError(f"observe_command on {self.scenario.name!r}: its task observes them always")
        return list(COMMAND_FEATURES) if self.observe_command or self.task.observes_command else []

    def _proprio_features(self) -> list[tuple[str, int, str]]:
        """A pixels observation's `proprio`: the robot's readings and what its controller was told (if observed)."""
        return self._robot_features() + self._command_features

    def _observation_features(self) -> list[tuple[str, int, str]]:
        """The observation's vector features in feature_spec() order (pixels: proprio, then any goals)."""
        features = self._proprio_features() if self.obs_mode == "pixels" else \
            self._robot_features() + self.task.features() + self._command_features
        if isinstance(self.task, GoalTask):
            features += [(f"{key}.{n}", s, u) for key in ("achieved_goal", "desired_goal") for n, s, u in self.task.goal_features]
        return features

    def _observation(self):
        return self._pixel_observation() if self.obs_mode == "pixels" else self._state_observation()

    def _state_observation(self):
        r, task = self.robot.reading, self.task
        if self.obs_mode == "perceived":
            task_features = self._perceived_task_features()  # from camera frames, late by any sensing latency
        else:
            task_features = task.observation()
            if self._randomizer is not None:  # no camera to be late: the truth is
                task_features = self._randomizer.delayed(task_features)
        if self._command_features:
            task_features = task_features + self.robot.command_offset()
        if self._splits is None:
            values = np.array([*r.tool_pos, r.tool_yaw, *r.tool_vel, r.opening, *r.q, *r.wrench, *task_features], dtype=np.float32)
            if self._noise is not None:
                self._randomizer.add_noise(values, self._noise)
            return clip_into(values, self._obs_low, self._obs_high)
        values = np.array([
            *r.tool_pos, r.tool_yaw, *r.tool_vel, r.opening, *r.q, *r.wrench, *task_features,
            *task.achieved_goal(), *task.desired_goal(),
        ], dtype=np.float32)
        if self._noise is not None:
            self._randomizer.add_noise(values, self._noise)
        clip_into(values, self._obs_low, self._obs_high)
        a, b = self._splits
        return {"observation": values[:a], "achieved_goal": values[a:b], "desired_goal": values[b:]}

    # --- camera observations -------------------------------------------------------------------
    def _pixel_space(self) -> spaces.Dict:
        self._pixel_sensors = [s for s in self.sensors.values() if "pixels" in s.config.use]
        images = image_spaces(self._pixel_sensors)
        self._proprio_low, self._proprio_high = feature_bounds(self._proprio_features())
        vectors = {"proprio": spaces.Box(self._proprio_low, self._proprio_high, dtype=np.float32)}
        if self._splits is not None:
            vectors.update(achieved_goal=self.observation_space["achieved_goal"], desired_goal=self.observation_space["desired_goal"])
        return spaces.Dict({**images, **vectors})

    def _pixel_observation(self) -> dict[str, np.ndarray]:
        obs = capture_images(self._pixel_sensors, self.np_random)
        r = self.robot.reading
        command = self.robot.command_offset() if self._command_features else ()
        proprio = np.array([*r.tool_pos, r.tool_yaw, *r.tool_vel, r.opening, *r.q, *r.wrench, *command], dtype=np.float32)
        n = len(proprio)
        if self._noise is not None:
            self._randomizer.add_noise(proprio, self._noise[:n])
        obs["proprio"] = clip_into(proprio, self._proprio_low, self._proprio_high)
        if self._splits is not None:
            a, b = self._splits
            goals = np.array([*self.task.achieved_goal(), *self.task.desired_goal()], dtype=np.float32)
            if self._noise is not None:
                self._randomizer.add_noise(goals, self._noise[n:])
            clip_into(goals, self._obs_low[a:], self._obs_high[a:])
            obs["achieved_goal"], obs["desired_goal"] = goals[: b - a], goals[b - a:]
        return obs

    # --- perceived observations ---------------------------------------------------------------
    def _start_perception(self) -> None:
        """obs_mode "perceived": the task's features from the perception camera and the robot's own sensors."""
        task = self.task
        meshes = self.scenario.mesh_part_keys()
        if meshes:
            raise SimError(f"obs_mode 'perceived' is not supported with mesh parts ({', '.join(meshes)} in scenario "
                           f"{self.scenario.name!r}): perception localises a part by fitting a box or cylinder to the top face "
                           "the camera sees; use obs_mode 'state' or 'pixels'")
        self._perception = next(s for s in self.sensors.values() if "perception" in s.config.use)
        # Public so a bench can time it (bench/obs_comparison.py wraps its locate()).
        self.locator = PartLocator(task.perception_classes(), support_z=task.support_z())
        task.observer = task.make_observer()
        if task.observer.features() != task.features():  # the layout a state bundle was trained on
            raise SimError(f"the perceived features of {self.scenario.name!r} differ from its state features: "
                           f"{task.observer.features()} vs {task.features()}")
        self._frame_time: float | None = None

    def _perceived_task_features(self) -> list[float]:
        """The task's features (task.features()' layout and units) as the camera and the robot's sensors tell them.

        The locator runs on each new frame; between frames (a camera slower than the control rate) the
        observer predicts, as it is told by getting no detections.
        """
        frame = self._perception.capture(self.np_random)
        detections = None
        if frame.time != self._frame_time:
            self._frame_time = frame.time
            # Located through the camera as calibrated: a randomised camera pose shows up as perception error.
            detections = self.detections = self.locator.locate(frame.rgb, frame.calibration or frame.camera, frame.depth)
        return self.task.perceive(detections)

    # --- description ----------------------------------------------------------------------------
    def feature_spec(self) -> dict[str, Any]:
        """What observations and actions mean, readable by a bundle manifest or a controller."""
        def describe(name: str, size: int, unit: str) -> dict[str, Any]:
            lo, hi = UNIT_BOUNDS[unit]
            return {"name": name, "size": size, "unit": unit, "low": lo, "high": hi}

        obs_features = [describe(*f) for f in self._observation_features()]
        images = []
        if self.obs_mode == "pixels":  # the vectors are the robot features; the images are described apart
            layout = [k for k in self.observation_space.spaces if k not in ("achieved_goal", "desired_goal")]
            images = describe_images(self._pixel_sensors)
        else:
            layout = ["observation"]
        if isinstance(self.task, GoalTask):
            layout = layout + ["achieved_goal", "desired_goal"]
        cfg = self.scenario.robot
        if cfg.control == "ee_delta":
            act_features = [
                {"name": "tool_delta_position", "size": 3, "unit": "m", "scale": cfg.max_ee_speed * self.scenario.physics.control_period},
                {"name": "tool_delta_yaw", "size": 1, "unit": "rad", "scale": cfg.max_yaw_rate * self.scenario.physics.control_period},
            ]
            meaning = ("Cartesian delta of the tool target in the world frame per control period: "
                       "value * scale metres (x, y, z) and radians (yaw about z), tool pointing down")
        else:
            act_features = [{"name": "joint_delta", "size": self._n_joints, "unit": "rad",
                             "scale": self._action_scale.tolist()}]
            meaning = "delta of each arm joint's position target per control period: value * scale radians"
        act_features.append({"name": "grip", "size": 1, "unit": "1", "scale": 1.0})
        meaning += "; grip -1 = fully open .. +1 = fully closed (proportional opening)"
        observation = {"dim": int(sum(f["size"] for f in obs_features)), "dtype": "float32", "layout": layout, "features": obs_features}
        if self.obs_mode != "state":  # state mode's description (and so every bundle's spec hash) stays as it was
            observation.update(mode=self.obs_mode, images=images)
        return {
            "observation": observation,
            "action": {
                "dim": int(self.action_space.shape[0]), "dtype": "float32", "kind": cfg.control,
                "low": [-1.0] * self.action_space.shape[0], "high": [1.0] * self.action_space.shape[0],
                "features": act_features, "meaning": meaning,
            },
            "control_hz": self.scenario.physics.control_hz,
            "robot": self.robot.describe(),
            "scenario": {"name": self.scenario.name, "sha256": scenario_hash(self.scenario)},
        }


class GoalFactoryEnv(FactoryEnv):
    """A goal-conditioned cell: Dict observations and a vectorised `compute_reward` for HER."""

    def compute_reward(self, achieved_goal, desired_goal, info):
        return self.task.compute_reward(achieved_goal, desired_goal, info)


def make_factory_env(scenario: str | Scenario = "conveyor-pick", **kwargs) -> FactoryEnv:
    """The env class follows the task: goal-conditioned tasks get `GoalFactoryEnv`."""
    spec = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    cls = GoalFactoryEnv if issubclass(TASKS[spec.task.type], GoalTask) else FactoryEnv
    return cls(spec, **kwargs)
