"""Find known parts in one camera frame: which class each is, and where it lies (centre, yaw) in the world.

Parts are boxes or cylinders of known size and colour lying flat on a horizontal support (a table,
a tote floor, a belt) under a camera that looks roughly down. The algorithm, OpenCV only:

1. Foreground: pixels whose colour is near a class colour, compared by the angle between RGB
   directions (chromaticity: a dimmer, brighter or slightly tinted light scales the three
   channels together and leaves the angle almost unchanged), bright enough for their direction
   to mean something and, when a depth image is given, standing above the support.
2. Blobs: connected components per colour. A blob smaller than `min_area_px` or touching the
   image border (a part only partly in view, whose centroid would be wrong) is dropped.
3. Top face, in metric coordinates on the plane of the part's top. The blob is the top face plus
   the side faces the camera sees. Placed on the plane of the top, the silhouette is
   hull(T ∪ h(T)): T the top face, h the homothety about the camera's foot point that carries the
   part's lowest visible cross-section there as seen from the camera centre (boxes and cylinders
   are prisms: every cross-section is T). So T = silhouette ∩ h⁻¹(silhouette), exactly, with no
   side-face sliver to bias the centroid toward the camera.
   - without depth, the top is at `support_z + size_z` and the lowest section is the support;
   - with depth, the top is measured (the median height of the blob's pixels within
     `top_tolerance` of its highest surface) and the lowest section is where the above-support
     test cut the blob. (Taking those top pixels themselves as the face keeps a sliver of side
     face and was 2-3x less accurate.)
   Outlines are sub-pixel: the blob mask is upsampled bilinearly and cut at 0.5, which puts each
   edge midway between the last pixel centre inside and the first outside.
4. Class: among the classes of the blob's colour, the one whose footprint (rectangle or disc of
   its size, at the face's centroid and yaw) overlaps the top face best (IoU), so shape and size
   decide between classes sharing a colour; with depth the measured height must match too, and
   its mismatch (relative to the class height) is subtracted from the IoU.
5. Pose: position = top-face centroid less half the part's height; yaw from the directions of the
   top face's edges (see `_box_yaw`), wrapped to the part's symmetry.

Isolated parts are assumed: touching parts of one colour form one blob, which fits no class and is
dropped (or, for a stack of heights, is seen as its top part).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

from perception.camera_model import PinholeCamera
from perception.errors import PerceptionError

SHAPES = ("box", "cylinder")
_UPSAMPLE = 4  # sub-pixel outline: blob masks are upsampled this much before tracing
_DISC_SIDES = 48  # a cylinder's footprint as a polygon


@dataclass(frozen=True)
class PartClass:
    """A kind of part: its name, colour, shape and size.

    color: RGB, either 0-255 (when any value exceeds 1) or 0-1; stored as 0-1 floats.
    size: (x, y, z) extent in metres; for a cylinder x = y = its diameter, z its height.
    """

    name: str
    color: tuple[float, float, float]
    shape: str
    size: tuple[float, float, float]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise PerceptionError(f"a part class needs a non-empty name, got {self.name!r}")
        if self.shape not in SHAPES:
            raise PerceptionError(f"part class {self.name!r}: shape must be one of {', '.join(SHAPES)}, got {self.shape!r}")
        color = np.asarray(self.color, dtype=np.float64).reshape(-1)
        if color.size != 3 or not np.all(np.isfinite(color)) or np.any(color < 0):
            raise PerceptionError(f"part class {self.name!r}: color must be three non-negative numbers (RGB), got {self.color!r}")
        if np.any(color > 1.0):
            if np.any(color > 255):
                raise PerceptionError(f"part class {self.name!r}: a 0-255 color has values up to 255, got {self.color!r}")
            color = color / 255.0
        if color.max() < 0.1:
            raise PerceptionError(f"part class {self.name!r}: color {self.color!r} is too dark to be told apart by its hue")
        size = np.asarray(self.size, dtype=np.float64).reshape(-1)
        if size.size != 3 or not np.all(np.isfinite(size)) or np.any(size <= 0):
            raise PerceptionError(f"part class {self.name!r}: size must be three positive lengths (x, y, z in m), got {self.size!r}")
        if self.shape == "cylinder" and not math.isclose(size[0], size[1], rel_tol=1e-6):
            raise PerceptionError(f"part class {self.name!r}: a cylinder's size is (diameter, diameter, height), got {self.size!r}")
        object.__setattr__(self, "color", tuple(float(c) for c in color))
        object.__setattr__(self, "size", tuple(float(s) for s in size))

    @property
    def square(self) -> bool:
        """A footprint that looks the same turned a quarter turn (its yaw is known only modulo pi/2)."""
        return self.shape == "box" and math.isclose(self.size[0], self.size[1], rel_tol=1e-6)


@dataclass(frozen=True, eq=False)
class Detection:
    """One part found in a frame.

    position: the part's centre in world metres. yaw: rad about world z, wrapped to the part's
    symmetry (box: [-pi/4, pi/4) if square in x-y, else [-pi/2, pi/2); cylinder: 0.0).
    pixel: (u, v) of the top face's centre. box: (x, y, w, h) pixel bounding box of the blob.
    area_px: the blob's pixel count. score: 0-1 colour match (1 = exactly the class's hue).
    fit: 0-1 overlap (IoU) of the measured top face with the class's footprint at that pose: near 1
    for a part seen whole, lower for one partly hidden (whose centre is then less sure).
    """

    class_name: str
    shape: str
    position: np.ndarray
    yaw: float
    pixel: tuple[float, float]
    box: tuple[int, int, int, int]
    area_px: int
    score: float
    fit: float = 1.0


@dataclass(frozen=True)
class _TopFace:
    polygon_mm: np.ndarray  # (N, 2) float32 convex polygon, world x-y in millimetres
    z_top: float  # height of the top face (m)


class PartLocator:
    """Locates parts of the given classes in RGB (and optionally depth) frames from a calibrated camera.

    support_z: height of the support surface (m). Required without depth; with depth, when None, it
    is measured as the median height of the pixels that match no class.
    max_color_distance: largest angle (rad) between a pixel's RGB direction and its class colour's.
    min_area_px: smaller blobs are noise, not parts.
    min_brightness: darker pixels (max channel, 0-1) are ignored: their hue is noise.
    top_tolerance: with depth, the top's height is the median over the blob's pixels within this much (m)
      of its highest surface.
    min_fit: a blob whose top face overlaps its best class footprint less than this (IoU) is dropped.
    """

    def __init__(self, classes: Sequence[PartClass], support_z: Optional[float] = None, max_color_distance: float = 0.25,
                 min_area_px: int = 10, *, min_brightness: float = 0.08, top_tolerance: float = 0.005, min_fit: float = 0.6):
        classes = list(classes)
        if not classes:
            raise PerceptionError("a part locator needs at least one part class; the class list is empty")
        for part in classes:
            if not isinstance(part, PartClass):
                raise PerceptionError(f"part classes must be PartClass, got {type(part).__name__}")
        names = [c.name for c in classes]
        if len(set(names)) != len(names):
            raise PerceptionError(f"part class names must be unique, got {names}")
        if not 0.0 < max_color_distance < math.pi / 2:
            raise PerceptionError(f"max_color_distance is an angle in (0, pi/2) rad, got {max_color_distance}")
        if support_z is not None and not math.isfinite(support_z):
            raise PerceptionError(f"support_z must be a finite height in m, got {support_z}")
        self.classes = classes
        self.support_z = None if support_z is None else float(support_z)
        self.max_color_distance = float(max_color_distance)
        self.min_area_px = int(min_area_px)
        self.min_brightness = float(min_brightness)
        self.top_tolerance = float(top_tolerance)
        self.min_fit = float(min_fit)
        # Classes that share a colour are found together and told apart by shape and size.
        self._colors: list[tuple[float, float, float]] = []
        self._by_color: list[list[PartClass]] = []
        for part in classes:
            if part.color not in self._colors:
                self._colors.append(part.color)
                self._by_color.append([])
            self._by_color[self._colors.index(part.color)].append(part)
        # With depth, a part's pixels stand this far above the support (half the lowest part: robust to depth noise).
        self._above_support = 0.5 * min(c.size[2] for c in classes)

    # ------------------------------------------------------------------ the frame

    def locate(self, rgb: np.ndarray, camera: PinholeCamera, depth: Optional[np.ndarray] = None) -> list[Detection]:
        """The parts in `rgb` (H, W, 3 uint8, as `camera` sees them), sorted by world x, then y.

        depth: optional (H, W) distances along the optical axis (m), as a depth camera gives them;
        non-finite or non-positive values mean no reading.
        """
        self._check_frame(rgb, camera, depth)
        heights = None if depth is None else self._heights(camera, depth)
        angle, group = self._color_match(rgb)
        matched = (angle <= self.max_color_distance) & (rgb.max(axis=2) >= self.min_brightness * 255.0)
        support_z = self._support(matched, heights)
        if heights is not None:
            matched &= heights > support_z + self._above_support
        detections = []
        for g, candidates in enumerate(self._by_color):
            mask = (matched & (group == g)).astype(np.uint8)
            count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            for i in range(1, count):
                found = self._detect(labels, i, stats[i], candidates, angle, camera, heights, support_z)
                if found is not None:
                    detections.append(found)
        return sorted(detections, key=lambda d: (d.position[0], d.position[1], d.class_name))

    def _check_frame(self, rgb, camera: PinholeCamera, depth) -> None:
        if not isinstance(camera, PinholeCamera):
            raise PerceptionError(f"locate needs a PinholeCamera, got {type(camera).__name__}")
        expected = (camera.height, camera.width, 3)
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.shape != expected:
            got = f"{rgb.shape} {rgb.dtype}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
            raise PerceptionError(f"the RGB frame must be a uint8 array of shape {expected} (the camera's "
                                  f"{camera.width}x{camera.height}), got {got}")
        if depth is not None:
            if not isinstance(depth, np.ndarray) or depth.shape != expected[:2] or not np.issubdtype(depth.dtype, np.floating):
                got = f"{depth.shape} {depth.dtype}" if isinstance(depth, np.ndarray) else type(depth).__name__
                raise PerceptionError(f"the depth image must be a float array of shape {expected[:2]} (metres, the "
                                      f"camera's {camera.width}x{camera.height}), got {got}")
        elif self.support_z is None:
            raise PerceptionError("without a depth image the locator needs support_z, the height of the surface the parts lie on")

    @staticmethod
    def _heights(camera: PinholeCamera, depth: np.ndarray) -> np.ndarray:
        """World z (m) of every pixel; NaN where the depth image has no reading."""
        h, w = depth.shape
        vs, us = np.mgrid[0:h, 0:w]
        z = depth.astype(np.float64).reshape(-1)
        valid = np.isfinite(z) & (z > 0)
        heights = np.full(z.shape, np.nan)
        pixels = np.stack([us.reshape(-1), vs.reshape(-1)], axis=1)[valid]
        heights[valid] = camera.backproject(pixels, z[valid])[:, 2]
        return heights.reshape(h, w)

    def _color_match(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per pixel: the angle (rad) to the nearest class colour and that colour's index."""
        pixels = rgb.reshape(-1, 3).astype(np.float32) + 1e-3  # black has no direction; keep it finite
        pixels /= np.linalg.norm(pixels, axis=1, keepdims=True)
        colors = np.asarray(self._colors, dtype=np.float32)
        colors /= np.linalg.norm(colors, axis=1, keepdims=True)
        cosines = pixels @ colors.T
        group = np.argmax(cosines, axis=1)
        angle = np.arccos(np.clip(cosines[np.arange(len(group)), group], -1.0, 1.0))
        return angle.reshape(rgb.shape[:2]), group.reshape(rgb.shape[:2])

    def _support(self, matched: np.ndarray, heights: Optional[np.ndarray]) -> float:
        if self.support_z is not None:
            return self.support_z
        background = heights[~matched]
        background = background[np.isfinite(background)]
        if background.size == 0:
            raise PerceptionError("cannot measure the support height: no pixel outside the parts has a depth reading; give support_z")
        return float(np.median(background))

    # ------------------------------------------------------------------ one blob

    def _detect(self, labels, index, stat, candidates, angle, camera, heights, support_z) -> Optional[Detection]:
        x, y, w, h, area = (int(v) for v in stat)
        if area < self.min_area_px:
            return None
        rows, cols = labels.shape
        if x == 0 or y == 0 or x + w == cols or y + h == rows:
            return None  # partly out of view: its centroid would not be the part's
        x0, y0 = max(x - 2, 0), max(y - 2, 0)  # a margin so the outline is closed inside the crop
        crop = (slice(y0, min(y + h + 2, rows)), slice(x0, min(x + w + 2, cols)))
        blob = labels[crop] == index
        cut_z = support_z  # the lowest height the blob shows: the support, or where depth cut it
        measured_top = None
        if heights is not None:
            cut_z = support_z + self._above_support
            measured_top = self._top_height(blob, heights[crop])
            if measured_top is None:
                return None
        best: Optional[tuple[float, float, PartClass, _TopFace, float]] = None  # rank, fit, class, face, yaw
        for part in candidates:
            top_z, height_penalty = support_z + part.size[2], 0.0
            if measured_top is not None:
                top_z = measured_top
                height_error = abs(measured_top - support_z - part.size[2])
                if height_error > self._height_tolerance(part):
                    continue  # the wrong height for this class
                height_penalty = height_error / part.size[2]  # the measured height votes too
            face = _top_face(blob, (x0, y0), camera, top_z, cut_z)
            if face is None:
                continue
            fit, yaw = _fit(face.polygon_mm, part)
            if best is None or fit - height_penalty > best[0]:
                best = (fit - height_penalty, fit, part, face, yaw)
        if best is None or best[1] < self.min_fit:
            return None
        _, _, part, face, yaw = best
        moments = cv2.moments(face.polygon_mm)
        centre = np.array([moments["m10"] / moments["m00"] / 1000.0, moments["m01"] / moments["m00"] / 1000.0, face.z_top])
        u, v = camera.project(centre[None])[0]
        score = 1.0 - float(np.mean(angle[crop][blob])) / self.max_color_distance
        return Detection(part.name, part.shape, centre - np.array([0.0, 0.0, part.size[2] / 2.0]), yaw,
                         (float(u), float(v)), (x, y, w, h), area, float(np.clip(score, 0.0, 1.0)), float(best[1]))

    def _top_height(self, blob: np.ndarray, heights: np.ndarray) -> Optional[float]:
        """The median height (m) of the blob's pixels within top_tolerance of its highest surface."""
        blob_heights = heights[blob]
        blob_heights = blob_heights[np.isfinite(blob_heights)]
        if blob_heights.size == 0:
            return None
        peak = float(np.percentile(blob_heights, 95))  # the top, robust to a few noisy readings
        return float(np.median(blob_heights[blob_heights >= peak - self.top_tolerance]))

    def _height_tolerance(self, part: PartClass) -> float:
        return max(2.0 * self.top_tolerance, 0.25 * part.size[2])


