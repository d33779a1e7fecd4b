"""Generate gp7.urdf: a Yaskawa Motoman GP7-class 6-axis arm with a parallel-jaw gripper.

Run `python sim/assets/gp7/make_gp7_urdf.py` after editing; the URDF is committed next to it.

Every link is built from boxes and cylinders. Each link's mass is spread over its shapes in
proportion to their volume (one uniform density per link; overlapping shapes count twice, a small
error), and the inertial block (centre of mass + full tensor) is computed from exactly the shapes
that are drawn and collided, so the dynamics and the geometry cannot disagree.

All joint frames are axis-aligned with the base at the zero pose (arm upright, forearm pointing
forward along +x), so offsets read like the datasheet's dimension drawing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# --- datasheet figures (see SOURCE below) -----------------------------------------------------------
SOURCE = """\
Yaskawa Motoman GP7 (GP7/GP8 class), figures from the public Yaskawa "MOTOMAN GP7" product
datasheet / specification sheet (Yaskawa America and Yaskawa Europe publish it; the document number
is not quoted because it could not be verified offline - numbers are from memory of that sheet):
  controlled axes 6, payload 7 kg, max horizontal reach 927 mm (to the wrist P-point, the B-axis
  centre, as Yaskawa measures it), vertical reach 1693 mm, repeatability +/-0.03 mm (later
  revisions of the sheet state +/-0.01 mm per ISO 9283; uncertain which applies), manipulator
  mass 34 kg.
  Range of motion: S +/-170 deg, L +145/-65 deg, U +190/-70 deg, R +/-190 deg, B +/-135 deg,
  T +/-360 deg.
  Max speed: S 375, L 315, U 410, R 550, B 550, T 1000 deg/s (the GP8 variant is faster on S/L/U).
  Allowable wrist moment: R 17 N.m, B 17 N.m, T 10 N.m; allowable wrist moment of inertia:
  R 0.5, B 0.5, T 0.2 kg.m^2 (from memory; treat as approximate).
