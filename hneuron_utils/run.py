"""Execute the numbered notebooks in order through papermill with one profile.

    python -m hneuron_utils.run --params params/default.yaml [--only 01,03] [--run-name NAME]

Executed notebooks go to ``results/<run_name>/``, with ``run_log.json`` (parameters, seeds, versions,
git commit, per-notebook times). On failure the run stops and names the notebook and the cell.
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

from . import config
from .paths import project_root, run_dir

KERNEL_NAME = "hneurons"


class NotebookFailed(RuntimeError):
    """A notebook raised during a papermill run."""


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


def ensure_kernel() -> str:
    """Make sure the project's kernelspec exists and runs this interpreter; return its name."""
    from jupyter_client.kernelspec import KernelSpecManager

    ksm = KernelSpecManager()
    try:
        spec = ksm.get_kernel_spec(KERNEL_NAME)
        ok = Path(spec.argv[0]).resolve() == Path(sys.executable).resolve()
    except Exception:  # noqa: BLE001 - missing or broken spec
        ok = False
    if not ok:
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL_NAME,
                        "--display-name", "Python (hneurons)"], check=True, capture_output=True)
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
    try:
        pm.execute_notebook(str(nb), str(out), parameters=inject, kernel_name=kernel, cwd=str(project_root()),
                            log_output=log_output, progress_bar=False, stdout_file=None, stderr_file=None)
    except PapermillExecutionError as e:
        raise NotebookFailed(f"{nb.name} failed in cell {e.cell_index} (execution count {e.exec_count}): "
                             f"{e.ename}: {e.evalue}\n  executed notebook with the traceback: {out}") from e
    return time.perf_counter() - t0


def run(profile: str, only: Sequence[str] | None = None, run_name: str | None = None,
        log_output: bool = True, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the numbered notebooks with a profile (``overrides`` on top, validated); return the run log
    (also written to run_log.json)."""
    params = config.load_profile(profile)
    if overrides:
        params.update(config.validate_mapping(overrides))
    if run_name:
        params["run_name"] = config.validate_value("run_name", run_name)
    out_dir = run_dir(params["run_name"])
    out_dir.mkdir(parents=True, exist_ok=True)
    nbs = notebooks(only)
    kernel = ensure_kernel()
    log_path = out_dir / "run_log.json"
    # a full run starts a fresh log; a partial run (--only) keeps it and moves replaced entries to "earlier"
    log: dict[str, Any] = json.loads(log_path.read_text()) if (log_path.exists() and only) else {}
    prof = config.profile_path(profile)
    prof_shown = str(prof.relative_to(project_root())) if prof.is_relative_to(project_root()) else str(prof)
    log.update({"profile": prof_shown, "overrides": overrides or {}, "params": params, "versions": _versions(), "cpus": os.cpu_count()})
    if not only:  # a partial run keeps the full run's start and commit; each notebook records its own
        log.update({"git_commit": _git_commit(), "started": dt.datetime.now().isoformat(timespec="seconds")})
    from .models import resolve_device, resolve_dtype

    log["resolved_dtype"] = str(resolve_dtype(params["dtype"], resolve_device(params["device"]))).replace("torch.", "")
    log.setdefault("notebooks", {})
    for nb in nbs:
        print(f"[run {params['run_name']}] {nb.name} ...", flush=True)
        entry = {"started": dt.datetime.now().isoformat(timespec="seconds"), "git_commit": _git_commit()}
        try:
            secs = run_notebook(nb, out_dir / nb.name, params, kernel, log_output=log_output)
        except NotebookFailed as e:
            entry.update(status="failed", error=str(e))
            log["notebooks"][nb.name] = entry
            log_path.write_text(json.dumps(log, indent=1, default=str))
            raise
        entry.update(status="ok", seconds=round(secs, 1))
        if nb.name in log["notebooks"]:
            log.setdefault("earlier", []).append({"notebook": nb.name, **log["notebooks"][nb.name]})
        log["notebooks"][nb.name] = entry
        log_path.write_text(json.dumps(log, indent=1, default=str))
        print(f"[run {params['run_name']}] {nb.name} done in {secs:.1f} s", flush=True)
    return log


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hneuron_utils.run", description=__doc__.split("\n")[0])
    ap.add_argument("--params", required=True, help="profile: params/<name>.yaml or a name")
    ap.add_argument("--only", default="", help="comma-separated notebook numbers, e.g. 01,03")
    ap.add_argument("--run-name", default=None, help="results/<run-name>/ (default: the profile's run_name)")
    ap.add_argument("--quiet", action="store_true", help="do not stream cell output")
    args = ap.parse_args(argv)
    try:
        log = run(args.params, only=args.only.split(",") if args.only else None, run_name=args.run_name,
                  log_output=not args.quiet)
    except (config.ConfigError, NotebookFailed) as e:
        print(f"\nERROR: {e}", file=sys.stderr)
        return 1
    total = sum(v.get("seconds", 0) for v in log["notebooks"].values())
    print(f"[run] all notebooks ok; total {total:.0f} s; results in {run_dir(log['params']['run_name'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
