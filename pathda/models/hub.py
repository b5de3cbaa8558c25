"""Pretrained weights from timm / the Hugging Face hub, with hub failures as one-line errors.

Downloads go through timm and ``huggingface_hub`` into the user's cache
(``HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``); ``HF_HUB_OFFLINE=1`` makes them
read that cache only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pathda.errors import PretrainedWeightsError

HUB_PREFIX = "hf-hub:"
DEFAULT_TAG = "default"
"""``pretrained`` value meaning timm's default pretrained tag of the architecture."""

LOGIN_HINT = "log in with `huggingface-cli login` (or set HF_TOKEN) after accepting its licence"


@dataclass(frozen=True)
class BackboneSource:
    """Where a backbone's architecture and initial weights come from.

    Attributes:
        arch: timm architecture, possibly with a pretrained tag
            (``vit_small_patch16_224.augreg_in1k``).
        model_args: Constructor arguments a hub model's ``config.json`` prescribes
            (e.g. ``init_values``); empty for timm's own architectures.
        pretrained: ``None`` (random init), ``"default"`` (timm's default tag for ``arch``)
            or ``"hf-hub:ORG/NAME"``.
    """

    arch: str
    model_args: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None

    @property
    def timm_name(self) -> str:
        """The name to hand ``timm.create_model`` for the pretrained weights."""
        return self.pretrained if self.is_hub else self.arch

    @property
    def is_hub(self) -> bool:
        return bool(self.pretrained) and self.pretrained.startswith(HUB_PREFIX)


def resolve_source(arch: str, pretrained: str | None) -> BackboneSource:
    """Resolve ``arch`` and ``pretrained`` (see :class:`BackboneSource`) to a source.

    A hub model's ``config.json`` names its architecture, which replaces ``arch``. Reads
    that file through the hub cache (downloading it once when online).

    Raises:
        PretrainedWeightsError: Malformed ``pretrained``, or the hub refuses / lacks the model.
    """
    if pretrained is None:
        return BackboneSource(arch)
    if pretrained == DEFAULT_TAG:
        return BackboneSource(arch, pretrained=DEFAULT_TAG)
    if not pretrained.startswith(HUB_PREFIX) or "/" not in pretrained[len(HUB_PREFIX) :]:
        raise PretrainedWeightsError(
            f"pretrained {pretrained!r} is not understood; use 'default' (timm's weights for "
            "the architecture) or 'hf-hub:ORG/NAME'"
        )
    from timm.models import load_model_config_from_hf

    with hub_errors(pretrained):
        _, architecture, model_args = load_model_config_from_hf(pretrained[len(HUB_PREFIX) :])
    # The hub's classifier size is for its own pre-training; pathda sets its own.
    model_args = {k: v for k, v in (model_args or {}).items() if k != "num_classes"}
    return BackboneSource(architecture, model_args, pretrained)


@contextlib.contextmanager
def hub_errors(what: str) -> Iterator[None]:
    """Turn huggingface_hub failures inside the block into a :class:`PretrainedWeightsError`."""
    from huggingface_hub import errors as hf

    try:
        yield
    except hf.GatedRepoError as err:
        raise PretrainedWeightsError(
            f"{what} is a gated model; request access on its hub page, then {LOGIN_HINT}"
        ) from err
    except hf.RepositoryNotFoundError as err:
        # The hub answers 401 for a private repository without a token, and also for a
        # name that does not exist; both are fixed by the same two checks.
        raise PretrainedWeightsError(
            f"{what} was not found or needs a login; check the name, or {LOGIN_HINT}"
        ) from err
    except hf.LocalEntryNotFoundError as err:
        raise PretrainedWeightsError(
            f"{what} is not in the Hugging Face cache and the hub cannot be reached "
            "(HF_HUB_OFFLINE is set or there is no network); download it once online, "
            "or point HF_HUB_CACHE at a cache that holds it"
        ) from err
    except hf.HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status in (401, 403):
            raise PretrainedWeightsError(f"{what}: access denied ({status}); {LOGIN_HINT}") from err
        raise PretrainedWeightsError(f"{what}: download failed ({err})".splitlines()[0]) from err
