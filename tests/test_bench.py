"""The benchmark in CI size: it runs end to end and what it measures is consistent. Never asserts speed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tmpretrain import bench


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "results.json"
    result = bench.main(["--quick", "--out", str(out), "--device", "cpu", "--workdir", str(tmp / "work")])
    return result, out


def test_json_has_every_section_and_matches_the_return_value(quick):
    result, out = quick
    written = json.loads(out.read_text())
    for key in ("machine", "sizes", "tree", "ingest", "throughput", "rss", "dvc", "device", "targets"):
        assert key in written, key
    assert written["targets"] == json.loads(json.dumps(result["targets"]))
    assert set(written["targets"]) >= {"cache_overhead", "loader_over_in_memory", "rss_n3_over_n1"}
    for check in written["targets"].values():
        assert set(check) == {"value", "target", "met"}


def test_ingest_figures_are_the_store_they_describe(quick):
    result, _ = quick
    ing, sizes = result["ingest"], result["sizes"]
    n = sizes["tracks"] * sizes["replays_per_track"] * sizes["frames_per_replay"]
    assert ing["n_frames"] == n == result["tree"]["frames"]
    assert ing["image_hw"] == [sizes["image_size"], sizes["image_size"]]
    h, w = ing["image_hw"]
    assert ing["pixel_bytes"] == n * h * w
    # frames.npy is the pixels plus a .npy header of at most a few hundred bytes.
    assert 0 <= ing["frames_npy_bytes"] - n * h * w <= 4096
    assert ing["cache_bytes"] >= ing["frames_npy_bytes"]
    assert ing["cache_bytes_per_frame"] == pytest.approx(ing["cache_bytes"] / n)
    assert ing["cache_overhead"] == pytest.approx(ing["cache_bytes"] / (n * h * w) - 1)
    assert ing["frames_per_s"] == pytest.approx(n / ing["seconds"])
    assert not Path(result["workdir"]).exists()  # the working directory is cleaned up


def test_throughput_ratio_is_computed_from_its_two_numbers(quick):
    result, _ = quick
    (thr,) = result["throughput"]
    sps = thr["samples_per_s"]
    assert set(sps) == {"loader_w0", "resident", "in_memory"}
    for name, value in sps.items():
        assert value > 0 and np.isfinite(value)
        assert value == pytest.approx(thr["steps"] * thr["batch_size"] / min(thr["round_seconds"][name]))
    assert thr["loader_over_in_memory"] == pytest.approx(sps["loader_w0"] / sps["in_memory"])
    assert result["targets"]["loader_over_in_memory"]["value"] == thr["loader_over_in_memory"]


def test_rss_runs_are_separate_and_positive(quick):
    result, _ = quick
    rss = result["rss"]
    one, three = rss["n_stack_1"], rss["n_stack_3"]
    for run in (one, three):
        assert run["peak_rss_bytes"] > 50 * 2**20  # a Python process with torch loaded
        # The child's own high-water mark is the figure; wait4's ru_maxrss of the same process is at least that
        # (it also counts the forking parent's pages carried across exec).
        assert run["peak_rss_bytes"] == run["vmhwm_bytes"]
        assert run["wait4_maxrss_bytes"] >= 0.95 * run["vmhwm_bytes"]
    assert three["window_index_bytes"] == 3 * one["window_index_bytes"]
    assert rss["rss_n3_over_n1"] == pytest.approx(three["peak_rss_bytes"] / one["peak_rss_bytes"])


def test_noop_repro_ran_no_stage(quick):
    result, _ = quick
    dvc = result["dvc"]
    if dvc["mode"] == "skipped":
        pytest.skip(dvc["reason"])
    assert dvc["stages_run"] == 0
    assert dvc["up_to_date_after"]
    assert len(dvc["repro_seconds"]) == 3 and dvc["dvc_noop_repro_s"] > 0
    assert dvc["replays_files"] > result["ingest"]["n_frames"]  # every frame file plus the manifests


def test_device_section_runs_on_cpu(quick):
    result, _ = quick
    dev = result["device"]
    assert set(dev["encoder_samples_per_s"]) == {"fp32", "bf16", "bf16_cl"}
    assert all(v > 0 for v in dev["encoder_samples_per_s"].values())
    assert dev["device_samples_per_s"] == max(dev["encoder_samples_per_s"].values())
    assert dev["store_on_device_bytes"] == result["ingest"]["pixel_bytes"]
    # The million-samples target is about a GPU; a CPU run does not claim it.
    assert "device_samples_per_s" not in result["targets"]


def test_table_names_every_target(quick):
    result, _ = quick
    table = bench.format_table(result)
    for label in ("ingest frames/s", "loader / in-memory", "peak RSS n_stack 3 / 1", "no-op dvc repro"):
        assert label in table
