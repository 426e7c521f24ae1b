"""Execute the numbered notebooks in order through papermill with one profile.

    python -m hneuron_utils.workbook.run --params params/default.yaml [--only 01,03] [--run-name NAME]

Executed notebooks go to ``results/<run_name>/``, with ``run_log.json`` (parameters, seeds, versions,
git commit, the code digest of :func:`code_digest`, per-notebook times). On failure the run stops and names the
notebook and the cell. The committed run (``default``) refuses a tree whose code differs from its commit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from hneuron_utils.workbook import config
from hneuron_utils.progress import BATCH_ENV
from hneuron_utils.paths import project_root, run_dir

KERNEL_NAME = "hneurons"


class NotebookFailed(RuntimeError):
    """A notebook raised during a papermill run."""


class DirtyTree(RuntimeError):
    """The committed run was asked for while the code it would record differs from any commit."""


COMMITTED_RUNS = ("default",)  # runs whose results are committed: only from committed code


def code_digest(profile_file: Path) -> str:
    """A content digest of what decides a run's numbers: every Python file of the package, every numbered
    notebook and the profile (16 hex characters). Results, figures and the README do not enter it, so commits
    that only add results keep it, and two notebooks run at the same digest ran the same code."""
    import hashlib

    root = project_root()
    files = sorted(p for p in (root / "hneuron_utils").rglob("*.py") if "__pycache__" not in p.parts)
    files += notebooks() + [Path(profile_file)]
    h = hashlib.sha256()
    for p in files:
        name = p.relative_to(root) if p.is_relative_to(root) else Path(p.name)
        h.update(f"{name.as_posix()}\0".encode() + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def notebooks(only: Sequence[str] | None = None) -> list[Path]:
    """The numbered notebooks (``NN_name.ipynb``), optionally restricted to some numbers."""
    nbs = sorted(p for p in (project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if only:
        wanted = {o.strip().zfill(2) for o in only if o.strip()}
        unknown = wanted - {p.name[:2] for p in nbs}
        if unknown:
            raise config.ConfigError(f"--only names unknown notebook numbers {sorted(unknown)}; "
                                     f"available: {[p.name for p in nbs]}")
        nbs = [p for p in nbs if p.name[:2] in wanted]
    return nbs


KERNEL_QUIET = "--IPKernelApp.log_level=ERROR"  # no "running over TCP without encryption" warning in every notebook


def ensure_kernel() -> str:
    """Make sure the project's kernelspec exists, runs this interpreter and logs only errors; return its name."""
    from jupyter_client.kernelspec import KernelSpecManager

    ksm = KernelSpecManager()
    try:
        spec = ksm.get_kernel_spec(KERNEL_NAME)
        ok = Path(spec.argv[0]).resolve() == Path(sys.executable).resolve() and KERNEL_QUIET in spec.argv
    except Exception:  # noqa: BLE001 - missing or broken spec
        ok = False
    if not ok:
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL_NAME,
                        "--display-name", "Python (hneurons)"], check=True, capture_output=True)
        spec_file = Path(ksm.get_kernel_spec(KERNEL_NAME).resource_dir) / "kernel.json"
        spec_json = json.loads(spec_file.read_text())
        spec_json["argv"] = [a for a in spec_json["argv"] if a != KERNEL_QUIET] + [KERNEL_QUIET]
        spec_file.write_text(json.dumps(spec_json, indent=1))
    return KERNEL_NAME


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=project_root(), capture_output=True,
                             text=True, check=True).stdout.strip()
        # the run's own outputs (results/, figures/, the README block) do not make the code dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results",
                                ":!figures", ":!README.md"], cwd=project_root(), capture_output=True,
                               text=True).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "nnsight", "papermill", "scikit-learn"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "missing"
    return out


