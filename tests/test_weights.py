import pickle

import pytest
import torch

import edgeseq
from edgeseq.errors import ArtifactError, InputError
from edgeseq.models.weights import state_dict_sha256


@pytest.fixture
def spec():
    return edgeseq.get_model("cbhg-lite")


def perturbed_state(spec):
    state = spec.build().state_dict()
    return {k: (v + 0.5 if v.is_floating_point() else v) for k, v in state.items()}


def test_safetensors_checkpoint_loads(spec, tmp_path):
    from safetensors.torch import save_file

    state = perturbed_state(spec)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    module = spec.build(weights=tmp_path / "w.safetensors")
    assert torch.equal(module.state_dict()["highway.0.h.weight"], state["highway.0.h.weight"])
    assert state_dict_sha256(module) != state_dict_sha256(spec.build())


def test_torch_state_dict_loads_with_weights_only(spec, tmp_path):
    state = perturbed_state(spec)
    torch.save({"state_dict": state}, tmp_path / "w.pt")
    module = spec.build(weights=tmp_path / "w.pt")
    assert torch.equal(module.state_dict()["gru.rnn.weight_hh_l0"], state["gru.rnn.weight_hh_l0"])


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/edgeseq-pwned",))


def test_pickle_with_code_is_refused(spec, tmp_path):
    marker = __import__("pathlib").Path("/tmp/edgeseq-pwned")
    marker.unlink(missing_ok=True)
    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump({"w": _Payload()}, fh)
    with pytest.raises(ArtifactError, match="refused"):
        spec.build(weights=tmp_path / "evil.pt")
    assert not marker.exists()


def test_mismatched_checkpoint_names_the_keys(spec, tmp_path):
    torch.save({"bogus": torch.zeros(1)}, tmp_path / "w.pt")
    with pytest.raises(InputError, match="missing .*unexpected \\['bogus'\\]"):
        spec.build(weights=tmp_path / "w.pt")


def test_wrong_shape_is_named(spec, tmp_path):
    state = perturbed_state(spec)
    state["highway.0.h.weight"] = torch.zeros(3, 3)
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(InputError, match="highway.0.h.weight has shape"):
        spec.build(weights=tmp_path / "w.pt")


@pytest.mark.parametrize("content", [b"", b"garbage", b"\x80\x04garbage"])
def test_garbage_checkpoints_are_artifact_errors(spec, tmp_path, content):
    for suffix in (".pt", ".safetensors"):
        path = tmp_path / f"bad{suffix}"
        path.write_bytes(content)
        with pytest.raises(ArtifactError):
            spec.build(weights=path)


def test_missing_checkpoint(spec, tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        spec.build(weights=tmp_path / "nope.pt")
