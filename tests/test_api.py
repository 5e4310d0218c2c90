"""The HTTP API end to end: ``main.py serve`` as a subprocess on the tiny model, driven by a real
HTTP client (httpx) and by an existing client library of the WebUI's API, unchanged (webuiapi)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import webuiapi
from PIL import Image

from pipeline.domain.metadata import parse_infotext, read_parameters

MAIN = Path(__file__).resolve().parents[1] / "main.py"
LISTENING = re.compile(r"HTTP API on http://127\.0\.0\.1:(\d+)")
SECRET = re.compile(r"nk_[A-Za-z0-9_-]{43}")
FAST = {"steps": 2, "width": 64, "height": 64}
TIMEOUT = 120.0

pytestmark = pytest.mark.slow


@dataclass
class Server:
    url: str
    env: dict[str, str]
    keys: dict[str, str]
    process: subprocess.Popen[str]
    log: list[str]

    def client(self, key: str | None = "alice") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[key]}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT)

    def webui(self, key: str = "alice") -> webuiapi.WebUIApi:
        host, port = self.url.removeprefix("http://").split(":")
        return webuiapi.WebUIApi(host=host, port=int(port), username=key, password=self.keys[key])

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(MAIN), *args], env=self.env, capture_output=True, text=True, timeout=TIMEOUT
        )

    def new_key(self, name: str, *options: str) -> str:
        created = self.cli("api-key", "create", name, *options)
        assert created.returncode == 0, created.stderr
        match = SECRET.search(created.stdout)
        assert match, created.stdout
        self.keys[name] = match.group(0)
        return match.group(0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("api")
    models = root / "models"
    shutil.copytree(tiny_model_dir, models / "other-model")
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith(("NANKE_", "DISCORD_"))},
        "HF_HUB_OFFLINE": "1",
        "NANKE_DATA_DIR": str(root / "data"),
        "NANKE_MODEL": str(tiny_model_dir),
        "NANKE_MODELS_DIR": str(models),
        "NANKE_DEVICE": "cpu",
        "NANKE_MAX_BATCH": "1",
        "NANKE_MAX_QUEUED_PER_USER": "6",
        "NANKE_API_RATE": "600",
        "NANKE_API_MAX_BODY_MB": "1",
        "DATABASE_URL": "",
    }
    env.pop("DATABASE_URL")
    server = Server("", env, {}, None, [])  # type: ignore[arg-type]
    for name in ("alice", "bob"):
        server.new_key(name)
    server.new_key("guild-key", "--guild", "42")
    process = subprocess.Popen(
        [sys.executable, str(MAIN), "serve", "--port", "0"], env=env, stderr=subprocess.PIPE, text=True
    )
    server.process = process
    found: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            server.log.append(line)
            match = LISTENING.search(line)
            if match:
                found.append(match.group(1))

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + TIMEOUT
    while not found and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert found, "".join(server.log)
    server.url = f"http://127.0.0.1:{found[0]}"
    yield server
    process.terminate()
    assert process.wait(timeout=60) == 0, "".join(server.log)


def parameters_of(image: Image.Image | bytes) -> str:
    data = image if isinstance(image, bytes) else _png(image)
    text = read_parameters(data)
    assert text, "the PNG carries its parameters"
    return text


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=_info(image))
    return buffer.getvalue()


def _info(image: Image.Image) -> Any:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in image.info.items():
        if isinstance(value, str):
            info.add_text(key, value)
    return info


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- auth -----------------------------------------------------------------------------------------


def test_every_route_needs_a_valid_key(server: Server) -> None:
    with server.client(key=None) as anonymous:
        for method, path in (
            ("GET", "/sdapi/v1/samplers"),
            ("POST", "/sdapi/v1/txt2img"),
            ("GET", "/api/v1/history"),
        ):
            answer = anonymous.request(method, path, json={} if method == "POST" else None)
            assert answer.status_code == 401, path
            assert answer.headers["www-authenticate"].startswith("Basic")
        assert (
            anonymous.get("/sdapi/v1/samplers", headers={"Authorization": "Bearer nk_wrong"}).status_code
            == 401
        )
        basic = httpx.BasicAuth("bob", server.keys["alice"])  # alice's key with bob's name
        assert anonymous.get("/sdapi/v1/samplers", auth=basic).status_code == 401
        assert (
            anonymous.get(
                "/sdapi/v1/samplers", auth=httpx.BasicAuth("alice", server.keys["alice"])
            ).status_code
            == 200
        )
    server.new_key("short-lived")
    with server.client("short-lived") as client:
        assert client.get("/sdapi/v1/samplers").status_code == 200
        assert server.cli("api-key", "revoke", "short-lived").returncode == 0
        assert client.get("/sdapi/v1/samplers").status_code == 401
    listed = server.cli("api-key", "list").stdout
    assert "short-lived" in listed and "revoked" in listed and server.keys["alice"] not in listed
    with server.client(key=None) as anonymous:
        paths = anonymous.get("/openapi.json").json()["paths"]
    assert {"/sdapi/v1/txt2img", "/sdapi/v1/progress", "/api/v1/jobs/{job_id}/events"} <= set(paths)


# -- the WebUI's dialect, through its own client ----------------------------------------------------


def test_txt2img_round_trip_with_an_existing_webui_client(server: Server) -> None:
    api = server.webui()
    result = api.txt2img(
        prompt="a lighthouse at dusk", negative_prompt="fog", seed=42, cfg_scale=6.5, batch_size=2, **FAST
    )
    assert [image.size for image in result.images] == [(64, 64), (64, 64)]
    assert result.info["all_seeds"] == [42, 43] and result.info["nanke_not_honoured"] == {}
    for image, seed in zip(result.images, (42, 43), strict=True):
        parsed = parse_infotext(parameters_of(image))
        request = parsed.request
        assert (request.prompt, request.negative_prompt, request.seed, request.steps) == (
            "a lighthouse at dusk",
            "fog",
            seed,
            2,
        )
        assert (request.cfg_scale, request.width, request.height, request.sampler) == (6.5, 64, 64, "Euler a")
    assert result.info["infotexts"][0] == parameters_of(result.images[0])
    job_id = result.info["nanke_job_id"]
    with server.client() as client:
        history = client.get("/api/v1/history").json()["jobs"]
    assert job_id in [entry["job_id"] for entry in history]
    png = api.png_info(result.image)
    assert png.info == parameters_of(result.image)
    assert png.json["parameters"]["Seed"] == "42" and png.json["parameters"]["Size-1"] == "64"


def test_img2img_round_trip(server: Server) -> None:
    api = server.webui()
    source = Image.new("RGB", (64, 64), (200, 30, 30))
    result = api.img2img(images=[source], prompt="a red square", denoising_strength=0.5, seed=7, **FAST)
    assert len(result.images) == 1 and result.info["denoising_strength"] == 0.5
    text = parameters_of(result.image)
    assert "Denoising strength: 0.5" in text and "Seed: 7" in text
    with server.client() as client:
        job = client.get(f"/api/v1/jobs/{result.info['nanke_job_id']}").json()
    assert job["request"]["mode"] == "img2img" and job["request"]["strength"] == 0.5


def test_progress_during_a_job_and_interrupt(server: Server) -> None:
    api = server.webui("bob")
    finished: dict[str, Any] = {}
    slow = threading.Thread(
        target=lambda: finished.update(
            result=api.txt2img(prompt="a slow one", steps=150, width=512, height=512)
        )
    )
    slow.start()
    seen = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        progress = api.get_progress()
        if progress["progress"] > 0 and progress["current_image"]:
            seen = progress
            break
        time.sleep(0.1)
    assert seen is not None, "progress (with a preview image) was seen while the job ran"
    preview = Image.open(io.BytesIO(base64.b64decode(seen["current_image"])))
    assert preview.format == "JPEG" and max(preview.size) == 256
    assert 0 < seen["progress"] < 1 and seen["state"]["job_count"] == 1
    assert seen["state"]["sampling_step"] >= 1 and seen["state"]["sampling_steps"] == 150
    assert seen["eta_relative"] > 0
    assert server.webui("alice").get_progress()["state"]["job_count"] == 0, "a key sees its own jobs"
    assert api.interrupt() == {}
    slow.join(timeout=60)
    result = finished["result"]
    assert (
        result.images == []
        and result.info["interrupted"] is True
        and result.info["nanke_status"] == "cancelled"
    )
    assert api.get_progress()["state"]["job_count"] == 0


def test_options_switch_the_keys_model(server: Server) -> None:
    api = server.webui("bob")
    titles = api.util_get_model_names()
    assert any(title.startswith("other-model") for title in titles) and any(
        t.startswith("tiny-sd") for t in titles
    )
    api.util_set_model("other-model")
    assert api.get_options()["sd_model_checkpoint"].startswith("other-model")
    assert api.txt2img(prompt="a fox", seed=1, **FAST).info["sd_model_name"] == "other-model"
    assert server.webui("alice").txt2img(prompt="a fox", seed=1, **FAST).info["sd_model_name"] == "tiny-sd"
    api.set_options({"sd_model_checkpoint": "tiny-sd"})
    with server.client("bob") as client:
        refused = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "nope"})
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == [
            "body",
            "sd_model_checkpoint",
        ]
        ignored = client.post("/sdapi/v1/options", json={"sd_vae": "x", "samples_format": "jpg"})
        assert ignored.status_code == 200 and ignored.headers["x-nanke-ignored"] == "samples_format, sd_vae"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("txt2img", {"steps": 0}, ["steps"]),
        ("txt2img", {"steps": "many"}, ["steps"]),
        ("txt2img", {"width": 13}, ["width"]),
        ("txt2img", {"cfg_scale": "high"}, ["cfg_scale"]),
        ("txt2img", {"cfg_scale": 99}, ["cfg_scale"]),
        ("txt2img", {"sampler_name": "Nope"}, ["sampler_name"]),
        ("txt2img", {"batch_size": 3, "n_iter": 2}, ["batch_size"]),
        ("txt2img", {"prompt": "   "}, ["prompt"]),
        ("txt2img", {"prompt": 5}, ["prompt"]),
        ("txt2img", {"seed": 2**40}, ["seed"]),
        ("txt2img", {"width": 2048, "height": 2048}, ["width"]),
        (
            "txt2img",
            {"override_settings": {"sd_model_checkpoint": "nope"}},
            ["override_settings", "sd_model_checkpoint"],
        ),
        ("img2img", {"init_images": []}, ["init_images"]),
        ("img2img", {"init_images": ["@@not base64@@"]}, ["init_images"]),
        ("img2img", {"init_images": [b64(b"not an image")]}, ["image"]),
        ("img2img", {"denoising_strength": 0}, ["denoising_strength"]),
        ("png-info", {"image": "@@"}, ["image"]),
    ],
)
def test_a_bad_field_is_a_422_that_names_it(
    server: Server, path: str, body: dict[str, Any], field: list[str]
) -> None:
    if path == "img2img" and "init_images" not in body:
        body = {**body, "init_images": [b64(_png(Image.new("RGB", (64, 64))))]}
    defaults = {"prompt": "a fox", **FAST} if path != "png-info" else {}
    with server.client() as client:
        answer = client.post(f"/sdapi/v1/{path}", json={**defaults, **body})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"][1:] == field, answer.json()


def test_what_nanke_cannot_honour_is_reported_not_dropped(server: Server) -> None:
    with server.client() as client:
        answer = client.post(
            "/sdapi/v1/txt2img",
            json={
                "prompt": "a fox",
                **FAST,
                "restore_faces": True,
                "enable_hr": True,
                "hr_scale": 1.5,
                "hr_upscaler": "R-ESRGAN 4x+",
                "scheduler": "sgm_uniform",
                "override_settings": {"eta_noise_seed_delta": 31337},
                "an_extension_field": 1,
            },
        )
        assert answer.status_code == 200, answer.text
        not_honoured = json.loads(answer.json()["info"])["nanke_not_honoured"]
        assert set(not_honoured) == {"restore_faces", "hr_upscaler", "scheduler", "override_settings"}
        assert not_honoured["override_settings"] == ["eta_noise_seed_delta"]
        assert Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0]))).size == (96, 96)
        # What nanke honours but does not have is refused, naming the field or the file
        styles = client.post("/sdapi/v1/txt2img", json={"prompt": "a fox", **FAST, "styles": ["cinematic"]})
        assert styles.status_code == 422 and styles.json()["detail"][0]["loc"] == ["body", "styles"]
        vae = client.post(
            "/sdapi/v1/txt2img",
            json={"prompt": "a fox", **FAST, "override_settings": {"sd_vae": "other.vae"}},
        )
        assert vae.status_code == 400 and "other.vae" in vae.json()["detail"]


def test_two_keys_share_the_queue_fairly(server: Server) -> None:
    with server.client("alice") as alice, server.client("bob") as bob:
        # Sizes that cannot share a batch, and a first job long enough for the rest to queue behind it
        prompts = [
            "alice 0 --steps 60 --size 64x64",
            "alice 1 --steps 2 --size 64x72",
            "alice 2 --steps 2 --size 64x80",
        ]
        ids = [alice.post("/api/v1/jobs", json={"prompt": prompt}).json()["id"] for prompt in prompts]
        ids.append(bob.post("/api/v1/jobs", json={"prompt": "bob --steps 2 --size 64x88"}).json()["id"])
        jobs = {}
        for job_id, client in zip(ids, (alice, alice, alice, bob), strict=True):
            deadline = time.monotonic() + TIMEOUT
            while (job := client.get(f"/api/v1/jobs/{job_id}").json())["status"] != "done":
                assert time.monotonic() < deadline and job["status"] in ("queued", "running"), job
                time.sleep(0.1)
            jobs[job_id] = job
    started = sorted(ids, key=lambda job_id: jobs[job_id]["started_at"])
    assert started == [ids[0], ids[3], ids[1], ids[2]], "bob's job runs before alice's second"


def test_the_native_api_queues_streams_and_serves_images(server: Server) -> None:
    with server.client() as client:
        created = client.post(
            "/api/v1/jobs",
            json={"prompt": "a red fox --ar 3:2 --steps 3 --n 2", "seed": 11, "width": 96, "height": 64},
        )
        assert created.status_code == 202, created.text
        job = created.json()
        assert job["status"] in ("queued", "running") and job["request"]["seed"] == 11
        with client.stream("GET", f"/api/v1/jobs/{job['id']}/events") as stream:
            events = [
                line.removeprefix("event: ") for line in stream.iter_lines() if line.startswith("event: ")
            ]
        assert events[0] == "state" and events[-1] == "done", events
        done = client.get(f"/api/v1/jobs/{job['id']}").json()
        assert [image["seed"] for image in done["images"]] == [11, 12] and done["request"]["width"] == 96
        image = client.get(done["images"][1]["url"])
        assert image.headers["content-type"] == "image/png"
        assert "Seed: 12" in parameters_of(image.content)
        assert client.get(f"/api/v1/jobs/{job['id']}/images/5").status_code == 404
        with server.client("bob") as bob:
            assert bob.get(f"/api/v1/jobs/{job['id']}").status_code == 404, "another key's job is not found"
            assert bob.delete(f"/api/v1/jobs/{job['id']}").status_code == 404
        assert client.post("/api/v1/jobs", json={"prompt": "a fox", "stepz": 3}).status_code == 422
        assert client.delete(f"/api/v1/jobs/{job['id']}").status_code == 204
        assert client.get(f"/api/v1/jobs/{job['id']}").status_code == 404


def test_an_api_job_reproduces_with_the_command_line(server: Server) -> None:
    result = server.webui().txt2img(prompt="a reproducible fox", seed=99, **FAST)
    reproduced = server.cli("reproduce", str(result.info["nanke_job_id"]))
    assert reproduced.returncode == 0, reproduced.stdout + reproduced.stderr


def test_a_keys_guild_shares_its_prompts_and_rules(server: Server) -> None:
    with server.client("guild-key") as client:
        job = client.post(
            "/api/v1/jobs", json={"prompt": "a shared lighthouse --steps 2 --size 64x64"}
        ).json()
        deadline = time.monotonic() + TIMEOUT
        while client.get(f"/api/v1/jobs/{job['id']}").json()["status"] != "done":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        listed = client.get("/api/v1/prompts", params={"q": "lighthouse"}).json()["jobs"]
        assert [entry["job_id"] for entry in listed] == [job["id"]]
        refused = client.post("/sdapi/v1/txt2img", json={"prompt": "a nude study", **FAST})
        assert refused.status_code == 403 and "age-restricted" in refused.json()["detail"]
    with server.client("alice") as client:
        assert client.get("/api/v1/prompts").status_code == 403, "a key without a server has no prompts"


def test_the_rate_and_the_body_size_are_limited(server: Server) -> None:
    server.new_key("hasty")
    with server.client("hasty") as client:
        answers = [client.get("/sdapi/v1/samplers") for _ in range(620)]
        limited = [answer for answer in answers if answer.status_code == 429]
        assert limited and int(limited[0].headers["retry-after"]) >= 1
        assert all(answer.status_code in (200, 429) for answer in answers)
    with server.client() as client:
        big = client.post(
            "/sdapi/v1/png-info",
            content=b'{"image": "' + b"A" * (2 * 2**20) + b'"}',
            headers={"content-type": "application/json"},
        )
        assert big.status_code == 413


def test_serve_stops_with_one_line_when_its_port_is_taken(server: Server) -> None:
    port = server.url.rsplit(":", 1)[1]
    taken = server.cli("serve", "--port", port)
    said = [line for line in taken.stderr.splitlines() if line.strip()]
    assert taken.returncode == 2 and len(said) == 1, taken.stderr
    assert "NANKE_API_PORT" in said[0] and "Traceback" not in taken.stderr
