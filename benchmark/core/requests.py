"""The edit request: one fact to write into a model, with the prompts that evaluate it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EditRequest:
    """One fact to write. ``prompt`` is the full prompt and contains ``subject`` verbatim."""

    case_id: str
    prompt: str
    subject: str
    target_new: str
    target_true: str
    #: Evaluation prompts (not used by editors): paraphrases of ``prompt``.
    rephrase_prompts: tuple[str, ...] = ()
    #: Evaluation prompts with their own answers, expected to stay unchanged.
    locality: tuple[tuple[str, str], ...] = ()
    extra: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.subject not in self.prompt:
            raise ValueError(f"case {self.case_id}: subject {self.subject!r} not in prompt {self.prompt!r}")
