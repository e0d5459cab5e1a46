"""Digits workflow: turn a drawing into the 8x8 features the classifier knows, and explain the answer.

scikit-learn's digits are 32x32 bitmaps reduced to 8x8 blocks of ink counts (0-16). A
drawing from the page arrives as ink intensities in [0, 1]; `classify` crops it to its
ink, centres it in a square, averages it down to 8x8 and scales it to 0-16 first.
"""

from waystation.device import Tensor, export

GRID = 8
MAX_INK = 16.0
TOP_K = 3
THICKEN = 0.08


@export
async def classify(ctx, pixels: list[float], width: int, height: int) -> dict:
    """Classify one drawing given as `width` x `height` row-major ink intensities in [0, 1]."""
    if width * height != len(pixels):
        raise ValueError(f"pixels has {len(pixels)} values, but width x height is {width * height}")
    with ctx.metrics.timer("preprocess_ms"):
        features = to_features(pixels, width, height)
    result = (await _predict(ctx, [features]))[0]
    result["features"] = features
    return result


@export
async def classify_features(ctx, features: list[list[float]]) -> list[dict]:
    """Classify a batch of ready 8x8 feature vectors (64 values in 0-16 each), as in the data set."""
    for i, row in enumerate(features):
        if len(row) != GRID * GRID:
            raise ValueError(f"features[{i}] has {len(row)} values, expected {GRID * GRID}")
    return await _predict(ctx, features)


@export
async def probabilities(ctx, features: Tensor) -> Tensor:
    """The model's raw class probabilities, a [batch, 10] float32 tensor (a typed array in the page).

    `features` is a [batch, 64] float32 tensor: from the page a Float32Array (with its shape, as
    {dtype, shape, data}) or nested lists, which the worker packs into one typed array; from the
    CLI nested lists. It reaches the model without a Python float per value.
    """
    return (await ctx.models["classifier"].run({"pixels": features}))["probabilities"]


@export
def samples(ctx) -> list[dict]:
    """Held-out images of each digit, shipped with the bundle, for trying the model."""
    return ctx.files.read_json("samples.json")["samples"]


async def _predict(ctx, rows: list[list[float]]) -> list[dict]:
    flat = [v for row in rows for v in row]
    with ctx.metrics.timer("model_ms"):
        out = await ctx.models["classifier"].run({"pixels": Tensor("float32", flat, (len(rows), GRID * GRID))})
    labels = out["label"].tolist()
    probabilities = out["probabilities"].tolist()
    # The model's confidence, a declared telemetry signal (bundle.toml): the mean top probability
    # of the call's rows. Only the number's bin leaves the device, and only with telemetry on.
    if probabilities:
        ctx.metrics.record("top_score", sum(max(p) for p in probabilities) / len(probabilities))
    return [_explain(label, probs) for label, probs in zip(labels, probabilities)]


def _explain(label: int, probs: list[float]) -> dict:
    ranked = sorted(range(len(probs)), key=probs.__getitem__, reverse=True)[:TOP_K]
    return {"digit": label, "top": [{"digit": d, "p": round(probs[d], 6)} for d in ranked]}


def to_features(pixels: list[float], width: int, height: int) -> list[float]:
    """Crop to the ink, pad to a centred square, average down to 8x8, scale to 0-16."""
    rows = [r for r in range(height) if max(pixels[r * width : (r + 1) * width]) > 0.05]
    cols = [c for c in range(width) if max(pixels[c::width]) > 0.05]
    if not rows:
        raise ValueError("the image is blank: draw a digit first")
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    side = max(bottom - top, right - left)  # the data set's digits fill their box (measured: no margin fits best)
    # The data set's pen is about a quarter of the box wide; a mouse or finger stroke is
    # thinner, so widen the ink before averaging (a max filter, THICKEN of the box wide).
    pixels = _dilate(pixels, width, height, round(side * THICKEN / 2))
    y0 = (top + bottom - side) / 2
    x0 = (left + right - side) / 2
    wy = _weights(y0, side, height)
    wx = _weights(x0, side, width)
    out = []
    for gy in range(GRID):
        for gx in range(GRID):
            total = 0.0
            for y, w_y in wy[gy]:
                base = y * width
                for x, w_x in wx[gx]:
                    total += pixels[base + x] * w_y * w_x
            out.append(min(MAX_INK, total * MAX_INK))
    return out


def _dilate(pixels: list[float], width: int, height: int, radius: int) -> list[float]:
    """A separable max filter: rows, then columns."""
    if radius <= 0:
        return pixels
    rows = [
        max(pixels[y * width + max(0, x - radius) : y * width + min(width, x + radius + 1)])
        for y in range(height)
        for x in range(width)
    ]
    return [
        max(rows[yy * width + x] for yy in range(max(0, y - radius), min(height, y + radius + 1)))
        for y in range(height)
        for x in range(width)
    ]


def _weights(start: float, side: float, size: int) -> list[list[tuple[int, float]]]:
    """For each of the 8 output cells, the source pixels it covers and their share of its area."""
    cell = side / GRID
    cells = []
    for g in range(GRID):
        lo, hi = start + g * cell, start + (g + 1) * cell
        cover = []
        for p in range(max(0, int(lo)), min(size, int(hi) + 1)):
            overlap = min(hi, p + 1) - max(lo, p)
            if overlap > 0:
                cover.append((p, overlap / cell))
        cells.append(cover)
    return cells
