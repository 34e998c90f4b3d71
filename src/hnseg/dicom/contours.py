"""Masks to planar contours that give the mask back exactly, whatever the rasteriser's rule for holes.

Contours run along pixel edges (corners at half-integer pixel indices), never through pixel centres, so every
rasteriser that tests pixel centres (hnseg.dicom.rtstruct, plastimatch, most planning systems) decides every pixel
without a tie: a polygon through pixel centres would leave the pixels on its border to each tool's rounding.

Per slice, each 4-connected component of the mask becomes one closed contour (foreground 4-connected, background
8-connected, so two pixels touching at a corner are two contours that share a vertex). A component with holes is
traced as one weakly simple polygon: each hole is joined to the boundary above it by a zero-width cut (the "keyhole"
of DICOM PS3.3 C.8.8.6.3), so the contour encloses exactly the component's pixels. An island inside a hole is
another component, hence another contour, that overlaps no other. The contours of a slice are therefore disjoint
and give the same mask when a tool combines them by union (plastimatch's default) or by XOR (hnseg, plastimatch
`--xor-contours`), and no hole depends on the rule.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# directions as (row step, column step), in clockwise order on the image (rows grow downwards)
EAST, SOUTH, WEST, NORTH = (0, 1), (1, 0), (0, -1), (-1, 0)
DIRECTIONS = (EAST, SOUTH, WEST, NORTH)
FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)
EIGHT_CONNECTED = ndimage.generate_binary_structure(2, 2)


def trace_slice(mask2d: np.ndarray) -> list[np.ndarray]:
    """Closed contours of a 2D mask (rows, columns), each an (n, 2) array of (column, row) vertices in
    continuous pixel indices (pixel centres at integers, vertices at half-integers), the last vertex not repeated.
    The foreground lies to the right of the walk (clockwise on the image)."""
    mask2d = np.asarray(mask2d, dtype=bool)
    components, _ = ndimage.label(mask2d, structure=FOUR_CONNECTED)
    contours = []
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        r0, c0 = box[0].start - 1, box[1].start - 1  # one pixel of background around the component
        component = np.pad(components[box] == index, 1)
        for corners in _trace_component(component):
            contours.append(np.column_stack([corners[:, 1] + c0, corners[:, 0] + r0]) - 0.5)
    return contours


def _trace_component(component: np.ndarray) -> list[np.ndarray]:
    """Corner (row, column) walks of one 4-connected component (padded with background), holes keyholed."""
    out: dict[tuple[int, int], list[tuple[int, int]]] = {}

    def add(rows: np.ndarray, cols: np.ndarray, direction: tuple[int, int], dr: int, dc: int) -> None:
        for r, c in zip((rows + dr).tolist(), (cols + dc).tolist(), strict=True):
            out.setdefault((r, c), []).append(direction)

    m = component
    inner = m[1:-1, 1:-1]
    rows, cols = np.nonzero(inner & ~m[:-2, 1:-1])  # top edges: corner (r, c) -> (r, c + 1)
    add(rows + 1, cols + 1, EAST, 0, 0)
    rows, cols = np.nonzero(inner & ~m[1:-1, 2:])  # right edges: (r, c + 1) -> (r + 1, c + 1)
    add(rows + 1, cols + 1, SOUTH, 0, 1)
    rows, cols = np.nonzero(inner & ~m[2:, 1:-1])  # bottom edges: (r + 1, c + 1) -> (r + 1, c)
    add(rows + 1, cols + 1, WEST, 1, 1)
    rows, cols = np.nonzero(inner & ~m[1:-1, :-2])  # left edges: (r + 1, c) -> (r, c)
    add(rows + 1, cols + 1, NORTH, 1, 0)

    # holes: background regions (8-connected) that do not reach the padding; each is cut open upwards from its
    # top-left corner to the first corner that lies on a boundary (the outer one or that of a higher hole)
    if min(m.shape) < 5:  # a hole needs a component of at least 3 x 3 pixels (4-connected around it)
        return _walks(out)
    background, n_regions = ndimage.label(~m, structure=EIGHT_CONNECTED)
    outside = background[0, 0]
    for region in range(1, n_regions + 1):
        if region == outside:
            continue
        hole_rows, hole_cols = np.nonzero(background == region)
        top = hole_rows.min()
        r, c = int(top), int(hole_cols[hole_rows == top].min())  # corner (r, c): top-left of that pixel
        while True:
            out.setdefault((r, c), []).append(NORTH)
            out.setdefault((r - 1, c), []).append(SOUTH)
            r -= 1
            if not m[r - 1 : r + 1, c - 1 : c + 1].all():  # this corner touches background: on a boundary
                break
    return _walks(out)


def _walks(out: dict[tuple[int, int], list[tuple[int, int]]]) -> list[np.ndarray]:
    """Closed walks using every directed edge once, always taking the rightmost turn (the face on the right).

    Only the corners of each walk are kept (the ends of its straight runs)."""
    walks = []
    while out:
        start = next(iter(out))
        first = out[start][0]
        corners = [start]
        vertex, direction = (start[0] + first[0], start[1] + first[1]), first
        while True:
            outgoing = out[vertex]
            i = DIRECTIONS.index(direction)
            # rightmost first: right turn, straight on, left turn, back
            candidate = next(d for turn in (1, 0, 3, 2) if (d := DIRECTIONS[(i + turn) % 4]) in outgoing)
            if vertex == start and candidate == first:
                break
            outgoing.remove(candidate)
            if not outgoing:
                del out[vertex]
            if candidate != direction:
                corners.append(vertex)
            direction = candidate
            vertex = (vertex[0] + candidate[0], vertex[1] + candidate[1])
        out[start].remove(first)
        if not out[start]:
            del out[start]
        if direction == first:
            corners = corners[1:]  # the start lay inside a straight run
        walks.append(np.asarray(corners, dtype=np.float64))
    return walks
