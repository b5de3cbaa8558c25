"""Put a timm model into a Hugging Face cache, laid out as if ``huggingface_hub`` had
downloaded it, so ``pretrained="hf-hub:ORG/NAME"`` finds it with ``HF_HUB_OFFLINE=1``.

For machines without network access (copy a model you trained or received into the cache
the training machine reads) and for tests of the download path that never reach the hub.
The layout is huggingface_hub's: ``models--ORG--NAME/snapshots/<revision>/`` holding
``config.json`` (as timm's ``push_to_hf_hub`` writes it) and ``model.safetensors``, and
``refs/main`` naming the revision.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from torch import nn

from pathda.errors import ConfigError


def save_to_hub_cache(
    model: nn.Module,
    repo_id: str,
    cache_dir: str | Path,
    *,
    data_config: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` as hub model ``repo_id`` into the cache folder ``cache_dir``.

    Args:
        model: A timm model (its ``pretrained_cfg`` and constructor arguments go into
            ``config.json``).
        repo_id: ``"ORG/NAME"``.
        cache_dir: The ``HF_HUB_CACHE`` folder (e.g. ``~/.cache/huggingface/hub``).
        data_config: Preprocessing to record instead of the model's own, e.g.
            ``{"mean": (...), "std": (...)}`` of the data it was trained on.

    Returns:
        The snapshot folder written.
    """
    from timm.models import save_for_hf

    org, sep, name = repo_id.partition("/")
    if not (org and sep and name) or "/" in name:
        raise ConfigError(f"hub model name {repo_id!r} must be ORG/NAME")
    repo = Path(cache_dir) / f"models--{org}--{name}"
    staging = repo / "snapshots" / ".staging"
    save_for_hf(model, str(staging), safe_serialization=True, data_config=data_config)
    # A revision is a commit hash on the hub; a content hash plays that role here.
    digest = hashlib.sha1()
    for file in sorted(staging.iterdir()):
        digest.update(file.name.encode() + file.read_bytes())
    snapshot = repo / "snapshots" / digest.hexdigest()
    if snapshot.exists():
        for file in staging.iterdir():
            file.unlink()
        staging.rmdir()
    else:
        staging.rename(snapshot)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(snapshot.name)
    return snapshot
