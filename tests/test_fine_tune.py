"""``train --init MODEL``: fine-tuning starts from a trained bundle of the same architecture and channels."""

import json

import pytest
import torch

from virtualstain.cli import main
from virtualstain.errors import UserError
from virtualstain.models.registry import build, make_config
from virtualstain.training.initial_weights import load_initial_weights


def test_initial_weights_are_the_bundle_weights(trained_run):
    from conftest import TINY_MODEL

    bundle_net = trained_run.bundle.network
    cfg = trained_run.bundle.config
    net = build(TINY_MODEL["architecture"], cfg)
    line = load_initial_weights(net, TINY_MODEL["architecture"], trained_run.model_dir)
    assert line.startswith(f"init: weights from {trained_run.model_dir}")
    for (name, a), b in zip(net.state_dict().items(), bundle_net.state_dict().values()):
        assert torch.equal(a, b), name


def test_another_architecture_or_channel_count_is_refused_with_the_fix(trained_run):
    cfg = trained_run.bundle.config
    other = build("pics", make_config("pics", cfg.in_channels + 1, cfg.out_channels, depth=2, base_width=4))
    with pytest.raises(UserError) as err:
        load_initial_weights(other, "pics", trained_run.model_dir)
    message = str(err.value)
    assert message.startswith(f"--init {trained_run.model_dir}: the bundle is a 'pics' model")
    assert f"{cfg.in_channels + 1} → {cfg.out_channels} channels" in message
    assert message.endswith("set the model section and the channels as the bundle was trained (virtualstain info "
                            "MODEL), or train without --init")


def test_cli_train_init_records_where_it_started(tmp_path, trained_run, synthetic_manifest, capsys):
    import yaml
    from conftest import tiny_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(max_epochs=1).model_dump(mode="json")))
    run = tmp_path / "tuned"
    assert main(["train", str(synthetic_manifest), "--out", str(run), "--config", str(cfg),
                 "--init", str(trained_run.model_dir)]) == 0
    assert f"init: weights from {trained_run.model_dir}" in capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["initialized_from"] == str(trained_run.model_dir)
    assert main(["train", str(synthetic_manifest), "--out", str(tmp_path / "x"), "--config", str(cfg),
                 "--init", str(tmp_path / "missing")]) == 2
    assert str(tmp_path / "missing") in capsys.readouterr().err
