"""Multi-process training (torchrun, gloo on the CPU): every rank ends with the same model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_two_process_gloo_training_keeps_ranks_in_sync(synthetic_store, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not found beside the interpreter")
    subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node",
            "2",
            str(HERE / "ddp_worker.py"),
            str(synthetic_store),
            str(tmp_path),
        ],
        check=True,
        timeout=600,
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    # Each rank saw different batches; averaged gradients keep the weights identical.
    assert ranks[0]["first"] == ranks[1]["first"]
    assert ranks[0]["sum"] == pytest.approx(ranks[1]["sum"], rel=1e-9)
    assert (tmp_path / "model.pt").is_file()  # written by rank 0 only
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1
