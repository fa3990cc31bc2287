"""One typed settings object, read from the environment (and `.env`). Nothing happens at import."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# The most files one multipart request may carry: /recommend's 64 positive and 64 negative
# images, and the most a batch search may hold. The service refuses a form with more while
# parsing it, and MAX_BATCH_IMAGES cannot exceed it.
MAX_FORM_FILES = 128


class Settings(BaseSettings):
    """Where visearch keeps its data and which engines it talks to.

    Unset engine settings mean the embedded default: Qdrant's embedded engine (qdrant-edge), MLflow on SQLite and a
    local folder for objects, all under ``VISEARCH_HOME``. Env names keep the seed's spelling.
    """

    # A blank `NAME=` in .env means "unset", not an empty path or string.
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True)

    visearch_home: Path = Field(default=Path(".visearch"), description="Data home for embedded engines")
    visearch_categories: Path | None = Field(
        default=None, description="Category registry YAML; unset = the one shipped with the package"
    )

    qdrant_url: str | None = Field(
        default=None, description="Qdrant server URL; unset = the embedded engine (qdrant-edge) under the home"
    )
    qdrant_host: str | None = Field(default=None, description="Seed-style Qdrant host (with QDRANT_PORT)")
    qdrant_port: int = 6333
    qdrant_https: bool = Field(default=False, description="TLS for the seed-style QDRANT_HOST/QDRANT_PORT address")
    qdrant_api_key: SecretStr | None = None
    # 128: recall@10 1.000 on 100k real embeddings (0.999 at 64), p50 0.2 ms; see
    # benchmarks/results/index-realistic-tuning.md and index-realistic.md for 1M points.
    qdrant_hnsw_ef: int = Field(
        default=128, ge=1, description="HNSW beam width per query (higher = better recall, slower); both engines"
    )
    # A reopened version's first queries otherwise page its files in from disk one by one: at 1M
    # points p50 5.6 ms / p99 27.6 ms against 0.28 / 0.54 after reading its 862 MB once (0.35 s);
    # benchmarks/results/index-realistic.md. Off for one-off CLI queries on huge categories.
    qdrant_warm_on_open: bool = Field(
        default=True, description="Embedded engine: read an index version's files once when a process opens it"
    )
    # Each open version gets its own pool (4 threads on 2 cores by default) and every query hops to
    # it: with the service already running one query per core, the pool only costs CPU (0.58 -> 0.31
    # ms per query on the demo, 0.50 -> 0.19 on the 70,000-image category; benchmarks/results/load.md).
    qdrant_search_threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Embedded engine: threads of an index version's search pool, fixed when the version is created",
    )
    # A Qdrant server (cluster) spreads a collection over nodes: README "Scale". The embedded engine
    # holds one shard in this process and ignores both.
    qdrant_shard_number: int | None = Field(
        default=None, ge=1, description="Shards of each new collection on a Qdrant server; unset = the server's default"
    )
    qdrant_replication_factor: int | None = Field(
        default=None, ge=1, description="Copies of each shard on a Qdrant cluster; unset = the server's default (1)"
    )

    minio_host: str | None = Field(
        default=None, description="MinIO/S3 endpoint host:port or http(s)://host:port; unset = local folder"
    )
    minio_access_key: SecretStr | None = None
    minio_secret_key: SecretStr | None = None
    minio_bucket_name: str = "visearch"
    minio_main_path: str = ""
    minio_secure: bool = Field(default=True, description="TLS for MinIO (the seed hard-coded it on)")
    minio_region: str | None = None

    mlflow_tracking_uri: str | None = Field(default=None, description="unset = sqlite under the home")
    visearch_require_engines: bool = Field(
        default=False,
        description="Refuse the embedded fallbacks: a missing QDRANT_URL, MINIO_HOST or MLFLOW_TRACKING_URI is an "
        "error (true in the k8s manifests; also implied inside Kubeflow pipeline pods)",
    )
    # MLflow's own client variables: a server with authentication (`mlflow server --app-name
    # basic-auth`) gets them as HTTP basic auth. Read here too so a `.env` file sets them.
    mlflow_tracking_username: str | None = Field(default=None, description="User on an MLflow server with auth")
    mlflow_tracking_password: SecretStr | None = None

    # Every engine client (object store, Qdrant server, MLflow server) is bounded by these: one call
    # to an engine that does not answer fails after `engine_deadline` seconds (503 in the service).
    engine_connect_timeout: float = Field(
        default=3.0,
        gt=0,
        description="Seconds to open a connection to an engine (Qdrant's and MLflow's clients take one timeout: "
        "ENGINE_READ_TIMEOUT bounds their connecting too)",
    )
    engine_read_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds an engine may stay silent within one request (Qdrant and MLflow round it up to "
        "whole seconds)",
    )
    engine_retries: int = Field(
        default=1, ge=0, le=5, description="Immediate retries of an engine request that failed or timed out"
    )

    train_image: str = Field(
        default="visearch-train:latest",
        validation_alias=AliasChoices("TRAIN_IMAGE", "VISEARCH_TRAIN_IMAGE"),
        description="Container image every pipeline component runs in",
    )
    # `visearch pipeline submit` and `runs` (kfp.Client); each has a command-line option too.
    kfp_host: str | None = Field(
        default=None, description="Kubeflow Pipelines API, e.g. https://kubeflow.example.com/pipeline"
    )
    kfp_namespace: str | None = Field(default=None, description="Profile namespace on a multi-user Kubeflow")
    kfp_token: SecretStr | None = Field(default=None, description="Bearer token for the Kubeflow Pipelines API")

    # Limits for untrusted input (service and CLI).
    max_upload_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_k: int = 100
    max_batch_images: int = Field(
        default=16, ge=1, le=MAX_FORM_FILES, description=f"Images in one batch search (1-{MAX_FORM_FILES})"
    )
    visearch_device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="Where train, evaluate, embed and torch inference run: auto = CUDA when present, else CPU",
    )
    embed_workers: int | None = Field(
        default=None,
        ge=0,
        le=32,
        description="DataLoader processes decoding images for the embed step; unset = by the images' size "
        "(none for small files, one per core up to 4 for photos: visearch.embed.loader_workers)",
    )
    inference_backend: Literal["onnx", "torch"] = Field(
        default="onnx", description="Query-time inference (ONNX Runtime measured faster on CPU)"
    )
    # Serving under load (benchmarks/results/load.md): a forward on one intra-op thread, as many at
    # once as each worker's share of the cores, concurrent queries of one model batched into one.
    serve_workers: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Service worker processes (each loads its own models); unset = 1",
    )
    inference_threads: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Intra-op threads of one ONNX forward; unset = 1 (concurrent queries fill the cores)",
    )
    batch_wait_ms: float = Field(
        default=0.0,
        ge=0,
        le=50,
        description="How long a forward waits for concurrent queries to join its batch (0: only those already waiting)",
    )
    max_forward_images: int = Field(default=32, ge=1, le=256, description="Most images in one batched forward")
    visearch_unusual_percentile: float = Field(
        default=1.0,
        ge=0,
        le=100,
        description="A query image whose best hit is less similar than this percentile of the category's "
        "nearest-neighbour similarities gets the notice 'unlike anything in this category'",
    )
    keep_index_versions: int = Field(
        default=2,
        ge=1,
        description="Index versions kept per category (the live one always); older ones and their models are deleted",
    )
    # What a category's data must meet (preprocess, `visearch check`): a bad row costs that row; the
    # category is refused only below these.
    min_classes: int = Field(
        default=2,
        ge=2,
        validation_alias=AliasChoices("VISEARCH_MIN_CLASSES", "min_classes"),
        description="Classes a category needs after validation",
    )
    min_images_per_class: int = Field(
        default=2,
        ge=2,
        validation_alias=AliasChoices("VISEARCH_MIN_IMAGES_PER_CLASS", "min_images_per_class"),
        description="Valid images a class needs to be kept (smaller classes are dropped, reported)",
    )
    min_image_side: int = Field(
        default=8,
        ge=1,
        validation_alias=AliasChoices("VISEARCH_MIN_IMAGE_SIDE", "min_image_side"),
        description="Images with a shorter side are dropped (reported)",
    )
    visearch_api_key: SecretStr | None = Field(
        default=None,
        description="Key for the service's admin endpoints (rollback, delete); unset = admin endpoints refused",
    )

    @property
    def require_engines(self) -> bool:
        """True where an embedded engine would lose its data with the pod: set, or inside a KFP v2 pod."""
        return self.visearch_require_engines or bool(os.environ.get("KFP_POD_NAME"))

    @property
    def cores(self) -> int:
        """The cores this process may run on (its CPU affinity, so a pinned or limited container counts right)."""
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # no affinity outside Linux
            return max(1, os.cpu_count() or 1)

    @property
    def workers(self) -> int:
        """Service worker processes: SERVE_WORKERS, else 1."""
        return self.serve_workers or 1

    @property
    def forward_threads(self) -> int:
        """Intra-op threads of one forward: INFERENCE_THREADS, else 1."""
        return self.inference_threads or 1

    @property
    def forward_slots(self) -> int:
        """Forwards one worker runs at once: its share of the cores, one per forward's threads (at least 1)."""
        return max(1, self.cores // (self.workers * self.forward_threads))

    @property
    def home(self) -> Path:
        """The data home (VISEARCH_HOME), with ``~`` expanded, as an absolute path."""
        return self.visearch_home.expanduser().resolve()

    @property
    def objects_dir(self) -> Path:
        """Root of the local object store (used when MINIO_HOST is unset)."""
        return self.home / "objects"

    @property
    def work_dir(self) -> Path:
        """Scratch space for step outputs (manifests, models, embeddings) of CLI runs."""
        return self.home / "work"

    @property
    def index_path(self) -> Path:
        """The embedded index (one qdrant-edge shard per collection version, aliases as files)."""
        return self.home / "index"

    @property
    def qdrant_location(self) -> str | None:
        """The server URL if one is configured (QDRANT_URL, else seed QDRANT_HOST/PORT), else None."""
        if self.qdrant_url:
            return self.qdrant_url
        if self.qdrant_host:
            scheme = "https" if self.qdrant_https else "http"
            return f"{scheme}://{self.qdrant_host}:{self.qdrant_port}"
        return None

    @property
    def engine_deadline(self) -> float:
        """Longest one engine call waits for an engine that does not answer (seconds).

        Each attempt connects and then waits for the answer (the read timeout rounded up: Qdrant and
        MLflow take whole seconds); a call makes at most ``engine_retries + 1`` attempts, retried at
        once (the timeout was the wait). An engine that accepts connections and never answers fails a
        call after ``(engine_retries + 1) × engine_read_timeout``.
        """
        return (self.engine_retries + 1) * (self.engine_connect_timeout + math.ceil(self.engine_read_timeout))

    @property
    def tracking_uri(self) -> str:
        """MLFLOW_TRACKING_URI, else a SQLite database in the data home."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"
