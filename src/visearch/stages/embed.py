"""Stage 4, embed: vectors for every valid image of the category (all splits) with the model to index.

Rules this stage owns:
- Resume: a stable scratch folder named by the model, the data and the shard (``scratch_dir``)
  keeps the finished parts of an interrupted embed; the re-run takes them over.
- Fan-out: a category may be embedded in ``n`` shards (``embed_shards``), each one range of the
  manifest's rows, each in its own output folder (``output_name``); the upsert joins them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from visearch.categories import Category
from visearch.embed import BATCH_SIZE, Shard
from visearch.errors import ConfigError
from visearch.settings import Settings
from visearch.storage import ObjectStore

EMBEDDINGS = "embeddings"


def output_name(shard: Shard | None) -> str:
    """The folder a shard's vectors land in under a category's work folder: shards land apart."""
    return f"{EMBEDDINGS}-{shard.index}of{shard.count}" if shard and shard.count > 1 else EMBEDDINGS


def scratch_dir(settings: Settings, category: str, model_version: str, data_hash: str, shard: Shard | None) -> Path:
    """The stable folder an embed of this model, data and shard resumes in."""
    name = f"{model_version}-{data_hash}" + (f"-shard{shard.index}of{shard.count}" if shard and shard.count > 1 else "")
    return settings.work_dir / category / "embed-scratch" / name


def embed_shards(category: Category, count: int | None = None) -> list[dict[str, str]]:
    """The embed stage's fan-out: one ``{"category", "shard": "i/n"}`` item per shard.

    ``count``: the run's ``embed_shards``; None takes the category's registry value. The category
    rides in each item: the loop over shards runs inside the loop over categories.
    """
    count = category.embed_shards if count is None else count
    if count < 1:
        raise ConfigError(f"embed_shards must be 1 or more (1 = one embed pod), got {count}")
    return [{"category": category.name, "shard": str(shard)} for shard in Shard.all_of(count)]


def run_embed(
    settings: Settings,
    store: ObjectStore,
    category: Category,
    manifest_dir: Path,
    model_dir: Path,
    out_dir: Path,
    *,
    batch_size: int = BATCH_SIZE,
    show_progress: bool = True,
    shard: Shard | None = None,
    resume: bool = True,
) -> Path:
    """The stage: embed the manifest's images (all, or one ``shard``'s range) into ``out_dir``.

    With ``resume``, the work happens in ``scratch_dir`` and the finished parts are copied to
    ``out_dir`` at the end: a pipeline gives every run fresh output folders, so a stable scratch
    folder is what lets an interrupted embed resume. Without it, ``out_dir`` itself holds the parts.
    """
    from visearch.data.manifest import image_paths, load_manifest, manifest_hash
    from visearch.embed import embed_to_shards
    from visearch.model import load_model, resolve_device
    from visearch.model_files import read_spec

    manifest = load_manifest(manifest_dir)
    keys = manifest["key"].tolist()
    marker: dict[str, str] = {}
    if shard and shard.count > 1:  # an unsharded marker stays as it was: earlier embeddings still resume
        keys = [keys[i] for i in shard.rows(len(keys))]
        marker = {"shard": str(shard)}
    scratch = None
    if resume:
        scratch = scratch_dir(settings, category.name, read_spec(model_dir).version, manifest_hash(manifest), shard)
    model = load_model(model_dir)
    embed_to_shards(
        model,
        keys,
        image_paths(store, settings, keys),
        scratch or out_dir,
        batch_size=batch_size,
        show_progress=show_progress,
        device=resolve_device(settings.visearch_device),
        marker=marker,
        workers=settings.embed_workers,
    )
    if scratch:
        _move_parts(scratch, out_dir)
    return out_dir


def _move_parts(scratch: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(scratch.glob("part-*.npz")):
        if not path.name.endswith(".tmp.npz"):
            shutil.copyfile(path, out_dir / path.name)
    shutil.copyfile(scratch / "done.json", out_dir / "done.json")  # last: marks the copy complete
    shutil.rmtree(scratch, ignore_errors=True)


def shards_step(category: str, count: int | None = None) -> list[dict[str, str]]:
    """The pipeline entry of the fan-out (no MLflow run: it computes nothing)."""
    from visearch.entry_context import Context

    return embed_shards(Context.from_env().category(category), count)


def embed_step(category: str, manifest_dir: Path, model_dir: Path, out_dir: Path, *, shard: str = "0/1") -> Path:
    """The pipeline entry: embed one shard (``"i/n"``; ``"0/1"`` = all) with the model the gate chose."""
    from visearch.entry_context import Context

    ctx = Context.from_env()
    part = Shard.parse(shard)
    return run_embed(*ctx.for_stage(category), manifest_dir, model_dir, out_dir, shard=part)
