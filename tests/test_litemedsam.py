"""LiteMedSAM: the official checkpoint in hnseg's own model, inference, fine-tuning and GPU slots."""

import multiprocessing as mp
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hnseg.errors import InputError
from hnseg.fusion import to_model_frame, write_shard
from hnseg.gpu import gpu_slot, job_device
from hnseg.sam import weights
from hnseg.sam.infer import frame_boxes, frame_tensor, segment_slice
from hnseg.sam.model import LiteMedSAM, load_litemedsam
from hnseg.sam.train import FinetuneConfig, ShardSet, Trainer, finetune, make_item, sample_rng

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def model():
    return load_litemedsam()


def lesion_slice(seed=0, shape=(200, 240)):
    """A body with a brighter lesion, the lesion mask and its tight box (x0, y0, x1, y1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    body = ((yy - 100) / 85) ** 2 + ((xx - 120) / 105) ** 2 < 1
    lesion = ((yy - 90) / 18) ** 2 + ((xx - 150) / 24) ** 2 < 1
    image = np.where(body, 110.0, 60.0)
    image[lesion] = 170.0
    image = np.clip(image + rng.normal(0, 8, shape), 0, 255).astype(np.uint8)
    rows, cols = np.flatnonzero(lesion.any(1)), np.flatnonzero(lesion.any(0))
    return np.repeat(image[..., None], 3, axis=2), lesion, (cols[0], rows[0], cols[-1], rows[-1])


def dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_official_checkpoint_loads_strictly_with_the_official_key_names(model):
    state = torch.load(weights.official_checkpoint_path(), map_location="cpu", weights_only=True)
    assert list(model.state_dict().keys()) == list(state.keys())  # same names, same order
    assert sum(p.numel() for p in model.parameters()) == 9_791_300


def test_encoder_equals_the_official_tinyvit(model):
    vendored = Path(weights.official_checkpoint_path()).parents[1] / "_vendor"
    sys.path.insert(0, str(vendored))
    try:
        from tiny_vit_sam import TinyViT as OfficialTinyViT
    finally:
        sys.path.remove(str(vendored))
    official = OfficialTinyViT(
        img_size=256, in_chans=3, embed_dims=[64, 128, 160, 320], depths=[2, 2, 6, 2], num_heads=[2, 4, 5, 10],
        window_sizes=[7, 7, 14, 7], mlp_ratio=4.0, drop_rate=0.0, drop_path_rate=0.0, use_checkpoint=False,
        mbconv_expand_ratio=4.0, local_conv_size=3, layer_lr_decay=0.8,
    )  # fmt: skip
    official.load_state_dict({k[14:]: v for k, v in model.state_dict().items() if k.startswith("image_encoder.")})
    official.eval()
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.allclose(model.image_encoder(x), official(x), atol=1e-5)


def test_eval_before_loading_gives_the_same_embedding(model, tmp_path):
    torch.save(model.state_dict(), tmp_path / "plain.pth")
    early = LiteMedSAM().eval()  # eval() first: the official code would cache stale attention biases here
    early.load_state_dict(torch.load(tmp_path / "plain.pth", weights_only=True))
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.equal(early.image_encoder(x), model.image_encoder(x))


def test_official_weights_segment_a_lesion_from_its_box_and_random_weights_do_not(model):
    image, lesion, box = lesion_slice()
    mask = segment_slice(model, image, [box])[0]
    assert mask.shape == lesion.shape
    assert dice(mask, lesion) > 0.95
    torch.manual_seed(0)
    random_model = LiteMedSAM().eval()
    assert dice(segment_slice(random_model, image, [box])[0], lesion) < 0.5


def test_batched_decoding_equals_decoding_box_by_box(model):
    image, _, box = lesion_slice(1)
    frame, geometry = to_model_frame(image)
    boxes = frame_boxes([box, (20, 30, 90, 120), (100, 60, 200, 150)], geometry)
    with torch.inference_mode():
        embedding = model.image_encoder(frame_tensor(frame, geometry))
        batched, iou = model.decode(embedding, boxes)
        for k in range(len(boxes)):
            single, single_iou = model.decode(embedding, boxes[k : k + 1])
            assert torch.allclose(batched[k], single[0], atol=1e-4)
            assert torch.equal(batched[k] > 0, single[0] > 0)
            assert torch.allclose(iou[k], single_iou[0], atol=1e-5)


def test_checkpoint_formats(model, tmp_path):
    state = model.state_dict()
    torch.save({"model": state, "epoch": 3}, tmp_path / "wrapped.pth")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "ddp.pth")
    for name in ("wrapped.pth", "ddp.pth"):
        loaded = load_litemedsam(tmp_path / name)
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), state.values(), strict=True))
    torch.save({"optimizer": {"lr": 1}}, tmp_path / "bad.pth")
    with pytest.raises(InputError, match="not a LiteMedSAM checkpoint"):
        load_litemedsam(tmp_path / "bad.pth")
    torch.save({k: v for k, v in state.items() if "neck" not in k}, tmp_path / "partial.pth")
    with pytest.raises(InputError, match="does not fit the LiteMedSAM architecture"):
        load_litemedsam(tmp_path / "partial.pth")


# --- fine-tuning ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two tiny shards (two slices each) with one lesion instance per slice."""
    root = tmp_path_factory.mktemp("shards")
    paths = []
    for s in range(2):
        rgb = np.stack([lesion_slice(10 * s + k)[0] for k in range(2)])
        instances = np.stack([lesion_slice(10 * s + k)[1].astype(np.uint16) for k in range(2)])
        path = root / f"p{s}.npz"
        write_shard(path, rgb, instances, [0, 1], spacing_xyz=(1.0, 1.0, 3.0))
        paths.append(path)
    return paths


