"""Parts from the user's own mesh files (issue 15): OBJ/STL, declared units, a cached V-HACD decomposition.

Every mesh here is written by the test (tests/mesh_support.py): a hexagonal prism in mm (40 mm across
its corners, 34.6 across its flats, 40 mm tall, drawn off the file's origin) and an L-shaped bracket.
"""

from __future__ import annotations

import warnings

import numpy as np
import pybullet as pb
import pytest
import yaml
from gymnasium.utils.env_checker import check_env
from mesh_support import conveyor_pick_with_mesh, hex_prism, l_bracket, write_ascii_stl, write_binary_stl, write_obj

import sim
import sim.props.mesh as mesh_module
from scenarios.loader import BUILTIN_DIR, ScenarioError, load_scenario
from sim.errors import SimError
from sim.experts import make_expert

HEX_SIZE = (0.040, 0.040 * np.sqrt(3) / 2, 0.040)  # m: corners on x, flats on y, height


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A cache directory of the test's own, so a decomposition is made (once) here."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("GENBA_CACHE_DIR", str(folder))
    return folder


def hull_extent(body: int, cid: int) -> np.ndarray:
    """x, y, z extent of the vertices of a body's (first) convex hull, as Bullet holds them (no collision margin)."""
    count, vertices = pb.getMeshData(body, physicsClientId=cid)
    assert count > 0
    return np.ptp(np.array(vertices), axis=0)


def test_obj_and_stl_give_one_bounding_box_in_metres(tmp_path):
    vertices, faces = hex_prism()
    files = [write_obj(tmp_path / "hex.obj", vertices, faces), write_binary_stl(tmp_path / "hex.stl", vertices, faces),
             write_ascii_stl(tmp_path / "hex_ascii.stl", vertices, faces)]
    for f in files:
        parts = load_scenario(conveyor_pick_with_mesh(tmp_path, {"file": f.name, "units": "mm"})).parts
        assert parts.size == pytest.approx(HEX_SIZE, abs=1e-6), f.name
    # The same drawing declared in cm is ten times bigger; scale multiplies on top of the units.
    cm = load_scenario(conveyor_pick_with_mesh(tmp_path, {"file": "hex.obj", "units": "cm", "scale": 0.15})).parts
    assert cm.size == pytest.approx([s * 1.5 for s in HEX_SIZE], abs=1e-6)
    # A size given beside the mesh must be its bounding box (a dumped scenario loads again).
    again = conveyor_pick_with_mesh(tmp_path, {"file": "hex.obj", "units": "mm"}, size=[round(float(s), 6) for s in HEX_SIZE])
    assert load_scenario(again).parts.size == pytest.approx(HEX_SIZE, abs=1e-6)


