"""Pretrained weights: exported with plain types, loaded safely, the head mapped by class name."""

from __future__ import annotations

import pickle

import pytest
import torch

from cryo3d.networks import build_network
from cryo3d.particles import ParticleClass, ParticleSet
from cryo3d.pretrained import export_weights, init_network, read_weights


def cfg(n):
    return dict(name="unet-tiny", in_channels=1, out_channels=n, ds_factor=1)


def classes(*names):
    return ParticleSet(tuple(ParticleClass(n, 60.0) for n in names))


@pytest.fixture
def exported(tmp_path):
    torch.manual_seed(0)
    net = build_network(cfg(3))
    path = export_weights(net, cfg(3), classes("a", "b", "c"), 20.0, tmp_path / "w.pt", made_by="test")
    return net, path


def test_exported_weights_load_with_weights_only(exported):
    _, path = exported
    state, meta = read_weights(path)
    assert meta["classes"] == ["a", "b", "c"] and meta["voxel_spacing"] == 20.0 and "head.conv.weight" in state


def test_same_classes_copy_every_tensor(exported):
    src, path = exported
    torch.manual_seed(1)
    net = init_network(build_network(cfg(3)), str(path), classes("a", "b", "c"), cfg(3))
    for k, v in net.state_dict().items():
        assert torch.equal(v, src.state_dict()[k]), k


def test_head_rows_follow_class_names_and_new_classes_keep_their_init(exported):
    src, path = exported
    torch.manual_seed(1)
    fresh = build_network(cfg(3))
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    net = init_network(fresh, str(path), classes("c", "new", "a"), cfg(3))
    w, w0 = net.state_dict()["head.conv.weight"], src.state_dict()["head.conv.weight"]
    assert torch.equal(w[0], w0[2]) and torch.equal(w[2], w0[0])
    assert torch.equal(w[1], before["head.conv.weight"][1])
    k = "encoder.0.conv.unit0.conv.weight"
    assert torch.equal(net.state_dict()[k], src.state_dict()[k])


def test_none_and_missing_auto_leave_the_network_as_built():
    torch.manual_seed(2)
    net = build_network(cfg(2))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    init_network(net, "none", classes("a", "b"), cfg(2))
    init_network(net, "auto", classes("a", "b"), dict(cfg(2), name="unet-large"))  # nothing shipped for it
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_a_file_that_is_not_weights_gets_one_clear_error(tmp_path):
    p = tmp_path / "junk.pt"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a cryo3d pretrained-weights file"):
        read_weights(p)


class Payload:
    ran = False

    def __reduce__(self):
        return (setattr, (Payload, "ran", True))


def test_a_pickle_payload_is_refused_and_never_runs(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"network": {}, "cryo3d_pretrained": Payload()}, p, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(ValueError, match="not a cryo3d pretrained-weights file"):
        read_weights(p)
    assert Payload.ran is False


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        init_network(build_network(cfg(2)), str(tmp_path / "nowhere.pt"), classes("a", "b"), cfg(2))


def test_the_shipped_weights_load_and_map_every_czii_class():
    from cryo3d.particles import CZII_PARTICLES
    from cryo3d.pretrained import shipped_weights

    path = shipped_weights(cfg(6))
    assert path is not None, "cryo3d/weights/unet-tiny_ds1.pt is missing (make it with scripts/pretrain.py)"
    state, meta = read_weights(path)
    assert meta["network"]["name"] == "unet-tiny" and set(CZII_PARTICLES.names) <= set(meta["classes"])
    net = init_network(build_network(cfg(6)), "auto", CZII_PARTICLES, cfg(6))
    for k, v in net.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(v, state[k]), k
