"""``monai.bundle ckpt_export`` turns a training checkpoint into TorchScript without touching data.

The command (bundles/cryo3d_picker/docs/README.md)::

    python -m monai.bundle ckpt_export network_def --filepath model.ts --ckpt_file CKPT \\
        --meta_file .../metadata.json --config_file .../train.yaml --key_in_ckpt network
"""

from __future__ import annotations

import json

import torch
from monai.bundle import ckpt_export

from cryo3d.checkpoints import save_checkpoint
from cryo3d.workflows.bundle import config_path, parse_bundle


def test_ckpt_export_of_a_training_checkpoint_gives_the_eager_output_and_makes_no_data(tmp_path):
    data = tmp_path / "data"  # empty: the bundle would simulate tomograms here if network_def needed data
    parser = parse_bundle(overrides={"dataset_dir": str(data)})
    net = parser.get_parsed_content("network_def").eval()
    torch.manual_seed(0)
    with torch.no_grad():  # weights unlike any fresh network's, so the export must load them
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    meta = {"network": parser.get_parsed_content("network_config"),
            "particles": parser.get_parsed_content("particles").to_dict()}
    ckpt = tmp_path / "best.pt"
    save_checkpoint({"network": net.state_dict(), "cryo3d": meta}, ckpt)  # as training saves them

    ts = tmp_path / "model.ts"
    ckpt_export("network_def", filepath=str(ts), ckpt_file=str(ckpt), meta_file=str(config_path("metadata.json")),
                config_file=str(config_path("train.yaml")), key_in_ckpt="network", dataset_dir=str(data))

    assert not data.exists()
    extra = {"metadata.json": ""}
    exported = torch.jit.load(str(ts), _extra_files=extra)
    fmt = json.loads(extra["metadata.json"])["network_data_format"]
    x = torch.randn(1, 1, *fmt["inputs"]["image"]["spatial_shape"])
    with torch.no_grad():
        y = exported(x)
        assert torch.equal(y, net(x))
    assert y.shape[1] == fmt["outputs"]["pred"]["num_channels"]
