"""`genba export RUN`: a run directory's snapshot (best, final or latest) as a bundle, state or pixels.

Its own module because it picks between the two writers (policies.export for SB3 models on a feature
vector, policies.pixel_export for pixel students), and the pixel writer builds on the state one.
"""

from __future__ import annotations

from pathlib import Path

from gymnasium import spaces

from policies.envs import feature_spec, make_env, scenario_info
from policies.export import export_bundle
from policies.pixel_export import export_pixel_snapshot
from policies.policy import recorded_scenario
from policies.residual import Residual
from policies.rundir import RunDir, RunError
from policies.snapshot import run_snapshot


def export_run(run_path: str | Path, out_dir: str | Path, *, which: str = "best", name: str | None = None,
               overwrite: bool = False, scenario: str | None = None) -> Path:
    """Export a run directory's `which` snapshot (best | final | latest) as a bundle; `scenario`: the run's cell file
    where it is now (a run moved from another machine), else the one it recorded."""
    run = RunDir.open(run_path)
    cfg = run.config()
    snap = run_snapshot(run.path, which)
    obs_mode = "pixels" if snap.is_pixel else "state"
    scenario = scenario or recorded_scenario(run.path, cfg.scenario)
    env = make_env(scenario, cfg.robot, obs_mode=obs_mode, observe_command=cfg.observe_command)
    try:
        spec, scenario_section = feature_spec(env), scenario_info(scenario, env)
        meta = run.meta()
        training = {
            "algo": cfg.algo, "policy_algo": snap.algo, "her": cfg.her, "seed": cfg.seed, "robot": cfg.robot,
            "steps": snap.state.get("num_timesteps"), "snapshot": which, "eval": snap.state.get("eval"),
            "run": str(run.path), "git_revision": meta.get("git_revision"), "created": meta.get("created"),
            "summary": run.summary(), "obs_mode": cfg.obs_mode,  # what it was trained on (perceived runs as state)
            "observe_command": cfg.observe_command,  # an env builds the observation it ends with (sim.env)
        }
        if snap.is_pixel:
            return export_pixel_snapshot(snap, out_dir, env=env, scenario=scenario_section, training=training,
                                         name=name, overwrite=overwrite, run_path=run.path)
    finally:
        env.close()
    model = snap.load_model(device="cpu")
    chunk = cfg.bc.chunk if cfg.algo == "bc" else 1
    _check_spaces(model, env, chunk, run.path, scenario)
    residual = Residual.of_snapshot(snap)
    base = None
    if residual is not None:  # one graph: the frozen base and the learnt correction, summed
        base_snap = residual.base_snapshot()
        base = (base_snap.load_model(device="cpu"), base_snap.load_vecnormalize(), residual.scale, residual.base_obs)
        training["residual"] = residual.to_state()
    return export_bundle(model, out_dir, feature_spec=spec, scenario=scenario_section, training=training,
                         vecnormalize=snap.load_vecnormalize(), name=name, overwrite=overwrite, chunk_length=chunk,
                         residual_of=base)


def _check_spaces(model, env, chunk: int, run: Path, scenario: str) -> None:
    """A cell whose observation or action differs from the one the model learnt on (a wrong --scenario): named here, not
    as a shape error inside the graph export. A chunked model outputs `chunk` actions at once."""
    act = env.action_space.shape
    checks = (("observation", _shapes(env.observation_space), _shapes(model.observation_space)),
              ("action", (act[0] * chunk,), model.action_space.shape))
    for what, ours, learnt in checks:
        if ours != learnt:
            raise RunError(f"{run} learnt on an {what} of shape {learnt}; {scenario} gives {ours}, so it is not the cell "
                           "this run was trained on")


def _shapes(space) -> tuple | dict:
    """A Box's shape; a Dict's (goal-conditioned cells) by key."""
    return {key: sub.shape for key, sub in space.spaces.items()} if isinstance(space, spaces.Dict) else space.shape
