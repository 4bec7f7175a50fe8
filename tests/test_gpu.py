"""On a CUDA machine: the automatic batch size and a short real run (skipped where there is no GPU).

`../shared/gpu-check.sh` runs these with `pytest -m gpu` on a lent GPU machine.
"""

from __future__ import annotations

import pytest
import torch

from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.events import Failed, Finished, Message
from desktop_tl.core.models.factory import create_model
from desktop_tl.core.runs import checkpoint
from desktop_tl.core.runs.folder import create_run
from desktop_tl.core.training import tuning
from desktop_tl.core.training.run import train_run

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_automatic_batch_size_fits_the_gpu_and_frees_its_probes():
    device = torch.device("cuda")
    model, _ = create_model("efficientnet_lite0", "bundled", 4)
    model = model.to(device).to(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):    # the first step allocates the cuBLAS workspaces (65 MiB
        model(torch.randn(1, 3, 64, 64, device=device)).float().sum().backward()     # on an H200), kept for good
    model.zero_grad(set_to_none=True)
    before = torch.cuda.memory_allocated(device)
    search = tuning.automatic_batch_size(model, device, (224, 224), 512, True, torch.bfloat16)
    assert 8 <= search.batch_size <= 512 and search.probes <= 9
    assert torch.cuda.memory_allocated(device) == before


def test_a_run_with_automatic_batch_size_trains_on_the_gpu(tmp_path, small_dataset):
    run = tmp_path / "run"
    create_run(run, small_dataset, TrainConfig(recipe="custom", epochs=1, batch_size=0, image_size=128, freeze="all",
                                               num_workers=0), SplitConfig(0.2, 0.2, seed=0))
    events = list(train_run(run))
    assert not any(isinstance(e, Failed) for e in events), events[-1]
    assert events[0].device.startswith("cuda")
    assert any(isinstance(e, Message) and e.text.startswith("Automatic batch size") for e in events)
    assert isinstance(events[-1], Finished) and events[-1].completed
    assert checkpoint.read_meta(run / checkpoint.LAST)["memory_format"] == "channels_last"
