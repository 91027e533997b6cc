//! Known pairs of names, as diffusers' own conversion script maps real checkpoints.

use super::*;

fn sd15_unet() -> KeyMap {
    unet_map(&UNetLayout {
        layers_per_block: 2,
        attention: vec![true, true, true, false],
    })
}

#[track_caller]
fn both_ways(map: &KeyMap, checkpoint: &str, diffusers: &str) {
    assert_eq!(
        map.to_diffusers(checkpoint).as_deref(),
        Some(diffusers),
        "{checkpoint}"
    );
    assert_eq!(
        map.to_checkpoint(diffusers).as_deref(),
        Some(checkpoint),
        "{diffusers}"
    );
}

#[test]
fn sd15_unet_names() {
    let map = sd15_unet();
    let m = "model.diffusion_model.";
    for (ckpt, diff) in [
        ("time_embed.0.weight", "time_embedding.linear_1.weight"),
        ("time_embed.2.bias", "time_embedding.linear_2.bias"),
        ("input_blocks.0.0.weight", "conv_in.weight"),
        (
            "input_blocks.1.0.in_layers.0.weight",
            "down_blocks.0.resnets.0.norm1.weight",
        ),
        (
            "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight",
            "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight",
        ),
        (
            "input_blocks.2.1.proj_in.weight",
            "down_blocks.0.attentions.1.proj_in.weight",
        ),
        (
            "input_blocks.3.0.op.weight",
            "down_blocks.0.downsamplers.0.conv.weight",
        ),
        (
            "input_blocks.4.0.skip_connection.weight",
            "down_blocks.1.resnets.0.conv_shortcut.weight",
        ),
        (
            "input_blocks.9.0.op.bias",
            "down_blocks.2.downsamplers.0.conv.bias",
        ),
        (
            "input_blocks.11.0.out_layers.3.bias",
            "down_blocks.3.resnets.1.conv2.bias",
        ),
        (
            "middle_block.1.proj_out.bias",
            "mid_block.attentions.0.proj_out.bias",
        ),
        (
            "middle_block.2.emb_layers.1.weight",
            "mid_block.resnets.1.time_emb_proj.weight",
        ),
        (
            "output_blocks.0.0.in_layers.2.weight",
            "up_blocks.0.resnets.0.conv1.weight",
        ),
        (
            "output_blocks.2.1.conv.weight",
            "up_blocks.0.upsamplers.0.conv.weight",
        ),
        (
            "output_blocks.3.1.norm.weight",
            "up_blocks.1.attentions.0.norm.weight",
        ),
        (
            "output_blocks.5.2.conv.bias",
            "up_blocks.1.upsamplers.0.conv.bias",
        ),
        (
            "output_blocks.8.2.conv.weight",
            "up_blocks.2.upsamplers.0.conv.weight",
        ),
        (
            "output_blocks.11.1.transformer_blocks.0.ff.net.2.weight",
            "up_blocks.3.attentions.2.transformer_blocks.0.ff.net.2.weight",
        ),
        ("out.0.weight", "conv_norm_out.weight"),
        ("out.2.weight", "conv_out.weight"),
    ] {
        both_ways(&map, &format!("{m}{ckpt}"), diff);
    }
    assert_eq!(map.to_diffusers("model_ema.decay"), None);
    assert_eq!(
        map.to_diffusers("first_stage_model.encoder.conv_in.weight"),
        None
    );
}

