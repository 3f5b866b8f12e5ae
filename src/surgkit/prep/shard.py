"""``--shard i/N``: split one prep job over machines (a SLURM array, any scheduler) into one folder.

Video ``v`` belongs to shard ``int(sha256(v)[:16], 16) mod N``: the partition depends only on the
video's id, never on the listing order or on which other videos a shard saw, so shards that list the
input at different times still split it without overlap. Shards are numbered ``0..N-1`` (SLURM:
``--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`` with ``--array=0-(N-1)``).

Every shard writes the same per-video outputs as an unsharded run into the same folder, and keeps its
own manifest (``manifest.shard-i-of-N.json``) and its own writer lock (``.shard-i-of-N/``). An unsharded
run locks the folder itself; a run refuses to start while the other kind holds the folder.
``surgkit prep status OUT`` merges the manifests (:mod:`surgkit.prep.status`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from surgkit.errors import SurgkitError

_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
SHARD_HELP = (
    "Process only shard i of N (0-based, e.g. 0/4): videos split by a hash of their id; run every "
    "shard into the same --out, then `surgkit prep status OUT`."
)


def shard_of(video_id: str, count: int) -> int:
    """The shard (0..count-1) of a video id: ``int(sha256(id)[:16], 16) mod count``."""
    return int(hashlib.sha256(video_id.encode("utf-8")).hexdigest()[:16], 16) % count


@dataclasses.dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise SurgkitError(f"--shard {self.index}/{self.count}: need 0 <= i < N (shards are 0-based)")

    @classmethod
    def parse(cls, text: str) -> Shard:
        m = _SHARD_RE.match(str(text))
        if not m:
            raise SurgkitError(f"--shard '{text}': expected i/N, e.g. 0/4 (shards are 0-based)")
        return cls(int(m.group(1)), int(m.group(2)))

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def tag(self) -> str:
        """File-name form: ``shard-i-of-N``."""
        return f"shard-{self.index}-of-{self.count}"

    def owns(self, video_id: str) -> bool:
        return shard_of(video_id, self.count) == self.index

    def select(self, ids: Iterable[str]) -> list[str]:
        """This shard's ids, in the input order."""
        return [v for v in ids if self.owns(v)]


def parse_shard(text: str | Shard | None) -> Shard | None:
    """``None`` (no sharding), a :class:`Shard`, or ``"i/N"``; ``"0/1"`` means no sharding too."""
    if text is None or isinstance(text, Shard):
        shard = text
    else:
        shard = Shard.parse(text)
    return None if shard is None or shard.count == 1 else shard


def _lock_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.glob(".shard-*-of-*") if p.is_dir())


def _free(folder: Path) -> bool:
    """True when no other process holds ``folder``'s writer lock (taken and released at once)."""
    from surgkit.utils.lock import FolderInUseError, output_lock

    try:
        with output_lock(folder, "surgkit prep (checking)", enabled=True):
            return True
    except FolderInUseError:
        return False


@contextlib.contextmanager
def prep_lock(out: str | Path, shard: Shard | None, command: str) -> Iterator[Path]:
    """Hold the writer lock of a prep output folder (unsharded) or of one shard of it.

    Shards of one folder run side by side; an unsharded run and a sharded one never do.
    """
    from surgkit.utils.lock import is_main_process, output_lock

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not is_main_process():
        yield out
        return
    if shard is None:
        with output_lock(out, command):
            busy = [p.name[1:] for p in _lock_dirs(out) if not _free(p)]
            if busy:
                raise SurgkitError(
                    f"{out}: {', '.join(busy)} still running; wait for it or use another --out"
                )
            yield out
        return
    folder = out / f".{shard.tag}"
    with output_lock(folder, f"{command} --shard {shard.label}"):
        if not _free(out):
            raise SurgkitError(
                f"{out}: an unsharded run is writing this folder; wait for it or use another --out"
            )
        yield out


def prep_locked(command: str, folder_arg: str = "out_dir", shard_arg: str = "shard"):
    """Decorator: run a prep entry point under :func:`prep_lock` of its output folder and shard."""
    import functools
    import inspect

    def wrap(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            shard = parse_shard(bound.arguments.get(shard_arg))
            with prep_lock(bound.arguments[folder_arg], shard, command):
                return fn(*args, **kwargs)

        return run

    return wrap
