from pathlib import Path

import pytest
import yaml

from benchmark.core.errors import DataError
from editors import hparams as H


def _all_yamls():
    return sorted(H.HPARAMS_DIR.glob("*/*.yaml"))


@pytest.mark.parametrize("path", _all_yamls(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_yaml_validates(path: Path):
    hp = H.load_hparams(path.parent.name, path.stem)
    assert hp.method == path.parent.name
    assert hp.source.strip(), "every hparams file says where its choice came from"


def test_rome_yaml_for_both_embedded_models():
    for model in ("smollm2-135m", "gemma3-270m"):
        hp = H.load_hparams("rome", model)
        assert isinstance(hp, H.ROMEHparams)


def test_unknown_key_names_file_and_field(tmp_path, monkeypatch):
    d = tmp_path / "rome"
    d.mkdir()
    data = yaml.safe_load(H.hparams_path("rome", "tiny-gpt2").read_text())
    data["target"]["v_lrr"] = 0.1
    (d / "m.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setattr(H, "HPARAMS_DIR", tmp_path)
    with pytest.raises(DataError) as err:
        H.load_hparams("rome", "m")
    msg = str(err.value)
    assert "m.yaml" in msg and "target.v_lrr" in msg


def test_bad_value_and_missing_file():
    with pytest.raises(DataError, match="layers"):
        H.parse_hparams("rome", {"source": "x", "layers": [-1]})
    with pytest.raises(DataError, match="no rome hyperparameters"):
        H.load_hparams("rome", "no-such-model")
    with pytest.raises(DataError, match="unknown editing method"):
        H.parse_hparams("romeo", {})


def test_overrides_nested_and_dotted_and_hash():
    base = H.load_hparams("rome", "tiny-gpt2")
    a = H.load_hparams("rome", "tiny-gpt2", {"target": {"v_lr": 0.25}})
    b = H.load_hparams("rome", "tiny-gpt2", {"target.v_lr": 0.25})
    assert a.target.v_lr == b.target.v_lr == 0.25
    assert a.target.v_num_grad_steps == base.target.v_num_grad_steps
    assert H.hparams_hash(a) == H.hparams_hash(b) != H.hparams_hash(base)
    with pytest.raises(DataError, match="bogus"):
        H.load_hparams("rome", "tiny-gpt2", {"bogus": 1})


def test_rome_takes_exactly_one_layer_in_a_list():
    assert H.parse_hparams("rome", {"source": "x", "layers": [3]}).layers == [3]
    for bad in ([], [3, 4]):
        with pytest.raises(DataError, match="exactly one layer") as err:
            H.parse_hparams("rome", {"source": "x", "layers": bad})
        assert err.value.field == "layers"
    with pytest.raises(DataError, match="layer"):  # the old scalar key is gone
        H.parse_hparams("rome", {"source": "x", "layer": 3})


def test_alphaedit_has_no_mom2_update_weight():
    with pytest.raises(DataError, match="mom2_update_weight"):
        H.parse_hparams("alphaedit", {"source": "x", "layers": [1], "mom2_update_weight": 1.0})


def test_memit_layers_must_ascend():
    with pytest.raises(DataError, match="ascending"):
        H.parse_hparams("memit", {"source": "x", "layers": [5, 4], "mom2_update_weight": 1.0})


def test_alphaedit_energy_threshold_reaches_the_solver():
    """The scale-free 'energy' null-space threshold is a valid hparam and is what the
    AlphaEdit editor hands to the solver."""
    from editors import alphaedit, solvers
    from editors.hparams import load_hparams

    hp = load_hparams("alphaedit", "tiny-llama",
                      {"nullspace_threshold_kind": "energy", "nullspace_threshold": 0.01})
    got = alphaedit.threshold_of(hp)
    assert got == solvers.NullSpaceThreshold("energy", 0.01)


BATCH_METHODS = ("memit", "memit-seq", "alphaedit", "nse")


def test_defaults_follow_the_released_code():
    """Key averaging and the weight-decay form default to the released compute_ks/compute_z."""
    assert H.TargetSpec().weight_decay_form == "released"
    data = {"source": "t", "layers": [1], "mom2_update_weight": 1.0}
    assert H.parse_hparams("memit", data).key_average == "group_mean"
    with pytest.raises(DataError, match="key_average"):
        H.parse_hparams("memit", {**data, "key_average": "median"})


@pytest.mark.parametrize("method", BATCH_METHODS)
def test_batch_editor_files_write_key_average_and_decay_form_out(method):
    """Every MEMIT-family file states both settings (not left to the schema default), and
    uses the released forms."""
    files = sorted((H.HPARAMS_DIR / method).glob("*.yaml"))
    assert files
    for path in files:
        raw = yaml.safe_load(path.read_text())
        assert raw.get("key_average") == "group_mean", path
        assert raw["target"].get("weight_decay_form") == "released", path


def test_rome_files_write_the_decay_form_out():
    for path in sorted((H.HPARAMS_DIR / "rome").glob("*.yaml")):
        assert "weight_decay_form" in yaml.safe_load(path.read_text())["target"], path
