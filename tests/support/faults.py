"""The fault record: run the fault corpus and print the table of docs/reliability.md.

    tmpretrain faults                          # every group (from a source checkout: this is test support)
    tmpretrain faults --groups params exports  # a subset (the tests run this one)
    tmpretrain faults --sample 2               # at most 2 variants per fault class
    tmpretrain faults --update docs/reliability.md   # rewrite the table there (only when all is clean)

(`python -m support.faults` with tests/ on the path is the same.)

Each variant is one hostile input, run the way a user meets it, and judged:

- params: a params.yaml written as a user or DVC would (YAML text, read back as DVC reads it: YAML 1.2) with one
  bad value, checked by the `validate` stage (the first DVC stage) in a project directory holding stand-ins for
  earlier results. A clear error is exit 1 with one line naming the key; "handled" is a value YAML 1.1 would
  mangle (`1e-3` unquoted) read back as the number meant. Outputs lost: a stand-in result changed, or invalid
  params passed `validate` (DVC would then go on and delete the outputs of the stages they change).
- exports: a valid export directory with one fault planted, read by `load_export`: a clear error is one
  ExportError line; outputs lost: the directory changed by being read. Writing faults (an exception, a refusal or
  a kill while `replace_when_complete` writes a new export over an older one): outputs lost: the older export
  is not there byte for byte afterwards.
- inputs: a frame store with one file damaged, opened as the training stages open it (a clear error names the
  file); a damaged resume checkpoint met by the resume logic (handled: set aside byte for byte with one warning,
  nothing resumed); `-S` overrides `validate` refuses, passed to `tmpretrain exp run` (a clear error before DVC
  starts; outputs lost: params.yaml or a user's folder changed).
- workspace: support.workspace_faults: a signal to a training stage, a read-only models/ and a full disk, two runs
  in one workspace, pretrain_meta.json a FIFO or a link to /dev/zero, a capture tree without permissions (as root
  too), comparisons of results not in the DVC cache; each through the stage's command or `tmpretrain`, in a process
  of its own (a hang: killed past its time). The setups are the tests' (support.setups).
- ingest: `support.capture_faults.run_ingest_faults` (hostile replays in a real capture tree, data.workers 2).

A traceback is any other exception; a wrong result is a bad input accepted, or an answer about another key/file.
The command exits 1 when any row has a traceback, a hang, a wrong result or a lost output (the judges:
support/judges.py).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
import typing
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from support.judges import (
    CLEAR,
    HANDLED,
    Fault,
    clean,
    judge_message,
    judge_traceback,
)
from support.judges import row as _row
from support.judges import tree as _tree
from support.workspace_faults import run_workspace_faults, workspace_faults
from tmpretrain.errors import ExportError
from tmpretrain.params import set_nested
from tmpretrain.yamlio import dump_yaml

# ------------------------------------------------------------------------------------------------- params


def _schema_leaves():
    from tmpretrain.params import Params

    def walk(model: type[BaseModel], prefix: str):
        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                yield from walk(field.annotation, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}", field

    return list(walk(Params, ""))


def _kind(field) -> str:
    tp = field.annotation
    if typing.get_origin(tp) is typing.Literal:
        return "choice"
    if typing.get_origin(tp) is list:
        return "list"
    if any(getattr(getattr(m, "func", None), "__name__", "") == "_path" for m in field.metadata):
        return "path"
    return {bool: "bool", int: "int", float: "float", str: "text"}[tp]


def _bounds(field) -> dict:
    return {a: getattr(m, a) for m in field.metadata for a in ("ge", "gt", "le", "lt") if hasattr(m, a)}


def _nest(key: str, value) -> dict:
    """{"bc": {"lr": value}} for "bc.lr"; for a list item ("bc.time_offsets_ms[0]") the default list with that
    item replaced."""
    name, _, index = key.partition("[")
    if index:
        items = list(_value_at(None, name)) or [value]  # eval.track_seeds: empty by default
        items[int(index.rstrip("]"))] = value
        value = items
    return set_nested({}, name, value)


def _value_at(params, key: str):
    """params' value at "bc.lr" or "bc.time_offsets_ms[0]" (None: the schema defaults)."""
    import functools

    from tmpretrain.params import Params

    name, _, index = key.partition("[")
    value = functools.reduce(getattr, name.split("."), params if params is not None else Params())
    return value[int(index.rstrip("]"))] if index else value


def _param(fault_class: str, key: str, value, expect: str | None = None, answer: str = CLEAR) -> Fault:
    shown = value if isinstance(value, str) and len(value) < 30 else repr(value)[:30]
    return Fault(
        f"params: {fault_class}", f"{key}: {shown}", lambda _: _nest(key, value), expect or key, answer, key=key
    )


def _unquoted(fault_class: str, key: str, text: str, expect: str) -> Fault:
    """`key: <text>` with the text written unquoted, as a user types it (dumping the string would quote it)."""
    mark = "VALUE-PLACEHOLDER"

    def apply(_):
        return dump_yaml(_nest(key, mark)).replace(mark, text)

    return Fault(f"params: {fault_class}", f"{key}: {text}", apply, expect, HANDLED, key=key)


def _text(fault_class: str, variant: str, text: str | bytes, expect: str) -> Fault:
    return Fault(f"params: {fault_class}", variant, lambda _: text, expect)


