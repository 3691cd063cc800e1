"""LoRA (peft) on the attention query and value projections of open_clip and timm models.

open_clip's towers use ``nn.MultiheadAttention``, whose query, key and value projections live in
one packed ``in_proj_weight``; peft can only adapt whole modules. :func:`split_attention` swaps
each such module for :class:`SplitAttention`, the same computation with separate ``q_proj``,
``k_proj`` and ``v_proj`` linear layers (weights copied exactly), so that LoRA can target the
query and value projections alone, as in seed 000 (appendix A.2) and DataDream.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from geosynth.defaults import CLF_LORA_ALPHA, CLF_LORA_DROPOUT, CLF_LORA_RANK
from geosynth.errors import GeosynthError

#: Seed 000, appendix A.2: rank 16, alpha 32; dropout as in DataDream's classifier.
LORA_RANK = CLF_LORA_RANK
LORA_ALPHA = CLF_LORA_ALPHA
LORA_DROPOUT = CLF_LORA_DROPOUT


class SplitAttention(nn.Module):
    """Batch-first multi-head self/cross attention with separate q, k, v projections.

    Called like ``nn.MultiheadAttention`` (``attn(q, k, v, need_weights=False, attn_mask=m)``
    returns ``(out, None)``) so the surrounding open_clip block needs no change.
    """

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        if not mha.batch_first or not mha._qkv_same_embed_dim:
            raise GeosynthError(
                "LoRA: only batch-first attention with equal q/k/v sizes is supported"
            )
        d = mha.embed_dim
        self.num_heads = mha.num_heads
        has_bias = mha.in_proj_bias is not None
        self.q_proj = nn.Linear(d, d, bias=has_bias)
        self.k_proj = nn.Linear(d, d, bias=has_bias)
        self.v_proj = nn.Linear(d, d, bias=has_bias)
        with torch.no_grad():
            for i, proj in enumerate((self.q_proj, self.k_proj, self.v_proj)):
                proj.weight.copy_(mha.in_proj_weight[i * d : (i + 1) * d])
                if has_bias:
                    proj.bias.copy_(mha.in_proj_bias[i * d : (i + 1) * d])
        self.out_proj = mha.out_proj
        self.dropout = mha.dropout

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        need_weights: bool = False,
        attn_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, None]:
        b, lq, d = query.shape
        h = self.num_heads

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, -1, h, d // h).transpose(1, 2)

        q, k, v = heads(self.q_proj(query)), heads(self.k_proj(key)), heads(self.v_proj(value))
        if attn_mask is not None and attn_mask.dtype == torch.bool:
            # nn.MultiheadAttention's bool masks mark positions to *exclude*; SDPA's the opposite.
            attn_mask = ~attn_mask
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).reshape(b, lq, d)), None


def split_attention(model: nn.Module) -> int:
    """Replace every batch-first self-attention ``nn.MultiheadAttention`` in ``model`` by a
    :class:`SplitAttention` with the same weights; returns how many were replaced."""
    count = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if (
                isinstance(child, nn.MultiheadAttention)
                and child.batch_first
                and child._qkv_same_embed_dim
            ):
                setattr(module, child_name, SplitAttention(child))
                count += 1
        del name
    return count


def qv_targets(model: nn.Module) -> list[str]:
    """Names of the query and value projections in ``model``: ``q_proj``/``v_proj`` (split
    open_clip attention, transformers), ``query``/``value``, or timm ViTs' packed ``qkv``."""
    pattern = re.compile(r"(^|\.)(q_proj|v_proj|query|value|qkv)$")
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and pattern.search(n)]


def pointwise_conv_targets(model: nn.Module, exclude: tuple[str, ...] = ()) -> list[str]:
    """1x1 convolutions (the channel-mixing layers of CNNs such as EfficientNet): the LoRA
    targets of backbones without attention."""
    return [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
        and m.kernel_size == (1, 1)
        and m.groups == 1
        and not n.startswith(exclude)
    ]


def add_lora(
    model: nn.Module,
    targets: list[str],
    *,
    rank: int = LORA_RANK,
    alpha: int = LORA_ALPHA,
    dropout: float = LORA_DROPOUT,
) -> int:
    """Inject peft LoRA adapters into the named modules (in place); returns the number of
    trainable LoRA parameters. Everything else in ``model`` is frozen by the caller."""
    from peft import LoraConfig, inject_adapter_in_model

    if not targets:
        raise GeosynthError("LoRA: the model has no attention projections or 1x1 convolutions")
    # Exact names, anchored, so "visual...q_proj" does not also match a similarly named module.
    pattern = "^(" + "|".join(re.escape(t) for t in targets) + ")$"
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=pattern)
    inject_adapter_in_model(config, model)
    return sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
