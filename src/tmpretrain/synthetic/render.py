"""The chase-camera renderer: grayscale frames of the car on its track.

The camera sits about 4.5 m up and 7 m behind the car, pitched down, with a wide field of view; its heading lags
the car's, so rotation and drift show as the car turning in the frame. Because camera height and pitch are fixed,
the ground point under every pixel is a constant in the camera's frame: a frame is one rotation + translation of
those points into the world, a lookup in the track's road texture (asphalt, kerb stripes, centre dashes, start
line), a world-fixed grass checkerboard elsewhere (a motion cue; its contrast fades where a pixel covers more than
a square, which antialiases it), and fog by distance. Above the horizon: a sky gradient and a skyline that moves
with heading. The car is a shaded box with a shadow; a speed bar sits at the bottom. There is deliberately no
steering indicator: it would leak the action label into the frame.

One sample per pixel, and the per-pixel work of a frame (sky, skyline, ground) is one compiled loop (numba): a
frame costs about a tenth of a millisecond, so closed-loop evaluation and RL are not bound by rendering. The car
depends only on its yaw relative to the camera, so its pixels are drawn once per half degree and reused. Every
operation is elementwise IEEE arithmetic (no fast-math, no reductions), so a frame has the same bytes on any CPU.

Version history: v2 (track limits) renders at the output size with the checker's contrast faded by footprint;
v1 rendered at twice the size and averaged 2x2 down.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import njit

from .track import Track

CAM_HEIGHT = 4.5  # m
CAM_BEHIND = 7.0  # m
CAM_PITCH = math.radians(14.0)
HFOV = math.radians(95.0)
FOG_DISTANCE = 140.0  # m (fog weight 1 - exp(-d / FOG_DISTANCE))
MAX_DISTANCE = 450.0  # m; beyond this a ground pixel is pure fog
TEX_RES = 0.15  # m per road-texture texel
GRASS_SQUARE = 5.0  # m

SKY_TOP, SKY_HORIZON, FOG_SHADE, HILLS = 150.0, 205.0, 190.0, 150.0
GRASS_A, GRASS_B = 96.0, 116.0
ASPHALT, DASH, KERB_LIGHT, KERB_DARK = 70, 215, 228, 58
CAR_SHADES = {"top": 200.0, "rear": 45.0, "front": 120.0, "side": 95.0}
SHADOW_DARKEN = 0.55
SPEED_BAR_MAX = 90.0  # m/s at full bar
SKYLINE_SAMPLES = 2048
TILE_BITS = 5  # the road texture is kept as 32 x 32 texel tiles, only those the road touches (about a quarter)
TILE = 1 << TILE_BITS
CAR_YAW_STEP = math.radians(0.5)  # the car sprite is drawn once per this much relative yaw


class _Camera:
    """Per-resolution constants: pixel rays, their ground points in the camera frame, fog and checker weights."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self.f = (width / 2) / math.tan(HFOV / 2)
        self.cx, self.cy = width / 2 - 0.5, height / 2 - 0.5
        self.horizon = self.cy - self.f * math.tan(CAM_PITCH)
        self.u, self.v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
        gf, gl, dist = self._ground(self.u, self.v)
        ground = np.isfinite(gf) & (dist < MAX_DISTANCE)
        self.ground_idx = np.flatnonzero(ground.ravel()).astype(np.int64)
        self.gf = gf.ravel()[self.ground_idx].astype(np.float32)
        self.gl = gl.ravel()[self.ground_idx].astype(np.float32)
        fog = 1.0 - np.exp(-dist.ravel()[self.ground_idx] / FOG_DISTANCE)
        self.fog_term = (fog * FOG_SHADE).astype(np.float32)
        self.keep = (1.0 - fog).astype(np.float32)
        # Ground a pixel covers: the distance to the ground points one pixel right and one down.
        gf_r, gl_r, _ = self._ground(self.u + 1.0, self.v)
        gf_d, gl_d, _ = self._ground(self.u, self.v + 1.0)
        with np.errstate(invalid="ignore"):
            footprint = np.maximum(np.hypot(gf_r - gf, gl_r - gl), np.hypot(gf_d - gf, gl_d - gl))
        footprint = np.nan_to_num(footprint.ravel()[self.ground_idx], nan=np.inf, posinf=np.inf)
        self.checker_amp = np.clip(1.0 - footprint / GRASS_SQUARE, 0.0, 1.0).astype(np.float32)
        # Background: sky gradient above the horizon, fog below it (ground pixels are overwritten).
        rows = np.arange(height, dtype=np.float64)
        frac = np.clip(rows / max(self.horizon, 1.0), 0.0, 1.0)
        sky_col = np.where(rows < self.horizon, SKY_TOP + (SKY_HORIZON - SKY_TOP) * frac, FOG_SHADE)
        self.background = np.repeat(sky_col[:, None], width, axis=1).astype(np.float32)
        # Column azimuth offsets (radians, + left) for the skyline.
        self.col_az = -np.arctan((np.arange(width) - self.cx) / self.f)
        self.sprites: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _ground(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Camera-frame ground point (forward, left) of pixel (u, v) and its distance; inf above the horizon."""
        xn, yn = (u - self.cx) / self.f, (v - self.cy) / self.f
        sp, cp = math.sin(CAM_PITCH), math.cos(CAM_PITCH)
        fwd, left, up = cp - yn * sp, -xn, -sp - yn * cp
        t = np.where(up < -1e-6, CAM_HEIGHT / np.maximum(-up, 1e-6), np.inf)
        with np.errstate(invalid="ignore"):
            gf, gl = fwd * t, left * t
        return gf, gl, np.sqrt(gf**2 + gl**2 + CAM_HEIGHT**2)


@lru_cache(maxsize=8)
def _camera(width: int, height: int) -> _Camera:
    return _Camera(width, height)


@njit(cache=True, nogil=True)
def _draw_scene(img, cam_x, cam_y, ch, sh, horizon, f, col_az_heading, skyline, ground_idx, gf, gl, keep, fog_term,
                checker_amp, tile_table, tiles, x0, y0, inv_res):  # fmt: skip
    """Skyline columns and every ground pixel of one frame into `img` (float32, starting as the background)."""
    height = img.shape[0]
    two_pi = 2.0 * math.pi
    n_sky = skyline.shape[0]
    for c in range(img.shape[1]):
        az = col_az_heading[c] % two_pi
        top = horizon - f * math.tan(skyline[int(az * (n_sky / two_pi)) % n_sky])
        for r in range(max(0, int(math.ceil(top))), min(height, int(math.ceil(horizon)))):
            img[r, c] = HILLS
    flat = img.ravel()
    nty, ntx = tile_table.shape
    mask = TILE - 1
    mid, half = 0.5 * (GRASS_A + GRASS_B), 0.5 * (GRASS_B - GRASS_A)
    for k in range(ground_idx.shape[0]):
        wx = cam_x + gf[k] * ch - gl[k] * sh
        wy = cam_y + gf[k] * sh + gl[k] * ch
        ix = int(math.floor((wx - x0) * inv_res))
        iy = int(math.floor((wy - y0) * inv_res))
        road = 0
        tx, ty = ix >> TILE_BITS, iy >> TILE_BITS
        if tx >= 0 and tx < ntx and ty >= 0 and ty < nty:
            t = tile_table[ty, tx]
            if t >= 0:
                road = tiles[t, iy & mask, ix & mask]
        if road > 0:
            shade = np.float32(road)
        else:
            odd = (int(math.floor(wx * (1.0 / GRASS_SQUARE))) + int(math.floor(wy * (1.0 / GRASS_SQUARE)))) & 1
            shade = np.float32(mid + (half if odd else -half) * checker_amp[k])
        flat[ground_idx[k]] = shade * keep[k] + fog_term[k]


@njit(cache=True, nogil=True)
def _to_uint8(img):
    """Rounded to the nearest level (half up) and clipped to 0..255."""
    out = np.empty(img.shape, dtype=np.uint8)
    for r in range(img.shape[0]):
        for c in range(img.shape[1]):
            v = math.floor(img[r, c] + 0.5)
            out[r, c] = 0 if v < 0 else (255 if v > 255 else int(v))
    return out


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


def _tiled(tex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(table, tiles): the texture cut into TILE x TILE tiles, keeping only those with road; table[ty, tx] is a
    tile's index in `tiles` or -1 (no road). A few MB of mostly grass become about a quarter of that."""
    ny, nx = -(-tex.shape[0] // TILE), -(-tex.shape[1] // TILE)
    padded = np.zeros((ny * TILE, nx * TILE), dtype=np.uint8)
    padded[: tex.shape[0], : tex.shape[1]] = tex
    blocks = padded.reshape(ny, TILE, nx, TILE).transpose(0, 2, 1, 3)
    used = blocks.any(axis=(2, 3))
    table = np.full((ny, nx), -1, dtype=np.int32)
    table[used] = np.arange(int(used.sum()), dtype=np.int32)
    return table, np.ascontiguousarray(blocks[used])


class Renderer:
    """Renders frames of one track at `width` x `height` (grayscale uint8)."""

    def __init__(self, track: Track, width: int, height: int, rng: np.random.Generator):
        self.track = track
        self.width, self.height = width, height
        self.cam = _camera(width, height)
        tex, self.x0, self.y0 = build_road_texture(track)
        self.tile_table, self.tiles = _tiled(tex)
        self.inv_res = 1.0 / TEX_RES
        # Skyline: elevation (radians) of the hills as a function of world azimuth, random per track.
        az = np.linspace(0, 2 * np.pi, SKYLINE_SAMPLES, endpoint=False)
        elev = np.zeros_like(az)
        for k in range(1, 9):
            elev += rng.uniform(0.2, 1.0) / k * np.sin(k * az + rng.uniform(0, 2 * np.pi))
        elev = 0.03 + 0.08 * (elev - elev.min()) / (np.ptp(elev) + 1e-9)
        # A few towers give sharper landmarks.
        for _ in range(5):
            c = int(rng.integers(SKYLINE_SAMPLES))
            wdt = int(rng.integers(8, 30))
            elev[np.arange(c, c + wdt) % SKYLINE_SAMPLES] += rng.uniform(0.03, 0.08)
        self.skyline = elev

    def render(self, car_x: float, car_y: float, car_yaw: float, cam_heading: float, speed: float) -> np.ndarray:
        cam = self.cam
        ch, sh = math.cos(cam_heading), math.sin(cam_heading)
        img = cam.background.copy()
        _draw_scene(
            img, car_x - CAM_BEHIND * ch, car_y - CAM_BEHIND * sh, ch, sh, cam.horizon, cam.f,
            cam_heading + cam.col_az, self.skyline, cam.ground_idx, cam.gf, cam.gl, cam.keep, cam.fog_term,
            cam.checker_amp, self.tile_table, self.tiles, self.x0, self.y0, self.inv_res,
        )  # fmt: skip
        shadow, body, shades = _car_sprite(cam, car_yaw - cam_heading)
        flat = img.ravel()
        flat[shadow] *= np.float32(SHADOW_DARKEN)
        flat[body] = shades
        self._draw_speed_bar(img, speed)
        return _to_uint8(img)

    def _draw_speed_bar(self, img: np.ndarray, speed: float) -> None:
        w, h = self.width, self.height
        rows = max(2, h // 32)
        x_end = w // 2
        img[h - rows :, :x_end] = 20.0
        fill = max(0.0, min(1.0, speed / SPEED_BAR_MAX)) * x_end
        full = int(fill)
        img[h - rows :, :full] = 235.0
        if full < x_end:
            img[h - rows :, full] = 20.0 + 215.0 * (fill - full)


# ---------------------------------------------------------------------------------------------- the car


def _car_sprite(cam: _Camera, rel_yaw: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shadow-only pixels, body pixels, body shades) of the car at this yaw relative to the camera, as flat
    indices; drawn once per CAR_YAW_STEP and kept on the camera."""
    key = int(round(((rel_yaw + math.pi) % (2 * math.pi) - math.pi) / CAR_YAW_STEP))
    sprite = cam.sprites.get(key)
    if sprite is None:
        layer = np.full((cam.height, cam.width), np.nan, dtype=np.float32)
        shadow = np.zeros((cam.height, cam.width), dtype=bool)
        _draw_car(cam, layer, shadow, key * CAR_YAW_STEP)
        body = np.isfinite(layer).ravel()
        sprite = (
            np.flatnonzero(shadow.ravel() & ~body),
            np.flatnonzero(body),
            layer.ravel()[body],
        )
        cam.sprites[key] = sprite
    return sprite


def _project(cam: _Camera, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera-frame (fwd, left, up-above-ground) points to pixel (u, v) and depth."""
    sp, cp = math.sin(CAM_PITCH), math.cos(CAM_PITCH)
    f_, l_, uz = pts[:, 0], pts[:, 1], pts[:, 2] - CAM_HEIGHT
    z = f_ * cp - uz * sp
    y = -f_ * sp - uz * cp
    x = -l_
    return cam.cx + cam.f * x / z, cam.cy + cam.f * y / z, z


def _polygon_mask(cam: _Camera, quad_uv: np.ndarray) -> np.ndarray:
    """Pixels whose centres lie inside a convex polygon (either winding)."""
    u, v = cam.u, cam.v
    inside_pos = np.ones(u.shape, dtype=bool)
    inside_neg = np.ones(u.shape, dtype=bool)
    m = len(quad_uv)
    for k in range(m):
        ax, ay = quad_uv[k]
        bx, by = quad_uv[(k + 1) % m]
        cross = (bx - ax) * (v - ay) - (by - ay) * (u - ax)
        inside_pos &= cross >= 0
        inside_neg &= cross <= 0
    return inside_pos | inside_neg


def _draw_car(cam: _Camera, layer: np.ndarray, shadow: np.ndarray, rel_yaw: float) -> None:
    """The car's shadow into `shadow` and its visible faces, back to front, into `layer`."""
    c, s = math.cos(rel_yaw), math.sin(rel_yaw)
    half_l, half_w = 2.1, 1.0

    def corners(hl: float, hw: float, z: float) -> np.ndarray:
        local = np.array([[hl, hw], [hl, -hw], [-hl, -hw], [-hl, hw]])
        f_ = CAM_BEHIND + local[:, 0] * c - local[:, 1] * s
        l_ = local[:, 0] * s + local[:, 1] * c
        return np.stack([f_, l_, np.full(4, z)], axis=1)

    su, sv, _ = _project(cam, corners(half_l + 0.3, half_w + 0.3, 0.0))
    shadow |= _polygon_mask(cam, np.stack([su, sv], axis=1))

    bottom = corners(half_l, half_w, 0.25)
    top = corners(half_l - 0.5, half_w - 0.15, 1.25)
    bu, bv, bz = _project(cam, bottom)
    tu, tv, _ = _project(cam, top)
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
        drawn.append(((bz[a] + bz[b]) / 2, quad, CAR_SHADES[name]))
    for _, quad, shade in sorted(drawn, key=lambda t: -t[0]):
        layer[_polygon_mask(cam, quad)] = shade
    layer[_polygon_mask(cam, np.stack([tu, tv], axis=1))] = CAR_SHADES["top"]
