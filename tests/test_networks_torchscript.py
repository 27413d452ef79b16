"""Every network compiles with ``torch.jit.script`` (what ``monai.bundle ckpt_export`` does) and gives the eager output."""

from __future__ import annotations

import pytest
import torch

from cryo3d.networks import NETWORKS, build_network

#: Tiny variants covering every branch of each family's forward.
VARIANTS = {
    "unet": [{"upsample": "deconv"}, {"upsample": "trilinear"}],
    "sefpn": [{"fusion": "parallel"}, {"fusion": "cascade"}, {"fusion": "pc"}],
}
TINY = {
    "unet": {"channels": (4, 8, 16), "num_res_units": 1},
    "sefpn": {"channels": (4, 8, 16), "fpn_channels": 8, "se_reduction": 2},
}


def test_every_network_family_has_scripting_variants():
    assert set(VARIANTS) == set(NETWORKS) == set(TINY)


@pytest.mark.parametrize("ds", [1, 2, 4])
@pytest.mark.parametrize("name,variant", [(n, v) for n in sorted(VARIANTS) for v in VARIANTS[n]])
def test_scripted_output_equals_eager_output(name, variant, ds):
    torch.manual_seed(0)
    net = build_network({"name": name, **TINY[name], **variant}, out_channels=3, ds_factor=ds, head_init_std=1.0).eval()
    scripted = torch.jit.script(net)
    x = torch.randn(2, 1, 16, 8, 12)
    with torch.no_grad():
        assert torch.equal(scripted(x), net(x))


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_scripted_network_keeps_the_clear_input_errors(name):
    scripted = torch.jit.script(build_network({"name": name, **TINY[name]}, out_channels=2).eval())
    with pytest.raises(Exception, match="divisible by 2\\*\\*depth = 4"):
        scripted(torch.randn(1, 1, 16, 18, 16))
    with pytest.raises(Exception, match="expected input \\[B, C, Z, Y, X\\]"):
        scripted(torch.randn(1, 16, 16, 16))