def params_faults() -> list[Fault]:
    """Generated from the schema: every key gets the faults its type can have."""
    faults: list[Fault] = []
    leaves = _schema_leaves()
    for key, field in leaves:
        kind = _kind(field)
        default = _value_at(None, key)
        if kind == "list":  # the first item: offsets and seeds are integers, weights numbers
            key, kind, default = f"{key}[0]", ("float" if key.endswith("weights") else "int"), (default or [0])[0]
        if kind == "float":
            for v in (math.nan, math.inf, -math.inf):
                faults.append(_param("non-finite numbers (NaN, inf)", key, v))
            text = f"{default:e}".replace(".000000", "")  # 5e-04: YAML 1.1 (PyYAML) reads it as a string
            faults.append(_unquoted("numbers YAML 1.1 reads as text (`1e-3`)", key, text, repr(default)))
        if kind in ("int", "float"):
            for v in ("fast", "", "nan", "1e3" if kind == "int" else "0x10"):
                faults.append(_param("text where a number goes", key, v))
            faults.append(_param("booleans where a number goes", key, True))
        if kind == "int":
            faults.append(_param("non-integral numbers for integers", key, 1.5))
        b = _bounds(field) if "[" not in key else {}
        if kind in ("int", "float") and b:
            step = 1 if kind == "int" else 0.5
            if "ge" in b or "gt" in b:
                low = b.get("ge", b.get("gt"))
                faults.append(_param("out of range and huge numbers", key, low - step if "ge" in b else low))
            if "le" in b:
                faults.append(_param("out of range and huge numbers", key, b["le"] + step))
            faults.append(_param("out of range and huge numbers", key, 10**30 if kind == "int" else 1e300))
            faults.append(_param("out of range and huge numbers", key, -(10**30) if kind == "int" else -1e300))
        if kind in ("int", "float", "bool", "text", "path", "choice"):
            faults.append(_param("lists or mappings where a value or path goes", key, [default]))
            faults.append(_param("lists or mappings where a value or path goes", key, {"value": default}))
        if kind == "bool":
            for v in ("yes", 1, None):
                faults.append(_param("non-booleans where true/false goes", key, v))
        if kind == "choice":
            faults.append(_param("values outside the choices", key, "no-such-choice"))
            faults.append(_param("values outside the choices", key, 2))
            if default == "iqn":  # image_normalization: YAML reads `01` as the integer 1
                faults.append(_param("numbers YAML 1.1 reads as text (`1e-3`)", key, 1, "'01'", HANDLED))
        if kind in ("path", "text"):
            faults.append(_param("empty strings, NUL bytes, numbers as text", key, ""))
            faults.append(_param("empty strings, NUL bytes, numbers as text", key, 2024))
            if kind == "path":
                faults.append(_param("empty strings, NUL bytes, numbers as text", key, "data/\0cache"))
        if "[" not in key:  # a misspelt key: the message names what was written, the hint the full real key
            typo = key[:-1] if len(key.rsplit(".", 1)[-1]) > 3 else key + "s"
            faults.append(_param("unknown keys (typos, wrong level)", typo, default, typo))
    for raw, key in [
        ({"bc": {"patience": 3}}, "bc.patience"),
        ({"bc": {"accelerator": "cpu"}}, "bc.accelerator"),
        ({"lr": 0.1}, "lr"),
        ({"bc.lr": 0.1}, "bc.lr"),
        ({"model": {}}, "model"),
        ({1: {}}, "1"),
    ]:
        faults.append(Fault("params: unknown keys (typos, wrong level)", str(raw), lambda _, r=raw: r, key))
    for raw, key in [
        ({"bc": {"time_offsets_ms": [0, 0], "offset_weights": [1, 1]}}, "bc.time_offsets_ms"),
        ({"bc": {"time_offsets_ms": []}}, "bc.time_offsets_ms"),
        ({"bc": {"time_offsets_ms": [0, 10]}}, "bc.offset_weights"),
        ({"bc": {"offset_weights": [0, 0, 0, 0]}}, "bc.offset_weights"),
        ({"bc": {"export_offset_ms": 20}}, "bc.export_offset_ms"),
        ({"bc": {"time_offsets_ms": [10, 100], "offset_weights": [1, 1]}}, "bc.export_offset_ms"),
        ({"bc": {"dense_hidden_dimension": 512}}, "bc.dense_hidden_dimension"),
        ({"bc": {"use_floats": True, "trainer": {"cache_on_device": True}}}, "bc.trainer.cache_on_device"),
        ({"eval": {"track_seeds": [4, 4]}}, "eval.track_seeds"),
        ({"data": {"val_fraction": 0}}, "data.val_fraction"),
    ]:
        faults.append(Fault("params: cross-field conflicts", str(raw), lambda _, r=raw: r, key))
    faults += _accelerator_faults()
    for key, value in [  # the fault project holds models/, reports/ and a frame store at data/cache
        ("data.cache_dir", ".."),
        ("data.cache_dir", "."),
        ("data.cache_dir", "/"),
        ("data.cache_dir", "models"),  # a folder ingest did not write
        ("data.cache_dir", "models/vis/encoder.pt"),  # a file
        ("data.cache_dir", "data/replays"),  # the capture tree
        ("data.cache_dir", "data"),  # holds the capture tree
        ("synth.out_dir", ".."),
        ("synth.out_dir", "models"),
        ("synth.out_dir", "data"),  # holds the frame store
    ]:
        faults.append(_param("output folders a stage may not replace", key, value))
    for key, value in [
        ("data.image_height", 20),
        ("data.image_width", 33),
        ("data.replays_dir", "/nonexistent"),
        ("eval.env", "tmpretrain/SynthTrack-v9"),  # DVC removed reports/eval before evaluate said so
        ("eval.env", "no_such_module:Track-v0"),
    ]:
        faults.append(_param("values the code cannot use (small frames, no capture tree, no env)", key, value))
    for variant, text, expect in [
        ("not valid YAML", "bc: {epochs: [1,\n", "<file>"),
        ("a tab in the indentation", "bc:\n\tlr: 0.1\n", "<file>"),
        ("a key twice in a group", "bc:\n  lr: 0.1\n  lr: 0.2\n", "<file>"),
        ("a group twice", "bc: {lr: 0.1}\nbc: {epochs: 2}\n", "<file>"),
        ("not UTF-8", b"bc: {target: \xff\xfe}\n", "<file>"),
        ("nested 2000 deep", "bc: " + "[" * 2_000 + "]" * 2_000 + "\n", "<file>"),
        ("a list at the top", "- 1\n- 2\n", "<root>"),
        ("a group left empty", "bc:\n", "bc"),
        ("a scalar group", "bc: 3\n", "bc"),
        ("an alias bomb (billion laughs) at bc.lr", _ALIAS_BOMB, "<file>"),
    ]:
        faults.append(_text("broken params files", variant, text, expect))
    order = [f"params: {c}" for c in PARAMS_CLASSES]
    return sorted(faults, key=lambda f: order.index(f.fault_class))  # stable: keys in schema order within a class


