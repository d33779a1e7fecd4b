"""The bundle loader: stands alone (no SB3), and refuses tampered, truncated or incompatible bundles."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from stable_baselines3 import TD3

from bridge.spec import spec_hash
from policies.bundle import BundleError, load_bundle
from policies.bundle_format import FORMAT_VERSION
from policies.errors import PolicyError
from policies.export import export_bundle
from policies.toy_envs import PointReachEnv

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def point_bundle_dir(tmp_path_factory) -> Path:
    env = PointReachEnv()
    model = TD3("MultiInputPolicy", env, policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    return export_bundle(model, tmp_path_factory.mktemp("b") / "point", feature_spec=env.feature_spec(),
                         scenario={"name": "toy-reach", "sha256": None}, training={"algo": "td3", "steps": 0})


@pytest.fixture
def copy(point_bundle_dir, tmp_path) -> Path:
    return Path(shutil.copytree(point_bundle_dir, tmp_path / "copy"))


def _edit_manifest(path: Path, change) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_bundle_contract_fields(point_bundle_dir):
    b = load_bundle(point_bundle_dir)
    m = b.manifest
    assert (b.name, b.obs_dim, b.act_dim, b.control_hz) == ("point", 6, 2, 10.0)
    assert m["format_version"] == 2
    assert b.spec_hash == m["spec_hash"] == spec_hash(m["observation"], m["action"], m["control_hz"])
    assert m["observation"]["layout"]["order"] == ["observation", "achieved_goal", "desired_goal"]
    assert [f["name"] for f in m["observation"]["features"][:3]] == ["observation.x", "observation.y", "achieved_goal.x"]
    assert m["action"]["kind"] == "ee_delta" and m["action"]["low"] == [-1.0, -1.0]
    assert set(m["files"]) == {"policy.onnx", "policy.pt"}
    assert m["robot"]["model"] == "point" and m["robot"]["joint_names"] is None
    assert issubclass(BundleError, PolicyError)


def test_loader_runs_without_sb3_or_torch(point_bundle_dir):
    """A controller host needs only numpy + onnxruntime: importing and running a bundle loads neither SB3 nor torch."""
    code = textwrap.dedent(f"""
        import sys, numpy as np
        from policies.bundle import load_bundle
        b = load_bundle({str(point_bundle_dir)!r}, backend="onnx")
        a = b.act(np.zeros(6, np.float32))
        assert a.shape == (2,) and np.all(np.abs(a) <= 1), a
        leaked = [m for m in ("stable_baselines3", "torch", "gymnasium") if m in sys.modules]
        assert not leaked, leaked
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_backends_agree(point_bundle_dir):
    obs = np.random.default_rng(0).uniform(-1, 1, (256, 6)).astype(np.float32)
    np.testing.assert_allclose(load_bundle(point_bundle_dir, backend="onnx").act(obs),
                               load_bundle(point_bundle_dir, backend="torchscript").act(obs), atol=1e-6, rtol=0)


@pytest.mark.parametrize("victim", ["policy.onnx", "policy.pt"])
def test_refuses_modified_weights(copy, victim):
    data = bytearray((copy / victim).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / victim).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=rf"{victim} is corrupt or was modified"):
        load_bundle(copy, backend="onnx")  # every listed file is verified, whichever backend is used