def run_notebook(nb: Path, out: Path, params: dict[str, Any], kernel: str, log_output: bool = True) -> float:
    """Execute one notebook; return its wall time. Raises NotebookFailed naming the failing cell."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    declared = pm.inspect_notebook(str(nb))
    if not declared:
        raise NotebookFailed(f"{nb.name} has no cell tagged 'parameters'")
    inject = {k: v for k, v in params.items() if k in declared}
    t0 = time.perf_counter()
    was = os.environ.get(BATCH_ENV)
    os.environ[BATCH_ENV] = "1"  # the kernel inherits it: Notebook.progress is False, long loops stay quiet
    try:
        pm.execute_notebook(str(nb), str(out), parameters=inject, kernel_name=kernel, cwd=str(project_root()),
                            log_output=log_output, progress_bar=False, stdout_file=None, stderr_file=None)
    except PapermillExecutionError as e:
        raise NotebookFailed(f"{nb.name} failed in cell {e.cell_index} (execution count {e.exec_count}): "
                             f"{e.ename}: {e.evalue}\n  executed notebook with the traceback: {out}") from e
    finally:
        if was is None:
            os.environ.pop(BATCH_ENV, None)
        else:
            os.environ[BATCH_ENV] = was
    collapse_parameter_cells(out)
    return time.perf_counter() - t0


def collapse_parameter_cells(path: Path) -> None:
    """Collapse the tagged parameters cell and papermill's injected copy in an executed notebook, so a
    reader opening it in JupyterLab sees prose and results first (the validation cell's table lists the
    parameters anyway)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if {"parameters", "injected-parameters"} & set(cell.metadata.get("tags", [])):
            cell.metadata.setdefault("jupyter", {})["source_hidden"] = True
    nbformat.write(nb, path)