# ---------------------------------------------------------------------- geometry


def _subpixel_outline(mask: np.ndarray, origin: tuple[int, int]) -> Optional[np.ndarray]:
    """(N, 2) image points on the outline of mask (a crop whose top-left pixel is `origin`), to sub-pixel."""
    up = cv2.resize(mask.astype(np.float32), None, fx=_UPSAMPLE, fy=_UPSAMPLE, interpolation=cv2.INTER_LINEAR)
    contours, _ = cv2.findContours((up >= 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    points = np.concatenate(contours).reshape(-1, 2).astype(np.float64)
    # cv2.resize maps upsampled pixel j to source coordinate (j + 0.5) / s - 0.5.
    return (points + 0.5) / _UPSAMPLE - 0.5 + np.asarray(origin, dtype=np.float64)


def _hull_mm(points_world: np.ndarray) -> np.ndarray:
    """Convex hull of world points' x-y, in millimetres (OpenCV's polygon routines want sizes well above 1e-3)."""
    return cv2.convexHull((points_world[:, :2] * 1000.0).astype(np.float32)).reshape(-1, 2)


def _top_face(blob, origin, camera: PinholeCamera, top_z: float, cut_z: float) -> Optional[_TopFace]:
    """The top face (at height top_z) of a flat-lying prism whose silhouette above height cut_z is blob.

    On the plane top_z the silhouette is hull(T ∪ h(T)), T the top face and h the homothety about the
    camera's foot point that carries the prism's cross-section at cut_z there (seen from the camera
    centre); so T = silhouette ∩ h⁻¹(silhouette), free of the side faces.
    """
    outline = _subpixel_outline(blob, origin)
    eye = camera.position
    if outline is None or eye[2] <= top_z or top_z <= cut_z:
        return None
    silhouette = _hull_mm(camera.intersect_plane(outline, top_z))
    foot = (eye[:2] * 1000.0).astype(np.float32)
    k = (eye[2] - top_z) / (eye[2] - cut_z)  # how much h shrinks the cross-section about the foot point
    unshrunk = (foot + (silhouette - foot) / k).astype(np.float32)
    area, face = cv2.intersectConvexConvex(silhouette, unshrunk)
    if area <= 0 or face is None:
        return None
    return _TopFace(face.reshape(-1, 2).astype(np.float32), top_z)


def _fit(face_mm: np.ndarray, part: PartClass) -> tuple[float, float]:
    """(IoU of the top face with the class's footprint placed on it, the yaw that placement uses)."""
    moments = cv2.moments(face_mm)
    if moments["m00"] <= 0:
        return 0.0, 0.0
    centre = np.array([moments["m10"], moments["m01"]]) / moments["m00"]
    sx, sy = part.size[0] * 1000.0, part.size[1] * 1000.0
    if part.shape == "cylinder":
        yaw = 0.0
        angles = np.linspace(0.0, 2 * math.pi, _DISC_SIDES, endpoint=False)
        footprint = centre + 0.5 * sx * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    else:
        yaw = _box_yaw(face_mm, part)
        c, s = math.cos(yaw), math.sin(yaw)
        corners = np.array([[sx, sy], [-sx, sy], [-sx, -sy], [sx, -sy]]) / 2.0
        footprint = centre + corners @ np.array([[c, s], [-s, c]])
    footprint = footprint.astype(np.float32)
    overlap, _ = cv2.intersectConvexConvex(face_mm, footprint)
    union = cv2.contourArea(face_mm) + cv2.contourArea(footprint) - overlap
    return (float(overlap / union) if union > 0 else 0.0), yaw


def _box_yaw(face_mm: np.ndarray, part: PartClass) -> float:
    """Yaw of the box's x side from its top face's outline, wrapped to its symmetry.

    The sides' direction modulo a quarter turn is the mean of the edge directions on the circle of
    4 * angle, each edge weighted by its length squared (long edges have the surest direction);
    cut corners sit 45 deg off and weaken the mean without turning it. (cv2.minAreaRect rests on the
    two extreme points only and was off by up to 8 deg on parts 10 pixels wide.) Which side is x
    follows from the face's extents along the two directions.
    """
    points = face_mm.astype(np.float64)
    edges = np.roll(points, -1, axis=0) - points
    weights = np.einsum("ij,ij->i", edges, edges)
    angles = np.arctan2(edges[:, 1], edges[:, 0])
    side = math.atan2(float(weights @ np.sin(4 * angles)), float(weights @ np.cos(4 * angles))) / 4.0
    along = np.array([math.cos(side), math.sin(side)])
    across = np.array([-along[1], along[0]])
    l1, l2 = np.ptp(points @ along), np.ptp(points @ across)
    sx, sy = part.size[0] * 1000.0, part.size[1] * 1000.0
    if (l1 - sx) ** 2 + (l2 - sy) ** 2 > (l1 - sy) ** 2 + (l2 - sx) ** 2:
        side += math.pi / 2  # the x side runs across
    return wrap_angle(side, math.pi / 2 if part.square else math.pi)


def wrap_angle(angle: float, period: float) -> float:
    """angle wrapped into [-period/2, period/2)."""
    return (angle + period / 2.0) % period - period / 2.0
