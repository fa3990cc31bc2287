"""Engines unavailable under the real service: the object store (S3) or the index (a Qdrant server)
down at start or mid-request. The service answers 503 with a message and is not ready, and recovers
by itself once the engine is back.

Real components only: moto's S3 server (stopped, then restarted on the same port), a closed loopback
port for a Qdrant server that is down, the real service process. The same outages without a server:
tests/unit/test_runtime.py (readiness), tests/unit/test_loop.py, tests/unit/test_steps.py and
tests/unit/cli/test_pipeline.py (pipeline steps stop with one message, the live collection untouched).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import Moto, s3_settings, upload_objects
from tests.helpers import TINY, closed_url, copy_home, stop_server
from tests.service.server import start_server, wait_for
from visearch.cli.serve import wait_ready
from visearch.settings import Settings
from visearch.storage import make_store

# qdrant-client asks a server for its version when it connects, and warns when none answers.
pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version")


@pytest.mark.slow
def test_service_survives_the_object_store_going_down(indexed_home: Settings, moto: Moto, tmp_path: Path) -> None:
    """S3 goes down under a running service: not ready, 503 where the store is needed; back by itself."""
    copy = copy_home(indexed_home, tmp_path / "home")
    objects = tmp_path / "objects"
    shutil.move(copy.objects_dir, objects)  # nothing may come from a local folder
    settings = s3_settings(moto.endpoint, copy.home, visearch_categories=copy.visearch_categories)
    assert upload_objects(objects, make_store(settings)) > 40
    query = next((objects / "datasets" / TINY / "images").rglob("*.png")).read_bytes()

    log = tmp_path / "server.log"
    process, url = start_server(settings, log)
    try:
        assert wait_ready(url, process, timeout=180), log.read_text(errors="replace")[-4000:]
        with httpx.Client(base_url=url, timeout=60) as client:
            point = client.get(f"/categories/{TINY}/examples", params={"limit": 1}).json()[0]["id"]
            assert client.get(f"/images/{TINY}/{point}").status_code == 200

            moto.stop()  # before the first search: the model is not loaded yet
            assert wait_for(lambda: client.get("/readyz").status_code == 503, timeout=15)
            search = client.post("/search", data={"category": TINY, "k": 3}, files={"image": ("q.png", query)})
            image = client.get(f"/images/{TINY}/{point}")
            for response in (search, image):
                assert response.status_code == 503, response.text
                assert "object store unreachable" in response.json()["error"]
            # What needs only the index still answers.
            assert client.post("/search_by_id", json={"category": TINY, "point_id": point}).status_code == 200
            assert client.get("/categories").status_code == 200
            assert "object store unavailable" in log.read_text(errors="replace")  # the log says which engine

            moto.start()  # a fresh, empty server on the same address: the data is put back
            upload_objects(objects, make_store(settings))
            assert wait_for(lambda: client.get("/readyz").status_code == 200, timeout=30)
            search = client.post("/search", data={"category": TINY, "k": 3}, files={"image": ("q.png", query)})
            assert search.status_code == 200 and len(search.json()["results"]) == 3, search.text
            assert client.get(f"/images/{TINY}/{point}").status_code == 200
    finally:
        stop_server(process)


@pytest.mark.slow
def test_service_with_its_qdrant_server_down(home: Settings, tmp_path: Path) -> None:
    """QDRANT_URL names a server that is down: not ready, 503 with a message; the UI page still loads.

    Recovery is the client's own reconnect (the runtime keeps no state about a failed call), shown
    above for the object store; it cannot be shown here: no Qdrant server installs on this machine.
    """
    settings = home.model_copy(update={"qdrant_url": closed_url()})
    query = next((home.objects_dir / "datasets" / TINY / "images").rglob("*.png")).read_bytes()
    log = tmp_path / "server.log"
    process, url = start_server(settings, log)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            assert wait_for(lambda: client.get("/livez").status_code == 200, timeout=180), log.read_text()[-4000:]
            assert client.get("/readyz").status_code == 503
            for response in (
                client.get("/categories"),
                client.post("/search", data={"category": TINY}, files={"image": ("q.png", query)}),
                client.post("/search_by_id", json={"category": TINY, "point_id": "x"}),
            ):
                assert response.status_code == 503, response.text
                assert "Qdrant server" in response.json()["error"]
            assert client.get("/ui/").status_code == 200  # the UI page itself needs only the registry
        assert "index unavailable" in log.read_text(errors="replace")
    finally:
        stop_server(process)
