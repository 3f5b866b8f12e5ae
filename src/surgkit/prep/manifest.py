"""Resume bookkeeping: ``<out>/manifest.json`` records, per video, the input and settings hashes,
the finished chunks and whether the video is done.

A re-run skips a video whose entry is ``done`` with the same input hash and settings hash, resumes
one that is ``partial`` with the same hashes from its first unfinished chunk, and starts over
otherwise (or with ``overwrite=True``). ``computed_items`` counts every item (frame, flow field,
mask, segment) actually computed for the video over all runs, so a test or a user can check that
nothing was computed twice. The file is written atomically, only by the main process.

A sharded run (``--shard i/N``, :mod:`surgkit.prep.shard`) keeps ``manifest.shard-i-of-N.json``
instead. Every manifest also lists the videos of the whole input (``expected``), so
``surgkit prep status`` can name the videos no shard has done. A video this manifest does not know
yet is looked up in the folder's other manifests (an unsharded run continues what shards did, and
the reverse).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from surgkit.errors import DataFormatError
from surgkit.utils.inputs import as_dict, read_json
from surgkit.utils.io import write_json

MANIFEST_FORMAT = "surgkit-prep-manifest/1"
MANIFEST_NAME = "manifest.json"
MANIFEST_GLOB = "manifest*.json"


def manifest_name(shard: Any | None = None) -> str:
    """``manifest.json``, or ``manifest.shard-i-of-N.json`` for a :class:`surgkit.prep.shard.Shard`."""
    return MANIFEST_NAME if shard is None else f"manifest.{shard.tag}.json"


def read_manifest(path: str | Path, step: str | None = None) -> dict[str, Any]:
    """A manifest file's content, validated (format, and ``step`` when given)."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("videos", {}), dict):
        raise DataFormatError(f"not a {MANIFEST_FORMAT} file", path=path)
    for vid, entry in data.get("videos", {}).items():
        as_dict(entry, path, f"videos.{vid}")
    if data.get("format") != MANIFEST_FORMAT or (step is not None and data.get("step") != step):
        raise DataFormatError(
            f"not a {step or MANIFEST_FORMAT} manifest (step={data.get('step')!r}); use another output folder",
            path=path,
        )
    return data


def _sweep_own_temporaries(path: Path) -> None:
    """Remove temporary copies of this manifest left by a writer killed mid-save (``.<name>.*.tmp``).

    Only this manifest's own name: a shard never touches another shard's files.
    """
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


class Manifest:
    """The manifest of one output folder and step (frames, flow, masks or features)."""

    def __init__(
        self,
        out_dir: str | Path,
        step: str,
        settings: dict[str, Any],
        *,
        shard: Any | None = None,
        expected: list[str] | None = None,
    ):
        from surgkit.utils.io import sha256_json

        self.path = Path(out_dir) / manifest_name(shard)
        self.step = step
        self.settings = settings
        self.settings_sha256 = sha256_json(settings)
        self.shard = shard
        self.expected = sorted(expected) if expected is not None else None
        self.videos: dict[str, dict[str, Any]] = {}
        self._last_save = 0.0
        _sweep_own_temporaries(self.path)
        if self.path.is_file():
            self.videos = dict(read_manifest(self.path, step).get("videos", {}))
        self._siblings: list[dict[str, dict[str, Any]]] = [
            dict(read_manifest(p, step).get("videos", {}))
            for p in sorted(Path(out_dir).glob(MANIFEST_GLOB))
            if p != self.path and p.is_file()
        ]

    def _adopt(self, video_id: str) -> None:
        """Take over another manifest's entry for a video this one does not know (finished wins)."""
        if video_id in self.videos:
            return
        found = [v[video_id] for v in self._siblings if video_id in v]
        if found:
            found.sort(key=lambda e: (e.get("status") == "done", len(e.get("chunks_done", []))))
            self.videos[video_id] = json.loads(json.dumps(found[-1]))

    def knows(self, video_id: str) -> bool:
        """Whether an earlier run (or another shard) left an entry for the video.

        Only then does :meth:`plan` need the input hash now; for a new video the worker may hash
        its input while it decodes and report it with :meth:`set_input_sha256`.
        """
        self._adopt(video_id)
        return video_id in self.videos

    def set_input_sha256(self, video_id: str, input_sha256: str) -> None:
        """Record the input hash of a video planned with ``input_sha256=None`` (before its chunks)."""
        self.videos[video_id]["input_sha256"] = input_sha256

    def plan(
        self, video_id: str, source: str, input_sha256: str | None, overwrite: bool = False
    ) -> tuple[str, set[int]]:
        """Decide what to do: ("skip", _), ("resume", finished chunk ids) or ("start", {})."""
        self._adopt(video_id)
        old = self.videos.get(video_id)
        same = (
            old is not None
            and old.get("input_sha256") == input_sha256
            and old.get("settings_sha256") == self.settings_sha256
        )
        if same and not overwrite and old["status"] == "done":
            return "skip", set(old.get("chunks_done", []))
        if same and not overwrite and old["status"] in ("partial", "failed"):
            chunks = set(old.get("chunks_done", []))
            old["runs"] = int(old.get("runs", 0)) + 1
            return "resume", chunks
        computed = int(old.get("computed_items", 0)) if old else 0
        self.videos[video_id] = {
            "source": str(source),
            "input_sha256": input_sha256,
            "settings_sha256": self.settings_sha256,
            "status": "partial",
            "chunks_done": [],
            "num_items": None,
            "computed_items": computed,
            "runs": 1,
            "error": None,
        }
        return "start", set()

    def chunk_done(self, video_id: str, chunk_id: int, n_items: int) -> None:
        entry = self.videos[video_id]
        if chunk_id not in entry["chunks_done"]:
            entry["chunks_done"] = sorted([*entry["chunks_done"], int(chunk_id)])
            entry["computed_items"] = int(entry["computed_items"]) + int(n_items)
        self.save(throttle=True)

    def video_done(self, video_id: str, num_items: int, **extra: Any) -> None:
        entry = self.videos[video_id]
        entry.update(status="done", num_items=int(num_items), error=None, **extra)
        self.save()

    def video_failed(self, video_id: str, message: str) -> None:
        """Record the error; finished chunks stay valid for a re-run with the same input and settings."""
        self._adopt(video_id)
        entry = self.videos.setdefault(
            video_id, {"status": "failed", "chunks_done": [], "computed_items": 0, "runs": 1}
        )
        entry["error"] = message
        if entry.get("status") != "done":
            entry["status"] = "failed"
        self.save()

    def save(self, throttle: bool = False) -> None:
        """Atomically write the manifest (at most every 0.25 s when ``throttle``)."""
        now = time.monotonic()
        if throttle and now - self._last_save < 0.25:
            return
        self._last_save = now
        write_json(
            self.path,
            {
                "format": MANIFEST_FORMAT,
                "step": self.step,
                "settings": self.settings,
                "settings_sha256": self.settings_sha256,
                "shard": None if self.shard is None else self.shard.label,
                "expected": self.expected,
                "videos": dict(sorted(self.videos.items())),
            },
        )
