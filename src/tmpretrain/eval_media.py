"""Pictures of closed-loop evaluation: the policy's rollout video and top-down maps of its and the expert's paths.

    media/rollout.gif   the first eval.video_tracks tracks side by side: the frame the policy saw (its newest
                        stacked frame, upscaled), the action it chose lit on four keys, the time and how it ended
    media/rollout.mp4   the same, where an ffmpeg backend for imageio (imageio-ffmpeg) is installed
    media/paths.json    per track: centre line, road half-width, the policy's and the expert's positions and
                        on-road flags per decision (the maps are drawn from it)

`report_section(eval_dir)` turns an evaluation directory into one self-contained HTML fragment (metrics table,
the GIF embedded as base64, the map as a plotly div that expects plotly.js to be loaded once by the page).
"""

from __future__ import annotations

import base64
import html
import importlib.util
import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont

from .actions import ACTION_NAMES, action_inputs
from .stats import format_interval

VIDEO_FILE, VIDEO_MP4_FILE, PATHS_FILE = "rollout.gif", "rollout.mp4", "paths.json"
HEADER_PX, KEYS_PX = 11, 16  # caption rows above and below each observed frame (pixels at its resolution)
MAX_VIDEO_FRAMES = 300  # longer rollouts show every 2nd (3rd, ...) decision
DISPLAY_SCALE = 3  # the report shows the video this many times its size, pixel-sharp
END_WORDS = {"finished": "lap", "time_limit": "time", "off_road": "off road", "stuck": "stuck"}
CENTRE_STEP_M = 3  # centre-line samples kept for the maps
GROUP_STYLE = {"expert": "#1f77b4", "policy": "#ff7f0e", "policy_greedy": "#9467bd"}
OFFROAD_COLOUR = "#d62728"


# ----------------------------------------------------------------------------------------------- video


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _key_glyph(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], key: str, pressed: bool) -> None:
    """One key as a box with an arrow: left, accelerate (up), brake (down), right; light when pressed."""
    x0, y0, x1, y1 = box
    draw.rectangle(box, fill=235 if pressed else 45, outline=110)
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, min(x1 - x0, y1 - y0) / 2 - 2
    arrow = {
        "left": [(cx - r, cy), (cx + r, cy - r), (cx + r, cy + r)],
        "right": [(cx + r, cy), (cx - r, cy - r), (cx - r, cy + r)],
        "accelerate": [(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)],
        "brake": [(cx, cy + r), (cx - r, cy - r), (cx + r, cy - r)],
    }[key]
    draw.polygon(arrow, fill=30 if pressed else 120)


