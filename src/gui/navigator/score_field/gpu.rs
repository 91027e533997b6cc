//! The score field's wgpu side: a render pipeline over `shaders/score_field.wgsl`, kept in the
//! egui renderer's callback resources, and the paint callback the canvas adds each frame.
//!
//! [`ScoreFieldCallback::prepare`] uploads the samples (a texture of a few kilobytes, made
//! again only when the lattice changes size) and the uniforms; [`ScoreFieldCallback::paint`]
//! draws one quad over the canvas. The pipeline is made for eframe's render pass as this
//! program configures it: the window's target format, no multisampling, no depth buffer.
//! There is one set of resources, so one field is drawn per frame (the navigator has one canvas).

use std::borrow::Cow;
use std::num::NonZeroU64;

use eframe::egui_wgpu::{self, CallbackResources, CallbackTrait, ScreenDescriptor, wgpu};

use super::{FieldTexture, IndexMap, SHADER_SOURCE, uniform_bytes};

/// The vertex stage's entry point.
pub const VERTEX_ENTRY: &str = "vs_main";

/// The fragment entry point for framebuffers that store gamma-encoded values.
pub const GAMMA_ENTRY: &str = "fs_main_gamma_framebuffer";

/// The fragment entry point for sRGB framebuffers.
pub const LINEAR_ENTRY: &str = "fs_main_linear_framebuffer";

/// The size of the shader's uniform block, in bytes.
pub const UNIFORM_SIZE: usize = 80;

/// The pipeline and its buffers, in the renderer's callback resources.
struct ScoreFieldResources {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    uniforms: wgpu::Buffer,
    /// The samples' texture and the bind group over it, with its size.
    samples: Option<(wgpu::Texture, wgpu::BindGroup, [u32; 2])>,
}

/// Makes the pipeline and puts it where the paint callbacks find it.
pub fn register(render_state: &egui_wgpu::RenderState) {
    let device = &render_state.device;
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("score_field"),
        source: wgpu::ShaderSource::Wgsl(Cow::Borrowed(SHADER_SOURCE)),
    });
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("score_field_bind_group_layout"),
        entries: &[
            wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::FRAGMENT,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: NonZeroU64::new(UNIFORM_SIZE as u64),
                },
                count: None,
            },
            wgpu::BindGroupLayoutEntry {
                binding: 1,
                visibility: wgpu::ShaderStages::FRAGMENT,
                ty: wgpu::BindingType::Texture {
                    sample_type: wgpu::TextureSampleType::Float { filterable: false },
                    view_dimension: wgpu::TextureViewDimension::D2,
                    multisampled: false,
                },
                count: None,
            },
        ],
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some("score_field_pipeline_layout"),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let format = render_state.target_format;
    let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
        label: Some("score_field_pipeline"),
        layout: Some(&pipeline_layout),
        vertex: wgpu::VertexState {
            module: &module,
            entry_point: Some(VERTEX_ENTRY),
            buffers: &[],
            compilation_options: wgpu::PipelineCompilationOptions::default(),
        },
        primitive: wgpu::PrimitiveState {
            topology: wgpu::PrimitiveTopology::TriangleStrip,
            ..wgpu::PrimitiveState::default()
        },
        depth_stencil: None,
        multisample: wgpu::MultisampleState::default(),
        fragment: Some(wgpu::FragmentState {
            module: &module,
            entry_point: Some(if format.is_srgb() {
                LINEAR_ENTRY
            } else {
                GAMMA_ENTRY
            }),
            targets: &[Some(wgpu::ColorTargetState {
                format,
                blend: Some(wgpu::BlendState::PREMULTIPLIED_ALPHA_BLENDING),
                write_mask: wgpu::ColorWrites::ALL,
            })],
            compilation_options: wgpu::PipelineCompilationOptions::default(),
        }),
        multiview_mask: None,
        cache: None,
    });
    let uniforms = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("score_field_uniforms"),
        size: UNIFORM_SIZE as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    render_state
        .renderer
        .write()
        .callback_resources
        .insert(ScoreFieldResources {
            pipeline,
            layout,
            uniforms,
            samples: None,
        });
}

/// One frame's field over the canvas: its samples and where the canvas's points fall on them.
pub struct ScoreFieldCallback {
    /// The samples.
    pub field: FieldTexture,
    /// Screen points to lattice indices.
    pub map: IndexMap,
}

impl CallbackTrait for ScoreFieldCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        screen: &ScreenDescriptor,
        _encoder: &mut wgpu::CommandEncoder,
        resources: &mut CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        let Some(res) = resources.get_mut::<ScoreFieldResources>() else {
            return Vec::new();
        };
        let size = self.field.size;
        if size[0] == 0 || size[1] == 0 {
            return Vec::new();
        }
        let extent = wgpu::Extent3d {
            width: size[0],
            height: size[1],
            depth_or_array_layers: 1,
        };
        if res.samples.as_ref().is_none_or(|(_, _, s)| *s != size) {
            let texture = device.create_texture(&wgpu::TextureDescriptor {
                label: Some("score_field_samples"),
                size: extent,
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rg32Float,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            });
            let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("score_field_bind_group"),
                layout: &res.layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: res.uniforms.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: wgpu::BindingResource::TextureView(&view),
                    },
                ],
            });
            res.samples = Some((texture, bind_group, size));
        }
        let Some((texture, _, _)) = &res.samples else {
            return Vec::new();
        };
        let texels: Vec<u8> = self
            .field
            .texels
            .iter()
            .flatten()
            .flat_map(|x| x.to_ne_bytes())
            .collect();
        queue.write_texture(
            wgpu::TexelCopyTextureInfo {
                texture,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            &texels,
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(8 * size[0]),
                rows_per_image: Some(size[1]),
            },
            extent,
        );
        queue.write_buffer(
            &res.uniforms,
            0,
            &uniform_bytes(&self.map, screen.pixels_per_point),
        );
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        render_pass: &mut wgpu::RenderPass<'static>,
        resources: &CallbackResources,
    ) {
        let Some(res) = resources.get::<ScoreFieldResources>() else {
            return;
        };
        let Some((_, bind_group, size)) = &res.samples else {
            return;
        };
        if *size != self.field.size {
            return;
        }
        render_pass.set_pipeline(&res.pipeline);
        render_pass.set_bind_group(0, bind_group, &[]);
        render_pass.draw(0..4, 0..1);
    }
}
