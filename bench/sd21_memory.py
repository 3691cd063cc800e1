"""Derived GPU memory of SD 2.1-base LoRA training at 512 px, for docs/finetune.md's table.

No GPU needed: the UNet runs under PyTorch's FakeTensorMode (shapes only, no memory, no
arithmetic) with a ``saved_tensors_hooks`` that adds up what autograd keeps for the backward
pass, with and without gradient checkpointing. A LoRA on the attention projections saves those
layers' inputs, so the projections are marked trainable (their rank-16 intermediates are
negligible). The rest is parameter arithmetic (see ``peak``), with what stays on the GPU as
geosynth's trainer keeps it: latents are cached before training by default, so the table's rows
include no per-step VAE encoding (one row shows what it would add) and keep every component's
weights (nothing leaves the GPU when the latents or prompts are cached). ``make bench-gpu`` measures the
real figures where a GPU exists.

    python bench/sd21_memory.py
"""

from __future__ import annotations

from typing import Any

GB = 1e9
#: Parameters of SD 2.1-base's text encoder and VAE (counted in bench/sd21.py's build).
TEXT_PARAMS, VAE_PARAMS = 340_387_840, 83_653_863
#: Transient of the VAE encoder at 512 px under no_grad (three 128 x 512 x 512 half tensors).
VAE_ENCODE_PER_SAMPLE = 3 * 128 * 512 * 512 * 2 / GB
#: Text-encoder activations saved per sample when its LoRA trains (77 tokens, 23 layers).
TEXT_ACT_PER_SAMPLE = 23 * 77 * (12 * 1024 + 2 * 4096) * 2 / GB
#: CUDA context, cuBLAS/cuDNN workspaces and the backward pass's transient gradients.
OVERHEAD = 1.5
TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


#: SD 2.1-base's UNet (bench/sd21.py builds the same).
SD21_UNET: dict[str, Any] = {
    "sample_size": 64,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "attention_head_dim": (5, 10, 20, 20),
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
    "layers_per_block": 2,
}


def unet_saved(
    gradient_checkpointing: bool,
    batch: int,
    config: dict[str, Any] = SD21_UNET,
    latent: int = 64,
    train_all: bool = False,
) -> tuple[float, int, int]:
    """(GB saved for backward by the UNet of ``config`` on ``latent`` x ``latent`` latents in
    fp16, UNet params, LoRA r16 params). A UNet with SDXL's added conditioning
    (``addition_embed_type="text_time"``) also gets the pooled text and six size numbers.
    ``train_all``: every UNet weight trains (full fine-tuning) instead of the projections."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch._subclasses.fake_tensor import FakeTensorMode

    torch.set_default_dtype(torch.float16)
    with FakeTensorMode(allow_non_fake_inputs=True):
        unet = UNet2DConditionModel(**config)
        unet.requires_grad_(False)
        lora = 0
        for name, p in unet.named_parameters():
            if any(f".{t}.weight" in name for t in TARGETS):
                p.requires_grad_(True)
                lora += 16 * (p.shape[0] + p.shape[1])
            elif train_all:
                p.requires_grad_(True)
        if gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        unet.train()
        sizes: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            # Weights are saved by reference, not copied: count activations only.
            if not isinstance(t, torch.nn.Parameter):
                sizes[id(t)] = t.numel() * t.element_size()
            return t

        x = torch.randn(batch, 4, latent, latent)
        ctx = torch.randn(batch, 77, unet.config.cross_attention_dim)
        added = None
        if unet.config.addition_embed_type == "text_time":
            pooled = unet.config.projection_class_embeddings_input_dim - 6 * (
                unet.config.addition_time_embed_dim
            )
            added = {"text_embeds": torch.randn(batch, pooled), "time_ids": torch.randn(batch, 6)}
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            unet(x, torch.tensor([10] * batch), ctx, added_cond_kwargs=added)
        params = sum(p.numel() for p in unet.parameters())
    torch.set_default_dtype(torch.float32)
    return sum(sizes.values()) / GB, params, lora


#: Images per batch when finetune caches the latents before training (build_training_set).
CACHE_BATCH = 8


def peak(
    per: dict[bool, tuple[float, float]],
    params: int,
    lora: int,
    b: int,
    *,
    gc: bool,
    train_text: bool,
    opt8: bool,
    encode_every_step: bool,
) -> float:
    """Derived training peak (GB) at batch ``b``, as geosynth's trainer holds things: the UNet,
    the text encoder and the VAE all stay on the GPU in half precision whatever trains (a frozen
    text encoder only stops needing activations and LoRA states), and the VAE encoder runs per
    step only when latents are not cached (library ``cache_latents=False``, or a VAE encoder
    that trains); cached latents, the default, were encoded before training (:func:`table`)."""
    text_lora = 23 * 4 * 16 * (1024 + 1024)
    act, fixed = per[gc]
    weights = (params + TEXT_PARAMS + VAE_PARAMS) * 2 / GB
    trainable = lora + (text_lora if train_text else 0)
    states = trainable * (4 + 4 + (2 if opt8 else 8)) / GB  # fp32 weight, grad, Adam
    total = weights + states + fixed + act * b + OVERHEAD
    total += TEXT_ACT_PER_SAMPLE * b if train_text else 0
    total += VAE_ENCODE_PER_SAMPLE * b if encode_every_step else 0
    return total


def table() -> None:
    """Print per-sample activations and the derived peak for batch 1-8 and each setting."""
    per: dict[bool, tuple[float, float]] = {}
    for gc in (False, True):
        one, params, lora = unet_saved(gc, 1)
        two, _, _ = unet_saved(gc, 2)
        per[gc] = (two - one, one - (two - one))  # per sample, fixed
        print(f"gradient checkpointing {gc}: {two - one:.3f} GB/sample + {one - (two - one):.3f}")
    text_lora = 23 * 4 * 16 * (1024 + 1024)
    print(f"UNet {params / 1e6:.1f} M params, UNet LoRA r16 {lora / 1e6:.2f} M, text {text_lora}")
    # Caching, once before training: only the VAE is on the GPU, in float32, encoding
    # CACHE_BATCH images (and their mirrors, one view at a time) under no_grad.
    caching = VAE_PARAMS * 4 / GB + 2 * VAE_ENCODE_PER_SAMPLE * CACHE_BATCH + OVERHEAD
    print(f"latent caching (before training, any batch size): {caching:.1f} GB")
    print("| setting (cumulative) | B=1 | B=2 | B=4 | B=8 |")
    print("|---|---:|---:|---:|---:|")
    for name, gc, train_text, opt8, every in (
        ("fp16, UNet + text LoRA (latents cached)", False, True, False, False),
        ("+ gradient checkpointing", True, True, False, False),
        ("+ frozen text encoder (UNet LoRA only)", True, False, False, False),
        ("+ 8-bit AdamW", True, False, True, False),
        ("row 2, latents encoded every step instead", True, True, False, True),
    ):
        row = [
            peak(per, params, lora, b, gc=gc, train_text=train_text, opt8=opt8,
                 encode_every_step=every)
            for b in (1, 2, 4, 8)
        ]  # fmt: skip
        print(f"| {name} | " + " | ".join(f"{t:.1f}" for t in row) + " |")


if __name__ == "__main__":
    table()
