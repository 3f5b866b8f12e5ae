"""A client for OpenAI-compatible chat endpoints (vLLM, SGLang, ms-swift deploy, hosted APIs).

Used by evaluation (``reason eval --endpoint``) and by teacher chains (``reason teach``). One request
per record, ``/v1/chat/completions`` schema, images as base64 data URLs.

- **Bounded concurrency**: at most ``concurrency`` requests in flight (a thread pool); answers come
  back in record order.
- **Retries with backoff**: HTTP 429/500/502/503/504, timeouts, refused or reset connections and
  malformed bodies are retried up to ``retries`` times, waiting ``min(max_backoff, backoff * 2^k)``
  seconds times a jitter in [0.5, 1.5) (or the server's ``Retry-After``); when they are exhausted the
  run stops with one line naming the endpoint and the record (answers obtained so far are kept by
  the caller, so a rerun resumes).
- **Statuses, never a crash on one record**: every answer has a ``status``: ``ok``; ``null`` (content
  null or empty); ``refusal`` (the message carries a ``refusal``); ``length`` (``finish_reason`` =
  length: cut at the token limit); ``filtered`` (content filter); ``rejected`` (HTTP 400/413/422: the
  server refuses this request, e.g. an image too large). Only ``ok`` answers are scored; the others
  count as unparseable. HTTP 401/403/404 stop at once (wrong key, model or URL).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from surgkit.errors import SurgkitError

RETRY_HTTP = (429, 500, 502, 503, 504)
REJECT_HTTP = (400, 413, 422)
STATUSES = ("ok", "null", "refusal", "length", "filtered", "rejected")


class EndpointError(SurgkitError):
    """The endpoint failed for good (after retries, or a configuration error); ``partial`` holds the
    answers obtained before, by request index."""

    def __init__(self, message: str, partial: dict[int, Answer] | None = None):
        super().__init__(message)
        self.partial = partial or {}


@dataclasses.dataclass(frozen=True)
class Answer:
    """One generated answer: its text and how it ended (see the module docstring)."""

    text: str
    status: str = "ok"
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class EndpointSettings:
    """Where and how to ask. ``api_key_env`` names the environment variable holding the key."""

    url: str
    model: str = "default"
    timeout: float = 60.0
    max_tokens: int = 1024
    temperature: float = 0.0
    concurrency: int = 8
    retries: int = 4
    backoff: float = 1.0
    max_backoff: float = 30.0
    api_key_env: str = "OPENAI_API_KEY"

    @property
    def chat_url(self) -> str:
        url = self.url.rstrip("/")
        return url if url.endswith("/chat/completions") else f"{url}/chat/completions"

    def identity(self) -> dict[str, Any]:
        """What names the answering model (for resume checks): URL and model name."""
        return {"kind": "endpoint", "url": self.chat_url, "model": self.model}


def image_block(path: str | Path) -> dict[str, Any]:
    """An ``image_url`` content block with the image as a base64 data URL."""
    p = Path(path)
    mime = "image/png" if p.suffix.lower() == ".png" else "image/jpeg"
    data = base64.b64encode(p.read_bytes()).decode()
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}


def read_answer(raw: bytes) -> Answer:
    """An :class:`Answer` from a chat-completion body; :class:`ValueError` if it is not one."""
    obj = json.loads(raw)
    choice = obj["choices"][0]
    msg = choice.get("message") or {}
    content = msg.get("content")
    if isinstance(content, list):  # typed blocks
        content = "".join(b.get("text", "") for b in content if isinstance(b, dict))
    if content is not None and not isinstance(content, str):
        raise ValueError("message content is not text")
    finish = choice.get("finish_reason")
    if not content or not content.strip():
        if msg.get("refusal"):
            return Answer("", "refusal", str(msg["refusal"])[:200])
        return Answer("", "null", f"finish_reason={finish}")
    if finish == "length":
        return Answer(content, "length", "cut at max_tokens")
    if finish == "content_filter":
        return Answer(content, "filtered", "content filter")
    return Answer(content, "ok")


class Client:
    """Sends chat requests with retries; thread-safe (one instance serves the whole pool)."""

    def __init__(self, settings: EndpointSettings, sleep: Callable[[float], None] = time.sleep):
        self.s = settings
        self.key = os.environ.get(settings.api_key_env, "")
        self.sleep = sleep
        self.retried = 0
        self._lock = threading.Lock()

    def body(self, messages: list[dict[str, Any]]) -> bytes:
        return json.dumps(
            {
                "model": self.s.model,
                "messages": messages,
                "max_tokens": self.s.max_tokens,
                "temperature": self.s.temperature,
            }
        ).encode()

    def ask(self, messages: list[dict[str, Any]], what: str) -> Answer:
        """One chat completion for ``what`` (a record id, for messages), retried as documented."""
        body = self.body(messages)
        last = ""
        for attempt in range(self.s.retries + 1):
            req = urllib.request.Request(self.s.chat_url, data=body, method="POST")
            req.add_header("Content-Type", "application/json")
            if self.key:
                req.add_header("Authorization", f"Bearer {self.key}")
            wait = None
            try:
                with urllib.request.urlopen(req, timeout=self.s.timeout) as resp:
                    raw = resp.read()
                try:
                    return read_answer(raw)
                except (json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError):
                    last = f"response is not a chat completion: {raw[:80]!r}"
            except urllib.error.HTTPError as e:
                detail = _error_text(e)
                if e.code in REJECT_HTTP:
                    return Answer("", "rejected", f"HTTP {e.code}: {detail}")
                if e.code not in RETRY_HTTP:
                    raise EndpointError(
                        f"{self.s.chat_url}: HTTP {e.code} for record '{what}': {detail}"
                    ) from None
                last = f"HTTP {e.code}"
                wait = _retry_after(e)
            except (TimeoutError, ConnectionError, urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                last = "no answer within the timeout" if isinstance(reason, TimeoutError) else str(reason)
            if attempt < self.s.retries:
                with self._lock:
                    self.retried += 1
                delay = min(self.s.max_backoff, self.s.backoff * 2**attempt) * random.uniform(0.5, 1.5)
                self.sleep(delay if wait is None else min(wait, self.s.max_backoff))
        raise EndpointError(
            f"{self.s.chat_url}: {last} for record '{what}' after {self.s.retries + 1} attempts "
            f"(timeout {self.s.timeout:g} s)"
        )

    def ask_many(
        self,
        requests: Sequence[tuple[str, list[dict[str, Any]]]],
        on_answer: Callable[[int, Answer], None] | None = None,
    ) -> list[Answer]:
        """Answers to ``(name, messages)`` requests, ``concurrency`` at a time, in request order.

        A request that fails for good raises :class:`EndpointError` once the requests in flight have
        finished; its ``partial`` holds every answer obtained.
        """
        results: dict[int, Answer] = {}
        errors: list[EndpointError] = []

        def one(k: int) -> None:
            if errors:
                return  # stop starting new requests after a failure
            name, messages = requests[k]
            try:
                ans = self.ask(messages, name)
            except EndpointError as e:
                errors.append(e)
                return
            results[k] = ans
            if on_answer is not None:
                on_answer(k, ans)

        with ThreadPoolExecutor(max_workers=max(1, self.s.concurrency)) as pool:
            list(pool.map(one, range(len(requests))))
        if errors:
            raise EndpointError(str(errors[0]), partial=results)
        return [results[k] for k in range(len(requests))]


def _error_text(e: urllib.error.HTTPError) -> str:
    try:
        body = e.read()[:300].decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - the body is only for the message
        body = ""
    try:
        return str(json.loads(body).get("error", {}).get("message", body))[:160]
    except (json.JSONDecodeError, AttributeError):
        return body.strip()[:160] or str(e.reason)


def _retry_after(e: urllib.error.HTTPError) -> float | None:
    value = e.headers.get("Retry-After") if e.headers else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
