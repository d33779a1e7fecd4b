"""Read and check a user's robot URDF with the standard library, before PyBullet ever loads it.

PyBullet is lenient where it hurts: a link without <inertial> silently weighs 1 kg, a joint without
<limit> gets no speed (the arm never moves), a <mimic> tag is ignored, a missing mesh is a warning
on stderr. A scenario naming a robot by URDF (`robot.urdf`) is checked here instead, and every
error names the file, the element and the scenario key that led to it.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from scenarios.naming import did_you_mean

MOVABLE = ("revolute", "prismatic", "continuous")
JOINT_TYPES = MOVABLE + ("fixed", "floating", "planar")
CONTINUOUS_RANGE = 2 * math.pi  # rad either way: a continuous joint is driven as a revolute one over +-2 pi
MAX_MESH_SCALE = 100.0  # a unit conversion or a primitive's size; 1000 where 0.001 was meant made a link a kilometre long


class UrdfError(ValueError):
    """A robot URDF that cannot drive a genba robot; the message names the file and the element."""


@dataclass(frozen=True)
class UrdfJoint:
    name: str
    type: str
    parent: str
    child: str
    lower: Optional[float]
    upper: Optional[float]
    velocity: Optional[float]  # rad/s or m/s, from <limit velocity>
    effort: Optional[float]  # N.m or N, from <limit effort>
    mimic: Optional[str]  # the joint it mimics


@dataclass(frozen=True)
class UrdfLink:
    name: str
    mass: Optional[float]  # None: no <inertial> (or no <mass>)
    meshes: tuple[str, ...]  # filenames as written


@dataclass(frozen=True)
class UrdfTree:
    path: Path
    robot_name: str
    links: dict[str, UrdfLink]
    joints: dict[str, UrdfJoint]  # in file order

    @property
    def root(self) -> str:
        children = {j.child for j in self.joints.values()}
        return next(name for name in self.links if name not in children)

    def parent_joint(self, link: str) -> Optional[UrdfJoint]:
        return next((j for j in self.joints.values() if j.child == link), None)

    def descendants(self, link: str) -> list[str]:
        out, todo = [], [link]
        while todo:
            current = todo.pop()
            for j in self.joints.values():
                if j.parent == current:
                    out.append(j.child)
                    todo.append(j.child)
        return out


@dataclass(frozen=True)
class ArmChain:
    """The arm a scenario drives: its joints from base to flange, and every other joint frozen."""

    tree: UrdfTree
    base_link: str
    flange_link: str
    chain: tuple[UrdfJoint, ...]  # every joint from base_link to flange_link, in order
    arm_joints: tuple[UrdfJoint, ...]  # the driven ones, in chain order
    frozen: tuple[str, ...]  # movable joints held fixed (at zero): not arm joints

    @property
    def name(self) -> str:
        return self.tree.robot_name


def _float(element: ET.Element, attr: str, where: str) -> Optional[float]:
    text = element.get(attr)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise UrdfError(f"{where}: {attr}={text!r} is not a number") from None
    if not math.isfinite(value):  # a NaN mass ran at 0% success with 'return nan'; a NaN limit failed in numpy
        raise UrdfError(f"{where}: {attr}={text!r} is not a finite number")
    return value


def _numbers(element: ET.Element, attr: str, where: str, count: int = 3) -> Optional[list[float]]:
    """An attribute of `count` space-separated finite numbers (an xyz, rpy, axis or scale); None when absent."""
    text = element.get(attr)
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split()]
    except ValueError:
        values = []
    if len(values) != count or not all(map(math.isfinite, values)):  # PyBullet reads what it can and zeroes the rest, silently
        raise UrdfError(f"{where}: {attr}={text!r} must be {count} finite numbers")
    return values


def _check_geometry(element: ET.Element, where: str) -> None:
    """Every <origin> and <mesh scale> of a link or joint: numbers PyBullet would take without a word."""
    for origin in element.iter("origin"):
        for attr in ("xyz", "rpy"):
            _numbers(origin, attr, f"{where} <origin>")
    for mesh in element.iter("mesh"):
        scale = _numbers(mesh, "scale", f"{where} <mesh>")
        if scale is not None and not all(0 < v <= MAX_MESH_SCALE for v in scale):  # 0: no collision; 1000 for 0.001: a km arm
            raise UrdfError(f"{where} <mesh>: scale={mesh.get('scale')!r}: each factor must be > 0 and <= {MAX_MESH_SCALE:g} "
                            "(it converts the mesh's units to metres: 0.001 for millimetres)")


def _inertial_mass(element: ET.Element, where: str) -> Optional[float]:
    """The link's mass; its <inertial> must also give an <inertia>, which genba's loading uses (URDF_USE_INERTIA_FROM_FILE)."""
    inertial = element.find("inertial")
    mass_el = inertial.find("mass") if inertial is not None else None
    if mass_el is None:
        return None
    mass = _float(mass_el, "value", f"{where} <mass>")
    inertia = inertial.find("inertia")
    if inertia is None:  # PyBullet: "Cannot load URDF file." with no word on which
        raise UrdfError(f"{where}: <inertial> has a <mass> but no <inertia ixx=... iyy=... izz=...>")
    for attr in ("ixx", "iyy", "izz"):
        value = _float(inertia, attr, f"{where} <inertia>")
        if value is None or value < 0:  # a principal moment below 0 is no body; PyBullet ran it anyway
            raise UrdfError(f"{where} <inertia>: {attr}={inertia.get(attr)!r}: a moment of inertia must be a number >= 0")
    for attr in ("ixy", "ixz", "iyz"):
        _float(inertia, attr, f"{where} <inertia>")
    return mass


def read_urdf(path: str | Path, key: str = "robot.urdf") -> UrdfTree:
    """Parse the file: it exists, is XML, has a <robot> with named links and well-formed joints."""
    path = Path(path)
    if not path.is_file():
        raise UrdfError(f"{key}: {path}: no such file" if not path.exists() else f"{key}: {path}: not a file")
    try:
        root = ET.fromstring(path.read_bytes())
    except OSError as exc:
        raise UrdfError(f"{key}: {path}: cannot read ({exc.strerror or exc})") from None
    except ET.ParseError as exc:
        line, column = exc.position
        raise UrdfError(f"{key}: {path}:{line}:{column + 1}: not valid XML ({exc.msg if hasattr(exc, 'msg') else exc})") from None
    if root.tag != "robot":
        raise UrdfError(f"{key}: {path}: the top element is <{root.tag}>, a URDF's is <robot>")
    robot_name = root.get("name") or path.stem
    links: dict[str, UrdfLink] = {}
    for element in root.findall("link"):
        name = element.get("name")
        if not name:
            raise UrdfError(f"{key}: {path}: a <link> without a name")
        if name in links:
            raise UrdfError(f"{key}: {path}: <link name={name!r}> appears twice")
        where = f"{path}: <link name={name!r}>"
        _check_geometry(element, f"{key}: {where}")
        mass = _inertial_mass(element, f"{key}: {where}")
        meshes = tuple(m.get("filename", "") for tag in ("visual", "collision") for m in element.findall(f"{tag}/geometry/mesh"))
        links[name] = UrdfLink(name, mass, meshes)
    if not links:
        raise UrdfError(f"{key}: {path}: <robot name={robot_name!r}> has no <link>")
    joints: dict[str, UrdfJoint] = {}
    for element in root.findall("joint"):
        name = element.get("name")
        if not name:
            raise UrdfError(f"{key}: {path}: a <joint> without a name")
        where = f"{path}: <joint name={name!r}>"
        if name in joints:
            raise UrdfError(f"{key}: {where} appears twice")
        kind = element.get("type", "")
        if kind not in JOINT_TYPES:
            raise UrdfError(f"{key}: {where}: type {kind!r} is not a URDF joint type; valid: {', '.join(JOINT_TYPES)}")
        ends = {}
        for end in ("parent", "child"):
            el = element.find(end)
            link = el.get("link") if el is not None else None
            if link is None:
                raise UrdfError(f"{key}: {where}: no <{end} link=...>")
            if link not in links:
                raise UrdfError(f"{key}: {where}: <{end} link={link!r}> is not a <link> of the file" + did_you_mean(link, links))
            ends[end] = link
        if ends["parent"] == ends["child"]:
            raise UrdfError(f"{key}: {where}: its parent and child are the same link {ends['child']!r}")
        _check_geometry(element, f"{key}: {where}")
        axis = element.find("axis")
        if axis is not None and kind in ("revolute", "continuous", "prismatic"):
            xyz = _numbers(axis, "xyz", f"{key}: {where} <axis>")
            if xyz is not None and not any(xyz):  # a zero axis crashed calculateJacobian
                raise UrdfError(f"{key}: {where}: <axis xyz={axis.get('xyz')!r}> must not be all 0")
        limit = element.find("limit")
        values = {a: (_float(limit, a, f"{where} <limit>") if limit is not None else None) for a in ("lower", "upper", "velocity", "effort")}
        mimic = element.find("mimic")
        joints[name] = UrdfJoint(name, kind, ends["parent"], ends["child"], values["lower"], values["upper"],
                                 values["velocity"], values["effort"], mimic.get("joint", "?") if mimic is not None else None)
    children = [j.child for j in joints.values()]
    twice = sorted({c for c in children if children.count(c) > 1})
    if twice:
        raise UrdfError(f"{key}: {path}: <link name={twice[0]!r}> is the child of two joints; a URDF is a tree")
    roots = [name for name in links if name not in children]
    if len(roots) != 1:
        raise UrdfError(f"{key}: {path}: a URDF is one tree with one root link, found roots {roots or 'none (a loop)'}")
    reached, todo = {roots[0]}, [roots[0]]
    while todo:  # every link hangs below the root; a loop of joints beside the tree would not (and chain walks never end)
        parent = todo.pop()
        for j in joints.values():
            if j.parent == parent and j.child not in reached:
                reached.add(j.child)
                todo.append(j.child)
    cut_off = [name for name in links if name not in reached]
    if cut_off:
        raise UrdfError(f"{key}: {path}: <link name={cut_off[0]!r}> does not hang below the root link {roots[0]!r} (its joints "
                        "close a loop); a URDF is a tree")
    return UrdfTree(path, robot_name, links, joints)


def arm_chain(tree: UrdfTree, base_link: Optional[str] = None, flange_link: Optional[str] = None,
              arm_joints: Optional[Sequence[str]] = None, *, speed_given: bool = False, effort_given: bool = False) -> ArmChain:
    """The chain from base_link (default: the root) to flange_link (default: the end of the unbranched chain),
    its driven joints (default: every movable one on the chain), checked for what the simulation needs.

    speed_given / effort_given: the scenario overrides the URDF's <limit velocity> / <limit effort>,
    so a joint without them is fine.
    """
    path = tree.path
    base = base_link or tree.root
    if base not in tree.links:
        raise UrdfError(f"robot.base_link: {base!r} is not a <link> of {path}" + did_you_mean(base, tree.links)
                        + f"; links: {', '.join(tree.links)}")
    if flange_link is None:
        flange = base
        while True:
            below = [j for j in tree.joints.values() if j.parent == flange]
            if not below:
                break
            if len(below) > 1:
                raise UrdfError(f"robot.flange_link: {path}: the tree branches at <link name={flange!r}> (joints "
                                f"{', '.join(j.name for j in below)}); name the link the tool mounts on")
            flange = below[0].child
    else:
        flange = flange_link
        if flange not in tree.links:
            raise UrdfError(f"robot.flange_link: {flange!r} is not a <link> of {path}" + did_you_mean(flange, tree.links)
                            + f"; links: {', '.join(tree.links)}")
    chain: list[UrdfJoint] = []
    link = flange
    while link != base:
        joint = tree.parent_joint(link)
        if joint is None:
            raise UrdfError(f"robot.flange_link: {path}: no chain of joints from <link name={base!r}> (robot.base_link) "
                            f"to <link name={flange!r}>: {flange!r} does not hang below {base!r}")
        chain.append(joint)
        link = joint.parent
    chain.reverse()
    on_chain = {j.name: j for j in chain}
    movable = [j for j in chain if j.type in MOVABLE]
    for j in chain:
        if j.type in ("floating", "planar"):
            raise UrdfError(f"robot.urdf: {path}: <joint name={j.name!r}> between base and flange is {j.type}; an arm's "
                            "joints are revolute, prismatic, continuous or fixed")
    if arm_joints is None:
        driven = movable
    else:
        driven = []
        for name in arm_joints:
            if name not in tree.joints:
                raise UrdfError(f"robot.arm_joints: {name!r} is not a <joint> of {path}" + did_you_mean(name, tree.joints)
                                + f"; joints from base to flange: {', '.join(on_chain) or 'none'}")
            if name not in on_chain:
                raise UrdfError(f"robot.arm_joints: {path}: <joint name={name!r}> is not between <link name={base!r}> and "
                                f"<link name={flange!r}>; joints from base to flange: {', '.join(on_chain)}")
            if tree.joints[name].type not in MOVABLE:
                raise UrdfError(f"robot.arm_joints: {path}: <joint name={name!r}> is {tree.joints[name].type}, not a movable joint")
            driven.append(tree.joints[name])
        order = [j.name for j in chain if j.name in arm_joints]
        if len(set(arm_joints)) != len(arm_joints) or order != list(arm_joints):
            raise UrdfError(f"robot.arm_joints: list each joint once, from base to flange: {', '.join(order)}")
    if not driven:
        raise UrdfError(f"robot.urdf: {path}: no movable joint between <link name={base!r}> and <link name={flange!r}>")
    for j in driven:
        where = f"{path}: <joint name={j.name!r}>"
        if j.mimic is not None:
            raise UrdfError(f"robot.arm_joints: {where} has <mimic joint={j.mimic!r}>, which PyBullet ignores; "
                            "an arm joint must be driven on its own (leave it out of robot.arm_joints to freeze it)")
        if j.type != "continuous" and (j.lower is None or j.upper is None):
            raise UrdfError(f"robot.arm_joints: {where} has no <limit lower=... upper=...>; a {j.type} joint needs its range")
        if j.type != "continuous" and j.lower > j.upper:
            raise UrdfError(f"robot.arm_joints: {where}: <limit lower={j.lower:g} upper={j.upper:g}> is empty")
        if not speed_given and not (j.velocity and j.velocity > 0):
            raise UrdfError(f"robot.arm_joints: {where} has no positive <limit velocity=...>; add one or set robot.max_joint_speed")
        if not effort_given and not (j.effort and j.effort > 0):
            raise UrdfError(f"robot.arm_joints: {where} has no positive <limit effort=...>; add one or set robot.max_joint_effort")
    # Everything the arm moves is simulated as a rigid body: each needs a real mass.
    first = next(j for j in chain if j.name == driven[0].name)
    for name in [first.child, *tree.descendants(first.child)]:
        link = tree.links[name]
        where = f"{path}: <link name={name!r}>"
        if link.mass is None:
            raise UrdfError(f"robot.urdf: {where} has no <inertial> with a <mass>; PyBullet would silently give it 1 kg "
                            "(a pure frame needs a tiny one, e.g. 0.001 kg)")
        if link.mass <= 0:
            raise UrdfError(f"robot.urdf: {where} has <mass value={link.mass:g}>; a link the arm moves needs a positive mass")
    for link in tree.links.values():
        for filename in link.meshes:
            mesh = mesh_path(filename, path)
            if not mesh.is_file():
                raise UrdfError(f"robot.urdf: {path}: <link name={link.name!r}>: <mesh filename={filename!r}> not found at {mesh}")
    frozen = tuple(j.name for j in tree.joints.values() if j.type in MOVABLE and j not in driven)
    return ArmChain(tree, base, flange, tuple(chain), tuple(driven), frozen)


def mesh_path(filename: str, urdf: Path) -> Path:
    """Where PyBullet looks for a mesh: `package://x` and relative names from the URDF's folder."""
    name = filename.removeprefix("package://").removeprefix("file://")
    return Path(name) if Path(name).is_absolute() else Path(urdf).parent / name
