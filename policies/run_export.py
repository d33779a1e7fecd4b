"""`genba export RUN`: a run directory's snapshot (best, final or latest) as a bundle, state or pixels.

Its own module because it picks between the two writers (policies.export for SB3 models on a feature
vector, policies.pixel_export for pixel students), and the pixel writer builds on the state one.
"""

from __future__ import annotations

from pathlib import Path

from policies.envs import feature_spec, make_env, scenario_info
from policies.export import export_bundle
from policies.pixel_export import export_pixel_snapshot
from policies.residual import Residual
from policies.rundir import RunDir
from policies.snapshot import run_snapshot


def export_run(run_path: str | Path, out_dir: str | Path, *, which: str = "best", name: str | None = None,
               overwrite: bool = False) -> Path:
    """Export a run directory's `which` snapshot (best | final | latest) as a bundle."""
    run = RunDir.open(run_path)
    cfg = run.config()
    snap = run_snapshot(run.path, which)
    obs_mode = "pixels" if snap.is_pixel else "state"
    env = make_env(cfg.scenario, cfg.robot, obs_mode=obs_mode, observe_command=cfg.observe_command)
    try:
        spec, scenario = feature_spec(env), scenario_info(cfg.scenario, env)
        meta = run.meta()
        training = {
            "algo": cfg.algo, "policy_algo": snap.algo, "her": cfg.her, "seed": cfg.seed, "robot": cfg.robot,
            "steps": snap.state.get("num_timesteps"), "snapshot": which, "eval": snap.state.get("eval"),
            "run": str(run.path), "git_revision": meta.get("git_revision"), "created": meta.get("created"),
            "summary": run.summary(), "obs_mode": cfg.obs_mode,  # what it was trained on (perceived runs as state)
            "observe_command": cfg.observe_command,  # an env builds the observation it ends with (sim.env)
        }
        if snap.is_pixel:
            return export_pixel_snapshot(snap, out_dir, env=env, scenario=scenario, training=training,
                                         name=name, overwrite=overwrite, run_path=run.path)
    finally:
        env.close()
    model = snap.load_model(device="cpu")
    chunk = cfg.bc.chunk if cfg.algo == "bc" else 1
    residual = Residual.of_snapshot(snap)
    base = None
    if residual is not None:  # one graph: the frozen base and the learnt correction, summed
        base_snap = residual.base_snapshot()
        base = (base_snap.load_model(device="cpu"), base_snap.load_vecnormalize(), residual.scale, residual.base_obs)
        training["residual"] = residual.to_state()
    return export_bundle(model, out_dir, feature_spec=spec, scenario=scenario, training=training,
                         vecnormalize=snap.load_vecnormalize(), name=name, overwrite=overwrite, chunk_length=chunk,
                         residual_of=base)
