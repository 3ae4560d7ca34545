"""Tiny random pipelines built offline from configs: what the tests and the pipeline benchmark sample.

The weights are random, so the images are noise; the layout, the components and every code path are
those of the real pipelines (a Stable Diffusion 1.x folder: unet, vae, text_encoder, tokenizer, scheduler).
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import torch

from diffsampler.backbones.pipeline import TEXT_PARTS

__all__ = ["tiny_tokenizer", "tiny_t5_tokenizer", "tiny_sd_pipeline", "tiny_sdxl_pipeline", "tiny_sd3_pipeline"]


def tiny_tokenizer(folder: Path) -> Any:
    """A CLIP BPE tokenizer over single characters (no merges), its vocabulary written into ``folder``."""
    from transformers import CLIPTokenizer

    chars = string.ascii_lowercase + string.digits + ".,"
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)


def tiny_sd_pipeline(folder: Path, width: int = 8, seed: int = 0) -> Path:
    """Save a Stable Diffusion 1.x-layout pipeline with tiny random components (VAE factor 2) to ``folder``.

    ``width`` is the UNet's first block width (the second is twice it): 8 for tests, larger for timing.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    tok = tiny_tokenizer(folder.parent / (folder.name + "-vocab"))
    torch.manual_seed(seed)
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=16,
            projection_dim=8,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.eos_token_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(width, 2 * width),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=4,
        cross_attention_dim=8,
        attention_head_dim=2,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 8),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    )
    scheduler = DDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tok,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(folder)
    return folder


def tiny_t5_tokenizer(folder: Path) -> Any:
    """A T5 tokenizer (unigram over single characters, ``</s>`` appended) written into ``folder``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    chars = string.ascii_lowercase + string.digits + ".,"
    vocab = (
        [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
        + [(c, -3.0) for c in chars]
        + [("\u2581" + c, -2.5) for c in chars]
    )
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    t5 = T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=0)
    t5.save_pretrained(folder)
    return T5TokenizerFast.from_pretrained(folder)


def tiny_sd3_pipeline(folder: Path, text_encoders: bool = True, seed: int = 0) -> Path:
    """Save an SD3-layout pipeline (flow-matching transformer, VAE with a shift factor, FlowMatchEuler scheduler
    with shift 3) with tiny random components to ``folder``: two CLIPs (width 8, projections 8) and a T5 (width
    32), or none (``text_encoders=False``: prompts come as embeddings, joint states of width 32, pooled of 16)."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    folder = Path(folder)
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=32,
        caption_projection_dim=16,
        pooled_projection_dim=16,
        out_channels=4,
        pos_embed_max_size=16,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 8),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
        scaling_factor=1.5305,
        shift_factor=0.0609,
    )
    text: dict[str, Any] = dict.fromkeys(TEXT_PARTS)
    if text_encoders:
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

        tok = tiny_tokenizer(folder.parent / (folder.name + "-vocab"))
        clip = dict(
            vocab_size=len(tok),
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=16,
            projection_dim=8,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.eos_token_id,
        )
        t5_tok = tiny_t5_tokenizer(folder.parent / (folder.name + "-t5"))
        text.update(
            text_encoder=CLIPTextModelWithProjection(CLIPTextConfig(**clip)),
            tokenizer=tok,
            text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**clip)),
            tokenizer_2=tok,
            text_encoder_3=T5EncoderModel(
                T5Config(vocab_size=len(t5_tok), d_model=32, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
            ),
            tokenizer_3=t5_tok,
        )
    StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae, **text
    ).save_pretrained(folder)
    return folder


def tiny_sdxl_pipeline(folder: Path, seed: int = 0) -> Path:
    """Save an SDXL-layout pipeline with tiny random components to ``folder``: two text encoders (the second with
    a projection, whose pooled output and the size ids make SDXL's added conditioning) and a DDIM scheduler."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = Path(folder)
    tok = tiny_tokenizer(folder.parent / (folder.name + "-vocab"))
    torch.manual_seed(seed)
    config = dict(
        vocab_size=len(tok),
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=16,
        projection_dim=8,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.eos_token_id,
    )
    text, text_2 = CLIPTextModel(CLIPTextConfig(**config)), CLIPTextModelWithProjection(CLIPTextConfig(**config))
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        cross_attention_dim=16,
        attention_head_dim=2,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=8 + 6 * 8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 8),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
        scaling_factor=0.13025,
    )
    scheduler = DDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text,
        text_encoder_2=text_2,
        tokenizer=tok,
        tokenizer_2=tok,
        unet=unet,
        scheduler=scheduler,
    ).save_pretrained(folder)
    return folder