#[test]
fn sd_vae_names() {
    let map = vae_map(4, 2);
    let f = "first_stage_model.";
    for (ckpt, diff) in [
        ("encoder.conv_in.weight", "encoder.conv_in.weight"),
        (
            "encoder.down.0.block.0.conv1.weight",
            "encoder.down_blocks.0.resnets.0.conv1.weight",
        ),
        (
            "encoder.down.1.block.0.nin_shortcut.weight",
            "encoder.down_blocks.1.resnets.0.conv_shortcut.weight",
        ),
        (
            "encoder.down.3.block.1.norm2.bias",
            "encoder.down_blocks.3.resnets.1.norm2.bias",
        ),
        (
            "encoder.down.2.downsample.conv.weight",
            "encoder.down_blocks.2.downsamplers.0.conv.weight",
        ),
        (
            "encoder.mid.attn_1.q.weight",
            "encoder.mid_block.attentions.0.to_q.weight",
        ),
        (
            "encoder.mid.attn_1.norm.bias",
            "encoder.mid_block.attentions.0.group_norm.bias",
        ),
        (
            "encoder.mid.block_2.conv1.bias",
            "encoder.mid_block.resnets.1.conv1.bias",
        ),
        ("encoder.norm_out.weight", "encoder.conv_norm_out.weight"),
        ("quant_conv.weight", "quant_conv.weight"),
        ("post_quant_conv.bias", "post_quant_conv.bias"),
        (
            "decoder.up.3.block.2.conv2.weight",
            "decoder.up_blocks.0.resnets.2.conv2.weight",
        ),
        (
            "decoder.up.3.upsample.conv.weight",
            "decoder.up_blocks.0.upsamplers.0.conv.weight",
        ),
        (
            "decoder.up.1.upsample.conv.bias",
            "decoder.up_blocks.2.upsamplers.0.conv.bias",
        ),
        (
            "decoder.up.0.block.0.nin_shortcut.weight",
            "decoder.up_blocks.3.resnets.0.conv_shortcut.weight",
        ),
        (
            "decoder.mid.attn_1.proj_out.bias",
            "decoder.mid_block.attentions.0.to_out.0.bias",
        ),
        ("decoder.norm_out.weight", "decoder.conv_norm_out.weight"),
        ("decoder.conv_out.weight", "decoder.conv_out.weight"),
    ] {
        both_ways(&map, &format!("{f}{ckpt}"), diff);
    }
    assert_eq!(
        map.to_diffusers("first_stage_model.decoder.up.0.upsample.conv.weight"),
        None
    );
}

#[test]
fn text_encoder_names() {
    let clip = clip_map();
    both_ways(
        &clip,
        "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight",
        "text_model.encoder.layers.11.mlp.fc2.weight",
    );
    assert_eq!(
        clip.to_diffusers("cond_stage_model.transformer.embeddings.token_embedding.weight")
            .as_deref(),
        Some("text_model.embeddings.token_embedding.weight")
    );

    let open = open_clip_map(24);
    let o = "cond_stage_model.model.";
    both_ways(
        &open,
        &format!("{o}transformer.resblocks.22.ln_1.weight"),
        "text_model.encoder.layers.22.layer_norm1.weight",
    );
    both_ways(
        &open,
        &format!("{o}transformer.resblocks.3.mlp.c_proj.bias"),
        "text_model.encoder.layers.3.mlp.fc2.bias",
    );
    both_ways(
        &open,
        &format!("{o}positional_embedding"),
        "text_model.embeddings.position_embedding.weight",
    );
    both_ways(
        &open,
        &format!("{o}ln_final.weight"),
        "text_model.final_layer_norm.weight",
    );
    assert_eq!(
        open.to_diffusers(&format!("{o}transformer.resblocks.23.ln_1.weight")),
        None
    );
    assert_eq!(open.to_diffusers(&format!("{o}text_projection")), None);

    let fused = open
        .to_diffusers(&format!("{o}transformer.resblocks.0.attn.in_proj_weight"))
        .unwrap();
    let parts = split_fused_qkv(&fused).unwrap();
    assert_eq!(
        parts[1],
        "text_model.encoder.layers.0.self_attn.k_proj.weight"
    );
    assert_eq!(
        open.to_checkpoint("text_model.encoder.layers.0.self_attn.v_proj.bias")
            .as_deref(),
        Some("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_bias")
    );
}
