"""Procedural closed tracks: a smoothed loop of random control points, resampled every metre.

A track is a centre line (x, y) sampled at 1 m, with unit tangents, left normals, signed curvature
(positive = left turn in the driving direction) and a fixed road half-width. Generation rejects loops whose
tightest radius is too small or whose distant parts come too close together (overlapping roads).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

ROAD_HALF_WIDTH = 6.0  # m (12 m of asphalt)
KERB_WIDTH = 1.2  # m on each side, still counts as road
BASE_RADIUS = 200.0  # m
MIN_RADIUS = 12.0  # m; tighter tracks are rejected
MIN_GAP = 2 * (ROAD_HALF_WIDTH + KERB_WIDTH) + 12.0  # m between parts of the loop far apart along it


@dataclass
class Track:
    """A closed centre line sampled every `ds` metres (the last point connects back to the first)."""

    points: np.ndarray  # (N, 2) float64
    tangents: np.ndarray  # (N, 2) unit
    normals: np.ndarray  # (N, 2) unit, pointing left of the driving direction
    curvature: np.ndarray  # (N,) signed 1/m, > 0 turning left
    ds: float
    half_width: float = ROAD_HALF_WIDTH
    kerb_width: float = KERB_WIDTH

    @property
    def n(self) -> int:
        return len(self.points)

    @property
    def length(self) -> float:
        return self.n * self.ds

    def heading_at(self, i: int) -> float:
        t = self.tangents[i % self.n]
        return float(np.arctan2(t[1], t[0]))

    def locate_near(self, x: float, y: float, hint: int, window: int, far: float) -> tuple[int, float]:
        """(index, lateral offset) of the nearest sample within `window` of `hint`, or of the whole loop where that
        one is more than `far` metres to the side (a car far off the road can outrun the local search)."""
        return _locate_near(self.points, self.normals, x, y, hint, window, far)

    def locate_global(self, x: float, y: float) -> int:
        """Nearest centre-line sample of the whole loop."""
        return _nearest(self.points, x, y, 0, self.n)


@njit(cache=True, nogil=True)
def _locate_near(points, normals, x, y, hint, window, far):
    k = _nearest(points, x, y, hint - window, 2 * window + 1)
    lat = (x - points[k, 0]) * normals[k, 0] + (y - points[k, 1]) * normals[k, 1]
    if abs(lat) > far:
        k = _nearest(points, x, y, 0, points.shape[0])
        lat = (x - points[k, 0]) * normals[k, 0] + (y - points[k, 1]) * normals[k, 1]
    return k, lat


@njit(cache=True, nogil=True)
def _nearest(points: np.ndarray, x: float, y: float, first: int, count: int) -> int:
    """Index of the point nearest (x, y) among `count` consecutive ones from `first` (wrapping); the first of
    equally near ones."""
    n = points.shape[0]
    best, best_d = 0, np.inf
    for i in range(first, first + min(count, n)):
        k = i % n
        dx, dy = points[k, 0] - x, points[k, 1] - y
        d = dx * dx + dy * dy
        if d < best_d:
            best, best_d = k, d
    return best


def _chaikin_closed(p: np.ndarray, iterations: int) -> np.ndarray:
    """Corner-cutting smoothing of a closed polygon."""
    for _ in range(iterations):
        q = np.roll(p, -1, axis=0)
        p = np.stack([0.75 * p + 0.25 * q, 0.25 * p + 0.75 * q], axis=1).reshape(-1, 2)
    return p


def _resample_closed(p: np.ndarray, ds: float) -> np.ndarray:
    """Points every `ds` metres of arc length along a closed polyline (the count rounded to fit exactly)."""
    closed = np.vstack([p, p[:1]])
    seg = np.hypot(*np.diff(closed, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    total = s[-1]
    n = max(int(round(total / ds)), 8)
    targets = np.arange(n) * (total / n)
    x = np.interp(targets, s, closed[:, 0])
    y = np.interp(targets, s, closed[:, 1])
    return np.stack([x, y], axis=1)


def _gaussian_closed(p: np.ndarray, sigma: float) -> np.ndarray:
    """Circular Gaussian smoothing of a closed, evenly sampled polyline (sigma in samples)."""
    half = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    k /= k.sum()
    padded = np.vstack([p[-half:], p, p[:half]])
    return np.stack([np.convolve(padded[:, j], k, mode="valid") for j in range(2)], axis=1)


def _differential(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d1 = (np.roll(points, -1, axis=0) - np.roll(points, 1, axis=0)) / 2.0
    d2 = np.roll(points, -1, axis=0) - 2 * points + np.roll(points, 1, axis=0)
    speed = np.hypot(d1[:, 0], d1[:, 1])
    tangents = d1 / speed[:, None]
    normals = np.stack([-tangents[:, 1], tangents[:, 0]], axis=1)
    curvature = (d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]) / speed**3
    return tangents, normals, curvature


def _self_approach_ok(points: np.ndarray, ds: float, min_gap: float, min_arc: float) -> bool:
    sub = points[:: max(1, int(round(2.0 / ds)))]
    m = len(sub)
    diff = sub[:, None, :] - sub[None, :, :]
    dist = np.hypot(diff[..., 0], diff[..., 1])
    i = np.arange(m)
    arc = np.abs(i[:, None] - i[None, :]) * (len(points) / m) * ds
    arc = np.minimum(arc, len(points) * ds - arc)
    return bool(np.all(dist[arc > min_arc] >= min_gap))


def generate_track(rng: np.random.Generator, ds: float = 1.0, max_tries: int = 500) -> Track:
    """A random closed track; the driving direction is random so left and right turns balance."""
    for _ in range(max_tries):
        n_ctrl = int(rng.integers(10, 17))
        angles = np.sort(
            (np.arange(n_ctrl) + rng.uniform(-0.35, 0.35, n_ctrl)) * (2 * np.pi / n_ctrl) + rng.uniform(0, 2 * np.pi)
        )
        radii = BASE_RADIUS * rng.uniform(0.3, 1.0, n_ctrl)
        ctrl = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
        p = _chaikin_closed(ctrl, 4)
        p = _resample_closed(p, ds)
        for _ in range(2):
            p = _gaussian_closed(p, 2.5 / ds)
        p = _resample_closed(p, ds)
        if rng.random() < 0.5:
            p = p[::-1].copy()
        tangents, normals, curvature = _differential(p)
        # Curvature of the sampled loop, lightly smoothed to ignore sampling noise.
        curvature = _gaussian_closed(np.stack([curvature, curvature], axis=1), 1.0)[:, 0]
        if np.max(np.abs(curvature)) > 1.0 / MIN_RADIUS:
            continue
        if not _self_approach_ok(p, ds, MIN_GAP, min_arc=3 * MIN_GAP):
            continue
        start = int(rng.integers(len(p)))  # start line somewhere on the loop
        p = np.roll(p, -start, axis=0)
        tangents, normals, curvature = (np.roll(a, -start, axis=0) for a in (tangents, normals, curvature))
        return Track(points=p, tangents=tangents, normals=normals, curvature=curvature, ds=ds)
    raise RuntimeError("could not generate a valid track")  # pragma: no cover - practically unreachable
