"""The cache of generated assets (sim/asset_cache.py): a damaged file found there (emptied, cut short) is written
again rather than handed to PyBullet; the default folder, at a predictable name in the shared temp directory, is
private to its user or refused; a folder that cannot be written is named, with GENBA_CACHE_DIR. Real files and PyBullet."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mesh_support import conveyor_pick_with_mesh, l_bracket, write_obj
from test_user_robot import user_scenario

import sim.props.mesh as mesh_module
from sim import make_env
from sim.asset_cache import AssetCacheError, cache_dir, cached_text

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("GENBA_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def default_cache(tmp_path, monkeypatch):
    """The default cache folder, in a temp directory of the test's own."""
    monkeypatch.delenv("GENBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    return tmp_path / f"genba-assets-{os.getuid()}"


def _build_in_a_new_process(scenario: str) -> None:
    """A cell built as the next command would (one process builds a robot's model, and reads its URDF, once)."""
    build = subprocess.run([sys.executable, "-c", f"from sim import make_env; make_env({scenario!r}).reset(seed=0)"],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert build.returncode == 0, build.stderr[-2000:]


def test_a_damaged_robot_urdf_in_the_cache_is_written_again(tmp_path, cache):
    scenario = str(user_scenario(tmp_path, "reach", "xarm6"))
    _build_in_a_new_process(scenario)
    files = {p: p.read_bytes() for p in cache.glob("*.urdf")}
    assert files
    for i, p in enumerate(files):  # emptied, and cut short
        p.write_bytes(b"" if i % 2 == 0 else files[p][: len(files[p]) // 2])
    _build_in_a_new_process(scenario)  # before: pybullet.error: Cannot load URDF file.
    assert {p: p.read_bytes() for p in cache.glob("*.urdf")} == files


def test_a_damaged_mesh_in_the_cache_is_made_again(tmp_path, cache):
    write_obj(tmp_path / "bracket.obj", *l_bracket())
    scenario = str(conveyor_pick_with_mesh(tmp_path, {"file": "bracket.obj", "units": "mm"}))
    make_env(scenario).close()
    (decomposed,) = (cache / "meshes").glob("bracket-*-vhacd-*.obj")
    (normalised,) = set((cache / "meshes").glob("bracket-*.obj")) - {decomposed}
    whole = normalised.read_bytes()
    normalised.write_bytes(b"")
    decomposed.write_bytes(decomposed.read_bytes()[:200])
    runs = mesh_module.VHACD_RUNS
    make_env(scenario).close()
    assert normalised.read_bytes() == whole and mesh_module.sealed(decomposed)
    assert mesh_module.VHACD_RUNS == runs + 1
    make_env(scenario).close()  # whole again: read from the cache, not made a third time
    assert mesh_module.VHACD_RUNS == runs + 1


def test_the_default_cache_is_made_private(default_cache):
    assert cache_dir() == default_cache
    assert stat.S_IMODE(default_cache.stat().st_mode) == 0o700
    path = cached_text("<robot/>", "t")
    assert path.parent == default_cache and path.read_text() == "<robot/>"


@pytest.mark.parametrize("mode, problem", [(0o777, "writable by others (mode 777)"), (0o770, "writable by others (mode 770)")])
def test_a_default_cache_others_may_write_is_refused(default_cache, mode, problem):
    default_cache.mkdir()
    default_cache.chmod(mode)
    with pytest.raises(AssetCacheError, match=re.escape(f"{default_cache}: the default asset cache is {problem}") +
                       ".*set GENBA_CACHE_DIR to a folder of your own"):
        cached_text("<robot/>", "t")
    assert list(default_cache.iterdir()) == []


def test_a_default_cache_that_is_a_link_is_refused(default_cache, tmp_path):
    (tmp_path / "theirs").mkdir(mode=0o700)
    default_cache.symlink_to(tmp_path / "theirs")
    with pytest.raises(AssetCacheError, match=re.escape(f"{default_cache}: the default asset cache is not a folder")):
        cache_dir()


@pytest.mark.skipif(os.getuid() != 0, reason="only root can give a folder to another user (CI and this machine run as root)")
def test_a_default_cache_of_another_user_is_refused(default_cache):
    default_cache.mkdir(mode=0o755)
    os.chown(default_cache, 4321, 4321)
    with pytest.raises(AssetCacheError, match=re.escape(f"{default_cache}: the default asset cache is owned by another user "
                                                        "(uid 4321)") + ".*GENBA_CACHE_DIR"):
        cache_dir()


def test_a_cache_that_cannot_be_written_names_it_and_genba_cache_dir(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("GENBA_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    with pytest.raises(AssetCacheError, match=re.escape(f"{tmp_path / 'a-file' / 'cache'}: cannot write generated assets "
                                                        "there (Not a directory); GENBA_CACHE_DIR names it")):
        cached_text("<robot/>", "t")
    if os.getuid() != 0:  # root writes into a read-only folder anyway
        (tmp_path / "ro").mkdir(mode=0o500)
        monkeypatch.setenv("GENBA_CACHE_DIR", str(tmp_path / "ro"))
        with pytest.raises(AssetCacheError, match=re.escape(f"{tmp_path / 'ro'}: cannot write generated assets there "
                                                            "(Permission denied)")):
            cached_text("<robot/>", "t")