def small_config(**overrides):
    base = {"max_epochs": 2, "batch_size": 2, "train_encoder": False, "max_steps_per_epoch": 2, "seed": 5}
    return FinetuneConfig(**{**base, **overrides})


def test_samples_and_boxes_follow_the_prompt_rule(shards):
    data = ShardSet(shards[:1])
    assert len(data) == 2
    cfg = small_config()
    for j in range(len(data)):
        image, mask, box, _ = make_item(data, data.samples[j], sample_rng(1, j), cfg, flips=True)
        assert image.shape == (3, 256, 256) and 0.0 <= image.min() and image.max() <= 1.0
        ys, xs = np.nonzero(mask[0].numpy())
        x0, y0, x1, y1 = box.tolist()
        assert x0 <= xs.min() and y0 <= ys.min() and x1 >= xs.max() and y1 >= ys.max()
        px = data.pixel_mm[0][0]
        assert (xs.min() - x0) * px <= 20.0 and (x1 - xs.max()) * px <= 20.0


def test_two_steps_lower_the_training_loss(shards):
    cfg = small_config(lr=1e-5, augment_flips=False)
    trainer = Trainer(load_litemedsam(), cfg, torch.device("cpu"))
    data = ShardSet(shards)
    batch = [make_item(data, data.samples[j], sample_rng(0, j), cfg, False) for j in range(2)]

    def fixed_batch_loss():
        trainer.model.eval()
        with torch.no_grad():
            images = torch.stack([b[0] for b in batch])
            logits, iou = trainer.model.decode(
                trainer.embed(images, [("b", j) for j in range(2)]), torch.stack([b[2] for b in batch])
            )
            return float(trainer.loss(logits, iou, torch.stack([b[1] for b in batch]))[0])

    before = fixed_batch_loss()
    trainer.train_epoch(data, epoch=1)  # 2 steps of batch 2
    assert fixed_batch_loss() < before


