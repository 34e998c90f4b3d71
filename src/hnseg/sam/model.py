"""LiteMedSAM: a TinyViT image encoder (the LiteMedSAM variant, written here with the official key names) and
SAM's prompt encoder and mask decoder from `segment_anything.modeling` (reference/litemedsam.md section 1.1).

The LiteMedSAM TinyViT differs from MobileSAM's: a 1x1 stride-1 stem, so stage 0 runs at the full 256x256; no
classifier head; the last patch merging (160 -> 320 channels) keeps 64x64; the neck turns the 64x64x320 tokens
into the (B, 256, 64, 64) embedding SAM's decoder expects.

Attention biases are gathered on every call (no eval-mode cache), so `eval()` before or after loading weights
gives the same result (the stale-cache pitfall of the official code).

`LiteMedSAM.state_dict()` has exactly the keys of the official `lite_medsam.pth`; `load_litemedsam` loads it (or
a fine-tuned checkpoint) with `weights_only=True` and `strict=True`.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from hnseg.errors import InputError


def _sam_modeling():
    """`segment_anything.modeling`, imported without running `segment_anything/__init__.py`.

    That file imports SAM's predictor, which imports torchvision and through it torch._dynamo: 1.5 s at the start of
    every LiteMedSAM job (2026-12-05, one idle core; more on a busy one) for nothing used here. While `modeling`
    imports, the package stands unexecuted in sys.modules; then every `segment_anything` module leaves sys.modules
    again, so that a later `import segment_anything` imports the whole package afresh, as if this had not run."""
    if "segment_anything" in sys.modules:  # already imported whole
        return importlib.import_module("segment_anything.modeling")
    sys.modules["segment_anything"] = importlib.util.module_from_spec(importlib.util.find_spec("segment_anything"))
    try:
        return importlib.import_module("segment_anything.modeling")
    finally:
        for name in [n for n in sys.modules if n == "segment_anything" or n.startswith("segment_anything.")]:
            del sys.modules[name]


_modeling = _sam_modeling()
MaskDecoder, PromptEncoder, TwoWayTransformer = (
    _modeling.MaskDecoder,
    _modeling.PromptEncoder,
    _modeling.TwoWayTransformer,
)
LayerNorm2d = _modeling.common.LayerNorm2d

IMAGE_SIZE = 256
EMBED_SIZE = 64


# --- TinyViT (LiteMedSAM variant) ----------------------------------------------------------------------------


class Conv2d_BN(nn.Sequential):  # the official key names are c.* and bn.*
    """Convolution without bias followed by batch norm."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, pad: int = 0, groups: int = 1):
        super().__init__()
        self.add_module("c", nn.Conv2d(in_ch, out_ch, kernel, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_ch))


