"""What DVC does with the workspace's results, checked in a throwaway copy of this project (real `dvc` commands):
invalid params stop in the first stage (`validate`) before DVC removes anything; a valid run that fails or is
interrupted inside a stage has lost that stage's outputs (DVC deletes them before the command starts) and
`dvc checkout` / `dvc exp apply` bring them back; a finished pipeline is a no-op to `dvc repro`, a speed-only knob
reruns only `validate`; and results pushed to a DVC remote come back identical in a fresh clone.
Each statement of docs/reliability.md "DVC and your results" is one test here.

One pipeline run (tiny data, ~1 minute on 2 cores) is shared by the tests; each test leaves the project as that
run committed it, which the next test checks first."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from support.projects import TINY, dvc, make_project, project_env
from support.setups import default_signals

pytestmark = pytest.mark.slow

# The pipeline at its smallest: 3 tracks of 6 s, 1 + 2 epochs, one short evaluation track.
SMALL = {**TINY, "eval": {"n_tracks": 1, "time_limit_s": 5.0, "video_tracks": 0}}
RESULTS = ("models", "reports", "data/cache")
NAN_ERROR = "error: params.yaml: bc.lr: expected a finite number, got '.nan'"


def _files(root: Path, dirs=RESULTS) -> dict[str, tuple[str, int]]:
    """{path: (sha256, mtime_ns)} of every result file under `dirs` (not DVC's .gitignore files): content and
    untouched-ness."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for d in dirs
        for p in sorted((root / d).rglob("*"))
        if p.is_file() and p.name != ".gitignore"
    }


def _content(files: dict) -> dict[str, str]:
    return {k: sha for k, (sha, _) in files.items()}


def _dvc_may_fail(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["dvc", *args], cwd=project, env=project_env(project.parent / "dvc-site"), capture_output=True, text=True
    )


def _git(project: Path, *args: str) -> str:
    env = project_env(project.parent / "dvc-site")
    return subprocess.run(["git", *args], cwd=project, env=env, check=True, capture_output=True, text=True).stdout


def _is_clean(project: Path) -> bool:
    """The workspace is the last commit: params and lock by content (after a failed `dvc exp run -S`, `git status`
    can miss the changed params.yaml: DVC leaves the git index believing it unchanged), results by `dvc status`."""
    same = all(
        (project / name).read_text(encoding="utf-8") == _git(project, "show", f"HEAD:{name}")
        for name in ("params.yaml", "dvc.lock")
    )
    return same and "Data and pipelines are up to date." in dvc(project, "status")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict]:
    """The project after one full `dvc repro`, committed; and its results' files."""
    project = make_project(tmp_path_factory.mktemp("dvc") / "project", SMALL)
    dvc(project, "repro")
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "a pipeline run")
    return project, _files(project)


@pytest.fixture
def project(run) -> Path:
    project, results = run
    assert _is_clean(project) and _content(_files(project)) == _content(results), "a previous test left changes"
    return project


