"""Derived GPU memory of SDXL base LoRA training at 1024 px, for docs/finetune.md's table.

The same method as ``sd21_memory.py`` (no GPU needed): SDXL base's exact UNet (``sdxl.UNET``)
runs under FakeTensorMode on 128 x 128 latents with its added conditioning, and a
``saved_tensors_hooks`` adds up what autograd keeps for the backward pass, with and without
gradient checkpointing; the rest is parameter arithmetic (``peak``) with what geosynth's trainer
keeps on the GPU: the UNet and both text encoders in half precision whatever trains, the VAE in
float32 under fp16 (SDXL's overflows in float16; its config says ``force_upcast``), latents
cached before training. ``make bench-gpu`` (``BENCH=sdxl``) measures real peaks where a GPU
exists.

    python bench/sdxl_memory.py
"""

from __future__ import annotations

from sd21_memory import GB, OVERHEAD, unet_saved  # bench/ is on sys.path when a bench script runs
from sdxl import PARAMS, TEXT_ENCODER, TEXT_ENCODER_2, UNET

RES = 1024
LATENT = RES // 8
TEXT_PARAMS = PARAMS["text_encoder"] + PARAMS["text_encoder_2"]
#: Text-encoder LoRA r16 on q, k, v and out projections of every layer of both encoders.
TEXT_LORA = sum(
    c["num_hidden_layers"] * 4 * 16 * 2 * c["hidden_size"] for c in (TEXT_ENCODER, TEXT_ENCODER_2)
)
#: Activations both encoders save per sample when their LoRAs train (77 tokens, half precision;
#: per layer and token about 12 x width + 2 x MLP width values, as for SD 2.1's encoder).
TEXT_ACT_PER_SAMPLE = (
    sum(
        c["num_hidden_layers"] * 77 * (12 * c["hidden_size"] + 2 * c["intermediate_size"]) * 2
        for c in (TEXT_ENCODER, TEXT_ENCODER_2)
    )
    / GB
)
#: The VAE encoder's transient per image at 1024 px under no_grad: three live 128-channel
#: full-resolution tensors in float32 (the VAE runs in float32: force_upcast).
VAE_ENCODE_PER_SAMPLE = 3 * 128 * RES * RES * 4 / GB
#: Images per batch when finetune caches the latents before training (build_training_set).
CACHE_BATCH = 8


def peak(
    per: dict[str, tuple[float, float]],
    lora: int,
    b: int,
    *,
    setting: str,
    train_text: bool,
    opt8: bool,
    encode_every_step: bool = False,
) -> float:
    """Derived training peak (GB) at batch ``b``; ``setting`` is a key of ``per`` (``plain``,
    ``gc``, or ``full-gc``: every UNet weight trains, held in float32 with its AdamW states,
    the hybrid setting of seed 003)."""
    act, fixed = per[setting]
    state_bytes = 4 + 4 + (2 if opt8 else 8)  # fp32 weight, grad, AdamW states
    if setting == "full-gc":
        unet = PARAMS["unet"] * state_bytes / GB
        trainable = TEXT_LORA if train_text else 0
    else:
        unet = PARAMS["unet"] * 2 / GB
        trainable = lora + (TEXT_LORA if train_text else 0)
    weights = unet + TEXT_PARAMS * 2 / GB + PARAMS["vae"] * 4 / GB
    total = weights + trainable * state_bytes / GB + fixed + act * b + OVERHEAD
    total += TEXT_ACT_PER_SAMPLE * b if train_text else 0
    total += VAE_ENCODE_PER_SAMPLE * b if encode_every_step else 0
    return total


def table() -> None:
    """Print per-sample activations and the derived peak for batch 1-8 and each setting."""
    per: dict[str, tuple[float, float]] = {}
    lora = 0
    for setting, gc, full in (
        ("plain", False, False),
        ("gc", True, False),
        ("full-gc", True, True),
    ):
        one, params, lora_ = unet_saved(gc, 1, UNET, LATENT, train_all=full)
        two, _, _ = unet_saved(gc, 2, UNET, LATENT, train_all=full)
        per[setting] = (two - one, one - (two - one))  # per sample, fixed
        lora = lora or lora_
        print(f"{setting}: {two - one:.3f} GB/sample + {one - (two - one):.3f}")
        assert params == PARAMS["unet"], params
    print(f"UNet LoRA r16 {lora / 1e6:.2f} M, text LoRA r16 {TEXT_LORA / 1e6:.2f} M")
    print(f"text activations {TEXT_ACT_PER_SAMPLE:.3f} GB/sample")
    caching = PARAMS["vae"] * 4 / GB + VAE_ENCODE_PER_SAMPLE * CACHE_BATCH + OVERHEAD
    print(f"latent caching (before training, any batch size): {caching:.1f} GB")
    print("| setting (cumulative) | B=1 | B=2 | B=4 | B=8 |")
    print("|---|---:|---:|---:|---:|")
    for name, setting, train_text, opt8, every in (
        ("fp16, UNet + both text LoRAs (latents cached)", "plain", True, False, False),
        ("+ gradient checkpointing", "gc", True, False, False),
        ("+ frozen text encoders (UNet LoRA only)", "gc", False, False, False),
        ("+ 8-bit AdamW", "gc", False, True, False),
        ("row 2, latents encoded every step instead", "gc", True, False, True),
        ("hybrid: full UNet + text LoRAs, gradient checkpointing", "full-gc", True, False, False),
        ("hybrid with 8-bit AdamW", "full-gc", True, True, False),
    ):
        row = [
            peak(per, lora, b, setting=setting, train_text=train_text, opt8=opt8,
                 encode_every_step=every)
            for b in (1, 2, 4, 8)
        ]  # fmt: skip
        print(f"| {name} | " + " | ".join(f"{t:.1f}" for t in row) + " |")


if __name__ == "__main__":
    table()