Kinematic dimensions (approximate, read from the datasheet's dimension drawing): L-axis height
330 mm above the mounting face, S-to-L forward offset 40 mm, L-to-U 445 mm, U-to-forearm (R-axis)
vertical offset 40 mm, U-to-B along the forearm 440 mm, B-to-flange 80 mm. Check: 40 + 445 +
sqrt(440^2 + 40^2) = 926.8 mm horizontal reach of the P-point, and over the L/U ranges above the
P-point sweeps 1693 mm vertically, matching the sheet (tests/test_robot_gp7.py measures both).
Estimates, not datasheet figures: per-joint torque limits (URDF effort), the split of the 34 kg over
the links, the link shapes, and the whole gripper (a generic small industrial parallel gripper,
0.86 kg, 40 mm stroke per jaw, TCP 121 mm from the flange). Joint sign conventions are a best guess at Yaskawa's
(L positive tilts the upper arm forward, U positive raises the forearm)."""

DEG = math.pi / 180.0
# name, (lower, upper) deg, max speed deg/s, effort N.m (estimate: gravity + acceleration headroom
# with 7 kg at full reach; wrist values ~2x the allowable wrist moments)
JOINTS = {
    "joint_1_s": ((-170, 170), 375, 250.0),
    "joint_2_l": ((-65, 145), 315, 320.0),
    "joint_3_u": ((-70, 190), 410, 160.0),
    "joint_4_r": ((-190, 190), 550, 35.0),
    "joint_5_b": ((-135, 135), 550, 35.0),
    "joint_6_t": ((-360, 360), 1000, 20.0),
}
L_HEIGHT, S_TO_L, L_TO_U, U_TO_R_Z, U_TO_B, B_TO_FLANGE = 0.330, 0.040, 0.445, 0.040, 0.440, 0.080
S_JOINT_Z = 0.120  # top of the fixed base casting; the S joint frame sits there
R_JOINT_X = 0.100  # where the rotating forearm tube starts, ahead of the U axis
FINGER_TRAVEL = 0.040  # m per jaw
FINGER_Z = 0.061  # jaw slides along the gripper body's underside, this far from the flange
FINGER_LEN, PAD_LEN, PAD_T = 0.075, 0.040, 0.003
TCP_Z = FINGER_Z + FINGER_LEN - 0.015  # between the pads, 15 mm above the fingertips

BLUE = "gp7_blue"  # Yaskawa blue-grey castings
WHITE = "gp7_white"  # covers
DARK = "gp7_dark"  # gripper
PAD = "gp7_pad"  # rubber jaw pads
COLOURS = {BLUE: (0.22, 0.36, 0.55, 1), WHITE: (0.93, 0.93, 0.92, 1), DARK: (0.2, 0.2, 0.22, 1), PAD: (0.05, 0.05, 0.05, 1)}


@dataclass
class Shape:
    kind: str  # "box" | "cyl"
    dims: tuple  # box: (sx, sy, sz); cyl: (radius, length)
    xyz: tuple
    axis: str = "z"  # cylinder axis in the link frame
    colour: str = BLUE

    def volume(self) -> float:
        if self.kind == "box":
            return float(np.prod(self.dims))
        r, h = self.dims
        return math.pi * r * r * h

    def inertia_about_centre(self, m: float) -> np.ndarray:
        if self.kind == "box":
            sx, sy, sz = self.dims
            return np.diag([m * (sy**2 + sz**2), m * (sx**2 + sz**2), m * (sx**2 + sy**2)]) / 12.0
        r, h = self.dims
        axial, radial = m * r * r / 2.0, m * (3 * r * r + h * h) / 12.0
        i = "xyz".index(self.axis)
        d = [radial] * 3
        d[i] = axial
        return np.diag(d)

    def rpy(self) -> tuple:  # URDF cylinders run along their local z
        return {"x": (0, math.pi / 2, 0), "y": (math.pi / 2, 0, 0), "z": (0, 0, 0)}[self.axis]


def box(size, xyz, colour=BLUE) -> Shape:
    return Shape("box", tuple(size), tuple(xyz), colour=colour)


def cyl(r, length, xyz, axis="z", colour=BLUE) -> Shape:
    return Shape("cyl", (r, length), tuple(xyz), axis, colour)


def mass_properties(shapes: list[Shape], mass: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre of mass and inertia tensor about it, for `mass` spread by volume over `shapes`."""
    vols = np.array([s.volume() for s in shapes])
    ms = mass * vols / vols.sum()
    cs = np.array([s.xyz for s in shapes], dtype=float)
    com = (ms[:, None] * cs).sum(axis=0) / mass
    inertia = np.zeros((3, 3))
    for s, m, c in zip(shapes, ms, cs):
        d = c - com
        inertia += s.inertia_about_centre(m) + m * (d @ d * np.eye(3) - np.outer(d, d))  # parallel axis
    return com, inertia


# --- links: (mass kg, shapes); 34 kg arm split as an estimate of where the motors and castings sit --
LINKS: dict[str, tuple[float, list[Shape]]] = {
    "base_link": (8.0, [
        box((0.22, 0.22, 0.02), (0, 0, 0.010)),  # mounting plate
        cyl(0.085, 0.10, (0, 0, 0.070)),  # S-axis casting
    ]),
    "link_1_s": (9.0, [  # turret with the S and L motors
        cyl(0.090, 0.080, (0, 0, 0.042)),
        box((0.16, 0.12, 0.16), (0.02, 0, 0.160)),
        cyl(0.075, 0.16, (S_TO_L, 0, L_HEIGHT - S_JOINT_Z), "y", WHITE),  # L-axis reducer housing
    ]),
    "link_2_l": (7.0, [  # upper arm
        cyl(0.070, 0.12, (0, 0, 0), "y"),
        box((0.09, 0.10, L_TO_U), (0, 0, L_TO_U / 2), WHITE),
        cyl(0.060, 0.12, (0, 0, L_TO_U), "y"),
    ]),
    "link_3_u": (4.5, [  # elbow housing with the R motor behind the U axis
        cyl(0.060, 0.14, (0, 0, 0), "y"),
        box((0.20, 0.10, 0.105), (0.0, 0, 0.0325)),
    ]),
    "link_4_r": (3.8, [  # forearm tube ending in the wrist fork
        cyl(0.042, 0.25, (0.125, 0, 0), "x", WHITE),
        box((0.08, 0.012, 0.07), (U_TO_B - R_JOINT_X - 0.02, 0.058, 0)),
        box((0.08, 0.012, 0.07), (U_TO_B - R_JOINT_X - 0.02, -0.058, 0)),
        box((0.04, 0.128, 0.07), (U_TO_B - R_JOINT_X - 0.075, 0, 0)),
    ]),
    "link_5_b": (1.4, [  # wrist: B hub and the T-axis nose
        cyl(0.040, 0.100, (0, 0, 0), "y"),
        cyl(0.032, 0.066, (0.033, 0, 0), "x"),
    ]),
    "link_6_t": (0.3, [cyl(0.032, 0.012, (-0.006, 0, 0), "x", DARK)]),  # tool flange (ISO 9409-1-31.5)
    # Gripper (estimate): adapter plate + body, frame z along the approach direction.
    "gp7_gripper": (0.7, [
        cyl(0.032, 0.010, (0, 0, 0.006), "z", DARK),
        box((0.05, 0.11, 0.050), (0, 0, 0.036), DARK),
    ]),
}
FINGER_MASS = 0.08


def finger_shapes(sign: int) -> list[Shape]:
    """Jaw in its joint frame: the pad's inner face lies on y = 0, so the opening equals q1 + q2."""
    body_t = 0.010
    return [
        box((0.02, body_t, FINGER_LEN), (0, sign * (PAD_T + body_t / 2), FINGER_LEN / 2), DARK),
        box((0.02, PAD_T, PAD_LEN), (0, sign * PAD_T / 2, FINGER_LEN - PAD_LEN / 2), PAD),
    ]


# --- URDF writing ----------------------------------------------------------------------------------
def f(x) -> str:
    return " ".join(f"{v:.6g}" for v in np.atleast_1d(x))


def geometry(s: Shape) -> str:
    if s.kind == "box":
        return f'<box size="{f(s.dims)}"/>'
    return f'<cylinder radius="{s.dims[0]:.6g}" length="{s.dims[1]:.6g}"/>'


# Jaw pads: rubber-like friction, and a friction anchor so a held part does not creep in the grip
# (Bullet otherwise lets a squeezed box slowly slide and tumble between two force-limited jaws).
PAD_CONTACT = '    <contact>\n      <lateral_friction value="1.5"/>\n      <friction_anchor/>\n    </contact>'


def link_xml(name: str, mass: float, shapes: list[Shape], contact: str = "") -> str:
    com, inertia = mass_properties(shapes, mass)
    out = [f'  <link name="{name}">', "    <inertial>", f'      <origin xyz="{f(com)}" rpy="0 0 0"/>', f'      <mass value="{mass:.6g}"/>']
    out.append(
        f'      <inertia ixx="{inertia[0, 0]:.6g}" ixy="{inertia[0, 1]:.6g}" ixz="{inertia[0, 2]:.6g}" '
        f'iyy="{inertia[1, 1]:.6g}" iyz="{inertia[1, 2]:.6g}" izz="{inertia[2, 2]:.6g}"/>'
    )
    out.append("    </inertial>")
    if contact:
        out.append(contact)
    for tag in ("visual", "collision"):
        for s in shapes:
            out.append(f"    <{tag}>")
            out.append(f'      <origin xyz="{f(s.xyz)}" rpy="{f(s.rpy())}"/>')
            out.append(f"      <geometry>{geometry(s)}</geometry>")
            if tag == "visual":
                out.append(f'      <material name="{s.colour}"/>')
            out.append(f"    </{tag}>")
    out.append("  </link>")
    return "\n".join(out)


def frame_link(name: str) -> str:
    # A pure frame still needs an inertial: without one PyBullet silently gives it 1 kg.
    return (
        f'  <link name="{name}">\n    <inertial>\n      <origin xyz="0 0 0" rpy="0 0 0"/>\n      <mass value="0.001"/>\n'
        '      <inertia ixx="1e-07" ixy="0" ixz="0" iyy="1e-07" iyz="0" izz="1e-07"/>\n    </inertial>\n  </link>'
    )


def joint_xml(name, kind, parent, child, xyz, rpy=(0, 0, 0), axis=None, limit=None) -> str:
    out = [f'  <joint name="{name}" type="{kind}">', f'    <parent link="{parent}"/>', f'    <child link="{child}"/>', f'    <origin xyz="{f(xyz)}" rpy="{f(rpy)}"/>']
    if axis is not None:
        out.append(f'    <axis xyz="{f(axis)}"/>')
    if limit is not None:
        lo, hi, effort, vel = limit
        out.append(f'    <limit lower="{lo:.9g}" upper="{hi:.9g}" effort="{effort:.6g}" velocity="{vel:.9g}"/>')
        out.append('    <dynamics damping="0.0" friction="0.0"/>')
    out.append("  </joint>")
    return "\n".join(out)


def arm_joint(name, parent, child, xyz, axis) -> str:
    (lo, hi), speed, effort = JOINTS[name]
    return joint_xml(name, "revolute", parent, child, xyz, axis=axis, limit=(lo * DEG, hi * DEG, effort, speed * DEG))


# The tool frame: z out of the flange (approach), x along world +x when the tool points down at S = 0.
TOOL_RPY = (0.0, -math.pi / 2, math.pi)


# --- suction variant (robot.tool: {type: suction}) ---------------------------------------------------
# A vacuum cup in place of the gripper, its face where the gripper's TCP is (TCP_Z from the flange), so
# the tool-down IK plane is the same. Estimates: a 0.35 kg adapter + inline ejector body, a 0.03 kg
# cup (bellows drawn as a cylinder). The cup radius comes from the scenario (default 20 mm: a 40 mm cup).
CUP_HEIGHT = 0.02  # m, the cup's rubber from its stem to its face
SUCTION_BODY_MASS, CUP_MASS = 0.35, 0.03
SUCTION_BODY = [
    cyl(0.032, 0.010, (0, 0, 0.006), "z", DARK),  # adapter plate on the flange
    cyl(0.018, TCP_Z - CUP_HEIGHT - 0.011, (0, 0, 0.011 + (TCP_Z - CUP_HEIGHT - 0.011) / 2), "z", DARK),  # ejector + stem
]
# The cup face grips by friction too (rubber on cardboard), and holds its contacts still (friction anchor).
CUP_CONTACT = '    <contact>\n      <lateral_friction value="1.2"/>\n      <friction_anchor/>\n    </contact>'


def cup_shapes(radius: float) -> list[Shape]:
    """The cup in the gp7_cup link's frame: the link origin sits on the cup face, z out of it."""
    return [cyl(radius, CUP_HEIGHT, (0, 0, -CUP_HEIGHT / 2), "z", PAD)]


def build(tool: str = "parallel_gripper", cup_radius: float = 0.02) -> str:
    """The URDF text: the arm with the parallel gripper, or (tool "suction") with a vacuum cup of `cup_radius` m."""
    head = SOURCE if tool == "parallel_gripper" else SOURCE + f"\nSuction variant: a {2000 * cup_radius:.0f} mm vacuum cup, face {TCP_Z * 1000:.0f} mm from the flange."
    parts = ['<?xml version="1.0"?>', "<!-- GENERATED by make_gp7_urdf.py; edit that script, not this file.", head, "-->", '<robot name="gp7">']
    for name, rgba in COLOURS.items():
        parts.append(f'  <material name="{name}"><color rgba="{f(rgba)}"/></material>')
    for name, (mass, shapes) in LINKS.items():
        if name != "gp7_gripper":
            parts.append(link_xml(name, mass, shapes))
    if tool == "suction":
        parts.append(link_xml("gp7_suction", SUCTION_BODY_MASS, SUCTION_BODY))
        parts.append(link_xml("gp7_cup", CUP_MASS, cup_shapes(cup_radius), CUP_CONTACT))
    else:
        mass, shapes = LINKS["gp7_gripper"]
        parts.append(link_xml("gp7_gripper", mass, shapes))
        parts.append(link_xml("gp7_finger1", FINGER_MASS, finger_shapes(+1), PAD_CONTACT))
        parts.append(link_xml("gp7_finger2", FINGER_MASS, finger_shapes(-1), PAD_CONTACT))
    parts += [frame_link("tool0"), frame_link("tcp")]
    parts += [
        arm_joint("joint_1_s", "base_link", "link_1_s", (0, 0, S_JOINT_Z), (0, 0, 1)),
        arm_joint("joint_2_l", "link_1_s", "link_2_l", (S_TO_L, 0, L_HEIGHT - S_JOINT_Z), (0, 1, 0)),
        arm_joint("joint_3_u", "link_2_l", "link_3_u", (0, 0, L_TO_U), (0, -1, 0)),
        arm_joint("joint_4_r", "link_3_u", "link_4_r", (R_JOINT_X, 0, U_TO_R_Z), (-1, 0, 0)),
        arm_joint("joint_5_b", "link_4_r", "link_5_b", (U_TO_B - R_JOINT_X, 0, 0), (0, -1, 0)),
        arm_joint("joint_6_t", "link_5_b", "link_6_t", (B_TO_FLANGE, 0, 0), (-1, 0, 0)),
        joint_xml("joint_6_t-tool0", "fixed", "link_6_t", "tool0", (0, 0, 0), TOOL_RPY),
    ]
    if tool == "suction":
        parts += [
            joint_xml("gp7_suction_mount", "fixed", "link_6_t", "gp7_suction", (0, 0, 0), TOOL_RPY),
            joint_xml("gp7_cup_joint", "fixed", "gp7_suction", "gp7_cup", (0, 0, TCP_Z)),
            joint_xml("gp7_tcp_joint", "fixed", "gp7_cup", "tcp", (0, 0, 0)),
        ]
    else:
        parts += [
            # The gripper hangs directly off the flange link (not off tool0) so that the
            # self-collision filter's parent exclusion covers the flange/gripper contact face.
            joint_xml("gp7_gripper_mount", "fixed", "link_6_t", "gp7_gripper", (0, 0, 0), TOOL_RPY),
            joint_xml("gp7_finger_joint1", "prismatic", "gp7_gripper", "gp7_finger1", (0, 0, FINGER_Z), axis=(0, 1, 0), limit=(0.0, FINGER_TRAVEL, 200.0, 0.1)),
            joint_xml("gp7_finger_joint2", "prismatic", "gp7_gripper", "gp7_finger2", (0, 0, FINGER_Z), axis=(0, -1, 0), limit=(0.0, FINGER_TRAVEL, 200.0, 0.1)),
            joint_xml("gp7_tcp_joint", "fixed", "gp7_gripper", "tcp", (0, 0, TCP_Z)),
        ]
    parts.append("</robot>")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    out = Path(__file__).with_name("gp7.urdf")
    out.write_text(build())
    total = sum(m for m, _ in LINKS.values()) + 2 * FINGER_MASS
    print(f"wrote {out} ({total:.2f} kg incl. gripper)")
