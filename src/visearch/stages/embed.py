"""Stage 4, embed: vectors for every valid image of the category (all splits) with the model to index.

Rules this stage owns:
- Resume: an embed of one model, data and shard works in a stable scratch folder and keeps each
  finished part in the object store as well (``EmbedNames``). A re-run takes the parts over from the
  folder, or, in a retried pod whose filesystem is new (a Kubeflow retry, a drained node), from the
  object store; the store's copies are deleted once the output is complete.
- Fan-out: a category may be embedded in ``n`` shards (``embed_shards``), each one range of the
  manifest's rows, each in its own output folder (``output_name``); the upsert joins them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from visearch.categories import Category
from visearch.embed import BATCH_SIZE, SHARD_SIZE, Shard
from visearch.errors import ConfigError
from visearch.settings import Settings
from visearch.storage import ObjectStore

EMBEDDINGS = "embeddings"
DONE = "done.json"


def output_name(shard: Shard | None) -> str:
    """The folder a shard's vectors land in under a category's work folder: shards land apart."""
    return f"{EMBEDDINGS}-{shard.index}of{shard.count}" if shard and shard.count > 1 else EMBEDDINGS


@dataclass(frozen=True)
class EmbedNames:
    """Where one embed of a model, data and shard keeps its finished parts until its output is complete.

    The object store, not a volume, outlives the pod: it is already there for every step, shards on
    different nodes reach it at once (a ReadWriteOnce volume attaches to one node), and train keeps its
    checkpoint there too (``TrainingNames``).
    """

    scratch: Path
    parts_prefix: str

    @classmethod
    def of(
        cls, settings: Settings, category: str, model_version: str, data_hash: str, shard: Shard | None
    ) -> EmbedNames:
        """Names from the model, the data and the shard: another model or other data never resumes these parts."""
        name = f"{model_version}-{data_hash}" + (
            f"-shard{shard.index}of{shard.count}" if shard and shard.count > 1 else ""
        )
        return cls(settings.work_dir / category / "embed-scratch" / name, f"checkpoints/{category}/embed/{name}")

    def part_key(self, part: Path) -> str:
        """The object-store key of a finished part."""
        return f"{self.parts_prefix}/{part.name}"

    def fetch_parts(self, store: ObjectStore, settings: Settings) -> int:
        """Copy the parts the store keeps and the scratch folder lacks into it; the number copied."""
        from visearch.data.manifest import cache_dir

        self.scratch.mkdir(parents=True, exist_ok=True)
        fetched = 0
        for key in store.list(self.parts_prefix):
            target = self.scratch / key.rsplit("/", 1)[1]
            if not target.exists():
                shutil.copyfile(store.local_path(key, cache_dir(settings)), target)
                fetched += 1
        return fetched

    def forget(self, store: ObjectStore) -> None:
        """Delete the store's copies and the scratch folder: the output holds the embeddings now."""
        for key in list(store.list(self.parts_prefix)):
            store.delete(key)
        shutil.rmtree(self.scratch, ignore_errors=True)


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
    part_size: int = SHARD_SIZE,
) -> Path:
    """The stage: embed the manifest's images (all, or one ``shard``'s range) into ``out_dir``.

    With ``resume``, the work happens in the ``EmbedNames`` scratch folder, each finished part is
    also put in the object store, and the parts are copied to ``out_dir`` at the end: a pipeline
    gives every run (and every retry) fresh output folders and, on a cluster, a fresh filesystem.
    Without it, ``out_dir`` itself holds the parts. ``part_size``: images per part (the unit of resume).
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
    names = None
    if resume:
        names = EmbedNames.of(settings, category.name, read_spec(model_dir).version, manifest_hash(manifest), shard)
        if fetched := names.fetch_parts(store, settings):
            print(f"embed {category.name}: resuming with {fetched} finished part(s) from the object store")
    model = load_model(model_dir)
    embed_to_shards(
        model,
        keys,
        image_paths(store, settings, keys),
        names.scratch if names else out_dir,
        batch_size=batch_size,
        shard_size=part_size,
        show_progress=show_progress,
        device=resolve_device(settings.visearch_device),
        marker=marker,
        workers=settings.embed_workers,
        on_part=(lambda part: store.put_file(names.part_key(part), part)) if names else None,
    )
    if names:
        _copy_parts(names.scratch, out_dir)
        names.forget(store)
    return out_dir


def _copy_parts(scratch: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(scratch.glob("part-*.npz")):
        if not path.name.endswith(".tmp.npz"):
            shutil.copyfile(path, out_dir / path.name)
    shutil.copyfile(scratch / DONE, out_dir / DONE)  # last: marks the copy complete


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