def test_a_finished_pipeline_is_a_no_op_and_a_speed_knob_reruns_only_validate(project, run):
    out = dvc(project, "repro")
    assert "Running stage" not in out
    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    params["data"]["workers"] = 2  # speed only: ingest does not list it
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    out = dvc(project, "repro")
    ran = [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")]
    assert ran == ["validate"], out
    assert _files(project) == run[1]  # nothing else ran: every result untouched (content and mtime)
    _git(project, "checkout", "--", "params.yaml", "dvc.lock")
    assert _is_clean(project)


def test_invalid_params_stop_in_validate_and_no_result_is_touched(project, run):
    """The issue's case: `dvc exp run -S bc.lr=.nan` used to delete models/bc and reports/bc before failing."""
    proc = _dvc_may_fail(project, "exp", "run", "-S", "bc.lr=.nan")
    assert proc.returncode != 0
    assert NAN_ERROR in proc.stderr + proc.stdout and "Traceback" not in proc.stderr + proc.stdout
    assert "Running stage 'validate'" in proc.stdout and "Running stage 'pretrain_bc'" not in proc.stdout
    assert _files(project) == run[1]  # models/, reports/, data/cache: byte-identical, not even rewritten
    assert (project / "data/params.validated").is_file()  # validate's own output stays too (persist: true)
    assert "lr: '.nan'" in (project / "params.yaml").read_text(encoding="utf-8")  # what `-S` left in the workspace
    dvc(project, "exp", "apply", "HEAD")  # back to the last commit's params
    assert _is_clean(project) and _files(project) == run[1]


def test_a_valid_run_failing_in_a_stage_loses_that_stages_outputs_and_dvc_checkout_restores_them(project, run):
    # Valid params, but the data cannot serve them (the cache holds no floats): pretrain_bc fails when it starts.
    proc = _dvc_may_fail(project, "exp", "run", "-S", "bc.use_floats=true")
    assert proc.returncode != 0 and "error: params.yaml: bc.use_floats: the cache has no float" in proc.stderr
    after = _files(project)
    # DVC deleted every output of the failing stage before its command ran ...
    assert not (project / "models/bc").exists() and not (project / "reports/bc/metrics.json").exists()
    assert not any(k.startswith(("models/bc/", "reports/bc/")) for k in after)
    # ... and nothing of the stages before it, which did not need to run.
    assert after == {k: v for k, v in run[1].items() if not k.startswith(("models/bc/", "reports/bc/"))}
    # dvc.lock still records the previous pretrain_bc: `dvc checkout` brings its cached outputs back ...
    dvc(project, "checkout")
    restored = _content(_files(project))
    cached = ("models/bc/", "reports/bc/plots/metrics/")
    assert {k: v for k, v in restored.items() if k.startswith(cached)} == {
        k: v for k, v in _content(run[1]).items() if k.startswith(cached)
    }
    # ... but not the metrics DVC keeps in git (cache: false), nor params.yaml: `dvc exp apply HEAD` does all.
    assert not (project / "reports/bc/metrics.json").exists()
    dvc(project, "exp", "apply", "HEAD")
    assert _content(_files(project)) == _content(run[1])
    assert _is_clean(project)


def test_an_interrupted_run_loses_the_running_stages_outputs_and_exp_apply_head_restores_everything(project, run):
    env = project_env(project.parent / "dvc-site")
    proc = subprocess.Popen(
        ["dvc", "exp", "run", "-S", "bc.seed=1"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: Ctrl-C reaches DVC and the stage, as in a terminal
        preexec_fn=default_signals,  # SIGINT handled as in a terminal, even if pytest was started with `&`
    )
    seen, deadline = "", time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            seen += line
            if line.startswith("pretrain_bc: device"):  # training is under way
                os.killpg(proc.pid, signal.SIGINT)
                break
    finally:
        if proc.poll() is None and "pretrain_bc: device" not in seen:
            os.killpg(proc.pid, signal.SIGKILL)
        seen += proc.communicate(timeout=120)[0]
    assert proc.returncode != 0 and "exported" not in seen, seen[-3000:]
    assert not (project / "models/bc").exists()  # deleted by DVC before the stage started; nothing new in place
    assert (project / "models/vis/encoder.pt").is_file()  # the stages before it are untouched
    dvc(project, "exp", "apply", "HEAD")  # the last commit's params, dvc.lock and every output
    assert _content(_files(project)) == _content(run[1])
    assert _is_clean(project)


def test_results_pushed_to_a_remote_come_back_identical_in_a_fresh_clone(project, run, tmp_path):
    remote, clone = tmp_path / "remote", tmp_path / "clone"
    dvc(project, "remote", "add", "--local", "-d", "shared", str(remote))  # .dvc/config.local: nothing to commit
    dvc(project, "push")
    _git(project, "clone", "-q", str(project), str(clone))
    assert _files(clone, ("models", "data/cache")) == {}  # git carries code, dvc.lock and metrics; DVC the rest
    dvc(clone, "remote", "add", "--local", "-d", "shared", str(remote))
    dvc(clone, "pull")
    assert _content(_files(clone)) == _content(run[1])
    assert _content(_files(clone, ("data",))) == _content(_files(project, ("data",)))  # replays and cache
    assert "Data and pipelines are up to date." in dvc(clone, "status")
    assert "Running stage" not in dvc(clone, "repro")