def test_finetune_writes_checkpoints_and_a_resumed_run_matches_an_uninterrupted_one(shards, tmp_path):
    cfg = small_config(max_steps_per_epoch=1, max_val_samples=1, augment_flips=False)  # embeddings cached across epochs
    straight = finetune(shards[:1], shards[1:], tmp_path / "straight", cfg, torch.device("cpu"))
    finetune(shards[:1], shards[1:], tmp_path / "killed", cfg, torch.device("cpu"), stop_after_epoch=1)
    history = (tmp_path / "killed" / "history.csv").read_text().splitlines()
    assert history[0] == "epoch,train_loss,val_dice_loss,lr,seconds" and len(history) == 2
    resumed = finetune(shards[:1], shards[1:], tmp_path / "killed", cfg, torch.device("cpu"))
    assert resumed == straight
    a = torch.load(tmp_path / "straight" / "last.pth", weights_only=True)
    b = torch.load(tmp_path / "killed" / "last.pth", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    assert all(torch.equal(x, y) for x, y in zip(a["model"].values(), b["model"].values(), strict=True))
    # best.pth is a plain state dict that the loader takes; last.pth ({"model": ...}) too
    load_litemedsam(tmp_path / "straight" / "best.pth")
    load_litemedsam(tmp_path / "straight" / "last.pth")


# --- devices ------------------------------------------------------------------------------------------------------


def _hold_slot(lock_dir, devices, got, ready, release):
    with gpu_slot(devices, Path(lock_dir), poll_s=0.05) as index:
        got.put(index)
        ready.set()
        release.wait(20)


def test_concurrent_jobs_get_different_gpu_slots(tmp_path):
    ctx = mp.get_context("spawn")
    got, release = ctx.Queue(), ctx.Event()
    readies = [ctx.Event(), ctx.Event()]
    procs = [ctx.Process(target=_hold_slot, args=(str(tmp_path), [0, 1], got, r, release)) for r in readies]
    for p in procs:
        p.start()
    for r in readies:
        assert r.wait(60)
    indices = sorted(got.get(timeout=5) for _ in procs)
    assert indices == [0, 1]
    # both slots are held: a third job waits
    with pytest.raises(TimeoutError), gpu_slot([0, 1], tmp_path, poll_s=0.05, timeout_s=0.3):
        pass
    release.set()
    for p in procs:
        p.join(30)
    with gpu_slot([0, 1], tmp_path, poll_s=0.05, timeout_s=1.0) as index:
        assert index == 0  # freed when the holders ended


def test_without_cuda_jobs_run_on_the_cpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with job_device("auto") as device:
        assert device.type == "cpu"
    with pytest.raises(RuntimeError, match=r"none is visible"), job_device("cuda"):
        pass


def test_predict_command_on_a_png_and_on_a_nifti(tmp_path):
    import subprocess

    import SimpleITK as sitk
    from PIL import Image

    image, lesion, box = lesion_slice(3)
    Image.fromarray(image).save(tmp_path / "slice.png")
    hnseg = str(Path(sys.executable).with_name("hnseg"))
    args = ["--box", *map(str, box), "--device", "cpu"]
    subprocess.run(
        [hnseg, "predict", str(tmp_path / "slice.png"), *args, "--out", str(tmp_path / "m.png")],
        check=True,
        timeout=300,
    )
    assert dice(np.asarray(Image.open(tmp_path / "m.png")) > 0, lesion) > 0.95
    hu = np.stack([np.zeros(lesion.shape), image[..., 0].astype(np.float32) * 400 / 255 - 160]).astype(np.float32)
    ct = sitk.GetImageFromArray(hu)
    ct.SetSpacing((0.9, 0.9, 3.0))
    sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
    cmd = [hnseg, "predict", str(tmp_path / "ct.nii.gz"), "--slice", "1", *args, "--out", str(tmp_path / "m.nii.gz")]
    subprocess.run(cmd, check=True, timeout=300)
    mask = sitk.ReadImage(str(tmp_path / "m.nii.gz"))
    assert mask.GetSpacing() == pytest.approx((0.9, 0.9, 3.0))
    labels = sitk.GetArrayFromImage(mask)
    assert labels[0].sum() == 0 and dice(labels[1] > 0, lesion) > 0.95
    bad = subprocess.run(
        [hnseg, "predict", str(tmp_path / "ct.nii.gz"), *args, "--out", "x.png"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "--slice" in bad.stderr


@pytest.mark.slow
def test_gradient_checkpointing_gives_the_same_gradients(model):
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    grads = []
    for checkpointing in (False, True):
        encoder = LiteMedSAM().image_encoder
        encoder.load_state_dict(model.image_encoder.state_dict())
        encoder.train()
        encoder.gradient_checkpointing = checkpointing
        encoder(x).square().mean().backward()
        grads.append(encoder.patch_embed.seq[0].c.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-7)


ENCODER_PAGE_FAULTS = """
import resource, torch
from hnseg.sam.model import load_litemedsam
torch.set_num_threads(1)
model, image = load_litemedsam(), torch.rand(1, 3, 256, 256)
with torch.inference_mode():
    model.image_encoder(image)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model.image_encoder(image)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_job_environment_stops_the_encoder_page_faulting():
    """Jobs inherit hnseg.memory.MALLOC_TUNING; without it each encoder call faults its large buffers back in."""
    import os
    import subprocess

    from hnseg.memory import MALLOC_TUNING, tune_job_environment

    plain = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    tuned = dict(plain)
    tune_job_environment(tuned)
    assert all(tuned[k] == v for k, v in MALLOC_TUNING.items())
    kept = {"MALLOC_TRIM_THRESHOLD_": "123"}
    tune_job_environment(kept)
    assert kept["MALLOC_TRIM_THRESHOLD_"] == "123"  # a user's own setting wins

    def faults(env):
        run = subprocess.run(
            [sys.executable, "-c", ENCODER_PAGE_FAULTS], check=False, env=env, capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr
        return int(run.stdout.split()[-1])

    untuned_faults, tuned_faults = faults(plain), faults(tuned)
    assert untuned_faults > 100_000  # about 1.5 GB of 4 KB pages per call
    assert tuned_faults < untuned_faults / 10
