"""LiteMedSAM: the official checkpoint in hnseg's own model, inference, fine-tuning and GPU slots."""

import json
import logging
import multiprocessing as mp
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hnseg.errors import InputError
from hnseg.fusion import read_shard, to_model_frame, write_shard
from hnseg.gpu import gpu_slot, job_device
from hnseg.prompts import make_prompts, prompt_rng, read_prompts, split_instances, write_prompts
from hnseg.provenance import import_closure
from hnseg.sam import weights
from hnseg.sam.embeddings import bytes_per_slice, embed_shard, read_embeddings, write_embeddings
from hnseg.sam.frame import encode_image, frame_boxes, frame_tensor
from hnseg.sam.infer import decode_boxes, predict_patients, segment_slice
from hnseg.sam.model import LiteMedSAM, load_litemedsam
from hnseg.sam.train import (
    FinetuneConfig,
    Precision,
    ShardSet,
    Trainer,
    finetune,
    make_item,
    sample_rng,
    training_box,
    training_precision,
)

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


def test_the_model_imports_without_torchvision_and_segment_anything_still_imports_whole():
    """hnseg.sam.model takes SAM's decoder classes without segment_anything's __init__ (its predictor imports
    torchvision: 1.5 s at every job's start); a later `import segment_anything` gets the whole package."""
    import subprocess

    script = (
        "import sys\n"
        "import hnseg.sam.model as m\n"
        "assert 'torchvision' not in sys.modules and 'segment_anything' not in sys.modules\n"
        "assert m.MaskDecoder.__module__ == 'segment_anything.modeling.mask_decoder'\n"
        "import segment_anything\n"
        "assert segment_anything.SamPredictor and segment_anything.modeling.MaskDecoder\n"
        "assert 'torchvision' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


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


def write_patient(root: Path, patient: str, seeds, shape=(200, 240), spacing=(1.0, 1.0, 3.0), seed=7):
    """A shard and its prompts as the workflow writes them (fuse_slices, make_prompts): slices of a body with one
    lesion, the lesion a 3D instance across them."""
    rgb = np.stack([lesion_slice(k, shape)[0] for k in seeds])
    labels = np.stack([lesion_slice(k, shape)[1] for k in seeds]).astype(np.uint8)
    targets, _ = split_instances(labels)
    shard, prompts = root / f"{patient}.npz", root / f"{patient}.json"
    write_shard(shard, rgb, targets, list(range(len(seeds))), spacing_xyz=spacing, meta={"patient": patient})
    found = make_prompts(labels, spacing, patient, seed)
    write_prompts(prompts, patient, found, shape_zyx=labels.shape, spacing_xyz=spacing, params={"seed": seed})
    return shard, prompts


@pytest.fixture(scope="module")
def patients(tmp_path_factory, model):
    """Two tiny patients (two slices each): shards, prompts, and the second one's embeddings (rule embed_slices)."""
    root = tmp_path_factory.mktemp("patients")
    (train_shard, train_prompts), (val_shard, val_prompts) = (
        write_patient(root, "P0", [0, 1]),
        write_patient(root, "P1", [10, 11]),
    )
    write_embeddings(root / "P1.emb.npz", embed_shard(model, val_shard, torch.device("cpu")))
    return {
        "train": [train_shard],
        "train_prompts": [train_prompts],
        "val": [val_shard],
        "val_prompts": [val_prompts],
        "val_embeddings": [root / "P1.emb.npz"],
    }


def small_config(**overrides):
    base = {"max_epochs": 2, "batch_size": 2, "train_encoder": False, "max_steps_per_epoch": 2, "seed": 5}
    return FinetuneConfig(**{**base, **overrides})


@pytest.mark.parametrize("shape", [(200, 240), (520, 400)])  # the frame upsamples (x 1.07), downsamples (x 0.49)
def test_a_training_box_is_the_prompt_box_for_the_same_seed_key(tmp_path, shape):
    shard, prompts_path = write_patient(tmp_path, "P7", [3, 4], shape=shape, spacing=(0.9, 1.1, 3.0), seed=11)
    data = ShardSet([shard], [prompts_path])
    prompts = read_prompts(prompts_path)
    assert len(data) == len(prompts) == 2
    for sample, prompt in zip(data.samples, prompts, strict=True):
        rng = prompt_rng(11, "P7", prompt.slice, prompt.instance)  # the draw make_prompts made for this prompt
        box = training_box(data, sample, (0.0, 20.0), rng)
        geometry = data.geometry[0]
        assert box == geometry.box_to_frame(prompt.box)
        assert list(box) == frame_boxes([prompt.box], geometry)[0].tolist()  # what the prediction decodes
        assert prompt.box != prompt.tight  # a real perturbation, not the tight box twice
        # validation decodes the prompt's own box
        assert make_item(data, sample, None, small_config(), train=False)[2].tolist() == list(box)


def test_training_samples_flip_with_their_boxes(patients):
    data = ShardSet(patients["train"], patients["train_prompts"])
    cfg = small_config()
    flipped = 0
    for j in range(len(data)):
        for draw in range(4):
            image, mask, box, flips = make_item(data, data.samples[j], sample_rng(1, draw, j), cfg, train=True)
            assert image.shape == (3, 256, 256) and 0.0 <= image.min() and image.max() <= 1.0
            ys, xs = np.nonzero(mask[0].numpy())
            x0, y0, x1, y1 = box.tolist()
            assert x0 <= xs.min() and y0 <= ys.min() and x1 >= xs.max() and y1 >= ys.max()
            # at most 20 mm beyond the mask on each side, in frame pixels of 1 mm * 240 / 256
            assert max(xs.min() - x0, y0 - ys.min(), x1 - xs.max(), y1 - ys.max()) <= 20 * 256 / 240 + 1
            flipped += any(flips)
    assert flipped > 0


def test_shards_and_prompts_of_other_target_settings_are_refused(tmp_path):
    shard, _ = write_patient(tmp_path, "P8", [0, 1])
    other = tmp_path / "other.json"
    write_prompts(other, "P8", [], shape_zyx=(2, 200, 240), spacing_xyz=(1.0, 1.0, 3.0), params={})
    with pytest.raises(InputError, match=r"patient P8: slice 0 .* rerun fuse_slices and make_prompts"):
        ShardSet([shard], [other])


def test_cached_validation_embeddings_equal_the_ones_training_computes(model, patients):
    """Rule embed_slices and a frozen-encoder fine-tuning compute an embedding with one function, one image at a
    time: what the fine-tuning reads from the file is what it would have computed."""
    data = ShardSet(patients["val"], patients["val_prompts"], patients["val_embeddings"])
    trainer = Trainer(model, small_config(), torch.device("cpu"))
    image = make_item(data, data.samples[1], None, trainer.cfg, train=False)[0]
    computed = trainer.embed(image[None], [("train", 0, 1, (False, False))])  # no file for the training key
    read = trainer.embed(image[None], [("val", 0, 1, (False, False))], data)
    assert torch.equal(computed, read) and read.dtype == torch.float32
    assert data.embeddings[0].dtype == torch.float16


def test_two_steps_lower_the_training_loss(model, patients):
    cfg = small_config(lr=1e-5, augment_flips=False)
    trainer = Trainer(load_litemedsam(), cfg, torch.device("cpu"))
    data = ShardSet(patients["train"], patients["train_prompts"])
    batch = [make_item(data, data.samples[j], sample_rng(0, j), cfg, train=True) for j in range(2)]
    keys = [("train", 0, j, (False, False)) for j in range(2)]

    def fixed_batch_loss():
        trainer.model.eval()
        with torch.no_grad():
            images = torch.stack([b[0] for b in batch])
            logits, iou = trainer.model.decode(trainer.embed(images, keys), torch.stack([b[2] for b in batch]))
            return float(trainer.loss(logits, iou, torch.stack([b[1] for b in batch]))[0])

    before = fixed_batch_loss()
    trainer.train_epoch(data, epoch=1)  # 1 step of batch 2 (flips off: the same cached embeddings)
    assert fixed_batch_loss() < before


def run_finetune(patients, out_dir, cfg, **kwargs):
    return finetune(
        patients["train"],
        patients["val"],
        out_dir,
        cfg,
        torch.device("cpu"),
        train_prompts=patients["train_prompts"],
        val_prompts=patients["val_prompts"],
        val_embeddings=patients["val_embeddings"],
        **kwargs,
    )


def history_without_seconds(path: Path) -> list[list[str]]:
    return [line.split(",")[:-1] for line in path.read_text().splitlines()]


def test_a_killed_run_resumes_to_the_uninterrupted_result_and_a_rerun_after_the_end_writes_it_again(
    patients, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="hnseg.sam.train")
    cfg = small_config(max_epochs=3, max_steps_per_epoch=1, augment_flips=False)
    straight = run_finetune(patients, tmp_path / "straight", cfg)
    history = (tmp_path / "straight" / "history.csv").read_text().splitlines()
    assert history[0] == "epoch,train_loss,val_dice_loss,lr,seconds" and len(history) == 4
    # killed right after the best epoch's checkpoint: nothing but last.pth is left (Snakemake deletes the outputs)
    run_finetune(patients, tmp_path / "killed", cfg, stop_after_epoch=straight["epoch"])
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == ["last.pth"]
    caplog.clear()
    resumed = run_finetune(patients, tmp_path / "killed", cfg)
    assert f"resuming after epoch {straight['epoch']}" in caplog.text
    assert resumed == straight
    for name in ("best.pth", "last.pth"):
        a = torch.load(tmp_path / "straight" / name, weights_only=True)
        b = torch.load(tmp_path / "killed" / name, weights_only=True)
        a, b = (x["model"] if "model" in x else x for x in (a, b))
        assert all(torch.equal(x, y) for x, y in zip(a.values(), b.values(), strict=True))
    assert (tmp_path / "straight" / "best.pth").read_bytes() == (tmp_path / "killed" / "best.pth").read_bytes()
    assert history_without_seconds(tmp_path / "straight" / "history.csv") == history_without_seconds(
        tmp_path / "killed" / "history.csv"
    )
    # a forced rerun (outputs deleted, last.pth after the last epoch): nothing to train, both outputs written again
    best_bytes = (tmp_path / "straight" / "best.pth").read_bytes()
    history_text = (tmp_path / "straight" / "history.csv").read_text()
    for name in ("best.pth", "history.csv"):
        (tmp_path / "straight" / name).unlink()
    caplog.clear()
    assert run_finetune(patients, tmp_path / "straight", cfg) == straight
    assert "resuming after epoch 3" in caplog.text and "epoch 3:" not in caplog.text
    assert (tmp_path / "straight" / "best.pth").read_bytes() == best_bytes
    assert (tmp_path / "straight" / "history.csv").read_text() == history_text
    # best.pth is a plain state dict that the loader takes; last.pth ({"model": ...}) too
    load_litemedsam(tmp_path / "straight" / "best.pth")
    load_litemedsam(tmp_path / "straight" / "last.pth")


def test_the_resume_key_follows_the_contents_of_the_data_not_its_paths(patients, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hnseg.sam.train")
    cfg = small_config(max_epochs=1, max_steps_per_epoch=1, augment_flips=False)
    run_finetune(patients, tmp_path / "run", cfg)
    moved = {k: [] for k in patients}
    for key, paths in patients.items():
        for path in paths:
            copy = tmp_path / "moved" / key / Path(path).name
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, copy)
            moved[key].append(copy)
    caplog.clear()
    run_finetune(moved, tmp_path / "run", cfg)  # the same data elsewhere: resumed
    assert "resuming after epoch 1" in caplog.text
    # the same shard path with other images (as after a change of the CT window): starts from the official weights
    images, instances, slice_index, info = read_shard(moved["train"][0])
    np.savez_compressed(
        moved["train"][0], images=images // 2, instances=instances, slice_index=slice_index,
        geometry=np.array(json.dumps(info)),
    )  # fmt: skip
    caplog.clear()
    run_finetune(moved, tmp_path / "run", cfg)
    assert "belongs to a run with other settings or data: starting from the official weights" in caplog.text
    assert "resuming" not in caplog.text


# --- mixed precision ------------------------------------------------------------------------------------------------


def test_precision_choices():
    cpu = torch.device("cpu")
    assert training_precision("auto", cpu) == Precision(None, False)  # float32 on the CPU
    assert training_precision("bf16", cpu) == Precision(torch.bfloat16, False)
    assert training_precision("fp16", cpu) == Precision(torch.float16, True)  # float16 always with the scaler
    assert training_precision("off", cpu) == Precision(None, False)
    with pytest.raises(ValueError, match="amp must be one of"):
        training_precision("fp8", cpu)


@pytest.mark.slow  # the CPU has no bfloat16 or float16 arithmetic: the decoder alone is 3-4x slower than in float32
@pytest.mark.parametrize(("amp", "tolerance"), [("bf16", 0.08), ("fp16", 0.03)])
def test_mixed_precision_trains_within_a_tolerance_of_float32(model, patients, amp, tolerance):
    """Two decoder steps of batch 1 on the same samples, in float32 and in `amp`: each step's loss within
    `tolerance` x the first float32 loss of the float32 one (measured: bf16 1.2 %, fp16 0.2 %), and the float16
    path scales its loss with the gradient scaler (on the CPU as on CUDA). The frozen encoder's embeddings come from
    rule embed_slices' file, so that only the decoder runs under autocast (the encoder under it took 3.5 minutes a
    case on the CPU)."""
    losses = {}
    for mode in ("off", amp):
        cfg = small_config(amp=mode, augment_flips=False, max_steps_per_epoch=1, batch_size=1)
        trainer = Trainer(load_litemedsam(), cfg, torch.device("cpu"))
        data = ShardSet(patients["val"], patients["val_prompts"], patients["val_embeddings"])
        losses[mode] = np.array([trainer.train_epoch(data, epoch) for epoch in (1, 2)])
        if mode == "fp16":
            assert trainer.scaler.is_enabled() and trainer.scaler.get_scale() == 2.0**16  # no overflow, no step lost
        else:
            assert not trainer.scaler.is_enabled()
    reference, mixed = losses["off"], losses[amp]
    assert not np.array_equal(reference, mixed)  # autocast did run in the lower precision
    assert np.all(np.abs(mixed - reference) <= tolerance * reference[0]), (reference, mixed)
    assert mixed[1] < mixed[0]  # and it learns


# --- embeddings and prediction ----------------------------------------------------------------------------------


def test_embeddings_file_round_trip_and_disk_cost(model, patients, tmp_path):
    cached = read_embeddings(patients["val_embeddings"][0])
    assert cached.embeddings.shape == (2, 256, 64, 64) and cached.embeddings.dtype == torch.float16
    assert cached.slice_index.tolist() == [0, 1] and cached.info["patient"] == "P1"
    assert len(cached.encoder_s) == 2 and all(cached.encoder_s > 0)
    size = Path(patients["val_embeddings"][0]).stat().st_size
    assert 2 * bytes_per_slice("float16") < size < 2 * bytes_per_slice("float16") + 10_000  # 2 MiB per slice


def test_prediction_from_cached_embeddings_equals_encoding_in_the_job(model, patients, tmp_path):
    import SimpleITK as sitk

    reference = tmp_path / "labels.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 200, 240), np.uint8)), str(reference))
    case = {"patient": "P1", "prompts": patients["val_prompts"][0], "reference": reference}
    from_cache = predict_patients(
        model,
        [{**case, "embeddings": patients["val_embeddings"][0], "out": tmp_path / "a.nii.gz"}],
        torch.device("cpu"),
    )
    in_job = predict_patients(
        model, [{**case, "shard": patients["val"][0], "out": tmp_path / "b.nii.gz"}], torch.device("cpu")
    )
    assert from_cache["embeddings_from"] == ["embed_slices"] and in_job["embeddings_from"] == ["this job"]
    a, b = (sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"{n}.nii.gz"))) for n in "ab")
    assert np.array_equal(a, b)
    lesions = np.stack([lesion_slice(k)[1] for k in (10, 11)])
    assert dice(a == 1, lesions) > 0.8  # 0.88: the prompts' boxes reach up to 20 mm (px) beyond the lesion
    assert from_cache["overall"]["boxes"] == 2 and from_cache["overall"]["encoder_s_per_slice"] > 0