def _panel(frame: np.ndarray, action: int | None, label: str, status: str) -> np.ndarray:
    """One track's picture at the observation's own resolution: a header line, the frame the policy saw, and the
    keys of the action it chose (or, once the episode is over, how it ended)."""
    h, w = frame.shape
    out = Image.new("L", (w, HEADER_PX + h + KEYS_PX), 16)
    out.paste(Image.fromarray(frame, mode="L"), (0, HEADER_PX))
    draw = ImageDraw.Draw(out)
    font = _font(9)
    draw.text((2, 0), label, fill=230, font=font)
    top = HEADER_PX + h + 2
    if action is None:
        draw.text((2, top), status, fill=230, font=font)
    else:
        keys = action_inputs(action)
        size = min((w - 2) // 4 - 2, KEYS_PX - 4)
        for i, key in enumerate(("left", "accelerate", "brake", "right")):
            x0 = 2 + i * (size + 2)
            _key_glyph(draw, (x0, top, x0 + size, top + size), key, keys[key])
    return np.asarray(out)


def rollout_frames(clips: list[dict], max_frames: int = MAX_VIDEO_FRAMES) -> tuple[list[np.ndarray], int]:
    """clips: [{"label", "frames": [uint8 (H, W)], "actions": [int], "end": str, "time_s": float, "dt_s"}] ->
    (video frames with the clips side by side, stride): every `stride`-th decision, so that a long episode keeps
    the file small; a clip that has ended holds its last frame and says how it ended."""
    length = max((len(c["frames"]) for c in clips), default=0)
    stride = max(1, -(-length // max_frames))
    out = []
    for i in range(0, length, stride):
        panels = []
        for c in clips:
            j = min(i, len(c["frames"]) - 1)
            if i < len(c["frames"]):
                panels.append(_panel(c["frames"][j], c["actions"][j], f"{c['label']} {i * c['dt_s']:.1f}s", ""))
            else:
                status = f"{END_WORDS.get(c['end'], c['end'])} {c['time_s']:.1f}s"
                panels.append(_panel(c["frames"][j], None, c["label"], status))
        gap = np.zeros((panels[0].shape[0], 4), dtype=np.uint8)
        row = [panels[0]]
        for p in panels[1:]:
            row += [gap, p]
        out.append(np.concatenate(row, axis=1))
    return out, stride


def write_video(frames: list[np.ndarray], out_dir: Path, fps: float) -> list[Path]:
    """GIF always (Pillow); MP4 too where imageio has an ffmpeg backend. Returns the files written."""
    written = []
    if not frames:
        return written
    gif = out_dir / VIDEO_FILE
    iio.imwrite(gif, np.stack(frames), extension=".gif", duration=round(1000 / fps), loop=0)
    written.append(gif)
    if importlib.util.find_spec("imageio_ffmpeg") is not None:
        mp4 = out_dir / VIDEO_MP4_FILE
        even = [f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2] for f in frames]  # yuv420p wants even sizes
        iio.imwrite(mp4, np.stack(even), extension=".mp4", plugin="FFMPEG", fps=fps)
        written.append(mp4)
    return written


# ------------------------------------------------------------------------------------------------ maps


def path_data(result: dict) -> dict:
    """The maps' data: per track, the centre line and the paths of the expert and the policy (sampled, first
    rollout; greedy)."""
    tracks = []
    for track, geometry in result["geometry"].items():
        entry = {
            "track": track,
            "centre": np.round(geometry.points[::CENTRE_STEP_M], 1).tolist(),
            "road_half_width": geometry.half_width + geometry.kerb_width,
            "paths": {},
        }
        for group in GROUP_STYLE:  # the first rollout of each
            ep = next((e for e in result["episodes"].get(group, []) if e.track == track), None)
            if ep is not None and ep.x:
                entry["paths"][group] = {"x": ep.x, "y": ep.y, "on_road": ep.on_road}
        tracks.append(entry)
    return {"tracks": tracks}


def _edges(centre: np.ndarray, half_width: float) -> tuple[list, list]:
    """Both road edges as one polyline (None between them), from the closed centre line."""
    d = np.roll(centre, -1, axis=0) - np.roll(centre, 1, axis=0)
    n = np.stack([-d[:, 1], d[:, 0]], axis=1) / np.linalg.norm(d, axis=1, keepdims=True)
    xs, ys = [], []
    for side in (1, -1):
        edge = centre + side * half_width * n
        edge = np.vstack([edge, edge[:1]])
        xs += edge[:, 0].round(1).tolist() + [None]
        ys += edge[:, 1].round(1).tolist() + [None]
    return xs, ys


def track_map_figure(paths: dict) -> go.Figure:
    """Top-down maps, one track at a time (a dropdown picks it): road edges, start line, the expert's and the
    policy's paths, their off-road stretches in red."""
    fig = go.Figure()
    buttons, per_track = [], []
    for entry in paths["tracks"]:
        first = len(fig.data)
        visible = not per_track
        centre = np.asarray(entry["centre"])
        ex, ey = _edges(centre, entry["road_half_width"])
        fig.add_trace(
            go.Scatter(
                x=ex,
                y=ey,
                mode="lines",
                line=dict(color="#999", width=1),
                name="road edge",
                hoverinfo="skip",
                visible=visible,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[centre[0, 0]],
                y=[centre[0, 1]],
                mode="markers",
                name="start line",
                marker=dict(symbol="line-ns", size=14, line=dict(width=3, color="#000")),
                visible=visible,
            )
        )
        for group, path in entry["paths"].items():
            colour = GROUP_STYLE[group]
            fig.add_trace(
                go.Scatter(
                    x=path["x"],
                    y=path["y"],
                    mode="lines",
                    name=group,
                    visible=visible,
                    line=dict(color=colour, width=2),
                )
            )
            off = np.logical_not(path["on_road"])
            fig.add_trace(
                go.Scatter(
                    x=[x if o else None for x, o in zip(path["x"], off, strict=True)],
                    y=[y if o else None for y, o in zip(path["y"], off, strict=True)],
                    mode="lines",
                    name=f"{group} off road",
                    visible=visible,
                    connectgaps=False,
                    line=dict(color=OFFROAD_COLOUR, width=5, dash="dot" if group == "expert" else "solid"),
                )
            )
        per_track.append((entry["track"], first, len(fig.data)))
    for track, lo, hi in per_track:
        mask = [lo <= i < hi for i in range(len(fig.data))]
        buttons.append(dict(label=f"track {track}", method="update", args=[{"visible": mask}]))
    fig.update_layout(
        title="Held-out tracks from above: the expert's and the policy's paths, sampled and greedy (red: off road)",
        height=560,
        margin=dict(l=40, r=20, t=60, b=40),
        xaxis=dict(title="x (m)"),
        yaxis=dict(title="y (m)", scaleanchor="x", scaleratio=1),
        updatemenus=[dict(buttons=buttons, x=1.0, xanchor="right", y=1.12, yanchor="top")] if buttons else [],
        template="plotly_white",
    )
    return fig


# ----------------------------------------------------------------------------------------------- writing


def write_media(result: dict, setup, media_dir: Path) -> list[Path]:
    """The rollout video of the policy's first `setup.video_tracks` episodes and the maps' path data."""
    media_dir = Path(media_dir)
    media_dir.mkdir(parents=True, exist_ok=True)
    written = []
    dt = setup.decision_interval_ms / 1000.0
    clips = [
        {
            "label": f"track {ep.track}",
            "frames": ep.frames,
            "actions": ep.actions,
            "end": ep.final.get("end") or "ended",
            "time_s": float(ep.final.get("time_s", 0.0)),
            "dt_s": dt,
        }
        for ep in result["episodes"].get("policy", [])[: setup.video_tracks]
        if ep.frames
    ]
    frames, stride = rollout_frames(clips)
    written += write_video(frames, media_dir, fps=1.0 / (dt * stride))
    paths = path_data(result)
    (media_dir / PATHS_FILE).write_text(json.dumps(paths, separators=(",", ":")) + "\n", encoding="utf-8")
    written.append(media_dir / PATHS_FILE)
    return written


# ------------------------------------------------------------------------------------------------ report


def _metrics_table(metrics: dict) -> str:
    """Every figure with its 95 % interval."""
    cols = [
        ("completion_rate", "completion", ".2f"),
        ("clean_completion_rate", "clean completion (≤ 5 % off road)", ".2f"),
        ("progress", "progress (lap)", ".2f"),
        ("lap_time_ratio", "lap time / expert's", ".2f"),
        ("offroad_fraction", "off road (share of time)", ".2f"),
        ("mean_speed", "mean speed (m/s)", ".1f"),
    ]
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title, _ in cols) + "<th>episodes</th>"
    rows = []
    for group, values in metrics.items():
        if values is None:
            cells = "".join("<td>-</td>" for _ in range(len(cols) + 1))
        else:
            cells = (
                "".join(
                    f"<td>{format_interval(values.get(k), values.get(f'{k}_low'), values.get(f'{k}_high'), spec)}</td>"
                    for k, _, spec in cols
                )
                + f"<td>{values.get('episodes', '-')}</td>"
            )
        rows.append(f"<tr><th>{html.escape(group)}</th>{cells}</tr>")
    return f"<table class='eval-metrics'><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def _mix_table(mix: dict) -> str:
    groups = [g for g in ("policy", "expert") if g in mix]
    if not groups:
        return ""
    head = "".join(f"<th>{g}</th>" for g in groups)
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th>" + "".join(f"<td>{mix[g][name]:.1%}</td>" for g in groups) + "</tr>"
        for name in ACTION_NAMES
        if any(mix[g][name] > 0 for g in groups)
    )
    tv = (
        f"<p>Total variation between the two mixes: {mix['total_variation']:.3f}.</p>"
        if "total_variation" in mix
        else ""
    )
    return f"<table class='eval-mix'><tr><th>action (share of decisions)</th>{head}</tr>{rows}</table>{tv}"