def run(profile: str, only: Sequence[str] | None = None, run_name: str | None = None,
        log_output: bool = True, overrides: dict[str, Any] | None = None,
        *, notebook_files: Sequence[Path] | None = None, fresh_stages: bool = False) -> dict[str, Any]:
    """Run the numbered notebooks (or ``notebook_files``) with a profile (``overrides`` on top, validated);
    return the run log (also written to run_log.json).

    History stays honest: a notebook's replaced entry moves to ``earlier``; a failing notebook leaves the
    last good executed notebook in place (its own output goes to ``NN_name.failed.ipynb``) and its
    parameters are kept in its entry, not as the run's parameters.

    With ``fresh_stages`` each notebook runs on an empty stage cache (:func:`fresh_stage_cache`), so its
    recorded time is its time from scratch (the entry says so); its stages join the real cache after."""
    params = config.load_profile(profile)
    if overrides:
        params.update(config.validate_mapping(overrides))
    if run_name:
        params["run_name"] = config.validate_value("run_name", run_name)
    prof = config.profile_path(profile)
    commit = _git_commit()
    if params["run_name"] in COMMITTED_RUNS and commit.endswith("-dirty"):
        raise DirtyTree(f"results/{params['run_name']}/ is the committed run: its notebooks run only from committed "
                        f"code (the tree differs from {commit.removesuffix('-dirty')} outside results/, figures/ and "
                        "the README). Commit or stash the changes first, or give the run another --run-name.")
    digest = code_digest(prof)
    out_dir = run_dir(params["run_name"])
    out_dir.mkdir(parents=True, exist_ok=True)
    nbs = list(notebook_files) if notebook_files is not None else notebooks(only)
    kernel = ensure_kernel()
    log_path = out_dir / "run_log.json"
    # a full run starts a fresh log; a partial run (--only) keeps it and moves replaced entries to "earlier"
    partial = bool(only) or notebook_files is not None
    log: dict[str, Any] = json.loads(log_path.read_text()) if (log_path.exists() and partial) else {}
    prof_shown = str(prof.relative_to(project_root())) if prof.is_relative_to(project_root()) else str(prof)
    from hneuron_utils.models import resolve_device, resolve_dtype
    from hneuron_utils.workbook import env

    this_run = {"profile": prof_shown, "overrides": overrides or {}, "params": params, "versions": _versions(),
                "cpus": os.cpu_count(), "kernels": env.kernels(),
                "resolved_dtype": str(resolve_dtype(params["dtype"], resolve_device(params["device"]))).replace("torch.", "")}
    if not partial:  # a partial run keeps the full run's start and commit; each notebook records its own
        this_run.update({"git_commit": commit, "code_digest": digest,
                         "started": dt.datetime.now().isoformat(timespec="seconds")})
    if not log:  # a fresh log: this run's settings are the run's settings from the start
        log.update(this_run)
    log.setdefault("notebooks", {})
    log["last_invocation"] = [nb.name for nb in nbs]
    for nb in nbs:
        print(f"[run {params['run_name']}] {nb.name} ...", flush=True)
        entry = {"started": dt.datetime.now().isoformat(timespec="seconds"), "git_commit": _git_commit(),
                 "code_digest": code_digest(prof)}
        # execute into a scratch file: a failing re-run never overwrites the last good executed notebook
        scratch = out_dir / f".{nb.stem}.running.ipynb"
        fresh, old_cache = ((fresh_stage_cache(out_dir, nb.name), os.environ.get("HNEURON_CACHE")) if fresh_stages
                            else (None, None))
        if fresh is not None:
            os.environ["HNEURON_CACHE"] = str(fresh)
            entry["stage cache"] = FRESH_NOTE
        t0 = time.perf_counter()
        try:
            secs = run_notebook(nb, scratch, params, kernel, log_output=log_output)
        except NotebookFailed as e:
            failed = out_dir / f"{nb.stem}.failed.ipynb"
            if scratch.exists():
                os.replace(scratch, failed)
            entry.update(status="failed", seconds_until_failure=round(time.perf_counter() - t0, 1),
                         error=str(e).replace(str(scratch), str(failed)),
                         executed_notebook=failed.name, params=params, overrides=overrides or {})
            _record(log, nb.name, entry)
            log_path.write_text(json.dumps(log, indent=1, default=str))
            raise NotebookFailed(entry["error"]) from e
        finally:
            if fresh is not None:
                if old_cache is None:
                    os.environ.pop("HNEURON_CACHE", None)
                else:
                    os.environ["HNEURON_CACHE"] = old_cache
                try:
                    merge_fresh(fresh)
                except OSError as err:  # never hide the notebook's own error; the stages stay where they are
                    print(f"could not merge the fresh stage cache {fresh} into the cache: {err}", file=sys.stderr)
        os.replace(scratch, out_dir / nb.name)
        (out_dir / f"{nb.stem}.failed.ipynb").unlink(missing_ok=True)
        entry.update(status="ok", seconds=round(secs, 1))
        _record(log, nb.name, entry)
        log.update(this_run)  # settings recorded only by runs whose notebooks succeed
        log_path.write_text(json.dumps(log, indent=1, default=str))
        print(f"[run {params['run_name']}] {nb.name} done in {secs:.1f} s", flush=True)
    return log


FRESH_NOTE = "empty (model files and notebook 02's features linked)"


def fresh_stage_cache(run_out: Path, notebook: str = "") -> Path:
    """A new, empty stage cache for measuring a notebook's time from scratch: a temporary folder beside the
    cache root with links to the model files (``gguf/``, ``models/``) and to the CETT features notebook 02
    recorded for this run (``data/02_features.json``), which later notebooks read but do not make (not for
    00–02: 02 makes them, so its own time must include making them). Every
    stage a notebook computes lands in it; :func:`merge_fresh` moves them into the real cache afterwards."""
    import tempfile

    from hneuron_utils.paths import cache_root, link_model_dirs

    root = cache_root()
    fresh = Path(tempfile.mkdtemp(prefix="fresh-stages-", dir=root.parent if root.parent.exists() else None))
    link_model_dirs(fresh)  # model files are not stages: a download lands in the real cache
    rec = run_out / "data" / "02_features.json"
    if rec.exists() and notebook[:2] not in ("00", "01", "02"):  # 02 makes them: its own run must not find them
        key = json.loads(rec.read_text())["key"]
        src = root / "stages" / "cett" / key
        if src.exists():
            (fresh / "stages" / "cett").mkdir(parents=True)
            (fresh / "stages" / "cett" / key).symlink_to(src)
    return fresh


