"""The learning curves as one static SVG: greedy progress on the held-out tracks by env step, one colour per arm,
a thin line per seed and a thick one for the mean over seeds (Vega-Lite, drawn offline by vl-convert)."""

from __future__ import annotations


def learning_curves_spec(curves: list[dict]) -> dict:
    """`curves`: reports/rl/curves.json's rows (arm, seed, step and the evaluate group metrics)."""
    points = [{k: row[k] for k in ("arm", "seed", "step", "progress", "clean_completion_rate")} for row in curves]
    x = {"field": "step", "type": "quantitative", "title": "env steps"}
    color = {"field": "arm", "type": "nominal", "title": "arm", "sort": list(dict.fromkeys(p["arm"] for p in points))}
    y = {"field": "progress", "type": "quantitative", "title": "greedy progress (lap fraction, held-out tracks)"}
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "Downstream RL: progress of the greedy policy by env step (thin: one seed; thick: mean over seeds)",
        "width": 640,
        "height": 360,
        "data": {"values": points},
        "layer": [
            {
                "mark": {"type": "line", "opacity": 0.35, "strokeWidth": 1},
                "encoding": {"x": x, "y": y, "color": color, "detail": {"field": "seed"}},
            },
            {
                "mark": {"type": "line", "strokeWidth": 3, "point": True},
                "encoding": {"x": x, "y": {**y, "aggregate": "mean"}, "color": color},
            },
        ],
    }


def learning_curves_svg(curves: list[dict]) -> str:
    import vl_convert as vlc  # only the figure needs it

    return vlc.vegalite_to_svg(learning_curves_spec(curves))
