"""Component `shards`: the embed step's fan-out over the category (README "Scale")."""

from typing import Dict, List  # noqa: UP035 - kfp parses typing.List/Dict, not list/dict


def shards(category: str, embed_shards: int = -1) -> List[Dict[str, str]]:  # noqa: UP006
    """One ``{"category", "shard": "i/n"}`` item per embed pod; -1 keeps the registry's ``embed_shards``."""
    from components.errors import step_errors
    from components.params import is_unset
    from visearch.stages.embed import shards_step

    with step_errors():
        return shards_step(category, None if is_unset(embed_shards) else embed_shards)