def _merge_jsonl(src: Path, dst: Path) -> int:
    """Append to the item store ``dst`` the items of ``src`` it lacks (or holds fewer samples of)."""
    from hneuron_utils.cache import JsonlStore

    have, new = JsonlStore(dst), JsonlStore(src)
    add, conflicts = {}, 0
    for k, v in new.data.items():
        if k not in have:
            add[k] = v
        elif isinstance(v, list) and isinstance(have[k], list) and len(v) > len(have[k]):
            if v[:len(have[k])] == have[k]:  # the same samples, and more of them
                add[k] = v
            else:  # drawn differently (e.g. bfloat16 batches): keep what earlier results were built on
                conflicts += 1
    if conflicts:
        print(f"merge: kept the cached items of {conflicts} id(s) in {dst} whose fresh values differ")
    if add:
        if dst.exists() and dst.stat().st_size and not dst.read_bytes().endswith(b"\n"):
            with open(dst, "a", encoding="utf-8") as f:  # a line cut short must not swallow the first new one
                f.write("\n")
        have.add(add)
    return len(add)


def merge_fresh(fresh: Path) -> int:
    """Move what a fresh-cache run computed into the real cache and delete the temporary folder: stage
    folders the cache lacks move whole (links are skipped); in a folder both hold, missing files move and
    item stores (``*.jsonl``) gain the items they lack. Returns how many folders or files were merged."""
    import shutil

    from hneuron_utils.paths import cache_root

    merged = 0
    stages = fresh / "stages"
    for kind in (stages.iterdir() if stages.exists() else ()):
        for d in kind.iterdir():
            target = cache_root() / "stages" / kind.name / d.name
            if d.is_symlink():
                continue
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(d), str(target))
                merged += 1
                continue
            for f in d.iterdir():
                if ".tmp" in f.name:  # a partial write
                    continue
                if not (target / f.name).exists():
                    shutil.move(str(f), str(target / f.name))
                    merged += 1
                elif f.suffix == ".jsonl":
                    merged += _merge_jsonl(f, target / f.name) > 0
    shutil.rmtree(fresh)
    return merged


def _record(log: dict[str, Any], name: str, entry: dict[str, Any]) -> None:
    """Make ``entry`` the notebook's latest entry; the one it replaces moves to ``earlier`` (never lost)."""
    if name in log["notebooks"]:
        log.setdefault("earlier", []).append({"notebook": name, **log["notebooks"][name]})
    log["notebooks"][name] = entry


def invocation_seconds(log: dict[str, Any]) -> float:
    """Total time of the notebooks the latest invocation ran (not of earlier partial runs in the same log)."""
    names = log.get("last_invocation") or list(log["notebooks"])
    return sum(log["notebooks"][n].get("seconds", 0) for n in names if n in log["notebooks"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hneuron_utils.workbook.run", description=__doc__.split("\n")[0])
    ap.add_argument("--params", required=True, help="profile: params/<name>.yaml or a name")
    ap.add_argument("--only", default="", help="comma-separated notebook numbers, e.g. 01,03")
    ap.add_argument("--run-name", default=None, help="results/<run-name>/ (default: the profile's run_name)")
    ap.add_argument("--quiet", action="store_true", help="do not stream cell output")
    ap.add_argument("--fresh-stages", action="store_true",
                    help="run each notebook on an empty stage cache, to record its time from scratch")
    args = ap.parse_args(argv)
    try:
        log = run(args.params, only=args.only.split(",") if args.only else None, run_name=args.run_name,
                  log_output=not args.quiet, fresh_stages=args.fresh_stages)
    except (config.ConfigError, NotebookFailed, DirtyTree) as e:
        print(f"\nERROR: {e}", file=sys.stderr)
        return 1
    total = invocation_seconds(log)
    print(f"[run] all {len(log['last_invocation'])} notebook(s) of this run ok; their total {total:.0f} s; results in {run_dir(log['params']['run_name'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
