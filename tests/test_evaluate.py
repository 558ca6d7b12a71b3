"""Closed-loop evaluation: the policy rebuilt from an export, batched rollouts of the five groups, metrics with
intervals that repeat byte for byte, the pictures, and the stage."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import yaml

from support.models import bc_model
from tmpretrain.eval_media import HEADER_PX, MAX_VIDEO_FRAMES, report_section
from tmpretrain.evaluate import (
    ACTION_MIX_FILE,
    GROUPS,
    METRICS_FILE,
    TRACKS_FILE,
    EvalSetup,
    ExportedPolicy,
    bench,
    evaluate,
    write_outputs,
)
from tmpretrain.export import (
    ACTIONS_HEAD_FILE,
    ENCODER_FILE,
    LINEAR_HEAD_FILE,
    STACK_FUSION_FILE,
    export_actions_head,
    export_encoder,
    export_linear_head,
    export_stack_fusion,
    load_export,
    write_meta,
)
from tmpretrain.models import BCModel, normalize

TRACKS = [0, 1, 2]


def tiny_export(out: Path, use_actions_head: bool = True, seed: int = 0) -> BCModel:
    """An untrained BC model exported with the project's own functions (what pretrain_bc writes, minus training)."""
    torch.manual_seed(seed)
    model = bc_model(use_actions_head=use_actions_head).eval()
    out.mkdir(parents=True)
    export_encoder(model.encoder, out / ENCODER_FILE)
    if use_actions_head:
        export_actions_head(model.heads[0], out / ACTIONS_HEAD_FILE, model.head_input_dim)
    meta = {
        "level": 1,
        "image_size": [64, 64],
        "image_normalization": "iqn",
        "n_stack": 1,
        "use_floats": False,
        "head_layout": "A_head" if use_actions_head else "linear",
        "head_input_dim": model.head_input_dim if use_actions_head else None,
        "params": {"dense_hidden_dimension": 1024},
    }
    write_meta(out, meta)
    return model


def setup(**overrides) -> EvalSetup:
    values = dict(
        env_id="tmpretrain/SynthTrack-v0",
        tracks=TRACKS,
        seed=0,
        decision_interval_ms=100.0,
        frame_interval_ms=100.0,
        time_limit_s=60.0,
        offroad_limit_s=5.0,
        stuck_limit_s=5.0,
        video_tracks=2,
        rollouts_per_track=2,
    )
    values.update(overrides)
    return EvalSetup(**values)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    model = tiny_export(root / "bc")
    result = evaluate(setup(), root / "bc")
    write_outputs(result, setup(), root / "out")
    return root, model, result


def test_exported_policy_is_the_trained_model(tmp_path):
    """From encoder.pt + actions_head.pt alone, the policy computes the model's exported head's logits."""
    model = tiny_export(tmp_path / "bc", seed=3)
    policy = ExportedPolicy(tmp_path / "bc")
    frames = np.random.default_rng(0).integers(0, 256, size=(5, 1, 64, 64), dtype=np.uint8)
    with torch.no_grad():
        expected = model(normalize(torch.from_numpy(frames), "iqn"))[:, 0]
    torch.testing.assert_close(policy.logits(list(frames)), expected)


def test_five_groups_on_every_track_each_figure_with_its_interval(run):
    root, _, result = run
    metrics = json.loads((root / "out" / METRICS_FILE).read_text())
    assert list(metrics) == list(GROUPS)
    for group in GROUPS:
        m = metrics[group]
        for name in ("completion_rate", "clean_completion_rate", "progress", "offroad_fraction", "mean_speed"):
            assert m[f"{name}_low"] <= m[name] <= m[f"{name}_high"], (group, name)
        assert m["tracks"] == len(TRACKS) and m["episodes"] == len(TRACKS) * (2 if group == "policy" else 1)
    # A rate's interval is never empty, even at 0 or 1 (Wilson): 3 tracks cannot show a rate is exactly 1.
    assert metrics["expert"]["completion_rate_low"] < 1.0 and metrics["random"]["completion_rate_high"] > 0.0
    assert metrics["expert"]["completion_rate"] == 1.0 and metrics["expert"]["lap_time_ratio"] == 1.0
    assert metrics["expert"]["clean_completion_rate"] == 1.0
    assert metrics["expert"]["offroad_fraction"] < 0.02
    assert metrics["random"]["completion_rate"] == 0.0 and metrics["random"]["progress"] < 0.1
    assert 0.0 < metrics["always_accel"]["progress"] < 1.0 and metrics["always_accel"]["mean_speed"] > 10.0
    rows = json.loads((root / "out" / TRACKS_FILE).read_text())["rows"]
    want = [(g, t, i) for g in GROUPS for t in TRACKS for i in range(2 if g == "policy" else 1)]
    assert sorted((r["group"], r["track"], r["rollout"]) for r in rows) == sorted(want)
    mix = json.loads((root / "out" / ACTION_MIX_FILE).read_text())
    assert set(mix) == {"policy", "expert", "total_variation"}
    assert sum(mix["expert"].values()) == pytest.approx(1.0, abs=1e-3)
    assert metrics["policy"]["action_mix_distance"] == mix["total_variation"]
    # The policy saw rendered frames; the baselines drove blind.
    assert all(len(ep.frames) == len(ep.actions) for ep in result["episodes"]["policy"][:2])
    assert not result["episodes"]["random"][0].frames


