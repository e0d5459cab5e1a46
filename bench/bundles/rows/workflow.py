"""Classify rows of four features in bulk: the rows arrive as one tensor, the answers leave as two."""

from waystation.device import Tensor, export


@export
async def classify(ctx, rows: Tensor) -> dict:
    """Labels (int64) and class probabilities (float32, [n, 3]) for `rows`, a [n, 4] float32 tensor."""
    if len(rows.shape) != 2 or rows.shape[1] != 4:
        raise ValueError(f"rows must be [n, 4], got {list(rows.shape)}")
    out = await ctx.models["classifier"].run({"features": rows})
    return {"labels": out["label"], "probabilities": out["probabilities"]}
