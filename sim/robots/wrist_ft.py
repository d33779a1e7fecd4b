"""A wrist force/torque sensor: PyBullet's reaction wrench in the joint between the flange and the tool.

Bullet reports, per fixed joint with its sensor enabled, the wrench the parent (flange) exerts on the
child (tool) in the child link's frame, about the joint origin. The sensor turns that into what a
real wrist F/T sensor gives a controller:

- the wrench the world exerts on the tool and what it holds (contacts, the held part's weight):
  the reaction's negative, rotated into the tool frame (z along the approach direction), torques about
  the flange face;
- compensation "tool": minus the tool's own weight (the links below the sensor, masses and centres of
  mass from the URDF), rotated into the tool frame each control step, as a controller's tool-load
  setting does; the held part's weight stays in the reading;
- a first-order low-pass, sampled every few physics substeps (about sample_hz; time constant filter_time_constant),
  then Gaussian noise (force_noise N, torque_noise N m per axis) drawn once per control step from a
  generator of its own (derived from the env's at each reset: the task's draws are the same with and
  without the sensor).

`true_wrench` is the same reading without the noise.
"""

from __future__ import annotations

import numpy as np
import pybullet as pb

from scenarios.schema import WristFTConfig

NOISE_BLOCK = 256  # reads of noise drawn at once: one numpy call per 256 control steps, not one per step


def _matrix(quat) -> tuple[float, ...]:
    return pb.getMatrixFromQuaternion(quat)  # row-major 3x3


