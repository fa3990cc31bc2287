"""Shared test helpers: data homes, real servers, S3, CLI runs, image and dataset builders.

The one module tests import helpers from (``from tests.helpers import ...``); fixtures live in
``tests/conftest.py``. No test module imports another test module.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import ipaddress
import json
import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml
from minio import Minio
from PIL import Image

from visearch.categories import load_registry
from visearch.data.demo import demo_source
from visearch.settings import Settings

ROOT = Path(__file__).resolve().parents[1]

# --- prerequisites ------------------------------------------------------------------------------


def need(condition: bool, why: str) -> None:
    """Skip without a prerequisite (a system tool, a driver), except in CI where it must be there.

    scripts/system-deps.sh installs them under CI=true, so a missing one there is a failure.
    """
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)


def need_module(name: str, why: str) -> Any:
    """``pytest.importorskip`` that fails instead of skipping in CI."""
    try:
        return __import__(name)
    except ImportError:
        need(False, why)


# --- data homes ---------------------------------------------------------------------------------
TINY = "tiny"
TINY_CLASSES = ("Trouser", "Sneaker", "Bag", "Ankle-boot", "Dress")
TINY_PER_CLASS = 8


def write_registry(path: Path, *, data_dir: str = "datasets/tiny") -> Path:
    """A registry with the shipped categories plus `tiny`: fast settings for tests."""
    shipped = yaml.safe_load(load_registry().model_dump_json())  # JSON is valid YAML
    tiny = {
        "name": TINY,
        "title": "Tiny test category",
        "business_usage": "Five Fashion-MNIST classes, eight images each.",
        "credits": "Fashion-MNIST (Zalando Research, MIT).",
        "data_dir": data_dir,
        # The demo's caption columns, as the shipped fashion-mnist entry declares them.
        "fields": {"article": "keyword", "source": "text"},
        "captions": ["article", "source"],
        "train": {
            "input_size": 32,
            "epochs": 1,
            "batch_size": 8,
            "sampler_m": 2,
            "embedder_layers": [32],
            "split": 0.6,
            "holdout": 0.25,
            "max_steps": 3,
        },
    }
    path.write_text(yaml.safe_dump({"categories": [*shipped["categories"], tiny]}), encoding="utf-8")
    return path


def copy_tiny_dataset(target: Path) -> int:
    """Copy TINY_PER_CLASS real images of each TINY_CLASSES class (+ their meta rows) into target."""
    source = demo_source()
    meta = pd.read_csv(source / "meta.csv", index_col=0)
    rows = meta[meta["class"].isin(TINY_CLASSES)].groupby("class").head(TINY_PER_CLASS).reset_index(drop=True)
    for file in rows["file"]:
        destination = target / "images" / file
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes((source / "images" / file).read_bytes())
    rows.to_csv(target / "meta.csv")
    return len(rows)


def make_home(home: Path) -> Settings:
    """A fresh data home with the tiny dataset in its object store and a registry naming it."""
    home.mkdir(parents=True, exist_ok=True)
    registry = write_registry(home / "categories.yaml")
    settings = Settings(visearch_home=home, visearch_categories=registry, _env_file=None)
    copy_tiny_dataset(settings.objects_dir / "datasets" / TINY)
    return settings


def copy_home(indexed: Settings, target: Path) -> Settings:
    """A private copy of the indexed home (index, objects, work, registry): tests may break it."""
    shutil.copytree(indexed.home, target, ignore=shutil.ignore_patterns("cache", "tmp"))
    return Settings(visearch_home=target, visearch_categories=target / "categories.yaml", _env_file=None)


ENGINE_PREFIXES = ("QDRANT_", "MINIO_", "MLFLOW_", "VISEARCH_", "ENGINE_")


def env_for(settings: Settings) -> dict[str, str]:
    """Environment for a subprocess (CLI, service, pipeline) that uses this home and these engines.

    The caller's engine variables are dropped; the engines the settings name (a Qdrant or MLflow
    server, an S3 store) are passed on, so a subprocess sees exactly what ``settings`` says.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENGINE_PREFIXES)}
    env["VISEARCH_HOME"] = str(settings.home)
    env["VISEARCH_CATEGORIES"] = str(settings.visearch_categories)
    env["ENGINE_CONNECT_TIMEOUT"] = str(settings.engine_connect_timeout)
    env["ENGINE_READ_TIMEOUT"] = str(settings.engine_read_timeout)
    env["ENGINE_RETRIES"] = str(settings.engine_retries)
    if settings.qdrant_url:
        env["QDRANT_URL"] = settings.qdrant_url
    if settings.mlflow_tracking_uri:
        env["MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
    if settings.minio_host:
        secrets = {"MINIO_ACCESS_KEY": settings.minio_access_key, "MINIO_SECRET_KEY": settings.minio_secret_key}
        env.update({name: value.get_secret_value() for name, value in secrets.items() if value is not None})
        env.update(
            {
                "MINIO_HOST": settings.minio_host,
                "MINIO_BUCKET_NAME": settings.minio_bucket_name,
                "MINIO_MAIN_PATH": settings.minio_main_path,
                "MINIO_SECURE": str(settings.minio_secure).lower(),
            }
        )
        if settings.minio_region:
            env["MINIO_REGION"] = settings.minio_region
    return env


def use_home(monkeypatch: pytest.MonkeyPatch, settings: Settings, cwd: Path) -> None:
    """This process's environment as ``env_for(settings)`` (what a pipeline step reads), run from ``cwd``.

    ``cwd`` holds no ``.env``: the settings come from the environment alone.
    """
    for key in list(os.environ):
        if key.startswith(ENGINE_PREFIXES):
            monkeypatch.delenv(key)
    for key, value in env_for(settings).items():
        if key.startswith(ENGINE_PREFIXES):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(cwd)


def prepared(home, registry, store, input_size: int) -> tuple[Path, Path, Path]:  # type: ignore[no-untyped-def]
    """Manifest, a frozen-trunk model at ``input_size`` and its embeddings of `tiny`, under the home's work dir."""
    from visearch.categories import TrainParams
    from visearch.stages.embed import run_embed
    from visearch.stages.preprocess import run_preprocess
    from visearch.stages.train import save_baseline

    work = home.work_dir / TINY
    category = registry.get(TINY)
    if not (work / "manifest" / "manifest.csv").exists():
        run_preprocess(home, store, category, work / "manifest", show_progress=False)
    model = save_baseline(TrainParams(input_size=input_size), work / f"model-{input_size}")
    embeddings = run_embed(
        home, store, category, work / "manifest", model, work / f"emb-{input_size}", show_progress=False
    )
    return work / "manifest", model, embeddings


def search_engine(settings: Settings, **options: Any) -> Any:
    """A SearchEngine on the home's registry, local object store and index (close it after use)."""
    from visearch.index import open_index
    from visearch.search import SearchEngine
    from visearch.storage import LocalStore

    registry = load_registry(settings.visearch_categories)
    return SearchEngine(settings, registry, LocalStore(settings.objects_dir), open_index(settings), **options)


def live_state(settings: Settings) -> tuple[Any, list[Any]]:
    """The live collection of TINY and all its versions (what a failed step must leave as it was)."""
    from visearch.index import open_index

    index = open_index(settings)
    try:
        return index.live(TINY), index.versions(TINY)
    finally:
        index.close()


def home_digest(settings: Settings) -> dict[str, str]:
    """Every file under the data home (relative path → SHA-256): what a step that must write nothing leaves alone."""
    import hashlib

    return {
        path.relative_to(settings.home).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(settings.home.rglob("*"))
        if path.is_file()
    }


# --- processes ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_url() -> str:
    """A loopback URL where nothing listens: a server that is down (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}"


def start_server(
    settings: Settings, log: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """`bentoml serve` for ``settings``' home on a free loopback port (as `visearch serve` runs it)."""
    from visearch.cli.serve import serve_command

    port = free_port()
    env = {**env_for(settings), "BENTOML_DO_NOT_TRACK": "true", **(extra_env or {})}
    with log.open("wb") as out:
        process = subprocess.Popen(
            serve_command(port=port, host="127.0.0.1"), env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    return process, f"http://127.0.0.1:{port}"


def stop_server(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Terminate, and kill if it has not exited within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running_service(
    settings: Settings, log: Path, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The real service on ``settings``' home, ready: yields its URL and process; stopped after."""
    from visearch.cli.serve import wait_ready

    process, url = start_server(settings, log, extra_env)
    try:
        if not wait_ready(url, process, timeout=180):
            pytest.fail(f"service did not become ready:\n{log.read_text(errors='replace')[-4000:]}")
        yield url, process
    finally:
        stop_server(process)


Check = Callable[[], bool]


def wait_for(check: Check, timeout: float = 60) -> bool:
    """Poll ``check`` (HTTP errors count as "not yet") until it is true; False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def wait_until(predicate: Check, timeout: float = 120.0) -> None:
    """Poll ``predicate`` quickly; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


def kill9(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


# --- the CLI ------------------------------------------------------------------------------------
def visearch(settings: Settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python -m visearch.cli ARGS` on this home, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "visearch.cli", *args],
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def visearch_cli(
    settings: Settings, *args: str, timeout: float = 300
) -> tuple[subprocess.CompletedProcess[str], float]:
    """:func:`visearch` and how long it took."""
    started = time.monotonic()
    result = visearch(settings, *args, timeout=timeout)
    return result, time.monotonic() - started


def assert_one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and text in errors[0], result.stderr


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# --- S3 (a moto server) -------------------------------------------------------------------------
REGION = "us-east-1"  # moto's default; the minio client must not probe for it
ACCESS, SECRET = "visearch-test-access", "visearch-test-secret-value"


def moto_executable() -> Path:
    exe = Path(sys.executable).parent / "moto_server"
    need(exe.exists(), "moto_server is not installed (dev extra moto[server])")
    return exe


@contextmanager
def moto_server(
    log_dir: Path, *, cert: Path | None = None, key: Path | None = None, port: int | None = None
) -> Iterator[str]:
    """A moto S3 server on 127.0.0.1:<port, default a free one> (TLS with ``cert``/``key``); yields ``host:port``."""
    port = port or free_port()
    tls = ["-c", str(cert), "-k", str(key)] if cert and key else []
    log = (log_dir / f"moto-{port}.log").open("ab")  # appended: a restart on the same port keeps the log
    proc = subprocess.Popen(
        [str(moto_executable()), "-H", "127.0.0.1", "-p", str(port), *tls], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited: {(log_dir / f'moto-{port}.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("moto_server did not listen within 30 s") from None
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        stop_server(proc, timeout=10)
        log.close()


class Moto:
    """A moto S3 server on a fixed port that a test can stop and start again (in-memory: starts empty)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self._server: AbstractContextManager[str] | None = None

    def start(self) -> None:
        self._server = moto_server(self.log_dir, port=self.port)
        self._server.__enter__()

    def stop(self) -> None:
        if self._server is not None:
            self._server.__exit__(None, None, None)
            self._server = None


def s3_settings(endpoint: str, home: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "visearch_home": home,
        "minio_host": endpoint,
        "minio_access_key": ACCESS,
        "minio_secret_key": SECRET,
        "minio_secure": False,
        "minio_region": REGION,
        "minio_bucket_name": f"vs-{uuid.uuid4().hex[:12]}",
        "minio_main_path": "team/visearch",
    }
    values.update(overrides)
    return Settings(**values, _env_file=None)  # type: ignore[arg-type]


def raw_client(endpoint: str) -> Minio:
    return Minio(endpoint, access_key=ACCESS, secret_key=SECRET, secure=False, region=REGION)


def upload_objects(source: Path, store: Any) -> int:
    """Every object of a local store folder into ``store`` (what a restarted, empty S3 server needs)."""
    from visearch.storage import LocalStore

    keys = list(LocalStore(source).list(""))
    for key in keys:
        store.put_file(key, source / key)
    return len(keys)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), made here: TLS without any network."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


# --- kfp artifacts, as a component's function receives them --------------------------------------
class FakeArtifact:
    """What kfp hands a component for an Input/Output artifact: a local ``path`` and a ``metadata`` dict."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.metadata: dict[str, Any] = {}


class FakeMetrics(FakeArtifact):
    """An Output[Metrics]: ``log_metric`` records into ``metrics``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.metrics: dict[str, float] = {}

    def log_metric(self, name: str, value: float) -> None:
        self.metrics[name] = value


# --- images and datasets in their publishers' layouts ---------------------------------------------
SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")


def photo(index: int, size: int = 96) -> Image.Image:
    """A distinct real photo crop per index (scikit-image samples; offsets far apart)."""
    from skimage import data as samples

    picture = getattr(samples, SOURCES[index % len(SOURCES)])()
    height, width = picture.shape[:2]
    step = index // len(SOURCES)
    side = min(height, width) // 2
    top, left = (step * 37) % (height - side), (step * 53) % (width - side)
    crop = Image.fromarray(picture[top : top + side, left : left + side])
    return crop.resize((size, size)).rotate(90 * (step % 4))


PHONE_SIZE = (4032, 3024)  # a 12-megapixel phone camera, landscape as shown


def phone_photo(size: tuple[int, int] = PHONE_SIZE, quality: int = 80) -> bytes:
    """A 12-megapixel JPEG the way phones save one: pixels stored portrait, EXIF orientation 6 turns them upright.

    Real photos (scikit-image samples, enlarged 2x as a phone's detail per pixel) tiled over
    ``size``; about 1 MB, so decoding costs what a real upload's does.
    """
    from skimage import data as samples

    canvas = Image.new("RGB", size)
    tiles = [Image.fromarray(getattr(samples, name)()) for name in SOURCES[:4]]
    tiles = [tile.resize((tile.width * 2, tile.height * 2), Image.Resampling.BICUBIC) for tile in tiles]
    top, turn = 0, 0
    while top < size[1]:
        left = 0
        while left < size[0]:
            tile = tiles[turn % len(tiles)]
            canvas.paste(tile, (left, top))
            left, turn = left + tile.width, turn + 1
        top += 600  # rows overlap a little: no black gaps
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    buffer = io.BytesIO()
    canvas.transpose(Image.Transpose.ROTATE_90).save(buffer, format="JPEG", quality=quality, exif=exif)
    return buffer.getvalue()


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def voc_xml(filename: str, size: tuple[int, int], boxes: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    objects = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, (x0, y0, x1, y1) in boxes
    )
    return (
        f"<annotation><folder>x</folder><filename>{filename}</filename><source><database>ImageNet</database>"
        f"</source><size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
        f"<segment>0</segment>{objects}</annotation>"
    )


def make_zappos(root: Path) -> Path:
    """UT Zappos50K's layout: 12 shoes in 3 classes, a broken JPEG, an exact copy, a stray Thumbs.db."""
    images = root / "ut-zap50k-images-square"
    layout = [
        ("Shoes", "Sneakers and Athletic Shoes", "Nike"),
        ("Shoes", "Sneakers and Athletic Shoes", "ASICS"),
        ("Boots", "Ankle", "A. Testoni"),
        ("Sandals", "Flat", "Teva"),
    ]
    index = 0
    for category, sub, brand in layout:
        for number in range(3):
            write(images / category / sub / brand / f"{7965300 + index}.{5291 + number}.jpg", jpeg(photo(index)))
            index += 1
    write(images / "Boots" / "Ankle" / "A. Testoni" / "broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg")
    write(images / "Boots" / "Ankle" / "A. Testoni" / "copy.jpg", jpeg(photo(6)))  # same shoe, listed twice
    write(images / "Boots" / "Thumbs.db", b"junk")
    write(
        root / "ut-zap50k-data" / "meta-data.csv",
        b"CID,Category,SubCategory,HeelHeight,Insole,Closure,Gender,"
        b"Material,ToeStyle\n7965300-5291,Shoes,Sneakers and Athletic Shoes,Flat,Padded,Lace up,Men,Mesh,Round\n",
    )
    return root


def make_dogs(root: Path) -> Path:
    """Stanford Dogs' layout: two breeds, VOC boxes, a bad XML, a box outside its image, a missing annotation."""
    breeds = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel"]
    for b, breed in enumerate(breeds):
        wnid = breed.split("-")[0]
        for number in range(3):
            stem = f"{wnid}_{1000 + number}"
            image = photo(b * 3 + number, size=120)
            write(root / "Images" / breed / f"{stem}.jpg", jpeg(image))
            boxes = [(breed, (10, 20, 90, 110))] + ([(breed, (60, 5, 119, 60))] if number == 0 else [])
            write(root / "Annotation" / breed / stem, voc_xml(stem, (120, 120), boxes).encode())
    chihuahua, spaniel = root / "Annotation" / breeds[0], root / "Annotation" / breeds[1]
    write(chihuahua / "n02085620_1001", b"<annotation><object><name>x</name>")  # bad XML
    write(chihuahua / "n02085620_1002", voc_xml("x", (120, 120), [("x", (200, 200, 260, 260))]).encode())
    (spaniel / "n02085782_1002").unlink()  # missing annotation
    return root


SHAPES = {
    "circle": '<circle cx="12" cy="12" r="9" fill="{c}"/>',
    "square": '<rect x="3" y="3" width="18" height="18" fill="{c}"/>',
    "triangle": '<path d="M12 2 L22 21 L2 21 Z" fill="{c}"/>',
    "ring": '<circle cx="12" cy="12" r="8" fill="none" stroke="{c}" stroke-width="3"/>',
    "cross": '<path d="M10 2h4v8h8v4h-8v8h-4v-8H2v-4h8z" fill="{c}"/>',
    "wordmark": '<rect x="1" y="9" width="22" height="6" fill="{c}"/>',
}


def svg(body: str, view: str = "0 0 24 24") -> bytes:
    return f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="{view}">{body}</svg>'.encode()


def make_packages(root: Path) -> Path:
    """node_modules with a tiny devicon (JSON + icons/<brand>/*.svg) and simple-icons (JSON + icons/*.svg)."""
    devicon, simple = root / "devicon", root / "simple-icons"
    brands = {
        # brand: devicon variants (shape, colour)
        "acme": [
            ("original", "circle", "#d33"),
            ("plain", "square", "#d33"),
            ("line", "ring", "#d33"),
            ("original-wordmark", "wordmark", "#d33"),
        ],
        "globex": [("original", "triangle", "#36c"), ("plain", "cross", "#36c"), ("line", "ring", "#36c")],
        "tiny": [("original", "circle", "#393"), ("plain", "square", "#393")],
        "ghost": [
            ("original", "circle", "#fff"),
            ("plain", "square", "#fff"),
            ("line", "ring", "#fff"),
            ("plain-wordmark", "wordmark", "#fff"),
            ("original-wordmark", "cross", "#fff"),
        ],
    }
    for brand, variants in brands.items():
        for variant, shape, colour in variants:
            write(devicon / "icons" / brand / f"{brand}-{variant}.svg", svg(SHAPES[shape].format(c=colour)))
    # an alias variant shipped as a byte-identical copy, an empty drawing, a broken file
    write(devicon / "icons" / "acme" / "acme-line-wordmark.svg", svg(SHAPES["ring"].format(c="#d33")))
    write(devicon / "icons" / "ghost" / "ghost-empty.svg", svg(""))
    write(devicon / "icons" / "globex" / "globex-broken.svg", b"<svg xmlns='http://www.w3.org/2000/svg'><path d=")
    (devicon / "devicon.json").write_text(json.dumps([{"name": "globex", "altnames": ["globex-corp"]}]))
    for slug, shape in (("acme", "cross"), ("globexcorp", "triangle"), ("unrelated", "circle")):
        write(simple / "icons" / f"{slug}.svg", svg(SHAPES[shape].format(c="").replace(' fill=""', "")))
    meta = [
        {"title": "ACME", "slug": "acme", "hex": "DD3333"},
        {"title": "Globex", "slug": "globexcorp", "hex": "F8F8F8"},
    ]
    write(simple / "data" / "simple-icons.json", json.dumps(meta).encode())
    return root


# --- an engine that hangs or answers late -----------------------------------------------------------
HANG = math.inf  # FakeEngine delay: accept the connection, read the request, never answer
Responder = Callable[[str, str], tuple[int, bytes, str]]  # (method, path) -> (status, body, content type)
MAX_HEAD = 64 * 1024


class FakeEngine:
    """An engine endpoint on a free 127.0.0.1 port that answers late or never, as a test says.

    Every request is read whole, then answered after ``delay`` seconds (``HANG``: never; the
    connection stays open and silent) by forwarding it to a real server (``upstream``, e.g. moto's
    S3, ``host:port``) or by ``respond``. ``only`` limits the delay to paths that contain it; other
    requests are answered at once. Change both at any time with ``set``: a request takes the rule
    in force when it has been read. One request per connection (answered with ``Connection:
    close``), so a client never reuses a connection that a hung request left behind.

    Bounded: a hung request ends when the server stops, and the server stops at ``stop()`` (the
    end of its ``with`` block) or ``lifetime`` seconds after it started, whichever comes first.
    """

    def __init__(self, *, upstream: str | None = None, respond: Responder | None = None, lifetime: float = 300) -> None:
        if (upstream is None) == (respond is None):
            raise ValueError("give an upstream or a responder")
        self.upstream = upstream
        self.respond = respond
        self.lifetime = lifetime
        self._rule: tuple[float, str | None] = (0.0, None)
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self.requests: list[tuple[str, str, float]] = []  # (method, path, delay) of every request read
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def set(self, delay: float, only: str | None = None) -> None:
        """Answer requests (whose path contains ``only``, if given) after ``delay`` s; ``HANG``: never."""
        self._rule = (delay, only)

    def delayed(self) -> int:
        """How many requests got a delay (or hung) so far."""
        with self._lock:
            return sum(1 for _, _, delay in self.requests if delay > 0)

    def __enter__(self) -> FakeEngine:
        threading.Thread(target=self._serve, name=f"fake-engine-{self.port}", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()

    def _serve(self) -> None:
        ends = time.monotonic() + self.lifetime
        with self._listener:
            while not self._stop.is_set() and time.monotonic() < ends:
                try:
                    conn, _ = self._listener.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=self._handle, args=(conn,), daemon=True).start()
        self._stop.set()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                head, body = read_request(conn)
            except (OSError, ValueError):
                return
            method, path = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]
            delay, only = self._rule
            if only is not None and only not in path:
                delay = 0.0
            with self._lock:
                self.requests.append((method, path, delay))
            read_at = time.monotonic()
            if delay == HANG:
                self._stop.wait(self.lifetime)  # silent until the server stops
                return
            try:
                answer = self._answer(method, path, head, body)
                self._stop.wait(max(0.0, read_at + delay - time.monotonic()))
                if not self._stop.is_set():
                    conn.sendall(answer)
            except OSError:
                return

    def _answer(self, method: str, path: str, head: bytes, body: bytes) -> bytes:
        if self.respond is not None:
            status, content, content_type = self.respond(method, path)
            lines = [
                f"HTTP/1.1 {status} {'OK' if status < 400 else 'Error'}",
                f"Content-Type: {content_type}",
                f"Content-Length: {len(content)}",
                "Connection: close",
            ]
            return "\r\n".join(lines).encode() + b"\r\n\r\n" + (b"" if method == "HEAD" else content)
        assert self.upstream is not None
        host, port = self.upstream.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as up:
            up.sendall(with_connection_close(head) + body)
            chunks = []
            while chunk := up.recv(65536):  # the upstream closes after its answer (Connection: close)
                chunks.append(chunk)
        response = b"".join(chunks)
        response_head, _, response_body = response.partition(b"\r\n\r\n")
        return with_connection_close(response_head) + response_body


def read_request(conn: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP request from ``conn``: its head (without the blank line) and its body (Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk or len(data) > MAX_HEAD:
            raise ValueError("no complete request head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
    }
    if b"chunked" in headers.get(b"transfer-encoding", b""):
        raise ValueError("chunked request bodies are not supported here")
    length = int(headers.get(b"content-length", b"0"))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise ValueError("request body cut short")
        body += chunk
    return head, body


def with_connection_close(head: bytes) -> bytes:
    """An HTTP head whose Connection header says close (one request per connection)."""
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith((b"connection:", b"keep-alive:"))]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"


# --- an MLflow tracking server ------------------------------------------------------------------------
@contextmanager
def mlflow_server(
    log_dir: Path, backend: str, artifacts: str, *, env: dict[str, str] | None = None, app: str | None = None
) -> Iterator[str]:
    """`mlflow server` on a free loopback port (artifacts served through it); yields its URL once healthy.

    Args:
        log_dir: Where its log goes (and its working folder).
        backend: ``--backend-store-uri`` (a sqlite file or Postgres).
        artifacts: ``--artifacts-destination`` (a folder URI or s3://...).
        env: The server's environment (default: this process's, without MLFLOW_* variables).
        app: ``--app-name``, e.g. ``basic-auth``.
    """
    mlflow = Path(sys.executable).parent / "mlflow"
    need(mlflow.exists(), "mlflow is not installed")
    port = free_port()
    command = [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", backend, "--serve-artifacts", "--artifacts-destination", artifacts]
    command += ["--app-name", app] if app else []
    server_env = env if env is not None else {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    log = log_dir / "mlflow-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=server_env, cwd=log_dir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        # `mlflow server` on sqlite answers /health after ~16 s on 2 cores; more under load.
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:  # noqa: S310 - loopback
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # the server and its workers
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def index_settings(mode: str, home: Path) -> Settings:
    """Settings of a home whose index is embedded, qdrant-client ``:memory:``, or the server at ``QDRANT_URL`` (else skip)."""
    engine: dict[str, object] = {"qdrant_url": None, "qdrant_host": None, "qdrant_api_key": None}
    if mode == "memory":
        engine["qdrant_url"] = ":memory:"
    elif mode == "remote":
        if not os.environ.get("QDRANT_URL"):
            pytest.skip("remote mode needs a Qdrant server: set QDRANT_URL (and QDRANT_API_KEY) to run it")
        engine = {"qdrant_url": os.environ["QDRANT_URL"], "qdrant_api_key": os.environ.get("QDRANT_API_KEY")}
    return Settings(visearch_home=home, **engine, _env_file=None)  # type: ignore[arg-type]


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width``×``height`` (a decompression bomb's header)."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)
