"""Compiled copies of the per-message hot modules, used only when built from the current source.

The gateway's decoders and the processor's engine, rules, detectors and line-protocol encoder
stay plain typed Python; mypyc (part of mypy, the compiler behind mypy's and black's own
wheels) turns the same source into C extensions: the processor's engine runs ~1.5 x faster
and the gateway's decoding ~1.3 x (bench/rules_timeit.py, bench/decode_timeit.py). Nothing is
hand-written in C and nothing changes in behaviour: the unit tests run against both
(deploy/test.sh).

``build()`` compiles ``MODULES`` into ``<cache>/native/<digest>/``, where the digest covers
the modules' source, the Python version and mypy's version. ``activate(package)`` (run by
``processors/__init__.py`` and ``ingest/__init__.py``) puts that directory in front of the
package's search path, and its subpackages', only if it exists for the digest of the files
as they are now: an edited module changes the digest, so a stale build is never imported; the
pure-Python modules run until the next build. ``CITYWATCH_NATIVE=0`` turns compiled modules
off.

Example:
    $ citywatch native build     # deploy/bootstrap.sh does this
    $ citywatch native status
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Where the per-message path lives besides the modules named below: every decoder, rule and
#: detector module (a new one is compiled without being listed here); their registries stay
#: interpreted.
_PER_READING_DIRS = ("ingest/decoders", "processors/rules", "processors/detectors")
_INTERPRETED = ("__init__.py", "registry.py")
# One walk of those directories (this runs at every import of ingest or processors).
_FOUND: tuple[Path, ...] = tuple(
    sorted(
        p.relative_to(ROOT)
        for d in _PER_READING_DIRS
        for p in (ROOT / d).rglob("*.py")
        if not p.name.startswith(".")
    )
)

#: The per-message path (not the registries, the configuration or anything doing I/O).
MODULES: tuple[str, ...] = (
    "ingest/decode.py",
    "processors/engine.py",
    "processors/alerts.py",
    "processors/sinks/lines.py",
    *(p.as_posix() for p in _FOUND if p.name not in _INTERPRETED),
)
#: Packages whose search path gets the compiled directory in front.
PACKAGES: tuple[str, ...] = (
    "ingest",
    "processors",
    "processors.sinks",
    *(".".join(p.parent.parts) for p in _FOUND if p.name == "__init__.py"),
)


def _cache_dir() -> Path:
    # Read at import time, before any Settings object exists (and a broken citywatch.toml must
    # not make the package unimportable): the same variable and default as Settings.cache_dir.
    env = os.environ.get("CITYWATCH_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "citywatch"


def digest() -> str:
    """Digest of what a build depends on: module sources, Python and mypy versions."""
    h = hashlib.sha256(sys.version.encode())
    try:
        from importlib.metadata import version

        h.update(version("mypy").encode())
    except Exception:  # mypy absent: there is nothing to build with anyway
        h.update(b"no-mypy")
    for rel in MODULES:
        h.update(rel.encode())
        h.update((ROOT / rel).read_bytes())
    return h.hexdigest()[:16]


def build_dir() -> Path:
    return _cache_dir() / "native" / digest()


def is_built(where: Path) -> bool:
    """A build directory is usable once its marker exists (written after every module)."""
    return (where / _DONE).exists()


_DONE = "complete"


def enabled() -> bool:
    return os.environ.get("CITYWATCH_NATIVE", "1") != "0"


@functools.cache
def _process_build_dir() -> Path:
    """``build_dir()`` once per process: ``ingest`` and ``processors`` both activate, and
    hashing every module's source (~2.4 ms) need not be done twice at start-up."""
    return build_dir()


def activate(package: str) -> Path | None:
    """Use the compiled modules of ``package`` (and its subpackages) if they were built from
    these sources; returns their directory. Called first thing in the package's __init__."""
    if not enabled():
        return None
    where = _process_build_dir()
    if not is_built(where):
        return None
    # The compiled modules share one support library, imported by its top-level name.
    if str(where) not in sys.path:
        sys.path.append(str(where))
    for name in PACKAGES:
        if name == package or name.startswith(package + "."):
            _search_first(name, str(where.joinpath(*name.split("."))))
    return where


def _search_first(name: str, sub: str) -> None:
    """Put ``sub`` first on package ``name``'s search path, before its __init__ imports any
    of its modules (ingest.decoders' does)."""
    pkg = sys.modules.get(name)
    if pkg is not None:  # the package calling activate(), or one imported earlier
        if sub not in pkg.__path__:
            pkg.__path__.insert(0, sub)
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    spec.submodule_search_locations.insert(0, sub)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, mod)


def active(module: str = "processors.engine") -> bool:
    """True when ``module`` (one of ``MODULES``) is the compiled one."""
    return not str(importlib.import_module(module).__file__).endswith(".py")


def build(*, quiet: bool = True) -> Path:
    """Compile ``MODULES`` unless a build for their current digest exists; returns its dir."""
    where = build_dir()
    if is_built(where):
        return where
    from mypyc.build import mypycify
    from setuptools import setup  # type: ignore[import-untyped]

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="citywatch-mypyc-") as tmp:
        out = Path(tmp) / "lib"
        cwd = os.getcwd()
        os.chdir(ROOT)  # module names follow the paths relative to here
        try:
            ext = mypycify(list(MODULES), opt_level="3", target_dir=str(Path(tmp) / "c"))
            # Not next to pyproject.toml: setuptools would read (and warn about) the
            # project's metadata, which belongs to hatchling, not to this build.
            os.chdir(tmp)
            args = ["build_ext", "--build-lib", str(out), "--build-temp", str(Path(tmp) / "o")]
            if quiet:
                args.insert(0, "--quiet")
            setup(
                name="citywatch-native",
                packages=[],
                py_modules=[],
                ext_modules=ext,
                script_args=args,
            )
        finally:
            os.chdir(cwd)
        where.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=where.parent))
        shutil.copytree(out, staging, dirs_exist_ok=True)
        (staging / _DONE).write_text(f"built in {time.monotonic() - t0:.0f} s\n")
        if where.exists():  # a concurrent build finished first: keep that one
            shutil.rmtree(staging)
        else:
            staging.rename(where)
    # Older builds are for sources that no longer exist.
    for old in where.parent.iterdir():
        if old != where and old.is_dir() and not old.name.startswith("tmp"):
            shutil.rmtree(old, ignore_errors=True)
    return where
