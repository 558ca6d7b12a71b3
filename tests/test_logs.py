"""What a training stage prints, read the way CI and `dvc repro > log` read it (output redirected to a file) and the
way a person reads it (a terminal): a first line naming the device, one line per epoch, what was exported, and no
progress-bar redraws, accelerator banner or shutdown noise in a file. The project helpers are support.setups'.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

# The 4-track store of the stage tests (180 train / 60 val samples): a module-scoped fixture, built once per module.
from support.setups import STAGE_TIMEOUT, stage_command, stage_env, tiny_project

BC = {
    "encoder_init": "none",
    "epochs": 3,
    "batch_size": 32,
    "time_offsets_ms": [0, 100],
    "offset_weights": [1.0, 0.5],
    "use_actions_head": False,
    "selection": {"metric": "val/main_actions_acc", "mode": "max"},
    "trainer": {"accelerator": "cpu"},
}


def test_a_log_file_has_one_line_per_epoch_and_no_redraws(stage_store, tmp_path):
    root = tiny_project(tmp_path / "project", stage_store, bc=BC)
    log = root / "log.txt"
    with open(log, "w") as out:  # what `python -m tmpretrain.stages.pretrain_bc > log.txt 2>&1` gives
        run = subprocess.run(
            stage_command("pretrain_bc"),
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=stage_env(),
            timeout=STAGE_TIMEOUT,
        )
    text = log.read_text()
    assert run.returncode == 0, text[-3000:]
    assert "\r" not in text
    for noise in ("GPU available", "TPU available", "Exception ignored", "Traceback", "it/s]"):
        assert noise not in text, noise
    lines = text.splitlines()
    threads = r"\d+ CPU threads"
    assert re.fullmatch(rf"pretrain_bc: device cpu, accelerator cpu, {threads}; 180 train / 60 val samples", lines[0])
    number = r"\d+\.\d{4}"
    # The selection metric (here not one of the usual three) is shown; the first epoch is always the best so far.
    epoch_line = re.compile(
        rf"epoch (\d)/3  train/loss {number}  val/loss {number}  val/acc {number}  val/main_actions_acc {number}"
        rf"  \d+\.\d s(  \*best)?"
    )
    epochs = [m for m in map(epoch_line.fullmatch, lines) if m]
    assert [m.group(1) for m in epochs] == ["0", "1", "2"] and epochs[0].group(2)
    assert len([line for line in lines if line.startswith("epoch")]) == 3
    summary = next(line for line in lines if "exported" in line)
    assert re.fullmatch(
        r"pretrain_bc: exported epoch \d of 3 run \(highest val/main_actions_acc: \d\.\d{4}\) to models/bc: "
        r"encoder\.pt, label_timing\.json, linear_head\.pt, pretrain_meta\.json",
        summary,
    )
    # Linear heads are not the agent's A_head: the log says that no agent head was exported.
    assert re.search(r"^warning: no agent head exported: bc\.use_actions_head is false.*offset 0ms", text, re.M)


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_a_terminal_keeps_its_progress_bars(stage_store, tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    root = tiny_project(
        tmp_path / "project", stage_store, vis={"epochs": 1, "batch_size": 64, "trainer": {"accelerator": "cpu"}}
    )
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 0 columns would draw empty bars
    proc = subprocess.Popen(stage_command("pretrain_vis"), cwd=root, stdout=child, stderr=child, env=stage_env())
    os.close(child)
    seen = b""
    while True:
        try:
            chunk = os.read(parent, 65536)
        except OSError:  # the terminal closes when the stage exits
            break
        if not chunk:
            break
        seen += chunk
    os.close(parent)
    assert proc.wait(timeout=STAGE_TIMEOUT) == 0, seen[-3000:]
    text = seen.decode(errors="replace")
    assert re.search(r"\rEpoch 0: +100%", text)  # Lightning's bar, redrawn in place
    assert re.search(r"^pretrain_vis: device cpu", text, re.M) and "epoch 0/1  train/loss" in text