def report_section(eval_dir: Path) -> str:
    """The closed-loop evaluation as one HTML fragment: metrics, action mix, rollout GIF (base64), track map
    (a plotly div without plotly.js: the page must load plotly.js once)."""
    eval_dir = Path(eval_dir)
    metrics = json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8"))
    tracks = json.loads((eval_dir / "tracks.json").read_text(encoding="utf-8"))
    mix = json.loads((eval_dir / "action_mix.json").read_text(encoding="utf-8"))
    parts = [
        "<section class='closed-loop'>",
        "<h2>Closed-loop evaluation on held-out tracks</h2>",
        "<p>Standing-start laps on held-out tracks (tracks synthesize never made), under track limits (checkpoint "
        "gates: no credit for road not driven). <b>policy</b>: the exported encoder and action head, each decision "
        "drawn from its softmax, several rollouts per track; <b>policy_greedy</b>: its most likely action, as the "
        "agent acts; <b>expert</b>: the scripted driver that made the data; <b>random</b>: uniform actions; "
        "<b>always_accel</b>: accelerate throughout. A clean lap spends at most 5 % of its time off the road. Lap "
        "time ratio: lap time over the expert's on the tracks both finish. In brackets: 95 % intervals (rates: "
        "Wilson at the effective sample size; means: bootstrap over tracks, rollouts nested). Details: "
        "docs/evaluation.md.</p>",
        _metrics_table(metrics),
    ]
    if tracks.get("note"):
        parts.append(f"<p><b>Policy not evaluated:</b> {html.escape(tracks['note'])}</p>")
    parts.append(_mix_table(mix))
    gif = eval_dir / "media" / VIDEO_FILE
    if gif.is_file():
        with Image.open(gif) as img:
            width = img.size[0]
        data = base64.b64encode(gif.read_bytes()).decode("ascii")
        parts.append(
            f"<figure><img alt='policy rollout' width='{DISPLAY_SCALE * width}' style='image-rendering: pixelated' "
            f"src='data:image/gif;base64,{data}'><figcaption>The policy on the first held-out tracks: the frame it "
            "saw, at its own resolution, and the keys of the action it chose (left, accelerate, brake, right); time "
            "in simulated seconds.</figcaption></figure>"
        )
    paths_file = eval_dir / "media" / PATHS_FILE
    if paths_file.is_file():
        paths = json.loads(paths_file.read_text(encoding="utf-8"))
        if paths["tracks"]:
            fig = track_map_figure(paths)
            parts.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id="closed-loop-map"))
    parts.append("</section>")
    return "\n".join(parts)