PARAMS_CLASSES = [
    "non-finite numbers (NaN, inf)",
    "numbers YAML 1.1 reads as text (`1e-3`)",
    "text where a number goes",
    "booleans where a number goes",
    "non-integral numbers for integers",
    "out of range and huge numbers",
    "non-booleans where true/false goes",
    "values outside the choices",
    "lists or mappings where a value or path goes",
    "empty strings, NUL bytes, numbers as text",
    "unknown keys (typos, wrong level)",
    "cross-field conflicts",
    "accelerators this machine lacks",
    "output folders a stage may not replace",
    "values the code cannot use (small frames, no capture tree, no env)",
    "broken params files",
]
# Nine levels of nine aliases: 9**9 lists once expanded (a minute, then MemoryError, before aliases were refused).
_ALIAS_BOMB = "l0: &l0 [lol]\n" + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
_ALIAS_BOMB += "bc: {lr: *l9}\n"


def _accelerator_faults() -> list[Fault]:
    """GPU requests this machine cannot serve: none at all, or more devices than it has (the same 3 variants on
    every machine, so the record does not depend on where it was made)."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    gpu_key = "bc.trainer.devices" if n else "bc.trainer.accelerator"
    mps = torch.backends.mps.is_available()
    cases = [
        ({"bc": {"trainer": {"accelerator": "gpu", "devices": n + 1}}}, gpu_key),
        ({"vis": {"trainer": {"accelerator": "cuda", "devices": n + 1}}}, gpu_key.replace("bc.", "vis.")),
        (
            {"bc": {"trainer": {"accelerator": "mps", "devices": 2}}},
            "bc.trainer.devices" if mps else "bc.trainer.accelerator",
        ),
    ]
    return [Fault("params: accelerators this machine lacks", str(raw), lambda _, r=raw: r, key) for raw, key in cases]


# data/cache as a frame store holds it (cache_meta.json): validate accepts replacing it (tmpretrain.paths)
_STAND_INS = (
    "models/vis/encoder.pt",
    "models/bc/encoder.pt",
    "reports/bc/metrics.json",
    "data/cache/cache_meta.json",
)


def _run_validate(project: Path) -> tuple[int, str]:
    """The validate stage's main in `project` (in process: a subprocess each would take minutes)."""
    from tmpretrain.stages.validate import main

    err = io.StringIO()
    cwd = Path.cwd()
    os.chdir(project)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(cwd)
    return code, err.getvalue()


def run_params_faults(tmpdir: Path, faults: list[Fault] | None = None) -> list[dict]:
    from tmpretrain.params import load_params

    project = Path(tmpdir) / "params_project"
    for name in _STAND_INS:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(f"an earlier result: {name}\n")
    (project / "params.yaml").write_text("")
    if _run_validate(project)[0] != 0:
        raise RuntimeError("the default params do not validate")
    before = _tree(project / "models") | _tree(project / "reports") | _tree(project / "data")
    rows = []
    for fault in faults if faults is not None else params_faults():
        content = fault.apply(project)
        path = project / "params.yaml"
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_text(dump_yaml(content), encoding="utf-8")
        try:
            code, err = _run_validate(project)
        except Exception:
            rows.append(judge_traceback(fault))
            continue
        after = _tree(project / "models") | _tree(project / "reports") | _tree(project / "data")
        changed = {k: v for k, v in after.items() if k != "params.validated" and before.get(k) != v}
        lost = bool(changed) or len(after) < len(before)
        if code != 0:
            line = err.strip()
            named = line.startswith(f"error: params.yaml: {fault.expect}") and "\n" not in line
            if "Traceback" in err:
                rows.append(_row(fault, "traceback", tb=True, lost=lost, detail=line[-200:]))
            else:
                wrong = not named or fault.answer != CLEAR
                rows.append(_row(fault, CLEAR if named else "unclear error", wrong=wrong, lost=lost, detail=line))
            continue
        if fault.answer == HANDLED:
            got = _value_at(load_params(path), fault.key)
            ok = repr(got) == fault.expect
            rows.append(_row(fault, HANDLED if ok else "wrong value", wrong=not ok, lost=lost, detail=repr(got)))
        else:  # accepted: DVC would now run (and first clear the outputs of) the stages these params change
            rows.append(_row(fault, "accepted", wrong=True, lost=True, detail="validate passed"))
    return rows


# ------------------------------------------------------------------------------------------------ exports


def write_valid_export(out_dir: Path, seed: int = 0) -> Path:
    """A complete export in the layout run_bc writes (encoder, A_head, float features; 64x64, the agent's), from a
    seeded random model: what every export fault starts from."""
    import torch

    from support.models import bc_model
    from tmpretrain.actions import action_table
    from tmpretrain.export import (
        ACTIONS_HEAD_FILE,
        ENCODER_FILE,
        FLOAT_FEATURES_FILE,
        LABEL_TIMING_FILE,
        export_actions_head,
        export_encoder,
        export_float_features,
        write_meta,
    )

    torch.manual_seed(seed)
    model = bc_model(n_offsets=2, use_floats=True)
    out_dir.mkdir(parents=True)
    export_encoder(model.encoder, out_dir / ENCODER_FILE)
    export_actions_head(model.heads[0], out_dir / ACTIONS_HEAD_FILE, model.head_input_dim)
    export_float_features(model.float_feature_extractor, out_dir / FLOAT_FEATURES_FILE)
    (out_dir / LABEL_TIMING_FILE).write_text("{}\n", encoding="utf-8")
    meta = {
        "level": 1,
        "image_size": [64, 64],
        "image_normalization": "iqn",
        "head_input_dim": model.head_input_dim,
        "time_offsets_ms": [0, 10],
        "exported_offset_ms": 0,
        "actions": action_table(),
        "selection": {"metric": "val/loss", "mode": "min", "epoch": 0, "value": 1.25, "epochs_run": 1},
        "params": {"dense_hidden_dimension": 1024},
    }
    write_meta(out_dir, meta)
    return out_dir


def _meta(edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        meta = json.loads((d / "pretrain_meta.json").read_text(encoding="utf-8"))
        edit(meta)
        (d / "pretrain_meta.json").write_text(json.dumps(meta), encoding="utf-8")

    return apply


def _set(*path_and_value) -> Callable[[dict], None]:
    *path, value = path_and_value

    def edit(meta: dict) -> None:
        node = meta
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return edit


def _drop(*path) -> Callable[[dict], None]:
    def edit(meta: dict) -> None:
        node = meta
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]

    return edit


