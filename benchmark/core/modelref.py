"""How a model is named: a registry name, ``hf:ID@REV`` or ``path:DIR``.

- a registry name (``smollm2-135m``, ``gpt2-xl``, ``tiny-llama``): an entry of
  :data:`benchmark.models.MODELS`;
- ``hf:ORG/NAME@REV``: a Hugging Face hub repository at a revision (a commit sha, a tag or a
  branch; a branch is resolved to its commit and the commit is recorded). ``@REV`` may be
  left out on a networked run, which then records the commit it used;
- ``path:DIR``: a local folder as written by ``save_pretrained`` (``config.json``, weight files,
  tokenizer files). Its weights are identified by the sha256 of their files.

:func:`model_slug` turns any of them into a name that is safe in folder and file names
(a registry name is its own slug). This module imports nothing heavy: grid files and cell
specs use it without loading torch.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

HF_PREFIX = "hf:"
PATH_PREFIX = "path:"

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_SLUG_MAX = 64


@dataclass(frozen=True)
class ModelRef:
    """A parsed model name. ``kind`` says which of the three forms it is."""

    kind: Literal["registry", "hf", "path"]
    text: str  # as given
    name: str = ""  # registry name
    repo: str = ""  # hf: ORG/NAME
    revision: str | None = None  # hf: the part after '@' (None: not given)
    path: Path | None = None  # path: the folder, absolute


def is_ref(text: str) -> bool:
    """True for ``hf:`` and ``path:`` names (not registry names)."""
    return text.startswith((HF_PREFIX, PATH_PREFIX))


def parse(text: str, *, base: Path | None = None) -> ModelRef:
    """Parse a model name. ``path:`` folders that are relative are taken relative to
    ``base`` (a grid file's folder) or, without it, to the current directory (command line).

    Raises ValueError with what is wrong and an example of the right form.
    """
    if text.startswith(HF_PREFIX):
        body = text[len(HF_PREFIX):]
        repo, sep, rev = body.partition("@")
        if repo.count("/") != 1 or not all(repo.split("/")) or _UNSAFE.search(repo.replace("/", "")):
            raise ValueError(f"{text!r}: a hub model is hf:ORG/NAME@REVISION, "
                             "e.g. hf:openai-community/gpt2@607a30d783dfa663caf39e06633721c8d4cfcd7e")
        if sep and not rev:
            raise ValueError(f"{text!r}: nothing after '@'; give a commit sha, or leave out '@'")
        return ModelRef("hf", text, repo=repo, revision=rev or None)
    if text.startswith(PATH_PREFIX):
        raw = text[len(PATH_PREFIX):]
        if not raw:
            raise ValueError(f"{text!r}: give a folder after 'path:', e.g. path:/models/my-model")
        folder = Path(raw).expanduser()
        if not folder.is_absolute():
            folder = (base or Path.cwd()) / folder
        return ModelRef("path", text, path=folder.resolve())
    return ModelRef("registry", text, name=text)


def canonical(text: str, *, base: Path | None = None) -> str:
    """The name with a ``path:`` folder made absolute (other names unchanged)."""
    ref = parse(text, base=base)
    return f"{PATH_PREFIX}{ref.path}" if ref.kind == "path" else text


def model_slug(text: str) -> str:
    """A folder-safe name for a model name. Registry names are unchanged; ``hf:`` and
    ``path:`` names become ``hf-ORG-NAME[-REV7]-HASH`` and ``path-FOLDER-HASH`` (letters,
    digits, ``_``, ``.``, ``-``), where HASH is 8 hex digits of the sha256 of the canonical
    name, so two different models never share a slug."""
    if not is_ref(text):
        return text
    ref = parse(text)
    full = canonical(text)
    if ref.kind == "hf":
        readable = ref.repo.replace("/", "-") + (f"-{ref.revision[:7]}" if ref.revision else "")
    else:
        readable = ref.path.name if ref.path is not None else ""
    readable = _UNSAFE.sub("-", readable).strip("-.")[:_SLUG_MAX]
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{ref.kind}-{readable}-{digest}" if readable else f"{ref.kind}-{digest}"