def test_mesh_part_cell_builds_with_the_scenarios_mass_and_friction(tmp_path):
    write_obj(tmp_path / "hex.obj", *hex_prism())
    env = sim.make_env(str(conveyor_pick_with_mesh(tmp_path, {"file": "hex.obj", "units": "mm"}, mass=0.23, friction=0.8)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)
    assert [str(w.message) for w in caught] == []
    base = env.unwrapped
    body, cid = base.cell.parts.parts[0].body, base.sim.cid
    mass, friction = pb.getDynamicsInfo(body, -1, physicsClientId=cid)[:2]
    assert (mass, friction) == pytest.approx((0.23, 0.8))
    # Bullet's shape is the decomposition (one hull for this convex part): within V-HACD's voxel of the
    # mesh's bounding box, centred on the part's origin.
    assert hull_extent(body, cid) == pytest.approx(np.array(HEX_SIZE), abs=0.0015)
    low, high = (np.array(c) for c in pb.getAABB(body, -1, physicsClientId=cid))
    position = np.array(pb.getBasePositionAndOrientation(body, physicsClientId=cid)[0])
    assert (low + high) / 2 == pytest.approx(position, abs=0.001)
    env.close()


def test_decomposition_is_made_once_and_cached(tmp_path, cache):
    write_obj(tmp_path / "bracket.obj", *l_bracket())
    path = conveyor_pick_with_mesh(tmp_path, {"file": "bracket.obj", "units": "mm"})
    runs = mesh_module.VHACD_RUNS
    env = sim.make_env(str(path))
    assert mesh_module.VHACD_RUNS == runs + 1
    made = sorted((cache / "meshes").glob("bracket-*-vhacd-*.obj"))
    assert len(made) == 1
    stamp = made[0].stat().st_mtime_ns
    # The L is not convex: V-HACD splits it into pieces, which Bullet loads as a compound of hulls.
    base = env.unwrapped
    shapes = pb.getCollisionShapeData(base.cell.parts.parts[0].body, -1, physicsClientId=base.sim.cid)
    assert len(shapes) >= 2
    env.close()
    sim.make_env(str(path)).close()  # a second build (and a reload of the scenario) reads the cached file
    assert mesh_module.VHACD_RUNS == runs + 1
    assert sorted((cache / "meshes").glob("bracket-*-vhacd-*.obj")) == made and made[0].stat().st_mtime_ns == stamp
    # convex_hull needs no decomposition: the STL's normalised OBJ is the collision shape, exact.
    write_binary_stl(tmp_path / "hex.stl", *hex_prism())
    env = sim.make_env(str(conveyor_pick_with_mesh(tmp_path, {"file": "hex.stl", "units": "mm", "collision": "convex_hull"})))
    assert mesh_module.VHACD_RUNS == runs + 1
    base = env.unwrapped
    assert hull_extent(base.cell.parts.parts[0].body, base.sim.cid) == pytest.approx(np.array(HEX_SIZE), abs=1e-6)
    env.close()


def test_expert_picks_the_mesh_part(tmp_path):
    write_obj(tmp_path / "hex.obj", *hex_prism())
    env = sim.make_env(str(conveyor_pick_with_mesh(tmp_path, {"file": "hex.obj", "units": "mm"})))
    successes = 0
    for seed in range(10):
        obs, _ = env.reset(seed=seed)
        expert = make_expert(env)
        for _ in range(env.unwrapped.scenario.max_episode_steps):
            obs, _, terminated, truncated, info = env.step(expert.act(obs))
            if terminated or truncated:
                break
        successes += info["is_success"]
    env.close()
    assert successes >= 9


def test_bin_sort_accepts_a_mesh_part_type(tmp_path):
    write_obj(tmp_path / "hex.obj", *hex_prism())
    data = yaml.safe_load((BUILTIN_DIR / "bin-sort.yaml").read_text())
    data["task"]["part_types"][0] = {"name": "red_hex", "shape": "mesh", "mesh": {"file": "hex.obj", "units": "mm"},
                                     "color": [0.85, 0.15, 0.1, 1.0], "mass": 0.1, "bin": "red_bin"}
    (tmp_path / "sort.yaml").write_text(yaml.safe_dump(data))
    env = sim.make_env(str(tmp_path / "sort.yaml"))
    base = env.unwrapped
    assert base.scenario.task.part_types[0].size == pytest.approx(HEX_SIZE, abs=1e-6)
    hexes = base.cell.typed_parts.by_type[0]
    assert len(pb.getCollisionShapeData(hexes[0].body, -1, physicsClientId=base.sim.cid)) >= 1
    env.reset(seed=0)
    env.close()


def test_perceived_mode_refuses_mesh_parts(tmp_path):
    write_obj(tmp_path / "hex.obj", *hex_prism())
    with pytest.raises(SimError, match=r"obs_mode 'perceived' is not supported with mesh parts \(parts.mesh"):
        sim.make_env(str(conveyor_pick_with_mesh(tmp_path, {"file": "hex.obj", "units": "mm"})), obs_mode="perceived")


def _error(tmp_path, mesh, **parts) -> str:
    path = conveyor_pick_with_mesh(tmp_path, mesh, **parts)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    text = str(caught.value)
    assert str(path) in text  # every error names the scenario file ...
    return text


def test_bad_mesh_inputs_are_clear_errors(tmp_path):
    vertices, faces = hex_prism()
    write_obj(tmp_path / "hex.obj", vertices, faces)
    text = _error(tmp_path, {"file": "nowhere.obj", "units": "mm"})
    assert "parts.mesh" in text and "no such mesh file" in text and str(tmp_path / "nowhere.obj") in text
    (tmp_path / "meshes").mkdir()  # was "unknown mesh file type '(none)'"
    assert "meshes: a directory, not a mesh file" in _error(tmp_path, {"file": "meshes", "units": "mm"})
    (tmp_path / "hex.ply").write_text("ply\n")
    assert "unknown mesh file type '.ply'" in _error(tmp_path, {"file": "hex.ply", "units": "mm"})
    (tmp_path / "empty.obj").write_text("# nothing\nv 0 0 0\n")
    assert "the mesh has no triangles" in _error(tmp_path, {"file": "empty.obj", "units": "mm"})
    (tmp_path / "junk.stl").write_bytes(b"\x00\xff" * 100)
    assert "not a readable STL mesh" in _error(tmp_path, {"file": "junk.stl", "units": "mm"})
    (tmp_path / "bad.obj").write_text("v 0 0 0\nv 1 0 0\nf 1 2 9\n")
    assert "refers to a vertex the file does not have" in _error(tmp_path, {"file": "bad.obj", "units": "mm"})
    text = _error(tmp_path, {"file": "hex.obj"})
    assert "parts.mesh: declare the mesh's units: one of m, mm, cm, in" in text
    assert "parts.mesh.units" in _error(tmp_path, {"file": "hex.obj", "units": "ft"})
    # Drawn in mm but declared in m: 40 m wide.
    assert "are the units right?" in _error(tmp_path, {"file": "hex.obj", "units": "m"})
    # 100 mm across: more than the Panda's jaws open (80 mm).
    text = _error(tmp_path, {"file": "hex.obj", "units": "mm", "scale": 2.5})
    assert "the gripper opens 0.080 m" in text and "parts.mesh" in text
    text = _error(tmp_path, {"file": "hex.obj", "units": "mm"}, size=[0.04, 0.04, 0.04])
    assert "differs from the mesh's bounding box" in text
    # palletize stacks boxes only.
    data = yaml.safe_load((BUILTIN_DIR / "palletize.yaml").read_text())
    data["parts"].pop("size")
    data["parts"]["mesh"] = {"file": "hex.obj", "units": "mm"}
    (tmp_path / "pal.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError, match="parts.mesh: palletize stacks boxes"):
        load_scenario(tmp_path / "pal.yaml")
