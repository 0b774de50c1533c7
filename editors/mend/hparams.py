"""Typed MEND settings: which matrices are edited, the editor network, its training.

Every default is the released value (MEND's ``config/alg/mend.yaml`` and EasyEdit's
``hparams/MEND/*.yaml``, docs/methods.md, MEND); a model's YAML under
``editors/hparams/mend/`` states where it departs from them. This module imports nothing
of the project (see :mod:`editors.mend`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NetworkSpec(_Strict):
    """The editor network (released: rank 1920, one hidden layer, ``init: id``, inputs
    normalised, u and δ concatenated into one MLP, one network per weight shape)."""

    rank: int = Field(1920, ge=1)  # rank of each low-rank block (capped at the input width)
    n_hidden: int = Field(1, ge=0)  # blocks = n_hidden + 1
    init: Literal["id"] = "id"  # each block starts as the identity map (zero up-factor)
    norm: bool = True  # inputs normalised by running mean and variance
    combine: Literal[True] = True  # one MLP over the concatenation [u, δ]
    shared: Literal[True] = True  # one network per distinct (in, out) shape, per-matrix scale/shift
    edit_lr: float = 1e-4  # initial per-matrix edit learning rate (learned)


class DataFile(_Strict):
    """A data set of the data root: family, split and its file (relative to the data root;
    the trainer checks it is the file the manifest names, the editor hashes it for the key)."""

    dataset: str
    split: str
    file: str


class TrainSpec(_Strict):
    """Training of the editor network (released values: Adam, lr 1e-6, lr_lr 1e-4,
    cedit 0.1, cloc 1.0, batch 1, accumulate 10, clip 100, validate every 1000 steps,
    patience 20000, at most 100000 steps, seed 42)."""

    lr: float = Field(1e-6, gt=0)  # Adam on the network's parameters
    lr_lr: float = Field(1e-4, ge=0)  # Adam on the per-matrix edit learning rates
    cedit: float = Field(0.1, ge=0)  # weight of the edit loss
    cloc: float = Field(1.0, ge=0)  # weight of the locality KL
    #: Positions of the locality sequence (prompt + answer) whose next-token KL is averaged:
    #: ``sequence``, every unpadded position (MEND's released trainer); ``answer``, the
    #: positions that predict the answer's tokens (EasyEdit's trainer keeps the answer's
    #: width of positions; docs/methods.md, MEND).
    loc_positions: Literal["sequence", "answer"] = "sequence"
    accumulate: int = Field(10, ge=1)  # edits per optimiser step
    grad_clip: float = Field(100.0, gt=0)
    max_steps: int = Field(100_000, ge=1)  # edits (training examples) at most
    val_every: int = Field(1000, ge=1)  # edits between validations
    val_size: int = Field(500, ge=1)  # validation examples (the first of the split)
    patience: int = Field(20_000, ge=1)  # stop after this many edits without a better validation
    checkpoint_every: int = Field(100, ge=1)  # edits between resumable checkpoints
    max_tokens: int = Field(40, ge=4)  # token cap of every training sequence
    seed: int = 42
    data: list[DataFile] = Field(min_length=1)
    validation: DataFile

    @model_validator(mode="after")
    def _on_steps(self):
        for field in ("checkpoint_every", "val_every"):
            if getattr(self, field) % self.accumulate:
                raise ValueError(f"{field} must be a multiple of accumulate ({self.accumulate})")
        return self


class MENDHparams(_Strict):
    method: Literal["mend"] = "mend"
    #: Where the layer and setting choices came from.
    source: str
    layers: list[int] = Field(min_length=1)
    #: Edited matrices of each layer, relative to the layer's MLP module
    #: (``ArchFacts.mlp_template``), e.g. ``[up_proj, down_proj]`` or GPT-2's ``[c_fc, c_proj]``.
    matrices: list[str] = Field(min_length=1)
    network: NetworkSpec = Field(default_factory=NetworkSpec)
    train: TrainSpec

    @model_validator(mode="after")
    def _ascending(self):
        if sorted(set(self.layers)) != list(self.layers):
            raise ValueError("layers must be strictly ascending")
        if len(set(self.matrices)) != len(self.matrices):
            raise ValueError("matrices must be distinct")
        return self