def test_float16_embeddings_move_a_mask_by_a_few_pixels_at_most(model):
    image, lesion, box = lesion_slice(5)
    frame, geometry = to_model_frame(image)
    exact, _ = encode_image(model, frame_tensor(frame, geometry)[0], torch.device("cpu"), torch.float32)
    masks = [
        (decode_boxes(model, e, geometry, [box], torch.device("cpu"))[0] > 0.5).numpy()
        for e in (exact, exact.to(torch.float16))
    ]
    assert dice(masks[0][0], lesion) > 0.95
    assert np.count_nonzero(masks[0] != masks[1]) <= 5


def test_prediction_and_training_scripts_import_only_what_they_run():
    """Code triggers are import closures (hnseg.provenance): inference-only code must not retrain, training code
    must not re-predict, and nothing here is rerun by the metrics."""
    scripts = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
    predict = import_closure(scripts / "predict_litemedsam.py")
    finetune_ = import_closure(scripts / "finetune_litemedsam.py")
    embed = import_closure(scripts / "embed_litemedsam.py")
    assert "hnseg.sam.infer" in predict and "hnseg.sam.train" not in predict and "hnseg.metrics" not in predict
    assert "hnseg.sam.train" in finetune_ and "hnseg.sam.infer" not in finetune_
    assert not {"hnseg.sam.infer", "hnseg.sam.train"} & set(embed)
    assert {"hnseg.sam.frame", "hnseg.sam.model"} <= set(predict) & set(finetune_) & set(embed)


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