class PatchEmbed(nn.Module):
    """Stem: two 1x1 Conv2d_BN with GELU between (3 -> 32 -> 64 channels), full resolution."""

    def __init__(self, in_chans: int, embed_dim: int):
        super().__init__()
        self.seq = nn.Sequential(Conv2d_BN(in_chans, embed_dim // 2), nn.GELU(), Conv2d_BN(embed_dim // 2, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project, residual, GELU after each and after the sum."""

    def __init__(self, dim: int, expand_ratio: float):
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2d_BN(dim, hidden)
        self.conv2 = Conv2d_BN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.conv3 = Conv2d_BN(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv1(x))
        y = self.act(self.conv2(y))
        return self.act(x + self.conv3(y))


class PatchMerging(nn.Module):
    """Tokens or feature maps at `resolution` -> tokens with `out_dim` channels; stride 2, or 1 into 320 channels."""

    def __init__(self, resolution: int, dim: int, out_dim: int):
        super().__init__()
        self.resolution = resolution
        stride = 1 if out_dim in (320, 448, 576) else 2
        self.conv1 = Conv2d_BN(dim, out_dim)
        self.conv2 = Conv2d_BN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2d_BN(out_dim, out_dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:  # tokens (B, N, C) -> (B, C, H, W)
            x = x.view(x.shape[0], self.resolution, self.resolution, -1).permute(0, 3, 1, 2)
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        return self.conv3(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Windowed multi-head self-attention with a learned bias per head and relative offset inside the window."""

    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = dim // num_heads
        self.scale = self.key_dim**-0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * self.key_dim * num_heads)
        self.proj = nn.Linear(self.key_dim * num_heads, dim)
        points = list(itertools.product(range(window), range(window)))
        offsets: dict[tuple[int, int], int] = {}
        index = []
        for a in points:
            for b in points:
                offset = (abs(a[0] - b[0]), abs(a[1] - b[1]))
                index.append(offsets.setdefault(offset, len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer(
            "attention_bias_idxs", torch.tensor(index).view(len(points), len(points)), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (
            self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.key_dim).permute(0, 2, 1, 3).chunk(3, dim=-1)
        )
        bias = self.attention_biases[:, self.attention_bias_idxs]
        attn = (q @ k.transpose(-2, -1)) * self.scale + bias
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Window attention (zero padded to whole windows), a depthwise 3x3 conv, then an MLP; residual around each."""

    def __init__(self, dim: int, resolution: int, num_heads: int, window: int, mlp_ratio: float, local_conv: int):
        super().__init__()
        self.resolution, self.window = resolution, window
        self.attn = Attention(dim, num_heads, window)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2d_BN(dim, dim, local_conv, 1, local_conv // 2, groups=dim)

    def _windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h = w = self.resolution
        ws = self.window
        if h == ws and w == ws:
            return self.attn(x)
        grid = x.view(b, h, w, c)
        pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
        if pad_b or pad_r:
            grid = F.pad(grid, (0, 0, 0, pad_r, 0, pad_b))
        ph, pw = h + pad_b, w + pad_r
        nh, nw = ph // ws, pw // ws
        windows = grid.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
        out = self.attn(windows).view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
        return out[:, :h, :w].reshape(b, n, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        x = x + self._windowed_attention(x)
        x = self.local_conv(x.transpose(1, 2).reshape(b, c, self.resolution, self.resolution))
        x = x.view(b, c, n).transpose(1, 2)
        return x + self.mlp(x)


class ConvLayer(nn.Module):
    def __init__(self, dim: int, resolution: int, depth: int, expand_ratio: float, out_dim: int):
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = PatchMerging(resolution, dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class BasicLayer(nn.Module):
    def __init__(self, dim, resolution, depth, num_heads, window, mlp_ratio, local_conv, out_dim: int | None):
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, resolution, num_heads, window, mlp_ratio, local_conv) for _ in range(depth)
        )
        self.downsample = PatchMerging(resolution, dim, out_dim) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class TinyViT(nn.Module):
    """The LiteMedSAM image encoder: (B, 3, 256, 256) in [0, 1] -> (B, 256, 64, 64)."""

    def __init__(
        self,
        img_size: int = IMAGE_SIZE,
        in_chans: int = 3,
        embed_dims: tuple[int, ...] = (64, 128, 160, 320),
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (2, 4, 5, 10),
        window_sizes: tuple[int, ...] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
    ):
        super().__init__()
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        resolutions = [img_size, img_size // 2, img_size // 4, img_size // 4]
        self.layers = nn.ModuleList(
            [ConvLayer(embed_dims[0], resolutions[0], depths[0], mbconv_expand_ratio, embed_dims[1])]
        )
        for i in (1, 2, 3):
            self.layers.append(
                BasicLayer(
                    embed_dims[i],
                    resolutions[i],
                    depths[i],
                    num_heads[i],
                    window_sizes[i],
                    mlp_ratio,
                    local_conv_size,
                    embed_dims[i + 1] if i < 3 else None,
                )
            )
        self.grid = resolutions[3]
        # recompute each layer's activations in the backward pass instead of keeping them: batch-8 training
        # at 256x256 keeps ~19 GB of stage-0 activations otherwise (benchmarks/litemedsam.py)
        self.gradient_checkpointing = False
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[3], 256, 1, bias=False),
            LayerNorm2d(256),
            nn.Conv2d(256, 256, 3, padding=1, bias=False),
            LayerNorm2d(256),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            # per block: a whole stage-0 layer recomputed at once still peaked at 11.8 GB for batch 8
            for layer in self.layers:
                for part in [*layer.blocks, *([layer.downsample] if layer.downsample is not None else [])]:
                    x = torch.utils.checkpoint.checkpoint(part, x, use_reentrant=False)
        else:
            for layer in self.layers:
                x = layer(x)
        x = x.view(x.shape[0], self.grid, self.grid, -1).permute(0, 3, 1, 2)
        return self.neck(x)


# --- prompt encoder, decoder and the whole model ---------------------------------------------------------------


class BatchedMaskDecoder(MaskDecoder):
    """SAM's mask decoder that also takes B image embeddings with B prompts (one each), as training needs.

    Upstream always repeats every image embedding once per prompt, which is right for one image with K boxes
    and wrong for B images with one box each; here the embeddings are repeated only when there are fewer of
    them than prompts.
    """

    def predict_masks(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings):
        n_prompts = sparse_prompt_embeddings.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(n_prompts, -1, -1), sparse_prompt_embeddings], dim=1)
        src = image_embeddings
        if src.shape[0] != n_prompts:
            src = torch.repeat_interleave(src, n_prompts // src.shape[0], dim=0)
        src = src + dense_prompt_embeddings
        pos = image_pe.expand(n_prompts, -1, -1, -1)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos, tokens)
        iou_out, mask_out = hs[:, 0, :], hs[:, 1 : 1 + self.num_mask_tokens, :]
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper = torch.stack([mlp(mask_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        b, c, h, w = upscaled.shape
        masks = (hyper @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
        return masks, self.iou_prediction_head(iou_out)


class LiteMedSAM(nn.Module):
    """Image encoder, mask decoder and prompt encoder (the attribute order gives the official key order)."""

    def __init__(self):
        super().__init__()
        self.image_encoder = TinyViT()
        self.mask_decoder = BatchedMaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        )
        self.prompt_encoder = PromptEncoder(
            embed_dim=256,
            image_embedding_size=(EMBED_SIZE, EMBED_SIZE),
            input_image_size=(IMAGE_SIZE, IMAGE_SIZE),
            mask_in_chans=16,
        )

    def decode(self, embeddings: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-resolution logits (K, 1, 256, 256) and predicted IoU (K, 1) for K boxes (K, 4) in the 256 frame.

        `embeddings` is (1, 256, 64, 64) for K boxes on one image, or (K, 256, 64, 64) for one box per image.
        """
        sparse, dense = self.prompt_encoder(points=None, boxes=boxes.reshape(-1, 1, 4), masks=None)
        logits, iou = self.mask_decoder(
            image_embeddings=embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        return logits, iou

    def forward(self, images: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One box per image: images (B, 3, 256, 256) in [0, 1], boxes (B, 4)."""
        return self.decode(self.image_encoder(images), boxes)


def _plain_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    """The model state dict inside a checkpoint: plain, {"model": ...}, with or without a `module.` prefix."""
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = list(obj)[:6] if isinstance(obj, dict) else type(obj).__name__
        raise InputError(
            f"{path} is not a LiteMedSAM checkpoint: expected a state dict of tensors, or a dict with a 'model' "
            f"state dict (found {keys}); use the official lite_medsam.pth or a best.pth/last.pth written by hnseg"
        )
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_litemedsam(path: str | Path | None = None, device: str | torch.device = "cpu") -> LiteMedSAM:
    """LiteMedSAM in eval mode on `device`: the official checkpoint (path None; size and SHA-256 checked) or a
    fine-tuned one. Loaded with weights_only=True and strict=True."""
    from hnseg.sam.weights import official_checkpoint_path

    path = official_checkpoint_path(verify=True) if path is None else Path(path)
    if not path.is_file():
        raise InputError(f"LiteMedSAM checkpoint {path} does not exist")
    state = _plain_state_dict(torch.load(path, map_location="cpu", weights_only=True), path)
    model = LiteMedSAM()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(f"{path} does not fit the LiteMedSAM architecture: {str(exc).splitlines()[0]}") from exc
    return model.to(device).eval()
