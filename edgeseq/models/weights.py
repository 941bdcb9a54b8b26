"""Checkpoints load without executing code (safetensors, or torch.load(weights_only=True)), and are fingerprinted."""

from __future__ import annotations

import hashlib
import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import ArtifactError, InputError


def state_dict_sha256(module: nn.Module) -> str:
    """A fingerprint of the weights that does not depend on how they were saved."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"weights file {str(path)!r} does not exist or is not a file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ArtifactError(f"weights file {str(path)!r} is not a readable safetensors file: {exc}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol warnings: a refusal below says what matters
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        detail = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else text
        reason = next((ln.strip() for ln in detail.splitlines() if ln.strip()), type(exc).__name__)
        raise ArtifactError(
            f"refused to load {str(path)!r}: not a plain tensor checkpoint (torch.load(weights_only=True): "
            f"{reason[:160]}); re-save it as safetensors or as a state dict"
        ) from None
    except Exception as exc:  # torch's unpickler raises IndexError, KeyError, ... on malformed files (found by fuzzing)
        first = (str(exc).strip().splitlines() or [""])[0].split(". ")[0][:200]  # its first sentence, whole
        # a KeyError's text is only the missing key (a bare number from the unpickler's memo): name the error too
        detail = f"{type(exc).__name__} {first}".strip() if isinstance(exc, (KeyError, IndexError, EOFError)) \
            else first or type(exc).__name__
        raise ArtifactError(f"weights file {str(path)!r} is not a readable torch checkpoint (corrupt, truncated or "
                            f"not written by torch.save; the unpickler said: {detail})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ArtifactError(f"weights file {str(path)!r} does not hold a state dict of tensors")
    return obj


def load_weights(module: nn.Module, path: str | Path) -> nn.Module:
    state = read_checkpoint(path)
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise InputError(
            f"weights {str(path)!r} do not match the model: missing {missing[:3]}{'...' if len(missing) > 3 else ''}"
            f", unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}"
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise InputError(
                f"weights {str(path)!r}: {name} has shape {tuple(tensor.shape)}, model expects {tuple(own[name].shape)}"
            )
    module.load_state_dict(state, strict=True)
    return module