def _rehash(d: Path, name: str) -> None:
    """Record a changed file's real sha256 and size, so that only the check aimed at its content can catch it."""
    from tmpretrain.export import sha256_file

    meta = json.loads((d / "pretrain_meta.json").read_text(encoding="utf-8"))
    meta["files"][name] = {"sha256": sha256_file(d / name), "bytes": (d / name).stat().st_size}
    (d / "pretrain_meta.json").write_text(json.dumps(meta), encoding="utf-8")


def _weights(name: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        import torch

        state = torch.load(d / name, weights_only=True)
        torch.save(change(state), d / name)
        _rehash(d, name)

    return apply


def _file_bytes(name: str, make: Callable[[bytes], bytes], rehash: bool = True) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        (d / name).write_bytes(make((d / name).read_bytes()))
        if rehash:
            _rehash(d, name)

    return apply


def _rename_listed(new: str) -> Callable[[Path], None]:
    """List encoder.pt under another name (a path) and put the file where that name points, if it can be."""

    def apply(d: Path) -> None:
        meta = json.loads((d / "pretrain_meta.json").read_text(encoding="utf-8"))
        meta["files"] = {(new if k == "encoder.pt" else k): v for k, v in meta["files"].items()}
        (d / "pretrain_meta.json").write_text(json.dumps(meta), encoding="utf-8")
        with contextlib.suppress(OSError, ValueError):
            target = (d / new).resolve()
            if d.parent.resolve() in target.parents and target not in (d.resolve(), d.parent.resolve()):
                target.parent.mkdir(parents=True, exist_ok=True)  # only inside the case's own directory
                shutil.copy(d / "encoder.pt", target)

    return apply


def _set_value(name: str, key: str, value: float) -> Callable[[dict], dict]:
    def change(state: dict) -> dict:
        state[key] = state[key].clone()
        state[key].view(-1)[0] = value
        return state

    return change


def _every_weight(value: float) -> Callable[[dict], dict]:
    return lambda state: {key: tensor.clone().fill_(value) for key, tensor in state.items()}


def export_faults() -> list[Fault]:
    E = "export: "
    missing = E + "missing or extra files"
    meta = E + "metadata missing or of the wrong type"
    nonfinite = E + "NaN or infinite weights"
    overflow = E + "finite weights that overflow (a probe frame gives inf)"
    names = E + "file names with paths"
    layout = E + "keys, shapes or contents that do not fit the agent"
    tampered = E + "files changed after export"
    faults = [
        Fault(missing, "encoder.pt deleted", lambda d: (d / "encoder.pt").unlink(), "encoder.pt: listed in"),
        Fault(missing, "actions_head.pt deleted", lambda d: (d / "actions_head.pt").unlink(), "actions_head.pt: li"),
        Fault(
            missing,
            "float_feature_extractor.pt deleted",
            lambda d: (d / "float_feature_extractor.pt").unlink(),
            "float_feature_extractor.pt: listed in",
        ),
        Fault(missing, "pretrain_meta.json deleted", lambda d: (d / "pretrain_meta.json").unlink(), "not found"),
        Fault(missing, "export directory missing", lambda d: shutil.rmtree(d), "bc: not found"),
        Fault(
            missing,
            "encoder.pt neither listed nor there",
            lambda d: (_meta(_drop("files", "encoder.pt"))(d), (d / "encoder.pt").unlink()),
            "lists no encoder.pt",
        ),
        Fault(
            missing,
            "A_head recorded, actions_head.pt neither listed nor there",
            lambda d: (_meta(_drop("files", "actions_head.pt"))(d), (d / "actions_head.pt").unlink()),
            "records head_input_dim",
        ),
        Fault(missing, "a directory named encoder.pt", _dir_for_file, "encoder.pt: listed in"),
        Fault(missing, "an unlisted weight file", lambda d: (d / "old_head.pt").write_bytes(b"x"), "old_head.pt: unex"),
        Fault(missing, "an unlisted text file", lambda d: (d / "notes.txt").write_text("x"), "notes.txt: unexpected"),
        Fault(missing, "a subdirectory", lambda d: (d / "checkpoints").mkdir(), "checkpoints: unexpected directory"),
    ]
    for key in ("level", "image_size", "image_normalization", "files"):
        faults.append(Fault(meta, f"{key} missing", _meta(_drop(key)), f"pretrain_meta.json: {key}: field required"))
    for variant, edit, expect in [
        ("level '1'", _set("level", "1"), "level: input should be 0 or 1"),
        ("level 2", _set("level", 2), "level: input should be 0 or 1"),
        ("image_size '64x64'", _set("image_size", "64x64"), "image_size: input should be a valid"),
        ("image_size [64]", _set("image_size", [64]), "image_size.1: field required"),
        ("image_size [0, 64]", _set("image_size", [0, 64]), "image_size.0: input should be greater than"),
        ("image_size [64.0, 64.0]", _set("image_size", [64.0, 64.0]), "image_size.0: input should be a valid int"),
        ("image_size [true, 64]", _set("image_size", [True, 64]), "image_size.0: input should be a valid int"),
        ("image_size [100000, 64]", _set("image_size", [100_000, 64]), "image_size.0: input should be less than"),
        ("image_size [8, 8] (below the encoder)", _set("image_size", [8, 8]), "image_size 8x8"),
        ("image_normalization 'x'", _set("image_normalization", "x"), "image_normalization: input should be"),
        ("files []", _set("files", []), "files: input should be a valid dictionary"),
        ("files {}", _set("files", {}), "files: dictionary should have at least 1 item"),
        ("a file record 'x'", _set("files", "encoder.pt", "x"), "files.encoder.pt: input should be a valid dict"),
        ("sha256 'abc'", _set("files", "encoder.pt", "sha256", "abc"), "files.encoder.pt.sha256: string should"),
        ("sha256 123", _set("files", "encoder.pt", "sha256", 123), "files.encoder.pt.sha256: input should be"),
        ("bytes -1", _set("files", "encoder.pt", "bytes", -1), "files.encoder.pt.bytes: input should be greater"),
        ("bytes '12'", _set("files", "encoder.pt", "bytes", "12"), "files.encoder.pt.bytes: input should be a valid"),
        ("an unknown file record key", _set("files", "encoder.pt", "md5", "0"), "files.encoder.pt.md5: extra"),
        ("head_input_dim '768'", _set("head_input_dim", "768"), "head_input_dim: input should be a valid int"),
        ("head_input_dim 5888", _set("head_input_dim", 5888), "records head_input_dim 5888 but image size 64x64"),
        ("head_input_dim -5", _set("head_input_dim", -5), "head_input_dim: input should be greater than"),
        # What `tmpretrain export inspect` and the evaluate stage's policy read besides the weights:
        ("selection a list", _set("selection", []), "selection: input should be a valid dictionary"),
        ("selection.epoch -1", _set("selection", "epoch", -1), "selection.epoch: input should be greater than"),
        ("selection.metric of 10 KB", _set("selection", "metric", "x" * 10_000), "selection.metric: string should"),
        ("params null", _set("params", None), "params: input should be a valid dictionary"),
        (
            "params.dense_hidden_dimension 10**12",
            _set("params", "dense_hidden_dimension", 10**12),
            "params.dense_hidden_dimension: input should be less than",
        ),
        ("time_offsets_ms '0'", _set("time_offsets_ms", "0"), "time_offsets_ms: input should be a valid list"),
        ("time_offsets_ms [10**6]", _set("time_offsets_ms", [10**6]), "time_offsets_ms.0: input should be less"),
        ("git_commit of 10 KB", _set("git_commit", "0" * 10_000), "git_commit: string should have at most 200"),
    ]:
        faults.append(Fault(meta, variant, _meta(edit), expect))
    for variant, content, expect in [
        ("not JSON", b"{not json", "not valid JSON"),
        ("a JSON list", b"[1, 2]", "not a JSON object"),
        ("empty", b"", "not valid JSON"),
        ("nested 100000 deep", b"[" * 100_000 + b"]" * 100_000, "pretrain_meta.json: "),
        ("17 MB", b" " * (17 << 20) + b"{}", "a pretrain_meta.json is a few KB"),
        ("not UTF-8", b'{"level": "\xff"}', "cannot be read"),
        ("NaN in image_size", b'{"level": 1, "image_size": [NaN, 64]}', "image_size.0"),
    ]:
        faults.append(Fault(meta, variant, lambda d, c=content: (d / "pretrain_meta.json").write_bytes(c), expect))
    for variant, name, key, value in [
        ("NaN in encoder.pt", "encoder.pt", "0.weight", math.nan),
        ("+inf in actions_head.pt", "actions_head.pt", "2.bias", math.inf),
        ("-inf in float_feature_extractor.pt", "float_feature_extractor.pt", "0.bias", -math.inf),
    ]:
        faults.append(Fault(nonfinite, variant, _weights(name, _set_value(name, key, value)), "NaN or infinite"))
    for name in ("encoder.pt", "actions_head.pt", "float_feature_extractor.pt"):
        faults.append(Fault(overflow, f"every weight of {name} 1e30", _weights(name, _every_weight(1e30)), name))
    for new in ("../encoder.pt", "sub/encoder.pt", "/tmp/tmpretrain-fault/encoder.pt", "..\\encoder.pt", "..", "."):
        faults.append(Fault(names, repr(new), _rename_listed(new), "is not a plain file name"))
    faults.append(Fault(names, "'encoder.pt\\x00'", _rename_listed("encoder.pt\0"), "is not a plain file name"))
    faults.append(Fault(names, "'extra.pt' (not a weight file)", _rename_listed("extra.pt"), "an export holds only"))
    for variant, apply, expect in [
        ("a key missing", _weights("encoder.pt", lambda s: {k: v for k, v in s.items() if k != "6.bias"}), "keys do"),
        ("an extra key", _weights("encoder.pt", lambda s: {**s, "8.weight": s["6.bias"]}), "keys do not match"),
        ("wrapper prefixes", _weights("encoder.pt", lambda s: {f"module.{k}": v for k, v in s.items()}), "keys do"),
        ("a wrong shape", _weights("encoder.pt", lambda s: {**s, "0.bias": s["0.bias"][:8]}), "has shape"),
        (
            "a head for another image size",
            _meta(lambda m: (m.update(image_size=[120, 160]), m.pop("head_input_dim"))),
            "actions_head.pt: 0.weight has shape",
        ),
        ("float64 tensors", _weights("encoder.pt", lambda s: {k: v.double() for k, v in s.items()}), "not float32"),
        ("a tensor, not a dict", _weights("encoder.pt", lambda s: s["0.bias"]), "not a plain dict of tensors"),
        ("a list of tensors", _weights("encoder.pt", lambda s: list(s.values())), "not a plain dict of tensors"),
        ("a number among the tensors", _weights("encoder.pt", lambda s: {**s, "0.bias": 3}), "not a plain dict"),
        ("a pickled object", _weights("encoder.pt", lambda s: {"x": _Opaque()}), "cannot be loaded"),
        ("truncated", _file_bytes("encoder.pt", lambda b: b[: len(b) // 2]), "cannot be loaded"),
        ("zero bytes", _file_bytes("encoder.pt", lambda b: b""), "cannot be loaded"),
        ("random bytes", _file_bytes("encoder.pt", lambda b: os.urandom(len(b))), "cannot be loaded"),
    ]:
        faults.append(Fault(layout, variant, apply, expect))
    faults += [
        Fault(tampered, "encoder.pt changed", _file_bytes("encoder.pt", _flip_last, rehash=False), "sha256"),
        Fault(tampered, "bytes recorded wrong", _meta(_set("files", "encoder.pt", "bytes", 1)), "records 1"),
        Fault(tampered, "another export's encoder.pt", _swap_from_other_export, "sha256"),
    ]
    return faults


class _Opaque:
    """Not a tensor: torch.load(weights_only=True) must refuse to unpickle it."""


def _flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


def _dir_for_file(d: Path) -> None:
    (d / "encoder.pt").unlink()
    (d / "encoder.pt").mkdir()


def _swap_from_other_export(d: Path) -> None:
    other = write_valid_export(d.parent / f"{d.name}.other", seed=1)
    shutil.copy(other / "encoder.pt", d / "encoder.pt")
    shutil.rmtree(other)


def export_write_faults() -> list[tuple[Fault, Callable[[Path], None]]]:
    """Faults while a new export is written over an older one; each `write` receives the export directory."""
    import torch

    from tmpretrain.export import (
        ENCODER_FILE,
        export_actions_head,
        export_encoder,
        replace_when_complete,
        write_meta,
    )
    from tmpretrain.models import ActionHead, build_encoder

    cls = "export: a new export failing or killed while written"

    def crash(out: Path) -> None:
        with replace_when_complete(out) as staging:
            export_encoder(build_encoder(), staging / ENCODER_FILE)
            raise KeyboardInterrupt  # Ctrl-C half way

    def nan_weights(out: Path) -> None:
        encoder = build_encoder()
        with torch.no_grad():
            encoder[0].weight.fill_(math.nan)
        with replace_when_complete(out) as staging:
            export_encoder(encoder, staging / ENCODER_FILE)

    def wrong_head(out: Path) -> None:
        with replace_when_complete(out) as staging:
            export_encoder(build_encoder(), staging / ENCODER_FILE)
            export_actions_head(ActionHead(512), staging / "actions_head.pt", 768)

    def unverifiable(out: Path) -> None:
        with replace_when_complete(out) as staging:
            export_encoder(build_encoder(), staging / ENCODER_FILE)
            write_meta(staging, {"level": 0, "image_size": [64, 64], "image_normalization": "iqn"})
            (staging / ENCODER_FILE).write_bytes(b"changed after hashing")

    def killed(out: Path) -> None:
        script = (
            "import os, sys\n"
            "from pathlib import Path\n"
            "from tmpretrain.export import replace_when_complete, export_encoder\n"
            "from tmpretrain.models import build_encoder\n"
            "with replace_when_complete(Path(sys.argv[1])) as staging:\n"
            "    export_encoder(build_encoder(), staging / 'encoder.pt')\n"
            "    os._exit(137)  # as SIGKILL: no cleanup runs (and it works on Windows too)\n"
        )
        run = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, timeout=120)
        if run.returncode != 137:
            raise RuntimeError(f"the writer was not killed: {run.stderr[-500:]}")
        if not out.with_name(f".{out.name}.partial").is_dir():
            raise RuntimeError("the killed writer left no staging directory: the kill came too late")

    return [
        (Fault(cls, "an exception (Ctrl-C) half way", None, "", HANDLED), crash),
        (Fault(cls, "NaN weights from a diverged run", None, "NaN or infinite"), nan_weights),
        (Fault(cls, "a head of another width", None, "head input width is 512"), wrong_head),
        (Fault(cls, "a file changed before verification", None, "pretrain_meta.json records"), unverifiable),
        (Fault(cls, "the writing process killed", None, "", HANDLED), killed),
    ]


def run_export_faults(tmpdir: Path, faults: list[Fault] | None = None, writes: list | None = None) -> list[dict]:
    from tmpretrain.export import load_export

    tmpdir = Path(tmpdir)
    template = write_valid_export(tmpdir / "template")
    load_export(template)  # the corpus starts from an export that verifies
    rows = []
    for k, fault in enumerate(faults if faults is not None else export_faults()):
        export = tmpdir / f"case{k:03d}" / "bc"
        shutil.copytree(template, export)
        fault.apply(export)
        before = _tree(export.parent)
        try:
            load_export(export)
            rows.append(_row(fault, "accepted", wrong=True, detail="load_export returned"))
        except ExportError as exc:
            lost = _tree(export.parent) != before
            rows.append(judge_message(fault, str(exc), named=fault.expect in str(exc), lost=lost))
        except Exception:
            rows.append(judge_traceback(fault))
        shutil.rmtree(export.parent, ignore_errors=True)
    for k, (fault, write) in enumerate(writes if writes is not None else export_write_faults()):
        export = tmpdir / f"write{k:03d}" / "bc"
        shutil.copytree(template, export)
        before = _tree(export)
        outcome, detail, tb = HANDLED, "", False
        try:
            write(export)  # returns: the kill happened in another process; else the fault went unnoticed
            if fault.answer != HANDLED:
                outcome, detail = "accepted", "the faulty export was written"
        except ExportError as exc:
            outcome = CLEAR if fault.expect in str(exc) and "\n" not in str(exc) else "unclear error"
            detail = str(exc)
        except KeyboardInterrupt:
            outcome, detail = HANDLED, "interrupted"
        except Exception:
            outcome, tb, detail = "traceback", True, traceback.format_exc(limit=-1).splitlines()[-1]
        lost = not export.is_dir() or _tree(export) != before
        _next_export(export)  # the next export over the same directory works and clears what this one left
        leftovers = sorted(p.name for p in export.parent.iterdir() if p.name != "bc")
        wrong = outcome != fault.answer or bool(leftovers)
        rows.append(_row(fault, outcome, tb=tb, wrong=wrong, lost=lost, detail=detail or ", ".join(leftovers)))
        shutil.rmtree(export.parent, ignore_errors=True)
    return rows


def _next_export(out: Path) -> None:
    from tmpretrain.export import ENCODER_FILE, export_encoder, load_export, replace_when_complete, write_meta
    from tmpretrain.models import build_encoder

    with replace_when_complete(out) as staging:
        export_encoder(build_encoder(), staging / ENCODER_FILE)
        write_meta(staging, {"level": 0, "image_size": [64, 64], "image_normalization": "iqn"})
    load_export(out)


# -------------------------------------------------------------------------------------------------- table


# ------------------------------------------------------------------------------------------- inputs

# A frame store, a resume checkpoint and `-S` overrides, each as a stage or `tmpretrain exp run` meets them.
STORE = "store: damaged frame store files"
CHECKPOINT = "checkpoint: damaged resume checkpoint"
OVERRIDES = "params: -S overrides validate refuses (tmpretrain exp run)"


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _cut(name: str, keep: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    return lambda d: (d / name).write_bytes(keep((d / name).read_bytes()))


def _index_edit(edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        import numpy as np

        with np.load(d / "index.npz") as index:
            arrays = {k: index[k] for k in index.files}
        edit(arrays)
        np.savez(d / "index.npz", **arrays)

    return apply


def store_faults() -> list[Fault]:
    meta = "cache_meta.json"
    return [
        Fault(STORE, "cache_meta.json does not parse", _cut(meta, lambda b: b[:-3]), meta),
        Fault(STORE, "cache_meta.json without its counts", _meta_drop_counts, meta),
        Fault(STORE, "frames.npy truncated", _cut("frames.npy", _half), "frames.npy"),
        Fault(STORE, "frames.npy of zero bytes", _cut("frames.npy", lambda b: b""), "frames.npy"),
        Fault(STORE, "frames.npy of another frame count", _cut("frames.npy", _npy_one_frame_less), "frames.npy"),
        Fault(STORE, "timelines.npy truncated", _cut("timelines.npy", _half), "timelines.npy"),
        Fault(STORE, "timelines.npy holding a pickle", _cut("timelines.npy", lambda b: _pickled_npy()), "timelines"),
        Fault(STORE, "index.npz truncated", _cut("index.npz", _half), "index.npz"),
        Fault(STORE, "index.npz not a zip archive", _cut("index.npz", lambda b: b"not a zip"), "index.npz"),
        Fault(STORE, "index.npz without an array", _index_edit(lambda a: a.pop("frame_action")), "index.npz"),
        Fault(STORE, "index.npz: an array of the wrong length", _index_edit(_drop_last_frame_entry), "index.npz"),
        Fault(STORE, "index.npz: a replay past the frames", _index_edit(_replay_past_the_end), "index.npz"),
    ]


def _meta_drop_counts(d: Path) -> None:
    meta = json.loads((d / "cache_meta.json").read_text(encoding="utf-8"))
    meta.pop("n_frames")
    (d / "cache_meta.json").write_text(json.dumps(meta), encoding="utf-8")


def _npy_one_frame_less(data: bytes) -> bytes:
    import numpy as np

    frames = np.load(io.BytesIO(data))
    out = io.BytesIO()
    np.save(out, frames[:-1])
    return out.getvalue()


def _pickled_npy() -> bytes:
    import numpy as np

    out = io.BytesIO()
    np.save(out, np.array([{}], dtype=object), allow_pickle=True)
    return out.getvalue()


def _drop_last_frame_entry(arrays: dict) -> None:
    arrays["frame_time_ms"] = arrays["frame_time_ms"][:-1]


def _replay_past_the_end(arrays: dict) -> None:
    arrays["replay_frame_start"][-1] += 10_000


def run_store_faults(tmpdir: Path, faults: list[Fault]) -> list[dict]:
    """Each fault planted in a copy of a valid frame store, opened as the training stages open it."""
    from support.capture_faults import ingest_params, write_valid_tree
    from tmpretrain.errors import DataError
    from tmpretrain.frame_store import FrameStore, build_frame_store

    template = tmpdir / "template"
    build_frame_store(
        ingest_params(write_valid_tree(tmpdir / "replays"), template, strict=True, workers=1), progress=False
    )
    rows = []
    for k, fault in enumerate(faults):
        store = tmpdir / f"case{k:03d}"
        shutil.copytree(template, store)
        fault.apply(store)
        before = _tree(store)
        try:
            FrameStore.open(store)
            rows.append(_row(fault, "accepted", wrong=True, detail="FrameStore.open returned"))
        except DataError as exc:
            named = str(exc).startswith(str(store / fault.expect))
            rows.append(judge_message(fault, str(exc), named=named, lost=_tree(store) != before))
        except Exception:
            rows.append(judge_traceback(fault))
        shutil.rmtree(store, ignore_errors=True)
    return rows


def _torch_bytes(obj) -> bytes:
    import torch

    out = io.BytesIO()
    torch.save(obj, out)
    return out.getvalue()


def checkpoint_faults() -> list[Fault]:
    resumable = {"state_dict": {}, "optimizer_states": [], "loops": {}, "callbacks": {}}
    return [
        Fault(CHECKPOINT, "zero bytes", lambda: b"", "", HANDLED),
        Fault(CHECKPOINT, "random bytes", lambda: os.urandom(4096), "", HANDLED),
        Fault(CHECKPOINT, "cut short (a full disk)", lambda: _torch_bytes(resumable)[:200], "", HANDLED),
        Fault(CHECKPOINT, "a zip archive's first bytes only", lambda: b"PK\x03\x04" + bytes(60), "", HANDLED),
        Fault(CHECKPOINT, "weights only, no loop state", lambda: _torch_bytes({"state_dict": {}}), "", HANDLED),
        Fault(CHECKPOINT, "a pickled object", lambda: _torch_bytes({"x": _Opaque()}), "", HANDLED),
    ]


def run_checkpoint_faults(tmpdir: Path, faults: list[Fault]) -> list[dict]:
    """Each damaged last.ckpt met by the resume logic of a training stage: set aside (renamed beside its folder,
    byte for byte), one warning line, and nothing to resume from."""
    from tmpretrain.trainer import EpochCheckpoint

    rows = []
    for k, fault in enumerate(faults):
        directory = tmpdir / f"case{k:03d}" / "pretrain_bc"
        directory.mkdir(parents=True)
        damaged = fault.apply()
        (directory / EpochCheckpoint.FILE).write_bytes(damaged)
        aside = directory.with_name(f"{directory.name}.damaged.ckpt")
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                resumed = EpochCheckpoint(directory).resumable()
            warned = err.getvalue().count("\n") == 1 and err.getvalue().startswith("warning: ")
            kept = aside.is_file() and aside.read_bytes() == damaged
            wrong = resumed is not None or not warned or (directory / EpochCheckpoint.FILE).exists()
            rows.append(_row(fault, HANDLED, wrong=wrong, lost=not kept, detail=err.getvalue().strip()))
        except Exception:
            rows.append(judge_traceback(fault))
    return rows


def override_faults() -> list[Fault]:
    return [
        Fault(OVERRIDES, "bc.lr=.nan", lambda: ["bc.lr=.nan"], "bc.lr"),
        Fault(OVERRIDES, "bc.epochs=0", lambda: ["bc.epochs=0"], "bc.epochs"),
        Fault(OVERRIDES, "data.cache_dir=<a folder of notes>", lambda: ["data.cache_dir=mynotes"], "data.cache_dir"),
        Fault(OVERRIDES, "synth.out_dir=src (the code)", lambda: ["synth.out_dir=src"], "synth.out_dir"),
        Fault(OVERRIDES, "an unknown key (bc.lrr=1)", lambda: ["bc.lrr=1"], "bc.lrr"),
        Fault(OVERRIDES, "a value Hydra cannot parse (bc.lr=[1)", lambda: ["bc.lr=[1"], "bc.lr=[1"),
    ]


@contextlib.contextmanager
def _working_directory(path: Path):
    # contextlib.chdir is Python 3.11+; the project supports 3.10. Path params are relative to the project root.
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_override_faults(tmpdir: Path, faults: list[Fault]) -> list[dict]:
    """Each refused override passed as `tmpretrain exp run -S ...` in a project holding a folder of notes and the
    code: a clear error before DVC starts; outputs lost: params.yaml or a folder changed."""
    from tmpretrain.experiments import PresetError, check_overrides
    from tmpretrain.params import Params, as_dict

    project = tmpdir / "project"
    for folder in ("mynotes", "src"):
        (project / folder).mkdir(parents=True)
        (project / folder / "keep.txt").write_text("a user's file\n", encoding="utf-8")
    (project / "params.yaml").write_text(dump_yaml(as_dict(Params())), encoding="utf-8")
    rows = []
    for fault in faults:
        before = _tree(project)
        try:
            with _working_directory(project):
                check_overrides(fault.apply())
            rows.append(_row(fault, "accepted", wrong=True, lost=True, detail="DVC would have run"))
        except PresetError as exc:
            lost = _tree(project) != before
            rows.append(judge_message(fault, str(exc), named=fault.expect in str(exc), lost=lost))
        except Exception:
            rows.append(judge_traceback(fault))
    return rows


def input_faults() -> list[Fault]:
    return store_faults() + checkpoint_faults() + override_faults()


def run_input_faults(tmpdir: Path, faults: list[Fault] | None = None) -> list[dict]:
    faults = input_faults() if faults is None else faults
    rows = []
    for name, runner in (
        (STORE, run_store_faults),
        (CHECKPOINT, run_checkpoint_faults),
        (OVERRIDES, run_override_faults),
    ):
        mine = [f for f in faults if f.fault_class == name]
        if mine:
            (tmpdir / name[:5]).mkdir()
            rows += runner(tmpdir / name[:5], mine)
    return rows


def _sample(items: list, n: int | None, key=lambda f: f.fault_class) -> list:
    if n is None:
        return items
    seen: dict[str, int] = {}
    out = []
    for item in items:
        k = key(item)
        if seen.get(k, 0) < n:
            seen[k] = seen.get(k, 0) + 1
            out.append(item)
    return out


def run_ingest(tmpdir: Path, sample: int | None) -> list[dict] | None:
    try:
        from support import capture_faults
    except ImportError:
        return None
    kwargs = {}
    if sample is not None and "cases" in inspect.signature(capture_faults.run_ingest_faults).parameters:
        kwargs["cases"] = _sample(capture_faults.hostile_replays(), sample)
    rows = capture_faults.run_ingest_faults(Path(tmpdir), **kwargs)
    prefix = "ingest: "
    return [{**r, "fault_class": prefix + r["fault_class"].removeprefix(prefix)} for r in rows]


def run(groups: list[str], sample: int | None = None) -> list[dict]:
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="tmpretrain-faults-") as tmp:
        tmp = Path(tmp)
        if "params" in groups:
            (tmp / "params").mkdir()
            rows += run_params_faults(tmp / "params", _sample(params_faults(), sample))
        if "exports" in groups:
            (tmp / "exports").mkdir()
            writes = _sample(export_write_faults(), sample, key=lambda fw: fw[0].fault_class)
            rows += run_export_faults(tmp / "exports", _sample(export_faults(), sample), writes)
        if "inputs" in groups:
            (tmp / "inputs").mkdir()
            rows += run_input_faults(tmp / "inputs", _sample(input_faults(), sample))
        if "workspace" in groups:
            (tmp / "workspace").mkdir()
            rows += run_workspace_faults(tmp / "workspace", _sample(workspace_faults(), sample))
        if "ingest" in groups:
            (tmp / "ingest").mkdir()
            ingest = run_ingest(tmp / "ingest", sample)
            if ingest is None:
                print("ingest: support.capture_faults is not there; no ingest rows", file=sys.stderr)
            rows += ingest or []
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| fault class | variants | answer | tracebacks | hangs | wrong results | outputs lost |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    classes: dict[str, list[dict]] = {}
    for r in rows:
        classes.setdefault(r["fault_class"], []).append(r)

    def counts(group: list[dict]) -> list[int]:
        return [sum(bool(r.get(k)) for r in group) for k in ("traceback", "hang", "wrong_result", "outputs_lost")]

    for name, group in classes.items():
        outcomes: dict[str, int] = {}
        for r in group:
            outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
        answer = next(iter(outcomes)) if len(outcomes) == 1 else ", ".join(f"{o} ({n})" for o, n in outcomes.items())
        lines.append(f"| {name} | {len(group)} | {answer} | " + " | ".join(map(str, counts(group))) + " |")
    lines.append(f"| **total** | **{len(rows)}** | | " + " | ".join(f"**{n}**" for n in counts(rows)) + " |")
    return "\n".join(lines) + "\n"


TABLE_START, TABLE_END = "<!-- fault table: tmpretrain faults -->", "<!-- end of fault table -->"


def update_doc(path: Path, text: str) -> None:
    """Replace the table between the markers in `path`."""
    doc = path.read_text(encoding="utf-8")
    start, end = doc.index(TABLE_START) + len(TABLE_START), doc.index(TABLE_END)
    path.write_text(doc[:start] + "\n" + text + doc[end:], encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tmpretrain faults", description=__doc__.splitlines()[0])
    groups = ["params", "exports", "inputs", "workspace", "ingest"]
    ap.add_argument("--groups", nargs="+", choices=groups, default=groups)
    ap.add_argument("--sample", type=int, metavar="N", help="at most N variants per fault class")
    ap.add_argument("--update", type=Path, metavar="DOC", help="write the table into DOC between its markers")
    args = ap.parse_args(argv)
    rows = run(args.groups, args.sample)
    text = table(rows)
    print(text, end="")
    bad = [r for r in rows if not clean(r)]
    for r in bad:
        print(f"FAILED {r['fault_class']} / {r['variant']}: {r['outcome']}: {r.get('detail', '')}", file=sys.stderr)
    if args.update and not bad:
        update_doc(args.update, text)
        print(f"wrote the table into {args.update}", file=sys.stderr)
    elif args.update:
        print(f"{args.update} not updated: {len(bad)} rows are not clean answers", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
