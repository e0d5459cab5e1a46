"""Picks: reorder a list of recipes by what the user clicked in the last five minutes.

The user's taste is the mean embedding of the recipes clicked in the window (SQLite joins the
clicks with the items feature table and the vectors never become Python floats one by one);
the scorer graph computes its dot product with every listed recipe's embedding.
"""

from waystation.device import Tensor, export

WINDOW_MINUTES = 5
DIM = 384


@export
def catalog(ctx) -> list[dict]:
    """The recipes in the device's copy of the items table, in published order."""
    return ctx.features("items").select("item_id", "title").sort("item_id").rows()


@export
async def rerank(ctx, item_ids: list[str]) -> list[str]:
    """`item_ids` best first for the clicks of the last five minutes; as given without any."""
    clicked = (ctx.events("clicks").since(minutes=WINDOW_MINUTES)
               .join(ctx.features("items"), on="item_id")
               .select("embedding"))
    user = clicked.mean("embedding")
    if user is None:
        return list(item_ids)
    listed = ctx.features("items").where("item_id", "in", list(item_ids)).select("item_id", "embedding").sort("item_id")
    ids = [row["item_id"] for row in listed.select("item_id").rows()]
    if not ids:
        return list(item_ids)
    out = await ctx.models["scorer"].run({"user": Tensor("float32", user, (1, DIM)), "items": listed.tensor("embedding")})
    scores = dict(zip(ids, out["scores"].tolist()[0]))
    # Unknown ids keep their place after the scored ones; ties keep the given order.
    order = {item: i for i, item in enumerate(item_ids)}
    return sorted(item_ids, key=lambda item: (-scores[item] if item in scores else float("inf"), order[item]))


@export
def recent_clicks(ctx) -> list[dict]:
    """Clicks per recipe in the window, most first: what the ranking is made of."""
    return (ctx.events("clicks").since(minutes=WINDOW_MINUTES).group_by("item_id")
            .agg(clicks=("id", "count")).sort("clicks", descending=True).rows())


@export
def items_age(ctx) -> float | None:
    """Seconds since the device's copy of the items table was last known current (None: no copy)."""
    return ctx.features("items", stale_ok=True).age


@export
def stored_clicks(ctx) -> int:
    """Every click kept on this device (retention: a week, at most 5,000)."""
    return ctx.events("clicks").count()