class WristFT:
    def __init__(self, robot, config: WristFTConfig, joint: int):
        self.robot, self.config, self.joint = robot, config, joint
        sim, body = robot.sim, robot.body
        cid = self.cid = sim.cid
        self.body = body
        pb.enableJointForceTorqueSensor(body, joint, True, physicsClientId=cid)
        # Sampled every `every`-th substep, at about sample_hz (a whole number of samples per control period).
        physics = sim.physics
        every = max(1, min(physics.substeps, int(round(physics.physics_hz / config.sample_hz))))
        while physics.substeps % every:
            every -= 1
        self.sample_hz = physics.physics_hz / every
        alpha = 1.0
        if config.filter_time_constant > 0:
            dt = 1.0 / self.sample_hz
            alpha = dt / (config.filter_time_constant + dt)
        self._alpha = alpha
        # The sensor link's frame in the tool frame (both rigid below the sensor): rotation R_ts and the
        # sensor origin; the tool's own mass and centre of mass (tool frame) for compensation.
        child = joint  # in PyBullet the joint index is its child link's index
        sensor_state = pb.getLinkState(body, child, computeForwardKinematics=1, physicsClientId=cid)
        tool_state = pb.getLinkState(body, robot.tool_id, computeForwardKinematics=1, physicsClientId=cid)
        r_ws = np.reshape(_matrix(sensor_state[5]), (3, 3))
        r_wt = np.reshape(_matrix(tool_state[5]), (3, 3))
        self._r_ts = (r_wt.T @ r_ws).tolist()
        self._sensor_in_tool = r_wt.T @ (np.asarray(sensor_state[4]) - np.asarray(tool_state[4]))
        below = self._links_below(child)
        mass, moment = 0.0, np.zeros(3)
        for link in below:
            m = pb.getDynamicsInfo(body, link, physicsClientId=cid)[0]
            com = pb.getLinkState(body, link, computeForwardKinematics=1, physicsClientId=cid)[0]
            mass += m
            moment += m * (r_wt.T @ (np.asarray(com) - np.asarray(tool_state[4])))
        self.tool_mass = mass  # kg below the sensor
        # Tool's centre of mass relative to the sensor origin, tool frame (the jaws move symmetrically).
        self._com = ((moment / mass - self._sensor_in_tool) if mass > 0 else np.zeros(3)).tolist()
        self._gravity = sim.physics.gravity if config.compensation == "tool" else 0.0  # 0: no compensation
        self._noise = (config.force_noise, config.torque_noise)  # std per axis: N, N m
        self._rng = np.random.default_rng(0)
        self._normals: list[float] = []  # standard normals drawn ahead from _rng, six per read
        self._next = 0
        self._rotation = _matrix(tool_state[5])
        self._samples: list[tuple[float, ...]] = []  # raw reaction wrenches since the last read
        self.reset()
        sim.add_substep_hook(every, self._sampler())

    def _links_below(self, link: int) -> list[int]:
        cid, body = self.cid, self.body
        parents = {j: pb.getJointInfo(body, j, physicsClientId=cid)[16] for j in range(pb.getNumJoints(body, physicsClientId=cid))}
        below = [link]
        for j in sorted(parents):
            if parents[j] in below:
                below.append(j)
        return below

    def reset(self, rng: np.random.Generator | None = None) -> None:
        if rng is not None:
            self._rng = np.random.Generator(rng.bit_generator.jumped(2))  # the randomiser takes jumped(1)
            self._normals, self._next = [], 0
        self._filtered: list[float] | None = None  # set by the first substep's reading
        self._samples.clear()
        self.wrench: tuple[float, ...] = (0.0,) * 6  # tool frame, compensated, filtered, noisy
        self.true_wrench: tuple[float, ...] = (0.0,) * 6  # the same without noise

    def _sampler(self):
        """The substep hook: keep the joint's reaction wrench for read() to filter. It runs several times per
        control step, each time with caches cold from the physics step, so it does no more than that."""
        get_state, body, joint, cid, keep = pb.getJointState, self.body, self.joint, self.cid, self._samples.append
        return lambda: keep(get_state(body, joint, cid)[2])  # positional: PyBullet's keyword parsing costs more here

    def _filter(self) -> list[float] | None:
        """The low-pass, fed the samples taken since the last read (in order); None before the first."""
        f, a = self._filtered, self._alpha
        for raw in self._samples:
            if f is None:
                f = self._filtered = list(raw)
                continue
            f[0] += a * (raw[0] - f[0])  # unrolled: this runs for every sample
            f[1] += a * (raw[1] - f[1])
            f[2] += a * (raw[2] - f[2])
            f[3] += a * (raw[3] - f[3])
            f[4] += a * (raw[4] - f[4])
            f[5] += a * (raw[5] - f[5])
        self._samples.clear()
        return f

    def read(self, tool_quat) -> tuple[float, ...]:
        """The wrench now (N, N m; tool frame), called once per control step with the tool's orientation."""
        m = self._rotation = _matrix(tool_quat)
        f = self._filter()
        if f is None:  # no physics step since reset: nothing measured yet
            self.true_wrench = t = (0.0,) * 6
        else:
            # Gravity on the tool (world (0, 0, g)) in the tool frame: R_wt^T g = g * third row of R_wt.
            g, mass = self._gravity, self.tool_mass
            wx, wy, wz = m[6] * g * mass, m[7] * g * mass, m[8] * g * mass
            # Plain floats, written out: a 3x3 product in numpy (or a generator over the rows) costs more.
            (r00, r01, r02), (r10, r11, r12), (r20, r21, r22) = self._r_ts
            f0, f1, f2, f3, f4, f5 = f
            fx, fy, fz = -(r00 * f0 + r01 * f1 + r02 * f2), -(r10 * f0 + r11 * f1 + r12 * f2), -(r20 * f0 + r21 * f1 + r22 * f2)
            tx, ty, tz = -(r00 * f3 + r01 * f4 + r02 * f5), -(r10 * f3 + r11 * f4 + r12 * f5), -(r20 * f3 + r21 * f4 + r22 * f5)
            cx, cy, cz = self._com
            # The tool's weight acts at its centre of mass: its torque about the sensor is com x weight.
            self.true_wrench = t = (fx - wx, fy - wy, fz - wz, tx - (cy * wz - cz * wy), ty - (cz * wx - cx * wz), tz - (cx * wy - cy * wx))
        s_f, s_t = self._noise
        if s_f > 0 or s_t > 0:
            # Drawn NOISE_BLOCK reads ahead: the Generator gives the same numbers in one call as in many.
            i, n = self._next, self._normals
            if i + 6 > len(n):
                n = self._normals = self._rng.normal(0.0, 1.0, 6 * NOISE_BLOCK).tolist()
                i = 0
            self._next = i + 6
            self.wrench = (t[0] + s_f * n[i], t[1] + s_f * n[i + 1], t[2] + s_f * n[i + 2],
                           t[3] + s_t * n[i + 3], t[4] + s_t * n[i + 4], t[5] + s_t * n[i + 5])
        else:
            self.wrench = t
        return self.wrench

    def world_force(self) -> tuple[float, float, float]:
        """The last read force (noisy, as a controller sees it) in the world frame (N), with the orientation
        that read was given."""
        m = self._rotation
        fx, fy, fz = self.wrench[:3]
        return (m[0] * fx + m[1] * fy + m[2] * fz, m[3] * fx + m[4] * fy + m[5] * fz, m[6] * fx + m[7] * fy + m[8] * fz)
