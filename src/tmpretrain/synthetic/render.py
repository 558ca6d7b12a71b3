"""A pure-numpy chase-camera renderer: grayscale frames of the car on its track.

The camera sits about 4.5 m up and 7 m behind the car, pitched down, with a wide field of view; its heading lags
the car's, so rotation and drift show as the car turning in the frame. Because camera height and pitch are fixed,
the ground point under every pixel is a constant in the camera's frame: a frame is one rotation + translation of
those points into the world, a lookup in the track's road texture (asphalt, kerb stripes, centre dashes, start
line), a world-fixed grass checkerboard elsewhere (a motion cue), and fog by distance. Above the horizon: a sky
gradient and a skyline that moves with heading. The car is a shaded box with a shadow; a speed bar sits at the
bottom. There is deliberately no steering indicator: it would leak the action label into the frame.

Frames are rendered at twice the output size and averaged 2x2 down (anti-aliasing).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .track import Track

CAM_HEIGHT = 4.5  # m
CAM_BEHIND = 7.0  # m
CAM_PITCH = math.radians(14.0)
HFOV = math.radians(95.0)
FOG_DISTANCE = 140.0  # m (fog weight 1 - exp(-d / FOG_DISTANCE))
MAX_DISTANCE = 450.0  # m; beyond this a ground pixel is pure fog
TEX_RES = 0.15  # m per road-texture texel
GRASS_SQUARE = 5.0  # m

SKY_TOP, SKY_HORIZON, FOG_SHADE = 150.0, 205.0, 190.0
GRASS_A, GRASS_B = 96.0, 116.0
ASPHALT, DASH, KERB_LIGHT, KERB_DARK = 70, 215, 228, 58
CAR_SHADES = {"top": 200.0, "rear": 45.0, "front": 120.0, "side": 95.0}
SPEED_BAR_MAX = 90.0  # m/s at full bar


class _Camera:
    """Per-resolution constants: pixel rays, their ground points in the camera frame, fog weights."""

    def __init__(self, width: int, height: int):
        w2, h2 = 2 * width, 2 * height
        self.w2, self.h2 = w2, h2
        self.f = (w2 / 2) / math.tan(HFOV / 2)
        self.cx, self.cy = w2 / 2 - 0.5, h2 / 2 - 0.5
        self.horizon = self.cy - self.f * math.tan(CAM_PITCH)
        u, v = np.meshgrid(np.arange(w2, dtype=np.float64), np.arange(h2, dtype=np.float64))
        xn, yn = (u - self.cx) / self.f, (v - self.cy) / self.f
        sp, cp = math.sin(CAM_PITCH), math.cos(CAM_PITCH)
        fwd, left, up = cp - yn * sp, -xn, -sp - yn * cp
        t = np.where(up < -1e-6, CAM_HEIGHT / np.maximum(-up, 1e-6), np.inf)
        gf, gl = fwd * t, left * t
        dist = np.sqrt(gf**2 + gl**2 + CAM_HEIGHT**2)
        ground = np.isfinite(t) & (dist < MAX_DISTANCE)
        self.ground_idx = np.flatnonzero(ground.ravel())
        self.gf = gf.ravel()[self.ground_idx].astype(np.float32)
        self.gl = gl.ravel()[self.ground_idx].astype(np.float32)
        fog = 1.0 - np.exp(-dist.ravel()[self.ground_idx] / FOG_DISTANCE)
        self.fog = fog.astype(np.float32)
        self.fog_term = (fog * FOG_SHADE).astype(np.float32)
        self.keep = (1.0 - fog).astype(np.float32)
        # Background: sky gradient above the horizon, fog below it (ground pixels are overwritten).
        rows = np.arange(h2, dtype=np.float64)
        frac = np.clip(rows / max(self.horizon, 1.0), 0.0, 1.0)
        sky_col = np.where(rows < self.horizon, SKY_TOP + (SKY_HORIZON - SKY_TOP) * frac, FOG_SHADE)
        self.background = np.repeat(sky_col[:, None], w2, axis=1).astype(np.float32)
        # Column azimuth offsets (radians, + left) for the skyline.
        self.col_az = -np.arctan((np.arange(w2) - self.cx) / self.f)
        self.rows = rows[:, None]
        # Pixel centres for polygon fills.
        self.u, self.v = u, v


@lru_cache(maxsize=8)
def _camera(width: int, height: int) -> _Camera:
    return _Camera(width, height)


def build_road_texture(track: Track, res: float = TEX_RES) -> tuple[np.ndarray, float, float]:
    """A top-down uint8 texture of the road (0 where there is no road) and its world origin (x0, y0)."""
    hw, kw = track.half_width, track.kerb_width
    outer = hw + kw
    pts = track.points
    x0, y0 = pts[:, 0].min() - outer - 2, pts[:, 1].min() - outer - 2
    nx = int(math.ceil((pts[:, 0].max() + outer + 2 - x0) / res)) + 1
    ny = int(math.ceil((pts[:, 1].max() + outer + 2 - y0) / res)) + 1
    tex = np.zeros((ny, nx), dtype=np.uint8)

    n = track.n
    sub = np.arange(0.0, 1.0, 0.4 * res / track.ds)
    i0 = np.repeat(np.arange(n), len(sub))
    frac = np.tile(sub, n)
    i1 = (i0 + 1) % n
    p = pts[i0] * (1 - frac)[:, None] + pts[i1] * frac[:, None]
    nrm = track.normals[i0] * (1 - frac)[:, None] + track.normals[i1] * frac[:, None]
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    s = (i0 + frac) * track.ds
    lat = np.arange(-outer, outer + 1e-9, 0.4 * res)

    for d in lat:  # one lateral offset at a time keeps memory small
        ad = abs(d)
        if ad > hw:
            val = np.where(np.floor(s / 1.5) % 2 == 0, KERB_LIGHT, KERB_DARK)
        elif ad < 0.25:
            val = np.where(np.floor(s / 5.0) % 2 == 0, DASH, ASPHALT)
        else:
            val = np.full(len(s), ASPHALT)
        start = s < 2.5
        val = np.where(start, np.where((np.floor(s / 1.25) + np.floor((d + outer) / 1.25)) % 2 == 0, 235, 25), val)
        ix = ((p[:, 0] + nrm[:, 0] * d - x0) / res).astype(np.int64)
        iy = ((p[:, 1] + nrm[:, 1] * d - y0) / res).astype(np.int64)
        tex[iy, ix] = val.astype(np.uint8)
    return tex, float(x0), float(y0)


class Renderer:
    """Renders frames of one track at `width` x `height` (grayscale uint8)."""

    def __init__(self, track: Track, width: int, height: int, rng: np.random.Generator):
        self.track = track
        self.width, self.height = width, height
        self.cam = _camera(width, height)
        self.tex, self.x0, self.y0 = build_road_texture(track)
        self.inv_res = 1.0 / TEX_RES
        # Skyline: elevation (radians) of the hills as a function of world azimuth, random per track.
        az = np.linspace(0, 2 * np.pi, 2048, endpoint=False)
        elev = np.zeros_like(az)
        for k in range(1, 9):
            elev += rng.uniform(0.2, 1.0) / k * np.sin(k * az + rng.uniform(0, 2 * np.pi))
        elev = 0.03 + 0.08 * (elev - elev.min()) / (np.ptp(elev) + 1e-9)
        # A few towers give sharper landmarks.
        for _ in range(5):
            c = int(rng.integers(2048))
            wdt = int(rng.integers(8, 30))
            elev[np.arange(c, c + wdt) % 2048] += rng.uniform(0.03, 0.08)
        self.skyline = elev

    def render(self, car_x: float, car_y: float, car_yaw: float, cam_heading: float, speed: float) -> np.ndarray:
        cam = self.cam
        ch, sh = math.cos(cam_heading), math.sin(cam_heading)
        cx_w = car_x - CAM_BEHIND * ch
        cy_w = car_y - CAM_BEHIND * sh
        img = cam.background.copy()

        # Skyline above the horizon.
        az = (cam_heading + cam.col_az) % (2 * np.pi)
        elev = self.skyline[(az * (2048 / (2 * np.pi))).astype(np.int64) % 2048]
        top = cam.horizon - cam.f * np.tan(elev)
        hills = (cam.rows >= top[None, :]) & (cam.rows < cam.horizon)
        img[hills] = 150.0

        # Ground: world points of every ground pixel, road texture or grass checkerboard, fog.
        wx = cx_w + cam.gf * ch - cam.gl * sh
        wy = cy_w + cam.gf * sh + cam.gl * ch
        ix = ((wx - self.x0) * self.inv_res).astype(np.int64)
        iy = ((wy - self.y0) * self.inv_res).astype(np.int64)
        ny, nx = self.tex.shape
        inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
        road = np.zeros(len(ix), dtype=np.uint8)
        road[inside] = self.tex[iy[inside], ix[inside]]
        checker = (np.floor(wx * (1 / GRASS_SQUARE)) + np.floor(wy * (1 / GRASS_SQUARE))).astype(np.int64) & 1
        grass = np.float32(GRASS_A) + np.float32(GRASS_B - GRASS_A) * checker.astype(np.float32)
        shade = np.where(road > 0, road.astype(np.float32), grass)
        img.ravel()[cam.ground_idx] = shade * cam.keep + cam.fog_term

        self._draw_car(img, car_yaw - cam_heading)
        self._draw_speed_bar(img, speed)
        small = (img[0::2, 0::2] + img[1::2, 0::2] + img[0::2, 1::2] + img[1::2, 1::2]) * 0.25 + 0.5
        return np.clip(small, 0, 255).astype(np.uint8)

    # ------------------------------------------------------------------------------------------ car

    def _project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Camera-frame (fwd, left, up-above-ground) points to pixel (u, v) and depth."""
        cam = self.cam
        sp, cp = math.sin(CAM_PITCH), math.cos(CAM_PITCH)
        f_, l_, uz = pts[:, 0], pts[:, 1], pts[:, 2] - CAM_HEIGHT
        z = f_ * cp - uz * sp
        y = -f_ * sp - uz * cp
        x = -l_
        return cam.cx + cam.f * x / z, cam.cy + cam.f * y / z, z

    def _fill(self, img: np.ndarray, quad_uv: np.ndarray, shade: float | None, darken: float = 1.0) -> None:
        cam = self.cam
        u0 = max(int(math.floor(quad_uv[:, 0].min())), 0)
        u1 = min(int(math.ceil(quad_uv[:, 0].max())) + 1, cam.w2)
        v0 = max(int(math.floor(quad_uv[:, 1].min())), 0)
        v1 = min(int(math.ceil(quad_uv[:, 1].max())) + 1, cam.h2)
        if u0 >= u1 or v0 >= v1:
            return
        pu, pv = cam.u[v0:v1, u0:u1], cam.v[v0:v1, u0:u1]
        inside_pos = np.ones(pu.shape, dtype=bool)
        inside_neg = np.ones(pu.shape, dtype=bool)
        m = len(quad_uv)
        for k in range(m):
            ax, ay = quad_uv[k]
            bx, by = quad_uv[(k + 1) % m]
            cross = (bx - ax) * (pv - ay) - (by - ay) * (pu - ax)
            inside_pos &= cross >= 0
            inside_neg &= cross <= 0
        mask = inside_pos | inside_neg
        region = img[v0:v1, u0:u1]
        if shade is None:
            region[mask] *= darken
        else:
            region[mask] = shade

    def _draw_car(self, img: np.ndarray, rel_yaw: float) -> None:
        c, s = math.cos(rel_yaw), math.sin(rel_yaw)
        half_l, half_w = 2.1, 1.0

        def corners(hl: float, hw: float, z: float) -> np.ndarray:
            local = np.array([[hl, hw], [hl, -hw], [-hl, -hw], [-hl, hw]])
            f_ = CAM_BEHIND + local[:, 0] * c - local[:, 1] * s
            l_ = local[:, 0] * s + local[:, 1] * c
            return np.stack([f_, l_, np.full(4, z)], axis=1)

        shadow = corners(half_l + 0.3, half_w + 0.3, 0.0)
        su, sv, _ = self._project(shadow)
        self._fill(img, np.stack([su, sv], axis=1), None, darken=0.55)

        bottom = corners(half_l, half_w, 0.25)
        top = corners(half_l - 0.5, half_w - 0.15, 1.25)
        bu, bv, bz = self._project(bottom)
        tu, tv, tz = self._project(top)
        # Faces: (indices into bottom/top corner lists, shade, outward normal in car frame)
        faces = [
            ((0, 1), "front", (1.0, 0.0)),
            ((1, 2), "side", (0.0, -1.0)),
            ((2, 3), "rear", (-1.0, 0.0)),
            ((3, 0), "side", (0.0, 1.0)),
        ]
        drawn = []
        for (a, b), name, (nf, nl) in faces:
            # Normal in camera frame; visible when it points toward the camera (at the origin).
            nwf, nwl = nf * c - nl * s, nf * s + nl * c
            mid_f = (bottom[a, 0] + bottom[b, 0]) / 2
            mid_l = (bottom[a, 1] + bottom[b, 1]) / 2
            if nwf * mid_f + nwl * mid_l >= 0:
                continue
            quad = np.array([[bu[a], bv[a]], [bu[b], bv[b]], [tu[b], tv[b]], [tu[a], tv[a]]])
            depth = (bz[a] + bz[b]) / 2
            drawn.append((depth, quad, CAR_SHADES[name]))
        for _, quad, shade in sorted(drawn, key=lambda t: -t[0]):
            self._fill(img, quad, shade)
        self._fill(img, np.stack([tu, tv], axis=1), CAR_SHADES["top"])

    def _draw_speed_bar(self, img: np.ndarray, speed: float) -> None:
        cam = self.cam
        h = max(4, cam.h2 // 32)
        x_end = cam.w2 // 2
        img[cam.h2 - h :, :x_end] = 20.0
        fill = max(0.0, min(1.0, speed / SPEED_BAR_MAX)) * x_end
        full = int(fill)
        img[cam.h2 - h :, :full] = 235.0
        if full < x_end:
            img[cam.h2 - h :, full] = 20.0 + 215.0 * (fill - full)
