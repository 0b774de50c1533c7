"""Edit-request loaders with record-level validation.

Every record of a file is validated before anything is returned (so a long run never
starts on bad data) by :mod:`benchmark.data.records`; each problem raises
:class:`~benchmark.core.errors.DataError` naming the file, the record index (0-based
position in the file) and the field.

Formats (``DatasetManifest.format``):

- ``counterfact-easyedit`` -- EasyEdit/MEND CounterFact: ``case_id, prompt, subject,
  target_new, ground_truth, rephrase_prompt, locality_prompt, locality_ground_truth``.
  Locality is the locality prompt scored against its own answer.
- ``counterfact-rome`` -- ROME's counterfact.json: ``requested_rewrite`` (prompt with ``{}``
  for the subject, ``target_new.str``, ``target_true.str``), ``paraphrase_prompts``,
  ``neighborhood_prompts`` (answer: the true target), ``generation_prompts``.
- ``zsre-mend`` -- ``subject, src, alt, answers, pred, rephrase, loc ("nq question: ..."),
  loc_ans``. Two readings, the options ``zsre_target`` and ``zsre_locality``
  (:data:`ZSRE_DEFAULTS`, as ROME's and MEMIT's released ``MENDQADataset``; AlphaEdit and
  NSE read it the same way): ``zsre_target="answers"`` edits to ``answers[0]`` (the record's
  ``pred`` is then ``target_true``), ``"alt"`` edits to ``alt`` with ``answers[0]`` as
  ``target_true`` (EasyEdit's ``ZsreDataset``, PRUNE's and RECT's reading);
  ``zsre_locality="loc?"`` asks ``loc + "?"`` (ROME/MEMIT), ``"loc"`` asks ``loc`` as is
  (EasyEdit).
- ``mquake`` -- cases with several ``requested_rewrite`` edits and multi-hop ``questions``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from benchmark.core.errors import DataError
from benchmark.core.registry import Registry
from benchmark.core.requests import EditRequest
from benchmark.data.manifest import get_manifest
from benchmark.data.records import Record, read_json_records, take
from benchmark.data.store import verify

log = logging.getLogger(__name__)

#: dataset family -> split -> manifest name; the first split is the default.
FAMILIES: dict[str, dict[str, str]] = {
    "counterfact": {"edit": "counterfact-edit", "train": "counterfact-train", "val": "counterfact-val"},
    "counterfact-rome": {"all": "counterfact-rome"},
    "zsre": {"eval": "zsre-eval", "train-1k": "zsre-train-1k"},
    "mquake": {"hard": "mquake-hard"},
}
EDIT_FORMATS = ("counterfact-easyedit", "counterfact-rome", "zsre-mend", "mquake")

ZsreTarget = Literal["answers", "alt"]
ZsreLocality = Literal["loc?", "loc"]
#: The zsRE reading of ROME's and MEMIT's released code.
ZSRE_DEFAULTS: dict[str, str] = {"zsre_target": "answers", "zsre_locality": "loc?"}


_SKIP = object()


def _request(rec: Record, subject_field: str, prompt_field: str, **kw: Any) -> EditRequest:
    subject, prompt = kw["subject"], kw["prompt"]
    if subject not in prompt:
        rec.fail(f"subject {subject!r} does not occur in the prompt {prompt!r}", subject_field)
    return EditRequest(**kw)


def _check_unique(file: Path, ids: list[str], field: str = "case_id") -> None:
    seen: dict[str, int] = {}
    for i, cid in enumerate(ids):
        if cid in seen:
            raise DataError(file, f"duplicate id {cid!r} (first at record {seen[cid]})", record=i, field=field)
        seen[cid] = i


# --------------------------------------------------------------------------- parsers
def _records(file: Path, data: list[Any]) -> Iterator[Record]:
    """The records of ``file`` to parse, each knowing its index (excluded ones skipped)."""
    for i, raw in enumerate(data):
        if raw is not _SKIP:
            yield Record(file, i, raw)


def parse_counterfact_easyedit(file: Path, data: list[Any]) -> list[EditRequest]:
    out = []
    for r in _records(file, data):
        out.append(_request(
            r, "subject", "prompt",
            case_id=r.case_id(), prompt=r.text("prompt"), subject=r.text("subject"),
            target_new=r.text("target_new"), target_true=r.text("ground_truth"),
            rephrase_prompts=(r.text("rephrase_prompt"),),
            locality=((r.text("locality_prompt"), r.text("locality_ground_truth")),),
        ))
    _check_unique(file, [q.case_id for q in out])
    return out


def _fill(rec: Record, template_field: str, template: str, subject: str) -> str:
    if template.count("{}") != 1:
        rec.fail(f"expected exactly one '{{}}' placeholder for the subject in {template!r}", template_field)
    return template.replace("{}", subject)


def parse_counterfact_rome(file: Path, data: list[Any]) -> list[EditRequest]:
    out = []
    for r in _records(file, data):
        rw = r.sub("requested_rewrite")
        subject = rw.text("subject")
        prompt = _fill(rw, "prompt", rw.text("prompt"), subject)
        new, true = rw.sub("target_new"), rw.sub("target_true")
        target_true = true.text("str")
        extra = [("relation_id", rw.get("relation_id")) if "relation_id" in rw.raw else None,
                 ("target_new_id", new.raw.get("id")),
                 ("generation_prompts", r.texts("generation_prompts") if "generation_prompts" in r.raw else ()),
                 ("attribute_prompts", r.texts("attribute_prompts") if "attribute_prompts" in r.raw else ())]
        out.append(_request(
            r, "requested_rewrite.subject", "requested_rewrite.prompt",
            case_id=r.case_id(), prompt=prompt, subject=subject,
            target_new=new.text("str"), target_true=target_true,
            rephrase_prompts=r.texts("paraphrase_prompts", min_len=1),
            locality=tuple((p, target_true) for p in r.texts("neighborhood_prompts", min_len=1)),
            extra=tuple(e for e in extra if e is not None),
        ))
    _check_unique(file, [q.case_id for q in out])
    return out


def parse_zsre_mend(file: Path, data: list[Any], *, zsre_target: ZsreTarget = "answers",
                    zsre_locality: ZsreLocality = "loc?") -> list[EditRequest]:
    """zsRE records in the reading ``zsre_target`` / ``zsre_locality`` (module docstring);
    each request records its reading in ``extra`` (``zsre_target``, ``zsre_locality``)."""
    if zsre_target not in ("answers", "alt") or zsre_locality not in ("loc?", "loc"):
        raise DataError(file, f"zsRE reading: zsre_target must be 'answers' or 'alt' (got "
                        f"{zsre_target!r}), zsre_locality 'loc?' or 'loc' (got {zsre_locality!r})")
    out = []
    for r in _records(file, data):
        answers = r.texts("answers", min_len=1)
        pred, alt = r.text("pred", nonempty=False), r.text("alt")  # both readings validate both
        new, true = (answers[0], pred) if zsre_target == "answers" else (alt, answers[0])
        loc = r.text("loc") + ("?" if zsre_locality == "loc?" else "")
        out.append(_request(
            r, "subject", "src",
            case_id=str(r.index), prompt=r.text("src"), subject=r.text("subject"),
            target_new=new, target_true=true,
            rephrase_prompts=(r.text("rephrase"),),
            locality=((loc, r.text("loc_ans")),),
            extra=(("pred", pred), ("answers", answers), ("zsre_target", zsre_target),
                   ("zsre_locality", zsre_locality)),
        ))
    return out


@dataclass(frozen=True)
class SingleHop:
    question: str
    cloze: str
    answer: str
    answer_alias: tuple[str, ...]


@dataclass(frozen=True)
class MquakeCase:
    """One MQuAKE case: the edits to apply together and the multi-hop questions.

    After the case's edits the questions should be answered with ``new_answer`` (or an
    alias) instead of ``answer``; see benchmark.evaluation.editing.mquake_multihop.
    """

    case_id: str
    requests: tuple[EditRequest, ...]
    questions: tuple[str, ...]
    answer: str
    answer_alias: tuple[str, ...]
    new_answer: str
    new_answer_alias: tuple[str, ...]
    single_hops: tuple[SingleHop, ...] = ()
    new_single_hops: tuple[SingleHop, ...] = ()


def _hops(r: Record, field: str) -> tuple[SingleHop, ...]:
    if field not in r.raw:
        return ()
    return tuple(SingleHop(h.text("question"), h.text("cloze"), h.text("answer"),
                           h.texts("answer_alias") if "answer_alias" in h.raw else ())
                 for h in r.items(field))


def parse_mquake(file: Path, data: list[Any]) -> list[MquakeCase]:
    cases = []
    for r in _records(file, data):
        cid = r.case_id()
        reqs = []
        for j, rw in enumerate(r.items("requested_rewrite")):
            subject = rw.text("subject")
            reqs.append(_request(
                rw, "subject", "prompt",
                case_id=f"{cid}/{j}", prompt=_fill(rw, "prompt", rw.text("prompt"), subject), subject=subject,
                target_new=rw.sub("target_new").text("str"), target_true=rw.sub("target_true").text("str"),
                extra=(("mquake_case", cid), ("question", rw.text("question"))),
            ))
        n_edits = len(reqs)
        questions, answers = r.texts("questions", min_len=1), (r.text("answer"), *r.texts("answer_alias"))
        new_answers = (r.text("new_answer"), *r.texts("new_answer_alias"))
        # each request also carries its case (plain tuples), so the runner can score
        # multi-hop accuracy from the requests alone (see cases_from_requests)
        case_extra = (("mquake_n_edits", n_edits), ("mquake_questions", questions),
                      ("mquake_answers", answers), ("mquake_new_answers", new_answers))
        reqs = [dataclasses.replace(q, extra=q.extra + case_extra) for q in reqs]
        cases.append(MquakeCase(
            case_id=cid, requests=tuple(reqs), questions=r.texts("questions", min_len=1),
            answer=r.text("answer"), answer_alias=r.texts("answer_alias"),
            new_answer=r.text("new_answer"), new_answer_alias=r.texts("new_answer_alias"),
            single_hops=_hops(r, "single_hops"), new_single_hops=_hops(r, "new_single_hops"),
        ))
    _check_unique(file, [c.case_id for c in cases])
    return cases


def cases_from_requests(requests) -> list[MquakeCase]:
    """MQuAKE cases rebuilt from flattened requests (``load_requests("mquake")``), in order of
    first appearance; only cases whose edits are ALL among ``requests`` are returned."""
    groups: dict[str, list[EditRequest]] = {}
    for q in requests:
        extra = dict(q.extra)
        if "mquake_case" not in extra:
            raise ValueError(f"request {q.case_id} is not from MQuAKE (no mquake_case)")
        groups.setdefault(str(extra["mquake_case"]), []).append(q)
    out = []
    for cid, reqs in groups.items():
        e = dict(reqs[0].extra)
        if len({q.case_id for q in reqs}) < e["mquake_n_edits"]:
            continue
        answers, new = tuple(e["mquake_answers"]), tuple(e["mquake_new_answers"])
        out.append(MquakeCase(cid, tuple(reqs), tuple(e["mquake_questions"]), answers[0], answers[1:],
                              new[0], new[1:]))
    return out


#: Record format -> parser ``(file, records) -> [EditRequest]``; installed packages add
#: formats under the entry point group ``seqedit.dataset_formats`` (docs/extending.md).
PARSERS: Registry[Callable[..., list]] = Registry("dataset format",
                                                  entry_points="seqedit.dataset_formats")
PARSERS.register("counterfact-easyedit", parse_counterfact_easyedit)
PARSERS.register("counterfact-rome", parse_counterfact_rome)
PARSERS.register("zsre-mend", parse_zsre_mend)
PARSERS.register("mquake", parse_mquake)


# --------------------------------------------------------------------------- entry points
def _locate(dataset: str, split: str | None, data_root, manifest_dir) -> tuple[Path, str, tuple[int, ...]]:
    if dataset in FAMILIES:
        splits = FAMILIES[dataset]
        split = split or next(iter(splits))
        if split not in splits:
            raise DataError(f"data set {dataset}", f"unknown split {split!r}; known: {', '.join(splits)}",
                            field="split")
        name = splits[split]
    elif split is not None:
        raise DataError(f"data set {dataset}", "a split is only given with a family name "
                        f"({', '.join(FAMILIES)})", field="split")
    else:
        name = dataset
    m = get_manifest(name, manifest_dir)
    if m.format not in PARSERS:
        raise DataError(f"data set {name}", f"format {m.format!r} holds no edit requests", field="format")
    return verify(m, data_root), m.format, m.exclude_records


def _options(file: Path, fmt: str, options: dict[str, Any]) -> dict[str, Any]:
    """Reading options for the parser of ``fmt``: the zsRE options (defaults
    :data:`ZSRE_DEFAULTS`) for ``zsre-mend``; none elsewhere (giving one is an error)."""
    given = {k: v for k, v in options.items() if v is not None}
    if fmt == "zsre-mend":
        return {**ZSRE_DEFAULTS, **given}
    if given:
        raise DataError(file, f"{', '.join(sorted(given))} only apply to zsRE data (format "
                        f"zsre-mend), not to format {fmt!r}", field=sorted(given)[0])
    return {}


def load_records(dataset: str | None = None, split: str | None = None, *, path: str | Path | None = None,
                 format: str | None = None, data_root=None, manifest_dir=None,
                 zsre_target: ZsreTarget | None = None, zsre_locality: ZsreLocality | None = None) -> list:
    """Parse and validate every record: EditRequests, or MquakeCases for ``mquake``.
    ``zsre_target`` / ``zsre_locality``: the zsRE reading (None: :data:`ZSRE_DEFAULTS`)."""
    if path is not None:
        if format not in PARSERS:
            raise DataError(path, f"give format= one of {', '.join(PARSERS)}", field="format")
        file, fmt, exclude = Path(path), format, ()
        if not file.is_file():
            raise DataError(file, "file not found")
    else:
        if dataset is None:
            raise ValueError("give a dataset name or path=")
        file, fmt, exclude = _locate(dataset, split, data_root, manifest_dir)
    opts = _options(file, fmt, {"zsre_target": zsre_target, "zsre_locality": zsre_locality})
    data = read_json_records(file)
    if exclude:
        log.info("%s: dropping %d records the manifest lists as malformed: %s", file, len(exclude), exclude)
        # placeholders keep every record's index = its position in the file for error messages
        return PARSERS[fmt](file, [_SKIP if i in exclude else r for i, r in enumerate(data)], **opts)
    return PARSERS[fmt](file, data, **opts)


def _limit(items: list, limit: int | None) -> list:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    return take(items, limit)


def load_requests(dataset: str | None = None, split: str | None = None, limit: int | None = None, *,
                  path: str | Path | None = None, format: str | None = None, data_root=None,
                  manifest_dir=None, **options: Any) -> list[EditRequest]:
    """Edit requests of a data set, all records validated first, then the first ``limit``.

    For MQuAKE, ``limit`` counts cases and each case contributes its edits in order
    (case_id ``"<case>/<j>"``, ``extra["mquake_case"]`` = the case id). ``options``: the
    reading options of :func:`load_records` (``zsre_target``, ``zsre_locality``).
    """
    records = load_records(dataset, split, path=path, format=format, data_root=data_root,
                           manifest_dir=manifest_dir, **options)
    records = _limit(records, limit)
    if records and isinstance(records[0], MquakeCase):
        return [req for case in records for req in case.requests]
    return records


def first_requests(dataset: str, split: str | None, n: int, *, offset: int = 0, data_root=None,
                   manifest_dir=None, **options: Any) -> list[EditRequest]:
    """Exactly ``n`` edit requests from position ``offset`` (MQuAKE: of the flattened
    requests); a data set holding fewer is a DataError naming it and its size (never a
    silently shorter list). ``options``: reading options, as :func:`load_records`."""
    requests = load_requests(dataset, split, data_root=data_root, manifest_dir=manifest_dir, **options)
    if offset + n > len(requests):
        where = f"data set {dataset}" + (f" (split {split})" if split else "")
        raise DataError(where, f"holds {len(requests)} edit requests; {n} asked for from offset "
                        f"{offset}", field="n")
    return requests[offset:offset + n]


def load_mquake_cases(split: str = "hard", limit: int | None = None, *, path: str | Path | None = None,
                      data_root=None, manifest_dir=None) -> list[MquakeCase]:
    """MQuAKE cases, all validated first, then the first ``limit``."""
    if path is not None:
        cases = load_records(path=path, format="mquake")
    else:
        cases = load_records("mquake", split, data_root=data_root, manifest_dir=manifest_dir)
    return _limit(cases, limit)