def test_refuses_truncated_file(copy):
    data = (copy / "policy.onnx").read_bytes()
    (copy / "policy.onnx").write_bytes(data[: len(data) // 3])
    with pytest.raises(BundleError, match="policy.onnx is corrupt or was modified"):
        load_bundle(copy)


def test_refuses_truncated_manifest(copy):
    text = (copy / "manifest.json").read_text()
    (copy / "manifest.json").write_text(text[: len(text) // 2])
    with pytest.raises(BundleError, match="not valid JSON, the file may be truncated"):
        load_bundle(copy)


def test_refuses_missing_file(copy):
    (copy / "policy.pt").unlink()
    with pytest.raises(BundleError, match="policy.pt is listed in the manifest but missing"):
        load_bundle(copy)


def test_refuses_edited_spec(copy):
    _edit_manifest(copy, lambda m: m["action"].update(kind="joint_delta"))
    with pytest.raises(BundleError, match="does not match its spec_hash"):
        load_bundle(copy)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["observation"].update(dim=m["observation"]["dim"] + 1), r"observation features add up to (\d+) but "
                                                                           r"observation.dim is (?!\1)\d+$"),
    (lambda m: m["action"].update(dim=m["action"]["dim"] + 1), r"action.low and action.high have 2 and 2 entries; action.dim is 3$"),
])
def test_refuses_sizes_that_do_not_add_up_saying_which(copy, edit, message):
    """Each says what is off (one message used to cover both: 'add up to 6 but dim is 6, or action low/high ...')."""
    _edit_manifest(copy, edit)
    with pytest.raises(BundleError, match=message):
        load_bundle(copy)


def test_refuses_newer_format(copy):
    _edit_manifest(copy, lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(BundleError, match=f"format_version {FORMAT_VERSION + 1} is newer than this loader supports"):
        load_bundle(copy)


def test_refuses_edited_control_rate(copy):
    """Format 2 hashes the control rate too: a policy run at another rate is another spec."""
    _edit_manifest(copy, lambda m: m.update(control_hz=20.0))
    with pytest.raises(BundleError, match="does not match its spec_hash"):
        load_bundle(copy)


def _format1_hash(m) -> str:
    """Format 1's formula, written out here: sha256 of canonical JSON of both sections."""
    text = json.dumps({"observation": m["observation"], "action": m["action"]}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _as_format1(m) -> None:
    m["format_version"] = 1
    m["spec_hash"] = _format1_hash(m)


def test_reads_a_format_1_bundle_and_reports_the_format_2_hash(copy, point_bundle_dir):
    _edit_manifest(copy, _as_format1)
    on_disk = json.loads((copy / "manifest.json").read_text())
    b = load_bundle(copy)
    current = load_bundle(point_bundle_dir)
    assert b.manifest["format_version"] == 1 and on_disk["spec_hash"] == _format1_hash(on_disk)
    assert b.spec_hash == b.manifest["spec_hash"] == current.spec_hash  # what the bridge and controllers compare
    assert b.spec_hash == spec_hash(on_disk["observation"], on_disk["action"], on_disk["control_hz"])


def test_refuses_an_edited_format_1_bundle(copy):
    def edit(m):
        _as_format1(m)
        m["action"]["kind"] = "joint_delta"  # after the hash was written

    _edit_manifest(copy, edit)
    with pytest.raises(BundleError, match="does not match its spec_hash"):
        load_bundle(copy)
    # A format-1 manifest carrying a format-2 hash is no more valid than the reverse.
    _edit_manifest(copy, lambda m: m.update(spec_hash=spec_hash(m["observation"], m["action"], m["control_hz"])))
    with pytest.raises(BundleError, match="does not match its spec_hash"):
        load_bundle(copy)


def test_refuses_a_feature_name_the_spec_text_cannot_hold(copy):
    _edit_manifest(copy, lambda m: m["observation"]["features"][0].update(name="observation x"))
    with pytest.raises(BundleError, match=r"cannot be hashed: observation feature 0 name 'observation x' contains whitespace"):
        load_bundle(copy)


def test_refuses_foreign_directory(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(BundleError, match="expected 'genba-bundle'"):
        load_bundle(tmp_path)
    with pytest.raises(BundleError, match="no such bundle directory"):
        load_bundle(tmp_path / "nope")


def test_refuses_graph_that_does_not_fit_the_manifest(copy):
    """A manifest that claims 7 observation values (hash recomputed, so self-consistent) but a graph taking 6."""

    def grow(m):
        m["observation"]["dim"] = 7
        m["observation"]["features"].append({"name": "extra", "size": 1, "unit": "", "low": [None], "high": [None]})
        m["spec_hash"] = spec_hash(m["observation"], m["action"], m["control_hz"])

    _edit_manifest(copy, grow)
    for backend in ("onnx", "torchscript"):
        with pytest.raises(BundleError, match="does not accept observations of size 7"):
            load_bundle(copy, backend=backend)


def test_refuses_path_escape(copy):
    _edit_manifest(copy, lambda m: m["files"].update({"../secret": "0" * 64}))
    with pytest.raises(BundleError, match="invalid file name"):
        load_bundle(copy)


def test_infer_refuses_bad_observations(point_bundle_dir):
    b = load_bundle(point_bundle_dir)
    with pytest.raises(BundleError, match=r"expects observations of shape \(6,\) or \(B, 6\), got \(5,\)"):
        b.act(np.zeros(5, np.float32))
    with pytest.raises(BundleError, match="non-finite observation"):
        b.act(np.array([0, 0, 0, np.nan, 0, 0], np.float32))


def test_infer_accepts_dict_observation(point_bundle_dir):
    b = load_bundle(point_bundle_dir)
    obs = {"observation": np.array([0.1, 0.2]), "achieved_goal": np.array([0.1, 0.2]), "desired_goal": np.array([-0.5, 0.9])}
    flat = np.array([0.1, 0.2, 0.1, 0.2, -0.5, 0.9], np.float32)
    assert np.array_equal(b.act(obs), b.act(flat))


def test_unknown_backend_and_unavailable_cuda(point_bundle_dir):
    with pytest.raises(BundleError, match="unknown backend 'tflite'"):
        load_bundle(point_bundle_dir, backend="tflite")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(BundleError, match="no CUDA provider"):
            load_bundle(point_bundle_dir, backend="onnx", device="cuda")


def test_export_refuses_to_overwrite_and_force_replaces_only_a_bundle(point_bundle_dir, tmp_path):
    model = TD3("MultiInputPolicy", PointReachEnv(), policy_kwargs={"net_arch": [8]}, device="cpu")
    with pytest.raises(PolicyError, match="already exists and is not empty"):
        export_bundle(model, point_bundle_dir, feature_spec=None)
    bundle = shutil.copytree(point_bundle_dir, tmp_path / "bundle")
    export_bundle(model, bundle, feature_spec=None, overwrite=True)  # a bundle is replaced
    assert load_bundle(bundle).manifest["files"] != load_bundle(point_bundle_dir).manifest["files"]
    # --out naming a run or a folder of runs by mistake: --force must not delete it.
    (tmp_path / "run.log").write_text("keep me")
    with pytest.raises(PolicyError, match=r"is not a bundle directory \(it holds bundle, run.log\); --force replaces only a bundle"):
        export_bundle(model, tmp_path, feature_spec=None, overwrite=True)
    assert (tmp_path / "run.log").read_text() == "keep me" and load_bundle(bundle)
    with pytest.raises(PolicyError, match="run.log is a file, not a bundle directory"):
        export_bundle(model, tmp_path / "run.log", feature_spec=None, overwrite=True)


def test_export_force_through_a_symlink_replaces_its_bundle_and_keeps_the_link(point_bundle_dir, tmp_path):
    """A bundles/current link given to --force became a real directory; its bundle stayed as it was, and a dangling
    hidden .old- link was left beside it."""
    model = TD3("MultiInputPolicy", PointReachEnv(), policy_kwargs={"net_arch": [8]}, device="cpu")
    target = shutil.copytree(point_bundle_dir, tmp_path / "bundle-v1")
    link = tmp_path / "current"
    link.symlink_to(target.name)
    export_bundle(model, link, feature_spec=None, overwrite=True)
    assert link.is_symlink() and load_bundle(target).manifest["files"] != load_bundle(point_bundle_dir).manifest["files"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle-v1", "current"]


def test_export_refuses_mismatched_feature_spec(tmp_path):
    env = PointReachEnv()
    model = TD3("MultiInputPolicy", env, policy_kwargs={"net_arch": [8]}, device="cpu")
    spec = env.feature_spec()
    spec["action"]["features"] = spec["action"]["features"][:1]
    with pytest.raises(PolicyError, match="action features add up to 1 values but the model acts with 2"):
        export_bundle(model, tmp_path / "b", feature_spec=spec)
    assert not (tmp_path / "b").exists()
