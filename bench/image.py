"""The project's image: cold build, rebuild after a one-line code change, and what it weighs."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

from . import BenchError
from .context import Run, check_output
from .lab import Lab, docker_cli
from .service import ServiceBench

MB = 1e6
DEFAULT_PYTHON_IMAGE = "python:{}-slim-bookworm"  # the project Dockerfile's default base

METHOD = [
    "**image**: `docker build` with BuildKit and the base images of `PYTHON_IMAGE`/`UV_IMAGE` "
    "(local stand-ins offline). A cold build is `--no-cache` (BuildKit's uv cache mount stays "
    "warm, as on a CI runner that keeps it); the rebuild follows a comment appended to a module "
    "under src/. The code-change layer is the sum of the rebuilt image's layers that the cold "
    "image lacks (uncompressed, as `docker save` has them). `image.overhead` is (image size - "
    "base image size) / size of the virtualenv in the image.",
]


class Stream(io.RawIOBase):
    """A file over the chunks of `docker save`, for tarfile's streaming mode."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.pending = chunks, b""

    def readable(self) -> bool:
        """It is."""
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """Fill `buffer` from the next chunks; 0 at the end."""
        while not self.pending:
            self.pending = next(self.chunks, b"")
            if not self.pending:
                return 0
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size


def base_build_args(python: str) -> dict[str, str]:
    """Base image build args from the environment, as the template's image tests pass them."""
    names = {"PYTHON_IMAGE": f"PYTHON_IMAGE_{python.replace('.', '')}", "UV_IMAGE": "UV_IMAGE"}
    found = {arg: os.environ.get(env) or os.environ.get(arg) for arg, env in names.items()}
    return {arg: value for arg, value in found.items() if value}


class ImageBench:
    """Builds a copy of the default project's source, cold then after a code change."""

    method = METHOD

    def __init__(self, run: Run, lab: Lab, service: ServiceBench) -> None:
        self.run, self.lab, self.service = run, lab, service
        self.context = run.path("image")
        self.latest: str | None = None  # the last image built, for the cold-start bench

    def setup(self) -> None:
        """Copy the service's project, so that edits leave the one it serves alone."""
        self.project = self.service.project
        shutil.copytree(
            self.project.path,
            self.context,
            ignore=shutil.ignore_patterns(".venv", "__pycache__", ".nox", "tests", ".git"),
        )
        self.build_args = base_build_args(self.project.python)
        base = self.build_args.get("PYTHON_IMAGE") or DEFAULT_PYTHON_IMAGE.format(
            self.project.python
        )
        self.base_size = self.lab.client.images.get(base).attrs["Size"]

    def build(self, tag: str, *, cold: bool) -> float:
        """Build the context's image: the seconds it took."""
        command = [docker_cli(), "build", "--quiet", "--tag", tag]
        command += [f"--build-arg={name}={value}" for name, value in self.build_args.items()]
        if cold:
            command.append("--no-cache")
        self.lab.images.append(tag)
        started = time.perf_counter()
        check_output(
            [*command, self.context], env={**os.environ, "DOCKER_BUILDKIT": "1"}, timeout=900
        )
        return time.perf_counter() - started

    def layers(self, tag: str) -> dict[str, int]:
        """The image's layers, by diff id: their uncompressed sizes in bytes."""
        image = self.lab.client.images.get(tag)
        sizes, manifest = {}, None
        stream = io.BufferedReader(Stream(iter(image.save(chunk_size=1 << 20))))
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                sizes[member.name] = member.size
                if member.name == "manifest.json":
                    manifest = json.load(archive.extractfile(member))  # type: ignore[arg-type]
        if manifest is None:
            msg = f"`docker save {tag}` wrote no manifest.json: is the engine's save format new?"
            raise BenchError(msg)
        paths = manifest[0]["Layers"]
        return dict(zip(image.attrs["RootFS"]["Layers"], (sizes[p] for p in paths), strict=True))

    def venv_size(self, tag: str) -> int:
        """Bytes of the virtualenv in the image: the one whose bin/ comes first on its PATH."""
        config = self.lab.client.images.get(tag).attrs["Config"]
        env = dict(item.split("=", 1) for item in config["Env"])
        venv = str(Path(env["PATH"].split(":")[0]).parent)
        du = ["-s", "--apparent-size", "--block-size=1", venv]
        output = self.lab.once(tag, f"du-{self.run.round}", du, entrypoint=["du"])
        return int(output.split()[0])

    def round(self) -> None:
        """Cold build, one-line change, rebuild; sizes of the change and of the image."""
        slug = f"{self.lab.name}-{self.project.slug}"
        cold, rebuilt = f"{slug}:cold-{self.run.round}", f"{slug}:rebuilt-{self.run.round}"
        cold_seconds = self.build(cold, cold=True)
        self.run.record("image.cold_build", cold_seconds, "s")
        module = self.context / "src" / self.project.package / "__init__.py"
        with module.open("a") as file:  # a line no earlier run wrote: BuildKit has no cache of it
            file.write(f"# {self.lab.name}, round {self.run.round}: a one-line change\n")
        self.run.record("image.rebuild", self.build(rebuilt, cold=False), "s")
        before = set(self.lab.client.images.get(cold).attrs["RootFS"]["Layers"])
        changed = sum(size for layer, size in self.layers(rebuilt).items() if layer not in before)
        self.run.record("image.code_change_layer", changed / MB, "MB")
        size = self.lab.client.images.get(rebuilt).attrs["Size"]
        venv = self.venv_size(rebuilt)
        self.run.record("image.size", size / MB, "MB")
        self.run.record("image.venv", venv / MB, "MB")
        self.run.record("image.overhead", (size - self.base_size) / venv, "ratio")
        self.lab.forget_image(cold)
        if self.latest:
            self.lab.forget_image(self.latest)
        self.latest = rebuilt