def test_rerun_writes_identical_bytes(run, tmp_path):
    root, _, _ = run
    again = evaluate(setup(), root / "bc")
    write_outputs(again, setup(), tmp_path)
    for name in (METRICS_FILE, TRACKS_FILE, ACTION_MIX_FILE, "media/paths.json", "media/rollout.gif"):
        assert (tmp_path / name).read_bytes() == (root / "out" / name).read_bytes(), name


def test_video_shows_the_observed_frames_and_the_report_section_embeds_it(run):
    root, _, result = run
    video = iio.imread(root / "out" / "media" / "rollout.gif", index=None)
    episodes = result["episodes"]["policy"][:2]
    longest = max(len(ep.frames) for ep in episodes)
    assert len(video) == -(-longest // -(-longest // MAX_VIDEO_FRAMES))  # every decision, or every 2nd, ...
    first = video[0][..., 0] if video.ndim == 4 else video[0]
    np.testing.assert_array_equal(first[HEADER_PX : HEADER_PX + 64, :64], episodes[0].frames[0])
    html = report_section(root / "out")
    assert html.count("data:image/gif;base64,") == 1
    assert "closed-loop-map" in html and "Plotly.newPlot" in html
    assert len(html) < 3_000_000  # the map is a div: plotly.js (about 3.5 MB) is the page's to load
    paths = json.loads((root / "out" / "media" / "paths.json").read_text())
    assert [t["track"] for t in paths["tracks"]] == TRACKS
    assert set(paths["tracks"][0]["paths"]) == {"expert", "policy", "policy_greedy"}


def test_sampling_differs_from_greedy_and_between_rollouts_and_repeats(run):
    root, _, result = run
    again = evaluate(setup(tracks=[0], video_tracks=0), root / "bc")
    sampled = [ep.actions for ep in result["episodes"]["policy"] if ep.track == 0]
    greedy = result["episodes"]["policy_greedy"][0].actions
    assert sampled == [ep.actions for ep in again["episodes"]["policy"]]
    assert greedy == again["episodes"]["policy_greedy"][0].actions
    assert sampled[0] != sampled[1][: len(sampled[0])] and sampled[0] != greedy[: len(sampled[0])]


def test_export_without_a_head_skips_the_policy_and_keeps_the_baselines(tmp_path):
    tiny_export(tmp_path / "bc", use_actions_head=False)
    result = evaluate(setup(tracks=[4], video_tracks=1), tmp_path / "bc")
    assert result["metrics"]["policy"] is None and "linear_head.pt" in result["policy_note"]
    assert result["metrics"]["expert"]["completion_rate"] == 1.0
    write_outputs(result, setup(tracks=[4]), tmp_path / "out")
    assert "Policy not evaluated" in report_section(tmp_path / "out")


def test_stage_reads_params_and_fails_in_one_line(tmp_path, capsys):
    """The stage in a project directory (the working directory here): params.yaml's eval group, the cache's
    capture interval, models/bc; a missing export is one error line, no traceback."""
    from tmpretrain.stages.evaluate import main

    (tmp_path / "data" / "cache").mkdir(parents=True)
    meta = {"replays": [{"fps": 20.0}, {"fps": 20.0}, {"fps": 10.0}]}
    (tmp_path / "data" / "cache" / "cache_meta.json").write_text(json.dumps(meta))
    params = {"eval": {"n_tracks": 1, "video_tracks": 1, "time_limit_s": 40.0}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.startswith("error: ") and "models/bc" in err and len(err.splitlines()) == 1
    tiny_export(tmp_path / "models" / "bc")
    main()
    assert "decisions every 50 ms" in capsys.readouterr().out  # the most common capture interval of the data
    metrics = json.loads((tmp_path / "reports" / "eval" / METRICS_FILE).read_text())
    assert metrics["expert"]["completion_rate"] == 1.0


def test_bench_reports_the_costs(tmp_path):
    tiny_export(tmp_path / "bc")
    figures = bench(tmp_path / "bc", decisions=10, batch=4)
    assert set(figures) == {
        "physics_steps_per_s",
        "observed_decisions_per_cpu_s_1_env",
        "observed_decisions_per_cpu_s_4_envs",
        "render_ms",
        "frame_shape",
        "policy_forward_ms_batch4",
    }
    assert figures.pop("frame_shape") == [128, 128]
    assert all(value > 0 for value in figures.values())


def test_any_gymnasium_id_with_the_same_spaces(tmp_path):
    """eval.env names another env (here the simulator under a foreign entry point, as a game wrapper would be):
    policy and baselines drive it through the Gymnasium API alone; the expert and the maps need the simulator."""
    import gymnasium as gym

    from tmpretrain.errors import ParamsError
    from tmpretrain.synthetic.env import SynthTrackEnv

    def game(**kwargs):
        return SynthTrackEnv(**kwargs)

    gym.register(id="tmpretrain-test/Game-v0", entry_point=game)
    tiny_export(tmp_path / "bc")
    result = evaluate(
        setup(env_id="tmpretrain-test/Game-v0", tracks=[5], video_tracks=1, time_limit_s=15.0), tmp_path / "bc"
    )
    assert result["metrics"]["expert"] is None and result["geometry"] == {}
    assert result["metrics"]["policy"]["lap_time_ratio"] is None
    assert result["metrics"]["always_accel"]["progress"] > 0.0
    assert result["episodes"]["random"][0].frames == [] and len(result["episodes"]["policy"][0].frames) > 0

    def small_game(**kwargs):
        return SynthTrackEnv(**{**kwargs, "image_height": 48, "image_width": 48})

    gym.register(id="tmpretrain-test/SmallGame-v0", entry_point=small_game)
    with pytest.raises(ParamsError, match=r"eval\.env: .*\(1, 48, 48\).*\(1, 64, 64\)"):
        evaluate(setup(env_id="tmpretrain-test/SmallGame-v0", tracks=[5]), tmp_path / "bc")
    with pytest.raises(ParamsError, match="not a registered Gymnasium id"):
        evaluate(setup(env_id="nobody/Nothing-v0", tracks=[5]), tmp_path / "bc")


def test_a_linear_head_and_stacked_export_is_rebuilt_and_drives(tmp_path):
    """bc.use_actions_head: false and bc.n_stack > 1 write linear_head.pt and stack_fusion.pt beside the encoder:
    the policy rebuilt from those files gives the trained model's logits and is evaluated like an A_head one."""
    torch.manual_seed(3)
    model = bc_model(n_stack=2, use_actions_head=False).eval()
    out = tmp_path / "bc"
    out.mkdir()
    export_encoder(model.encoder, out / ENCODER_FILE)
    export_linear_head(model.heads[0], out / LINEAR_HEAD_FILE, model.head_input_dim)
    export_stack_fusion(model.stack_fusion, out / STACK_FUSION_FILE, 2, model.img_feature_dim)
    meta = {"level": 1, "image_size": [64, 64], "image_normalization": "iqn", "n_stack": 2, "use_floats": False}
    write_meta(out, {**meta, "head_layout": "linear", "head_input_dim": None})
    assert set(load_export(out)[1]) == {ENCODER_FILE, LINEAR_HEAD_FILE, STACK_FUSION_FILE}

    policy = ExportedPolicy(out)
    x = torch.randint(0, 256, (3, 2, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        want = model(normalize(x, "iqn"))[:, 0]
    torch.testing.assert_close(policy.logits(list(x.numpy())), want)
    result = evaluate(setup(tracks=[4], video_tracks=0), out)
    assert result["metrics"]["policy"] is not None and 0.0 <= result["metrics"]["policy"]["progress"] <= 1.0
